import { hashRaw } from '@node-rs/argon2';
import assert from 'node:assert/strict';
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  type Argon2Params,
  argon2ParamsOf,
  defaultArgon2Params,
  dummyVerify,
  hashAlgorithm,
  hashPassword,
  type ImportedCredential,
  ImportedHashError,
  type ImportedHashField,
  importedHash,
  verifyPassword,
} from './passwords.ts';

// Small parameters keep the suite fast; one test below runs the defaults.
const fast: Argon2Params = { memoryCost: 1024, timeCost: 1, parallelism: 1 };
const phcPattern = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

function phcParts(stored: string): { params: Argon2Params; salt: Buffer; hash: Buffer } {
  const match = phcPattern.exec(stored);
  assert.ok(match, 'a PHC string');
  return {
    params: { memoryCost: Number(match[1]), timeCost: Number(match[2]), parallelism: Number(match[3]) },
    salt: Buffer.from(match[4] ?? '', 'base64'),
    hash: Buffer.from(match[5] ?? '', 'base64'),
  };
}

async function elapsedMs(action: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await action();
  return performance.now() - start;
}

describe('passwords: Argon2id', () => {
  it('round-trips: the right password verifies, a wrong one does not', async () => {
    const stored = await hashPassword('correct horse battery staple', fast);
    assert.deepEqual(await verifyPassword(stored, 'correct horse battery staple', fast), { ok: true, needsRehash: false });
    assert.deepEqual(await verifyPassword(stored, 'correct horse battery stapl', fast), { ok: false, needsRehash: false });
    assert.deepEqual(await verifyPassword(stored, '', fast), { ok: false, needsRehash: false });
  });

  it('writes a PHC string that carries its parameters, a 16-byte salt and a 32-byte hash', async () => {
    const params = { memoryCost: 2048, timeCost: 3, parallelism: 2 };
    const stored = await hashPassword('pw', params);
    assert.ok(stored.startsWith('$argon2id$v=19$m=2048,t=3,p=2$'), stored.slice(0, 40));
    const parts = phcParts(stored);
    assert.deepEqual(parts.params, params);
    assert.equal(parts.salt.length, 16);
    assert.equal(parts.hash.length, 32);
    assert.deepEqual(argon2ParamsOf(stored), params);
    // The parameters travel with the hash: verifying under other current params still works.
    assert.equal((await verifyPassword(stored, 'pw', fast)).ok, true);
  });

  it('uses a fresh random salt for each hash', async () => {
    const [first, second] = await Promise.all([hashPassword('same', fast), hashPassword('same', fast)]);
    assert.notEqual(first, second);
    assert.notDeepEqual(phcParts(first).salt, phcParts(second).salt);
  });

  it('asks for a rehash when the current parameters rise above the stored ones, never when they fall', async () => {
    const stored = await hashPassword('pw', { memoryCost: 2048, timeCost: 2, parallelism: 2 });
    const cases: [Argon2Params, boolean][] = [
      [{ memoryCost: 2048, timeCost: 2, parallelism: 2 }, false],
      [{ memoryCost: 1024, timeCost: 1, parallelism: 1 }, false],
      [{ memoryCost: 4096, timeCost: 2, parallelism: 2 }, true],
      [{ memoryCost: 2048, timeCost: 3, parallelism: 2 }, true],
      [{ memoryCost: 2048, timeCost: 2, parallelism: 4 }, true],
    ];
    for (const [current, expected] of cases) {
      assert.deepEqual(await verifyPassword(stored, 'pw', current), { ok: true, needsRehash: expected }, JSON.stringify(current));
    }
    // A failed verification never asks for a rehash: the caller would store a hash of the wrong password.
    assert.deepEqual(await verifyPassword(stored, 'wrong', { ...fast, memoryCost: 4096 }), { ok: false, needsRehash: false });
  });

  it('asks for a rehash of an imported hash with a short salt or output', async () => {
    // An Argon2id hash made elsewhere with an 8-byte salt and a 16-byte output: valid, but below our format.
    const salt = Buffer.from('0102030405060708', 'hex');
    const raw = await hashRaw('pw', { ...fast, salt, outputLen: 16 });
    const b64 = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');
    const stored = `$argon2id$v=19$m=1024,t=1,p=1$${b64(salt)}$${b64(raw)}`;
    assert.equal(importedHash({ algorithm: 'argon2id', hash: stored }), stored);
    assert.deepEqual(await verifyPassword(stored, 'pw', fast), { ok: true, needsRehash: true });
  });

  it('hashes with the OWASP defaults (m=19456 KiB, t=2, p=1) when no parameters are given', async (t) => {
    assert.deepEqual(defaultArgon2Params, { memoryCost: 19_456, timeCost: 2, parallelism: 1 });
    let stored = '';
    const hashMs = await elapsedMs(async () => {
      stored = await hashPassword('default params');
    });
    assert.ok(stored.startsWith('$argon2id$v=19$m=19456,t=2,p=1$'));
    const verifyMs = await elapsedMs(async () => {
      assert.deepEqual(await verifyPassword(stored, 'default params'), { ok: true, needsRehash: false });
    });
    t.diagnostic(`default params: hash ${hashMs.toFixed(1)} ms, verify ${verifyMs.toFixed(1)} ms`);
    // Hashes made with the small test parameters are below the defaults.
    assert.deepEqual(await verifyPassword(await hashPassword('x', fast), 'x'), { ok: true, needsRehash: true });
  });

  it('normalises to NFC, so a composed and a decomposed "é" are the same password', async () => {
    const stored = await hashPassword('caf\u00e9 au lait', fast);
    assert.equal((await verifyPassword(stored, 'cafe\u0301 au lait', fast)).ok, true);
  });

  it('refuses parameters outside the limits without hashing', async () => {
    for (const params of [
      { memoryCost: 7, timeCost: 1, parallelism: 1 },
      { memoryCost: 15, timeCost: 1, parallelism: 2 },
      { memoryCost: 1024, timeCost: 0, parallelism: 1 },
      { memoryCost: 1024, timeCost: 1, parallelism: 0 },
      { memoryCost: 1024.5, timeCost: 1, parallelism: 1 },
      { memoryCost: 262_145, timeCost: 1, parallelism: 1 },
    ]) {
      await assert.rejects(hashPassword('pw', params), RangeError, JSON.stringify(params));
    }
  });
});

