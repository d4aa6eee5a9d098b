import assert from 'node:assert/strict';
import { createDecipheriv, createSecretKey, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  type EnvelopeContext,
  EnvelopeError,
  type EnvelopeErrorReason,
  envelopeKeyVersion,
  envelopeOverheadBytes,
  fromTransitText,
  open,
  openAsync,
  seal,
  toTransitText,
} from './envelope.ts';

const keyV1 = randomBytes(32);
const keyV2 = randomBytes(32);
const context: EnvelopeContext = { tenantId: 'a1b2c3d4e5f6', table: 'records', column: 'body', rowId: '0123456789ab' };
const onlyV1 = (version: number) => (version === 1 ? keyV1 : undefined);

function rejects(action: () => unknown, reason: EnvelopeErrorReason): void {
  assert.throws(action, (error: unknown) => error instanceof EnvelopeError && error.reason === reason);
}

function reasonOf(action: () => unknown): EnvelopeErrorReason | 'opened' {
  try {
    action();
    return 'opened';
  } catch (error) {
    if (error instanceof EnvelopeError) return error.reason;
    throw error;
  }
}

describe('envelope: round trip and layout', () => {
  for (const size of [0, 1, 4096, 1024 * 1024]) {
    it(`seals and opens ${size} bytes`, () => {
      const plaintext = randomBytes(size);
      const sealed = seal(keyV1, 1, plaintext, context);
      assert.equal(sealed.length, size + envelopeOverheadBytes);
      assert.deepEqual(open(sealed, context, onlyV1), plaintext);
    });
  }

  it('writes the documented header: format 1, algorithm 1, key version uint32 BE', () => {
    const sealed = seal(keyV2, 0x01020304, Buffer.from('x'), context);
    assert.deepEqual([...sealed.subarray(0, 6)], [1, 1, 1, 2, 3, 4]);
    assert.equal(envelopeKeyVersion(sealed), 0x01020304);
  });

  it('matches docs/envelope-format.md: an independent decryption with the documented AAD succeeds', () => {
    const plaintext = Buffer.from('spec check');
    const extra = Buffer.from([0, 1, 2]);
    const sealed = seal(keyV1, 9, plaintext, { ...context, extra });
    const field = (bytes: Buffer) => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      return [length, bytes];
    };
    const aad = Buffer.concat([
      Buffer.from('bulwark/envelope/v1'),
      sealed.subarray(0, 6),
      ...field(Buffer.from(context.tenantId)),
      ...field(Buffer.from(context.table)),
      ...field(Buffer.from(context.column)),
      ...field(Buffer.from(context.rowId)),
      ...field(extra),
    ]);
    const decipher = createDecipheriv('aes-256-gcm', keyV1, sealed.subarray(6, 18), { authTagLength: 16 });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const opened = Buffer.concat([decipher.update(sealed.subarray(18, sealed.length - 16)), decipher.final()]);
    assert.deepEqual(opened, plaintext);
  });

  it('takes the key as a KeyObject or as its bytes, interchangeably', () => {
    const keyObject = createSecretKey(keyV1);
    const sealed = seal(keyObject, 1, Buffer.from('either'), context);
    assert.deepEqual(open(sealed, context, onlyV1), Buffer.from('either'));
    assert.deepEqual(open(seal(keyV1, 1, Buffer.from('either'), context), context, () => keyObject), Buffer.from('either'));
    rejects(() => open(sealed, context, () => createSecretKey(keyV2)), 'authentication_failed');
  });

  it('openAsync accepts a lookup that returns a promise', async () => {
    const sealed = seal(keyV1, 1, Buffer.from('async'), context);
    assert.deepEqual(await openAsync(sealed, context, async (version) => onlyV1(version)), Buffer.from('async'));
    await assert.rejects(openAsync(sealed, context, async () => undefined), (error: unknown) => error instanceof EnvelopeError && error.reason === 'unknown_key_version');
  });

  it('refuses a key that is not 32 bytes and key versions outside 1 .. 2^32-1', () => {
    assert.throws(() => seal(randomBytes(16), 1, Buffer.alloc(1), context), RangeError);
    for (const version of [0, -1, 1.5, 2 ** 32, Number.NaN]) {
      assert.throws(() => seal(keyV1, version, Buffer.alloc(1), context), RangeError);
    }
    assert.equal(envelopeKeyVersion(seal(keyV1, 2 ** 32 - 1, Buffer.alloc(0), context)), 2 ** 32 - 1);
    const sealed = seal(keyV1, 1, Buffer.alloc(1), context);
    assert.throws(() => open(sealed, context, () => randomBytes(16)), RangeError);
  });
});

