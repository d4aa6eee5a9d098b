import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { openSealedSecret, SealedSecretError } from '../../sdk/secrets.ts';
import { bindingBytes, generateServiceKeyPair, isSealableKey, openSecret, parseX25519PublicKey, sealedSecretFormat, sealingAlgorithm, sealSecret } from './sealing.ts';

const binding = { tenantId: '0123456789ab', name: 'aws-credentials', version: 3, serviceId: 'abcdef012345' };
/** What a service knows before it reads: everything but the version. */
const expected = { tenantId: binding.tenantId, name: binding.name, serviceId: binding.serviceId };

/** A copy as the reader route answers it, sealed here to `publicKey`. */
async function sealedCopy(publicKey: string, value: string, bound = binding) {
  const raw = parseX25519PublicKey(publicKey);
  assert.ok(raw);
  const { enc, ciphertext } = await sealSecret(raw, Buffer.from(value, 'utf8'), bound);
  return {
    format: sealedSecretFormat,
    ...bound,
    algorithm: sealingAlgorithm,
    enc: enc.toString('base64url'),
    ciphertext: ciphertext.toString('base64url'),
    createdAt: new Date().toISOString(),
  };
}

async function refusal(promise: Promise<unknown>): Promise<SealedSecretError['code']> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SealedSecretError, String(error));
    return error.code;
  }
  assert.fail('the sealed secret opened');
}