describe('passwords: imported md5', () => {
  const stored = importedHash({ algorithm: 'md5', hash: '5F4DCC3B5AA765D61D8327DEB882CF99' });

  it('stores the lowercase form and verifies the password, asking for a rehash', async () => {
    assert.equal(stored, 'md5:5f4dcc3b5aa765d61d8327deb882cf99');
    assert.deepEqual(await verifyPassword('md5:5f4dcc3b5aa765d61d8327deb882cf99', 'password'), { ok: true, needsRehash: true });
  });

  it('refuses a wrong password', async () => {
    assert.deepEqual(await verifyPassword(stored, 'Password'), { ok: false, needsRehash: false });
    assert.deepEqual(await verifyPassword(stored, 'password '), { ok: false, needsRehash: false });
  });

  it('after the rehash the user verifies against Argon2id', async () => {
    const rehashed = await hashPassword('password', fast);
    assert.equal(hashAlgorithm(rehashed), 'argon2id');
    assert.deepEqual(await verifyPassword(rehashed, 'password', fast), { ok: true, needsRehash: false });
  });
});

describe("passwords: imported pbkdf2-sha256 (Keycloak's credential)", () => {
  // Keycloak's defaults for pbkdf2-sha256: 27500 iterations, a 16-byte salt, a 512-bit derived key.
  const password = 'Kéycloak p@ss';
  const salt = randomBytes(16);
  const key = pbkdf2Sync(password, salt, 27_500, 64, 'sha256');
  const credential = { algorithm: 'pbkdf2-sha256', iterations: 27_500, salt: salt.toString('base64'), hash: key.toString('base64') } as const;
  const stored = importedHash(credential);

  it('stores iterations, salt and key in one string', () => {
    assert.equal(stored, `pbkdf2-sha256:27500:${credential.salt}:${credential.hash}`);
    assert.equal(hashAlgorithm(stored), 'pbkdf2-sha256');
  });

  it('verifies the password and asks for a rehash', async () => {
    assert.deepEqual(await verifyPassword(stored, password), { ok: true, needsRehash: true });
  });

  it('derives as many bytes as the stored key has (a 32-byte key verifies too)', async () => {
    const shortKey = pbkdf2Sync(password, salt, 1000, 32, 'sha256');
    const shorter = importedHash({ ...credential, iterations: 1000, hash: shortKey.toString('base64') });
    assert.deepEqual(await verifyPassword(shorter, password), { ok: true, needsRehash: true });
  });

  it('refuses a wrong password and every tampered part', async () => {
    assert.deepEqual(await verifyPassword(stored, 'Keycloak p@ss'), { ok: false, needsRehash: false });
    const flipped = Buffer.from(key);
    flipped[63] = (flipped[63] ?? 0) ^ 1;
    const tampered = [
      `pbkdf2-sha256:27500:${credential.salt}:${flipped.toString('base64')}`,
      `pbkdf2-sha256:27501:${credential.salt}:${credential.hash}`,
      `pbkdf2-sha256:27500:${randomBytes(16).toString('base64')}:${credential.hash}`,
    ];
    for (const value of tampered) {
      assert.deepEqual(await verifyPassword(value, password), { ok: false, needsRehash: false });
    }
  });
});