describe('envelope: tampering', () => {
  it('fails for a flipped bit in every bit position of a small envelope', () => {
    // Version 3 has two bits set, so no single flip turns it into the invalid version 0.
    const sealed = seal(keyV1, 3, Buffer.from('tamper me please'), context);
    const onlyV3 = (version: number) => (version === 3 ? keyV1 : undefined);
    assert.deepEqual(open(sealed, context, onlyV3), Buffer.from('tamper me please'));
    // The lookup returns the same key for any version, so a changed key version field must still fail
    // (the header is in the associated data), not merely miss the key.
    const anyVersion = () => keyV1;
    let checked = 0;
    for (let index = 0; index < sealed.length; index += 1) {
      for (let bit = 0; bit < 8; bit += 1) {
        const altered = Buffer.from(sealed);
        altered[index] = (altered[index] ?? 0) ^ (1 << bit);
        const reason = reasonOf(() => open(altered, context, anyVersion));
        const expected = index < 2 ? 'unsupported_format' : 'authentication_failed';
        assert.equal(reason, expected, `byte ${index} bit ${bit}`);
        // With the real lookup, a changed version is an unknown one.
        if (index >= 2 && index < 6) assert.equal(reasonOf(() => open(altered, context, onlyV3)), 'unknown_key_version');
        checked += 1;
      }
    }
    assert.equal(checked, sealed.length * 8);
  });

  it('fails for every truncation and for appended bytes', () => {
    const sealed = seal(keyV1, 1, Buffer.from('truncate me'), context);
    for (let length = 0; length < sealed.length; length += 1) {
      const reason = reasonOf(() => open(sealed.subarray(0, length), context, onlyV1));
      assert.equal(reason, length < envelopeOverheadBytes ? 'malformed' : 'authentication_failed', `length ${length}`);
    }
    rejects(() => open(Buffer.concat([sealed, Buffer.from([0])]), context, onlyV1), 'authentication_failed');
  });

  it('refuses an unknown format version, algorithm, and key version 0', () => {
    const sealed = seal(keyV1, 1, Buffer.from('x'), context);
    const withByte = (index: number, value: number) => {
      const altered = Buffer.from(sealed);
      altered[index] = value;
      return altered;
    };
    rejects(() => envelopeKeyVersion(withByte(0, 2)), 'unsupported_format');
    rejects(() => envelopeKeyVersion(withByte(1, 2)), 'unsupported_format');
    rejects(() => envelopeKeyVersion(withByte(5, 0)), 'malformed');
  });
});

