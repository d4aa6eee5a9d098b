import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '../../../platform/clock.ts';
import { openLocalFileRootKey } from './local-file.ts';
import { RootKeyError, type RootKeyErrorReason } from './provider.ts';

const t0 = new Date('2030-01-02T03:04:05.000Z');
const context = { tenantId: 'a1b2c3d4e5f6', keyVersion: 1 };

function rejectsWith(reason: RootKeyErrorReason) {
  return (error: unknown) => error instanceof RootKeyError && error.reason === reason;
}

describe('LocalFileRootKey', () => {
  let root: string;
  let clock: Clock & { at: Date };
  let count = 0;
  const freshPath = () => join(root, `case-${++count}`, 'keys', 'root-key.json');

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'bulwark-root-key-'));
    const state = { at: t0 };
    clock = Object.assign(state, { now: () => state.at });
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('creates the key file on first use with mode 0600 in a 0700 folder, in the documented format', async () => {
    const path = freshPath();
    const provider = await openLocalFileRootKey(path, clock);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(path, '..')).mode & 0o777, 0o700);
    const file = JSON.parse(readFileSync(path, 'utf8')) as { format: string; versions: { version: number; key: string; createdAt: string }[] };
    assert.equal(file.format, 'bulwark-root-key/v1');
    const [first, ...others] = file.versions;
    assert.ok(first);
    assert.equal(others.length, 0);
    assert.equal(first.version, 1);
    assert.equal(Buffer.from(first.key, 'base64').length, 32);
    assert.equal(first.createdAt, t0.toISOString());
    assert.deepEqual(await provider.describe(), {
      kind: 'local-file',
      keyName: path,
      currentVersion: 1,
      versions: [{ version: 1, createdAt: t0.toISOString() }],
    });
    assert.deepEqual(readdirSync(join(path, '..')), ['root-key.json'], 'no temp file left behind');
  });

  it('wraps and unwraps a data key; the wrapped form is bwrk:local:v1 and differs every time', async () => {
    const provider = await openLocalFileRootKey(freshPath(), clock);
    const dataKey = randomBytes(32);
    const first = await provider.wrap(dataKey, context);
    const second = await provider.wrap(dataKey, context);
    assert.match(first, /^bwrk:local:v1:[A-Za-z0-9_-]{80}$/);
    assert.notEqual(first, second, 'a fresh nonce per wrap');
    assert.deepEqual(await provider.unwrap(first, context), dataKey);
    assert.deepEqual(await provider.unwrap(second, context), dataKey);
  });

  it('refuses to unwrap for another tenant or another data key version (corrupt)', async () => {
    const provider = await openLocalFileRootKey(freshPath(), clock);
    const wrapped = await provider.wrap(randomBytes(32), context);
    await assert.rejects(provider.unwrap(wrapped, { ...context, tenantId: 'ffffffffffff' }), rejectsWith('corrupt'));
    await assert.rejects(provider.unwrap(wrapped, { ...context, keyVersion: 2 }), rejectsWith('corrupt'));
  });

  it('detects tampering with any part of the payload, and refuses malformed or foreign wrapped keys', async () => {
    const provider = await openLocalFileRootKey(freshPath(), clock);
    const wrapped = await provider.wrap(randomBytes(32), context);
    const prefix = 'bwrk:local:v1:';
    const payload = Buffer.from(wrapped.slice(prefix.length), 'base64url');
    for (const offset of [0, 11, 12, 30, 43, 44, 59]) {
      const tampered = Buffer.from(payload);
      tampered[offset] = (tampered[offset] ?? 0) ^ 0x01;
      await assert.rejects(provider.unwrap(prefix + tampered.toString('base64url'), context), rejectsWith('corrupt'), `byte ${offset}`);
    }
    for (const bad of ['', 'bwrk:local:v1:', `${wrapped}A`, wrapped.slice(0, -1), wrapped.replace('v1', 'v01'), `bwrk:env:v1:${wrapped.slice(prefix.length)}`, 'bwrk:vault:vault:v1:AAAA']) {
      await assert.rejects(provider.unwrap(bad, context), rejectsWith('corrupt'), bad);
    }
    await assert.rejects(provider.unwrap(wrapped.replace('v1', 'v9'), context), rejectsWith('unknown_version'));
  });

  it('refuses data keys that are not 32 bytes and malformed contexts (programming errors)', async () => {
    const provider = await openLocalFileRootKey(freshPath(), clock);
    await assert.rejects(provider.wrap(randomBytes(16), context), TypeError);
    await assert.rejects(provider.wrap(randomBytes(32), { tenantId: '', keyVersion: 1 }), TypeError);
    await assert.rejects(provider.wrap(randomBytes(32), { tenantId: 'a1b2c3d4e5f6', keyVersion: 0 }), TypeError);
    await assert.rejects(provider.wrap(randomBytes(32), { tenantId: 'a1b2c3d4e5f6', keyVersion: 1.5 }), TypeError);
  });

  it('rotate appends a version, new wraps use it, old wraps still unwrap; the file stays 0600 and reopens', async () => {
    const path = freshPath();
    const provider = await openLocalFileRootKey(path, clock);
    const dataKey = randomBytes(32);
    const old = await provider.wrap(dataKey, context);
    const rotatedAt = new Date('2031-06-07T08:09:10.000Z');
    clock.at = rotatedAt;
    try {
      const description = await provider.rotate();
      assert.equal(description.currentVersion, 2);
      assert.deepEqual(description.versions, [
        { version: 1, createdAt: t0.toISOString() },
        { version: 2, createdAt: rotatedAt.toISOString() },
      ]);
    } finally {
      clock.at = t0;
    }
    const fresh = await provider.wrap(dataKey, context);
    assert.match(fresh, /^bwrk:local:v2:/);
    assert.deepEqual(await provider.unwrap(old, context), dataKey);
    assert.deepEqual(await provider.unwrap(fresh, context), dataKey);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(join(path, '..')), ['root-key.json'], 'no temp or lock file left behind');

    const reopened = await openLocalFileRootKey(path, clock);
    assert.equal((await reopened.describe()).currentVersion, 2);
    assert.deepEqual(await reopened.unwrap(old, context), dataKey);
    assert.deepEqual(await reopened.unwrap(fresh, context), dataKey);
  });

  it('serialises concurrent rotations in one process into distinct versions', async () => {
    const provider = await openLocalFileRootKey(freshPath(), clock);
    const [first, second] = await Promise.all([provider.rotate(), provider.rotate()]);
    assert.deepEqual([first.currentVersion, second.currentVersion], [2, 3]);
  });

  it('picks up a rotation made by another process when a wrapped key names a version it has not loaded', async () => {
    const path = freshPath();
    const server = await openLocalFileRootKey(path, clock);
    const cli = await openLocalFileRootKey(path, clock);
    await cli.rotate();
    const dataKey = randomBytes(32);
    const wrapped = await cli.wrap(dataKey, context);
    assert.match(wrapped, /^bwrk:local:v2:/);
    assert.deepEqual(await server.unwrap(wrapped, context), dataKey);
    assert.equal((await server.describe()).currentVersion, 2);
  });

  it('wraps new keys under a version another process added, without a restart', async () => {
    const path = freshPath();
    const server = await openLocalFileRootKey(path, clock);
    const cli = await openLocalFileRootKey(path, clock);
    await cli.rotate();
    const dataKey = randomBytes(32);
    assert.match(await server.wrap(dataKey, context), /^bwrk:local:v2:/);
    assert.equal((await server.describe()).currentVersion, 2);
  });

  it('refuses to rotate while another rotation holds the lock file', async () => {
    const path = freshPath();
    const provider = await openLocalFileRootKey(path, clock);
    writeFileSync(`${path}.lock`, '', { mode: 0o600 });
    await assert.rejects(provider.rotate(), (error: unknown) => rejectsWith('unavailable')(error) && /\.lock/.test((error as Error).message));
    rmSync(`${path}.lock`);
    assert.equal((await provider.rotate()).currentVersion, 2);
  });

  it('two processes opening a missing file at once end up with the same key', async () => {
    const path = freshPath();
    const [a, b] = await Promise.all([openLocalFileRootKey(path, clock), openLocalFileRootKey(path, clock)]);
    const dataKey = randomBytes(32);
    assert.deepEqual(await b.unwrap(await a.wrap(dataKey, context), context), dataKey);
  });

  it('refuses a key file readable by group or others, naming the path and the fix', async () => {
    const path = freshPath();
    await openLocalFileRootKey(path, clock);
    for (const mode of [0o644, 0o640, 0o604]) {
      chmodSync(path, mode);
      await assert.rejects(openLocalFileRootKey(path, clock), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.ok(error.message.includes(path), error.message);
        assert.ok(error.message.includes(`chmod 600 ${path}`), error.message);
        assert.ok(error.message.includes(`0${mode.toString(8)}`), error.message);
        return true;
      });
    }
    chmodSync(path, 0o600);
    await openLocalFileRootKey(path, clock);
  });

  it('refuses a symbolic link in place of the key file', async () => {
    const path = freshPath();
    await openLocalFileRootKey(path, clock);
    const link = join(path, '..', 'linked.json');
    symlinkSync(path, link);
    await assert.rejects(openLocalFileRootKey(link, clock), /symbolic link/);
  });

  it('refuses a malformed key file without echoing its contents', async () => {
    const key = randomBytes(32).toString('base64');
    const other = randomBytes(32).toString('base64');
    const entry = { version: 1, key, createdAt: t0.toISOString() };
    const cases: [string, string][] = [
      ['not JSON', `{"format": "bulwark-root-key/v1", "versions": [${key}`],
      ['a JSON array', JSON.stringify([entry])],
      ['wrong format', JSON.stringify({ format: 'bulwark-root-key/v2', versions: [entry] })],
      ['unknown field', JSON.stringify({ format: 'bulwark-root-key/v1', versions: [entry], note: key })],
      ['no versions', JSON.stringify({ format: 'bulwark-root-key/v1', versions: [] })],
      ['duplicate version', JSON.stringify({ format: 'bulwark-root-key/v1', versions: [entry, { ...entry, key: other }] })],
      ['version 0', JSON.stringify({ format: 'bulwark-root-key/v1', versions: [{ ...entry, version: 0 }] })],
      ['short key', JSON.stringify({ format: 'bulwark-root-key/v1', versions: [{ ...entry, key: key.slice(0, 40) }] })],
      ['not base64', JSON.stringify({ format: 'bulwark-root-key/v1', versions: [{ ...entry, key: `${key.slice(0, 42)}!=` }] })],
      ['bad createdAt', JSON.stringify({ format: 'bulwark-root-key/v1', versions: [{ ...entry, createdAt: 'yesterday' }] })],
    ];
    for (const [name, text] of cases) {
      const path = freshPath();
      await openLocalFileRootKey(path, clock);
      writeFileSync(path, text, { mode: 0o600 });
      await assert.rejects(
        openLocalFileRootKey(path, clock),
        (error: unknown) =>
          error instanceof Error &&
          error.message.includes(path) &&
          error.message.includes('malformed') &&
          !error.message.includes(key.slice(0, 16)) &&
          !error.message.includes(other.slice(0, 16)),
        name,
      );
    }
  });
});