describe('passwords: importedHash validation', () => {
  const goodSalt = Buffer.alloc(16, 7).toString('base64');
  const goodKey = Buffer.alloc(64, 9).toString('base64');
  const pbkdf2 = { algorithm: 'pbkdf2-sha256', iterations: 27_500, salt: goodSalt, hash: goodKey } as const;
  const phc = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$' + 'A'.repeat(43);

  const cases: [string, unknown, ImportedHashField][] = [
    ['unknown algorithm', { algorithm: 'sha1', hash: 'a'.repeat(40) }, 'algorithm'],
    ['no object', null, 'algorithm'],
    ['md5 hash not a string', { algorithm: 'md5', hash: 123 }, 'hash'],
    ['md5 31 digits', { algorithm: 'md5', hash: 'a'.repeat(31) }, 'hash'],
    ['md5 33 digits', { algorithm: 'md5', hash: 'a'.repeat(33) }, 'hash'],
    ['md5 non-hex', { algorithm: 'md5', hash: 'g'.repeat(32) }, 'hash'],
    ['md5 with prefix', { algorithm: 'md5', hash: 'md5:' + 'a'.repeat(32) }, 'hash'],
    ['iterations 999', { ...pbkdf2, iterations: 999 }, 'iterations'],
    ['iterations 10,000,001', { ...pbkdf2, iterations: 10_000_001 }, 'iterations'],
    ['iterations fractional', { ...pbkdf2, iterations: 27_500.5 }, 'iterations'],
    ['iterations as text', { ...pbkdf2, iterations: '27500' }, 'iterations'],
    ['salt missing', { ...pbkdf2, salt: undefined }, 'salt'],
    ['salt unpadded', { ...pbkdf2, salt: goodSalt.replace(/=+$/, '') }, 'salt'],
    ['salt base64url', { ...pbkdf2, salt: Buffer.alloc(16, 0xfb).toString('base64url') + '==' }, 'salt'],
    ['salt non-canonical trailing bits', { ...pbkdf2, salt: 'AAAAAAAAAAAAAAAAAAAAAB==' }, 'salt'],
    ['salt with junk', { ...pbkdf2, salt: `${goodSalt.slice(0, 4)} ${goodSalt.slice(4)}` }, 'salt'],
    ['salt 7 bytes', { ...pbkdf2, salt: Buffer.alloc(7).toString('base64') }, 'salt'],
    ['salt 65 bytes', { ...pbkdf2, salt: Buffer.alloc(65).toString('base64') }, 'salt'],
    ['key 15 bytes', { ...pbkdf2, hash: Buffer.alloc(15).toString('base64') }, 'hash'],
    ['key 65 bytes', { ...pbkdf2, hash: Buffer.alloc(65).toString('base64') }, 'hash'],
    ['key unpadded', { ...pbkdf2, hash: Buffer.alloc(32, 1).toString('base64').replace(/=+$/, '') }, 'hash'],
    ['key not base64', { ...pbkdf2, hash: `${goodKey.slice(0, 8)}*${goodKey.slice(9)}` }, 'hash'],
    ['argon2i', { algorithm: 'argon2id', hash: phc.replace('argon2id', 'argon2i') }, 'hash'],
    ['argon2id version 16', { algorithm: 'argon2id', hash: phc.replace('v=19', 'v=16') }, 'hash'],
    ['argon2id without version', { algorithm: 'argon2id', hash: phc.replace('$v=19', '') }, 'hash'],
    ['argon2id memory above the cap', { algorithm: 'argon2id', hash: phc.replace('m=19456', 'm=4194304') }, 'hash'],
    ['argon2id memory below 8p', { algorithm: 'argon2id', hash: phc.replace('m=19456', 'm=7') }, 'hash'],
    ['argon2id leading zero', { algorithm: 'argon2id', hash: phc.replace('t=2', 't=02') }, 'hash'],
    ['argon2id 17 passes', { algorithm: 'argon2id', hash: phc.replace('t=2', 't=17') }, 'hash'],
    ['argon2id p=0', { algorithm: 'argon2id', hash: phc.replace('p=1', 'p=0') }, 'hash'],
    ['argon2id keyid field', { algorithm: 'argon2id', hash: phc.replace('p=1', 'p=1,keyid=abc') }, 'hash'],
    ['argon2id salt 6 bytes', { algorithm: 'argon2id', hash: phc.replace('c2FsdHNhbHRzYWx0c2FsdA', 'c2FsdHNh') }, 'hash'],
    ['argon2id hash 12 bytes', { algorithm: 'argon2id', hash: phc.replace('A'.repeat(43), 'A'.repeat(16)) }, 'hash'],
    ['argon2id padded', { algorithm: 'argon2id', hash: phc + '=' }, 'hash'],
    ['argon2id trailing text', { algorithm: 'argon2id', hash: phc + '$x' }, 'hash'],
    ['bcrypt as argon2id', { algorithm: 'argon2id', hash: '$2b$12$' + 'a'.repeat(53) }, 'hash'],
  ];

  for (const [name, input, field] of cases) {
    it(`refuses ${name}, naming the field "${field}"`, () => {
      assert.throws(
        () => importedHash(input as ImportedCredential),
        (error: unknown) => {
          assert.ok(error instanceof ImportedHashError);
          assert.equal(error.field, field);
          assert.ok(error.message.startsWith(`${field}: `), error.message);
          // The message says what the field must be, never what it was.
          for (const value of Object.values((input ?? {}) as Record<string, unknown>)) {
            if (typeof value === 'string' && value.length > 8) assert.ok(!error.message.includes(value), error.message);
          }
          return true;
        },
      );
    });
  }

  it('accepts the valid forms unchanged', () => {
    assert.equal(importedHash({ algorithm: 'md5', hash: 'd41d8cd98f00b204e9800998ecf8427e' }), 'md5:d41d8cd98f00b204e9800998ecf8427e');
    assert.equal(importedHash(pbkdf2), `pbkdf2-sha256:27500:${goodSalt}:${goodKey}`);
    assert.equal(importedHash({ algorithm: 'argon2id', hash: phc }), phc);
    for (const iterations of [1000, 10_000_000]) assert.ok(importedHash({ ...pbkdf2, iterations }).includes(`:${iterations}:`));
  });
});