describe('envelope: associated data', () => {
  const sealed = seal(keyV1, 1, Buffer.from('bound to its place'), { ...context, extra: 'caller context' });
  const opens = (other: EnvelopeContext) => reasonOf(() => open(sealed, other, onlyV1));
  const base: EnvelopeContext = { ...context, extra: 'caller context' };

  it('opens only in its own context', () => {
    assert.equal(opens(base), 'opened');
    assert.equal(opens({ ...base, extra: Buffer.from('caller context') }), 'opened', 'a string extra is its UTF-8 bytes');
  });

  for (const [field, value] of [
    ['tenantId', 'ffffffffffff'],
    ['table', 'secrets'],
    ['column', 'title'],
    ['rowId', '0123456789ac'],
    ['extra', 'other context'],
  ] as const) {
    it(`fails for another ${field}`, () => {
      assert.equal(opens({ ...base, [field]: value }), 'authentication_failed');
    });
  }

  it('fails without the extra context it was sealed with, and with one it was sealed without', () => {
    assert.equal(opens({ ...context }), 'authentication_failed');
    const plain = seal(keyV1, 1, Buffer.from('x'), context);
    rejects(() => open(plain, { ...context, extra: 'x' }, onlyV1), 'authentication_failed');
    // Absent and empty extra context mean the same thing.
    assert.deepEqual(open(plain, { ...context, extra: '' }, onlyV1), Buffer.from('x'));
    assert.deepEqual(open(plain, { ...context, extra: Buffer.alloc(0) }, onlyV1), Buffer.from('x'));
  });

  it('does not collide for fields that concatenate to the same bytes', () => {
    const pairs: [Partial<EnvelopeContext>, Partial<EnvelopeContext>][] = [
      [{ table: 'ab', column: 'c' }, { table: 'a', column: 'bc' }],
      [{ tenantId: 'a1b2c3d4e5f6', table: 'records' }, { tenantId: 'a1b2c3d4e5f6r', table: 'ecords' }],
      [{ rowId: 'row', extra: '' }, { rowId: 'ro', extra: 'w' }],
      [{ column: 'body', rowId: '' }, { column: 'bod', rowId: 'y' }],
      // A length prefix smuggled into a value must not shift the fields either.
      [{ table: 'a', column: 'b' }, { table: 'a\u0000\u0000\u0000\u0001b', column: '' }],
    ];
    for (const [first, second] of pairs) {
      const one = seal(keyV1, 1, Buffer.from('x'), { ...context, ...first });
      assert.equal(reasonOf(() => open(one, { ...context, ...second }, onlyV1)), 'authentication_failed', JSON.stringify(first));
    }
  });

  it('binds a long extra context and multi-byte text (the AAD outgrows its reusable buffer)', () => {
    const long = { ...context, tenantId: 'tenant-\u00e9\u4e2d\u{1f600}', extra: 'x'.repeat(5000) };
    const sealed = seal(keyV1, 1, Buffer.from('long'), long);
    assert.deepEqual(open(sealed, long, onlyV1), Buffer.from('long'));
    rejects(() => open(sealed, { ...long, extra: `${'x'.repeat(4999)}y` }, onlyV1), 'authentication_failed');
    rejects(() => open(sealed, { ...long, tenantId: 'tenant-\u00e9\u4e2d\u{1f601}' }, onlyV1), 'authentication_failed');
    // A short context right after still uses (and fully rewrites) the reusable buffer.
    assert.deepEqual(open(seal(keyV1, 1, Buffer.from('short'), context), context, onlyV1), Buffer.from('short'));
  });

  it('refuses context strings that are not well-formed Unicode (they would encode alike)', () => {
    rejects(() => seal(keyV1, 1, Buffer.from('x'), { ...context, rowId: '\ud800' }), 'malformed');
    rejects(() => open(sealed, { ...base, extra: '\udfff' }, onlyV1), 'malformed');
  });
});

describe('envelope: keys and versions', () => {
  it('fails with a wrong key', () => {
    const sealed = seal(keyV1, 1, Buffer.from('secret'), context);
    rejects(() => open(sealed, context, () => keyV2), 'authentication_failed');
  });

  it('opens old versions after rotation and refuses them once retired', () => {
    const before = seal(keyV1, 1, Buffer.from('written with v1'), context);
    const after = seal(keyV2, 2, Buffer.from('written with v2'), context);
    const bothVersions = (version: number) => ({ 1: keyV1, 2: keyV2 })[version];
    assert.deepEqual(open(before, context, bothVersions), Buffer.from('written with v1'));
    assert.deepEqual(open(after, context, bothVersions), Buffer.from('written with v2'));

    // v1 retired (below the minimum decryption version, trimmed, or shredded): the lookup has no key for it.
    const onlyV2 = (version: number) => (version === 2 ? keyV2 : undefined);
    rejects(() => open(before, context, onlyV2), 'unknown_key_version');
    assert.deepEqual(open(after, context, onlyV2), Buffer.from('written with v2'));
  });

  it('lets an error thrown by the key lookup propagate unchanged', () => {
    const sealed = seal(keyV1, 1, Buffer.from('x'), context);
    const unavailable = new Error('customer key revoked');
    assert.throws(() => open(sealed, context, () => {
      throw unavailable;
    }), (error: unknown) => error === unavailable);
  });

  it('never repeats a nonce across 10k seals', () => {
    const nonces = new Set<string>();
    const plaintext = Buffer.from('same plaintext');
    for (let count = 0; count < 10_000; count += 1) nonces.add(seal(keyV1, 1, plaintext, context).toString('hex', 6, 18));
    assert.equal(nonces.size, 10_000);
  });

  it('puts no plaintext, key or context in error messages', () => {
    const marker = 'MARKER-7f3a';
    const sealed = seal(keyV1, 1, Buffer.from(marker), context);
    const messages: string[] = [];
    const collect = (action: () => unknown) => {
      try {
        action();
      } catch (error) {
        messages.push(String(error));
      }
    };
    collect(() => open(sealed, context, () => keyV2));
    collect(() => open(sealed, { ...context, rowId: marker }, onlyV1));
    collect(() => open(sealed, context, () => undefined));
    collect(() => open(sealed.subarray(0, 10), context, onlyV1));
    collect(() => fromTransitText(`bulwark:v2:${sealed.toString('base64url')}`));
    assert.equal(messages.length, 5);
    for (const message of messages) {
      for (const secret of [marker, keyV1.toString('hex'), keyV2.toString('hex'), keyV1.toString('base64'), context.tenantId, context.rowId]) {
        assert.ok(!message.includes(secret), message);
      }
    }
  });
});