describe('X25519 public keys', () => {
  it('takes base64url of the raw 32 bytes and an SPKI PEM of the same key alike', () => {
    const { publicKey } = generateKeyPairSync('x25519');
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
    assert.deepEqual(parseX25519PublicKey(raw.toString('base64url')), raw);
    assert.deepEqual(parseX25519PublicKey(publicKey.export({ type: 'spki', format: 'pem' }).toString()), raw);
  });

  it('refuses what is not an X25519 public key: other curves, private keys, wrong lengths, non-canonical or padded base64url', () => {
    const x25519 = generateKeyPairSync('x25519');
    const base64url = Buffer.from(x25519.publicKey.export({ format: 'jwk' }).x ?? '', 'base64url').toString('base64url');
    const lastBits = base64url.slice(0, 42) + String.fromCharCode(base64url.charCodeAt(42) ^ 1);
    const refused = [
      generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      // A private key would give Node its public key: it must not be taken (nor kept) by the server.
      x25519.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      Buffer.alloc(31, 7).toString('base64url'),
      Buffer.alloc(33, 7).toString('base64url'),
      `${base64url}=`,
      Buffer.from(base64url, 'base64url').toString('base64'),
      ' '.repeat(43),
      '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
      '',
    ];
    // Another encoding of the same 32 bytes (the low bits of the last character) is not canonical.
    if (Buffer.from(lastBits, 'base64url').equals(Buffer.from(base64url, 'base64url'))) refused.push(lastBits);
    for (const text of refused) assert.equal(parseX25519PublicKey(text), undefined, text.slice(0, 40));
  });

  it('points of small order parse but cannot be sealed to (RFC 9180 section 7.1.4)', async () => {
    const smallOrder = ['00'.repeat(32), `01${'00'.repeat(31)}`, 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', `ec${'ff'.repeat(30)}7f`];
    for (const hex of smallOrder) {
      const raw = parseX25519PublicKey(Buffer.from(hex, 'hex').toString('base64url'));
      assert.ok(raw !== undefined, hex);
      assert.equal(await isSealableKey(raw), false, hex);
    }
    const fine = parseX25519PublicKey(generateServiceKeyPair().publicKey);
    assert.ok(fine);
    assert.equal(await isSealableKey(fine), true);
  });
});

describe('sealing and opening', () => {
  it('the binding encodes each part unambiguously', () => {
    const parts = [binding, { ...binding, tenantId: '0123456789ac' }, { ...binding, name: 'aws-credentialz' }, { ...binding, version: 4 }, { ...binding, serviceId: 'abcdef012346' }];
    assert.equal(new Set(parts.map((part) => bindingBytes(part).toString('hex'))).size, parts.length);
    assert.equal(bindingBytes(binding).toString('utf8'), JSON.stringify([sealedSecretFormat, binding.tenantId, binding.name, 3, binding.serviceId]));
  });

  it('each seal is fresh: the same value sealed twice shares no bytes of enc or ciphertext', async () => {
    const { publicKey } = generateServiceKeyPair();
    const [a, b] = await Promise.all([sealedCopy(publicKey, 'same value'), sealedCopy(publicKey, 'same value')]);
    assert.notEqual(a.enc, b.enc);
    assert.notEqual(a.ciphertext, b.ciphertext);
  });

  it('only the named service’s private key opens the copy, for exactly the binding it was sealed to', async () => {
    const reader = generateServiceKeyPair();
    const other = generateServiceKeyPair();
    const value = 'AKIA… secret with ünïcode and\nnewlines';
    const copy = await sealedCopy(reader.publicKey, value);
    assert.equal(await openSealedSecret(copy, reader.privateKeyPem, expected), value);
    assert.equal(await openSealedSecret(copy, createPrivateKey(reader.privateKeyPem), { ...expected, version: 3 }), value);
    assert.equal(await refusal(openSealedSecret(copy, other.privateKeyPem, binding)), 'open_failed');

    // The copy moved to another tenant, name, version or service (claims and expectation alike): the AEAD check fails.
    for (const moved of [{ tenantId: 'ffffffffffff' }, { name: 'gcp-credentials' }, { serviceId: 'ffffffffffff' }]) {
      assert.equal(await refusal(openSealedSecret({ ...copy, ...moved }, reader.privateKeyPem, { ...binding, ...moved })), 'open_failed', JSON.stringify(moved));
    }
    assert.equal(await refusal(openSealedSecret({ ...copy, version: 2 }, reader.privateKeyPem, expected)), 'open_failed');
    // One changed byte of the ciphertext or the encapsulated key.
    const flip = (text: string) => {
      const bytes = Buffer.from(text, 'base64url');
      bytes[bytes.length - 1] = (bytes.at(-1) ?? 0) ^ 1;
      return bytes.toString('base64url');
    };
    assert.equal(await refusal(openSealedSecret({ ...copy, ciphertext: flip(copy.ciphertext) }, reader.privateKeyPem, binding)), 'open_failed');
    assert.equal(await refusal(openSealedSecret({ ...copy, enc: flip(copy.enc) }, reader.privateKeyPem, binding)), 'open_failed');
    // The raw primitive agrees: another binding does not open.
    const key = createPrivateKey(reader.privateKeyPem);
    const sealed = { enc: Buffer.from(copy.enc, 'base64url'), ciphertext: Buffer.from(copy.ciphertext, 'base64url') };
    assert.equal((await openSecret(key, sealed, binding)).toString('utf8'), value);
    await assert.rejects(openSecret(key, sealed, { ...binding, version: 4 }), { name: 'SealOpenError', reason: 'open_failed' });
  });

  it('a copy for another tenant, name, service or version than expected is refused before any decryption', async () => {
    const reader = generateServiceKeyPair();
    const copy = await sealedCopy(reader.publicKey, 'value');
    for (const other of [{ tenantId: 'ffffffffffff' }, { name: 'other' }, { serviceId: 'ffffffffffff' }, { version: 4 }]) {
      assert.equal(await refusal(openSealedSecret(copy, reader.privateKeyPem, { ...expected, ...other })), 'mismatch', JSON.stringify(other));
    }
  });

  it('malformed copies and keys that are not X25519 private keys are refused with their reason', async () => {
    const reader = generateServiceKeyPair();
    const copy = await sealedCopy(reader.publicKey, 'value');
    const malformed: unknown[] = [
      null,
      'string',
      { ...copy, format: 'other' },
      { ...copy, algorithm: { ...sealingAlgorithm, aeadId: 1 } },
      { ...copy, algorithm: null },
      { ...copy, version: 0 },
      { ...copy, version: '3' },
      { ...copy, enc: 'not base64url!' },
      { ...copy, enc: Buffer.alloc(31).toString('base64url') },
      { ...copy, ciphertext: 7 },
    ];
    for (const sealed of malformed) assert.equal(await refusal(openSealedSecret(sealed, reader.privateKeyPem, binding)), 'malformed', JSON.stringify(sealed).slice(0, 80));
    const wrongKeys = [
      generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      'not a pem',
      generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    ];
    for (const key of wrongKeys) assert.equal(await refusal(openSealedSecret(copy, key, binding)), 'wrong_key', key.slice(0, 30));
    assert.equal(await refusal(openSealedSecret(copy, generateKeyPairSync('x25519').publicKey, binding)), 'wrong_key');
  });
});