describe('passwords: hashAlgorithm and malformed stored values', () => {
  it('classifies each stored form', async () => {
    assert.equal(hashAlgorithm(await hashPassword('pw', fast)), 'argon2id');
    assert.equal(hashAlgorithm('md5:5f4dcc3b5aa765d61d8327deb882cf99'), 'md5');
    const salt = Buffer.alloc(16, 1).toString('base64');
    const key = Buffer.alloc(64, 2).toString('base64');
    assert.equal(hashAlgorithm(`pbkdf2-sha256:27500:${salt}:${key}`), 'pbkdf2-sha256');
  });

  const salt = Buffer.alloc(16, 1).toString('base64');
  const key = Buffer.alloc(32, 2).toString('base64');
  const malformed: unknown[] = [
    '',
    'password',
    'md5:',
    'md5:5F4DCC3B5AA765D61D8327DEB882CF99',
    'md5:5f4dcc3b5aa765d61d8327deb882cf9',
    'md5:5f4dcc3b5aa765d61d8327deb882cf99\n',
    ' md5:5f4dcc3b5aa765d61d8327deb882cf99',
    'MD5:5f4dcc3b5aa765d61d8327deb882cf99',
    'pbkdf2-sha256:27500:' + salt,
    `pbkdf2-sha256:0:${salt}:${key}`,
    `pbkdf2-sha256:999:${salt}:${key}`,
    `pbkdf2-sha256:99999999999:${salt}:${key}`,
    `pbkdf2-sha256:27500:${salt}:${key}:extra`,
    `pbkdf2-sha256:27500:!!!!:${key}`,
    `pbkdf2-sha256:27500:${salt}:${Buffer.alloc(8).toString('base64')}`,
    '$argon2id$',
    '$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA',
    '$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$' + 'A'.repeat(43),
    '$argon2id$v=19$m=1024,t=1,p=1$AAAA$' + 'A'.repeat(43),
    '$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$A%AA',
    '$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$' + 'A'.repeat(43),
    '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW',
    'x'.repeat(100_000),
    undefined,
    null,
    42,
    {},
  ];

  it('never throws: a malformed value verifies false, needs no rehash and has no algorithm', async () => {
    for (const value of malformed) {
      const label = typeof value === 'string' ? JSON.stringify(value.slice(0, 60)) : String(value);
      assert.equal(hashAlgorithm(value as string), undefined, label);
      assert.deepEqual(await verifyPassword(value as string, 'password'), { ok: false, needsRehash: false }, label);
    }
  });

  it('never throws for a password that is not a string', async () => {
    const stored = await hashPassword('pw', fast);
    for (const password of [undefined, null, 1, {}]) {
      assert.deepEqual(await verifyPassword(stored, password as string, fast), { ok: false, needsRehash: false });
    }
  });
});