describe('envelope: transit text form', () => {
  const sealed = seal(keyV2, 12, Buffer.from('transit'), context);
  const text = toTransitText(sealed);
  const body = sealed.toString('base64url');

  it('round-trips as bulwark:v<version>:<base64url>', () => {
    assert.equal(text, `bulwark:v12:${body}`);
    assert.deepEqual(fromTransitText(text), sealed);
    assert.deepEqual(open(fromTransitText(text), context, (version) => (version === 12 ? keyV2 : undefined)), Buffer.from('transit'));
  });

  it('refuses malformed text', () => {
    const cases = [
      '',
      'bulwark:v12:',
      `vault:v12:${body}`,
      `Bulwark:v12:${body}`,
      `bulwark:12:${body}`,
      `bulwark:v:${body}`,
      `bulwark:v012:${body}`,
      `bulwark:v-12:${body}`,
      `bulwark:v1:${body}`, // mismatched version
      `bulwark:v13:${body}`,
      `bulwark:v4294967308:${body}`, // 2^32 + 12 must not wrap to 12
      `bulwark:v12:${body}=`, // padding
      `bulwark:v12:${sealed.toString('base64')}`, // standard alphabet (this envelope's base64 has + or /; checked below)
      `bulwark:v12:${body.slice(0, 10)}!${body.slice(10)}`, // a character Node's decoder would skip
      `bulwark:v12:${body} `,
      ` bulwark:v12:${body}`,
      `bulwark:v12:${body}\n`,
      `bulwark:v12:${body.slice(0, 20)}`, // truncated below the minimum length
      `bulwark:v12:${body}:${body}`,
    ];
    for (const candidate of cases) {
      rejects(() => fromTransitText(candidate), 'malformed');
    }
  });

  it('fails for every truncation of the text, at parsing or at opening', () => {
    const keyFor = (version: number) => (version === 12 ? keyV2 : undefined);
    for (let length = 0; length < text.length; length += 1) {
      // Text cut at a base64 boundary still parses as a (shorter) envelope: the tag check catches it.
      const reason = reasonOf(() => open(fromTransitText(text.slice(0, length)), context, keyFor));
      assert.ok(reason === 'malformed' || reason === 'authentication_failed', `length ${length}: ${reason}`);
    }
  });

  it('refuses non-canonical base64url and the standard alphabet', () => {
    // This 41-byte envelope is 55 characters: the last one carries 2 unused bits, which must be zero.
    assert.equal(sealed.length, 41);
    const last = body.at(-1) ?? 'A';
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const nonCanonical = `${body.slice(0, -1)}${alphabet[alphabet.indexOf(last) | 1] ?? 'B'}`;
    assert.deepEqual(Buffer.from(nonCanonical, 'base64url'), sealed, 'Node decodes it to the same bytes');
    rejects(() => fromTransitText(`bulwark:v12:${nonCanonical}`), 'malformed');
    const withPlus = Buffer.alloc(envelopeOverheadBytes, 0xfb);
    withPlus.set([1, 1, 0, 0, 0, 1]);
    assert.match(withPlus.toString('base64'), /[+/]/);
    rejects(() => fromTransitText(`bulwark:v1:${withPlus.toString('base64').replace(/=+$/, '')}`), 'malformed');
  });

  it('refuses to encode what is not an envelope', () => {
    rejects(() => toTransitText(Buffer.alloc(10)), 'malformed');
  });
});
