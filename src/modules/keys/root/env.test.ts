import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { EnvRootKey, parseEnvRootKeys } from './env.ts';
import { RootKeyError, type RootKeyErrorReason } from './provider.ts';

const context = { tenantId: 'a1b2c3d4e5f6', keyVersion: 3 };
const newKey = () => randomBytes(32).toString('base64');

function rejectsWith(reason: RootKeyErrorReason) {
  return (error: unknown) => error instanceof RootKeyError && error.reason === reason;
}

describe('EnvRootKey', () => {
  it('takes one base64 key as version 1 and round-trips a data key as bwrk:env:v1', async () => {
    const provider = new EnvRootKey(newKey());
    const dataKey = randomBytes(32);
    const wrapped = await provider.wrap(dataKey, context);
    assert.match(wrapped, /^bwrk:env:v1:[A-Za-z0-9_-]{80}$/);
    assert.deepEqual(await provider.unwrap(wrapped, context), dataKey);
    assert.deepEqual(await provider.describe(), {
      kind: 'env',
      keyName: 'BULWARK_ROOT_KEY',
      currentVersion: 1,
      versions: [{ version: 1, createdAt: null }],
    });
    await provider.ping();
  });

  it('takes a versioned list: the highest version wraps, every listed version unwraps', async () => {
    const one = newKey();
    const two = newKey();
    const before = new EnvRootKey(`1:${one}`);
    const dataKey = randomBytes(32);
    const oldWrap = await before.wrap(dataKey, context);

    // Order and whitespace do not matter; the highest version is current.
    const after = new EnvRootKey(` 2:${two} , 1:${one} `, { variableName: 'MY_ROOT_KEY' });
    const newWrap = await after.wrap(dataKey, context);
    assert.match(newWrap, /^bwrk:env:v2:/);
    assert.deepEqual(await after.unwrap(oldWrap, context), dataKey);
    assert.deepEqual(await after.unwrap(newWrap, context), dataKey);
    const description = await after.describe();
    assert.equal(description.keyName, 'MY_ROOT_KEY');
    assert.equal(description.currentVersion, 2);
    assert.deepEqual(description.versions.map((entry) => entry.version), [1, 2]);

    await assert.rejects(before.unwrap(newWrap, context), (error: unknown) => rejectsWith('unknown_version')(error) && /add that version to BULWARK_ROOT_KEY/.test((error as Error).message));
  });

  it('a single key equals version 1 of a list', async () => {
    const key = newKey();
    const dataKey = randomBytes(32);
    const wrapped = await new EnvRootKey(key).wrap(dataKey, context);
    assert.deepEqual(await new EnvRootKey(`1:${key}`).unwrap(wrapped, context), dataKey);
  });

  it('binds the context and detects tampering (corrupt)', async () => {
    const provider = new EnvRootKey(newKey());
    const wrapped = await provider.wrap(randomBytes(32), context);
    await assert.rejects(provider.unwrap(wrapped, { ...context, tenantId: 'ffffffffffff' }), rejectsWith('corrupt'));
    await assert.rejects(provider.unwrap(wrapped, { ...context, keyVersion: 4 }), rejectsWith('corrupt'));
    const last = wrapped.at(-2) === 'A' ? 'B' : 'A';
    await assert.rejects(provider.unwrap(`${wrapped.slice(0, -2)}${last}${wrapped.slice(-1)}`, context), rejectsWith('corrupt'));
    await assert.rejects(provider.unwrap(wrapped.replace('bwrk:env:', 'bwrk:local:'), context), rejectsWith('corrupt'));
    await assert.rejects(new EnvRootKey(newKey()).unwrap(wrapped, context), rejectsWith('corrupt'), 'another root key');
  });

  it('rotate is unsupported and says how to rotate', async () => {
    const provider = new EnvRootKey(newKey());
    await assert.rejects(provider.rotate(), (error: unknown) => {
      assert.ok(rejectsWith('unsupported')(error));
      assert.match((error as Error).message, /add a new version to BULWARK_ROOT_KEY/);
      assert.match((error as Error).message, /restart/);
      return true;
    });
  });

  it('refuses bad values with a message that names the problem and never echoes key material', () => {
    const good = newKey();
    const other = newKey();
    const short = randomBytes(16).toString('base64');
    const long = randomBytes(48).toString('base64');
    const cases: [string, string, RegExp][] = [
      ['empty', '   ', /is empty/],
      ['16-byte key', short, /exactly 32 bytes/],
      ['48-byte key', long, /exactly 32 bytes/],
      ['not base64', `${good.slice(0, 40)}%%%=`, /exactly 32 bytes/],
      ['base64url alphabet', `${randomBytes(31).toString('base64url').slice(0, 40)}-_A=`, /exactly 32 bytes/],
      ['missing padding', good.slice(0, 43), /exactly 32 bytes/],
      ['non-canonical padding bits', `${good.slice(0, 42)}${good[42] === 'B' ? 'C' : 'B'}=`, /exactly 32 bytes/],
      ['duplicate version', `1:${good},1:${other}`, /version 1 twice/],
      ['same key twice', `1:${good},2:${good}`, /versions 1 and 2 hold the same key/],
      ['version 0', `0:${good}`, /entry 1 of 1 must be <version>:<base64 key>/],
      ['leading zero', `01:${good}`, /entry 1 of 1/],
      ['key without version in a list', `1:${good},${other}`, /entry 2 of 2 must be/],
      ['empty entry', `1:${good},`, /entry 2 of 2 must be/],
      ['short key in a list', `1:${good},2:${short}`, /version 2: the key must be/],
      ['version too large', `4294967296:${good}`, /entry 1 of 1/],
    ];
    for (const [name, value, expected] of cases) {
      assert.throws(
        () => new EnvRootKey(value),
        (error: unknown) => {
          assert.ok(error instanceof Error, name);
          assert.match(error.message, /^BULWARK_ROOT_KEY /, name);
          assert.match(error.message, expected, name);
          for (const secret of [good, other, short, long]) {
            assert.ok(!error.message.includes(secret.slice(0, 12)), `${name}: the message echoes key material`);
          }
          return true;
        },
        name,
      );
    }
  });

  it('parseEnvRootKeys gives configuration the same validation', () => {
    const keys = parseEnvRootKeys(`3:${newKey()},7:${newKey()}`);
    assert.deepEqual([...keys.keys()], [3, 7]);
    assert.throws(() => parseEnvRootKeys('nope', 'OTHER_VAR'), /^Error: OTHER_VAR must be/);
  });
});