describe('passwords: dummyVerify', () => {
  it('always resolves, whatever the password or parameters', async () => {
    await dummyVerify('anything', fast);
    await dummyVerify('', fast);
    await dummyVerify(undefined as unknown as string, fast);
    await dummyVerify('pw', { memoryCost: 0, timeCost: 0, parallelism: 0 });
  });

  it('costs about one Argon2id verification with the same parameters', async (t) => {
    // Parameters heavy enough (tens of ms) that a skipped verification could not hide in the noise. The
    // minimum of several runs is compared: load can only make a run slower, never faster than its work.
    const params: Argon2Params = { memoryCost: 65_536, timeCost: 2, parallelism: 1 };
    const stored = await hashPassword('real user', params);
    await dummyVerify('warm up', params); // the first call also makes the dummy hash
    const real: number[] = [];
    const dummy: number[] = [];
    for (let run = 0; run < 3; run += 1) {
      real.push(await elapsedMs(() => verifyPassword(stored, 'a guess', params)));
      dummy.push(await elapsedMs(() => dummyVerify('a guess', params)));
    }
    const realMs = Math.min(...real);
    const dummyMs = Math.min(...dummy);
    t.diagnostic(`m=64 MiB t=2: verify ${realMs.toFixed(1)} ms, dummyVerify ${dummyMs.toFixed(1)} ms (fastest of 3)`);
    assert.ok(dummyMs > realMs * 0.3, `dummyVerify ${dummyMs.toFixed(1)} ms vs verify ${realMs.toFixed(1)} ms`);
    assert.ok(dummyMs < realMs * 5 + 50, `dummyVerify ${dummyMs.toFixed(1)} ms vs verify ${realMs.toFixed(1)} ms`);
  });
});
