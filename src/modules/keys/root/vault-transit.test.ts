import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { RootKeyError, type RootKeyErrorReason, type WrapContext } from './provider.ts';
import { FakeVaultTransit, type FakeVaultOptions } from './vault-transit-fake.ts';
import { VaultTransitRootKey, type VaultTransitOptions } from './vault-transit.ts';
import { wrapAad } from './wrap-context.ts';

const token = `hvs.test-${randomBytes(12).toString('hex')}`;
const keyName = 'bulwark-root';
const context: WrapContext = { tenantId: 'a1b2c3d4e5f6', keyVersion: 1 };

describe('VaultTransitRootKey against a fake transit engine', () => {
  let fake: FakeVaultTransit;
  let provider: VaultTransitRootKey;
  let dataKey: Buffer;
  const fakes: FakeVaultTransit[] = [];

  const startFake = async (options: Partial<FakeVaultOptions> = {}) => {
    const started = await FakeVaultTransit.start({ token, keyName, ...options });
    fakes.push(started);
    return started;
  };
  const providerFor = (target: FakeVaultTransit, options: Partial<VaultTransitOptions> = {}) =>
    new VaultTransitRootKey({ address: target.address, token, keyName, timeoutMs: 2000, ...options });

  /** Expects a RootKeyError with this reason whose message and whole inspected form leak neither token nor data key. */
  const failsWith = async (promise: Promise<unknown>, reason: RootKeyErrorReason, message?: RegExp) => {
    await assert.rejects(promise, (error: unknown) => {
      assert.ok(error instanceof RootKeyError, `expected RootKeyError, got ${inspect(error)}`);
      assert.equal(error.reason, reason, error.message);
      if (message !== undefined) assert.match(error.message, message);
      const everything = `${error.message}\n${inspect(error, { depth: Infinity, showHidden: true })}`;
      assert.ok(!everything.includes(token), `the token leaked: ${everything}`);
      for (const form of [dataKey.toString('base64'), dataKey.toString('hex'), dataKey.toString('base64url')]) {
        assert.ok(!everything.includes(form), 'the data key leaked');
      }
      return true;
    });
  };

  beforeEach(async () => {
    fake = await startFake();
    provider = providerFor(fake);
    dataKey = randomBytes(32);
  });
  afterEach(async () => {
    await Promise.all(fakes.splice(0).map((started) => started.close()));
  });

  it('round-trips a data key through encrypt/decrypt with the context as associated_data', async () => {
    const wrapped = await provider.wrap(dataKey, context);
    assert.match(wrapped, /^bwrk:vault:vault:v1:[A-Za-z0-9+/]+=*$/);
    assert.deepEqual(await provider.unwrap(wrapped, context), dataKey);

    const [encrypt, decrypt] = fake.requests;
    assert.deepEqual(encrypt, {
      method: 'POST',
      path: `/v1/transit/encrypt/${keyName}`,
      sentToken: true,
      namespace: undefined,
      body: { plaintext: dataKey.toString('base64'), associated_data: wrapAad(context).toString('base64') },
    });
    assert.deepEqual(decrypt?.body, { ciphertext: wrapped.slice('bwrk:vault:'.length), associated_data: wrapAad(context).toString('base64') });
    assert.equal(decrypt.path, `/v1/transit/decrypt/${keyName}`);
  });

  it('rotate adds a version: new wraps use it, old wraps still unwrap', async () => {
    const old = await provider.wrap(dataKey, context);
    const description = await provider.rotate();
    assert.equal(description.kind, 'vault-transit');
    assert.equal(description.keyName, `transit/keys/${keyName}`);
    assert.equal(description.currentVersion, 2);
    assert.deepEqual(description.versions.map((entry) => entry.version), [1, 2]);
    for (const { createdAt } of description.versions) assert.match(createdAt ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
    assert.deepEqual(
      fake.requests.slice(-2).map(({ method, path }) => `${method} ${path}`),
      [`POST /v1/transit/keys/${keyName}/rotate`, `GET /v1/transit/keys/${keyName}`],
    );
    const fresh = await provider.wrap(dataKey, context);
    assert.match(fresh, /^bwrk:vault:vault:v2:/);
    assert.deepEqual(await provider.unwrap(old, context), dataKey);
    assert.deepEqual(await provider.unwrap(fresh, context), dataKey);
  });

  it('describe reads creation times given as RFC 3339 strings too, and sees rotations made in Vault', async () => {
    const rfc = await startFake({ creationTimeFormat: 'rfc3339' });
    rfc.rotate();
    const description = await providerFor(rfc).describe();
    assert.equal(description.currentVersion, 2);
    assert.equal(description.versions.length, 2);
    for (const { createdAt } of description.versions) assert.match(createdAt ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('rewrap moves a wrapped key to the latest version, after which older versions can be retired', async () => {
    const old = await provider.wrap(dataKey, context);
    await provider.rotate();
    await provider.rotate();
    const moved = await provider.rewrap(old, context);
    assert.match(moved, /^bwrk:vault:vault:v3:/);
    fake.minDecryptionVersion = 3;
    assert.deepEqual(await provider.unwrap(moved, context), dataKey);
    await failsWith(provider.unwrap(old, context), 'corrupt', /retired/);
    await failsWith(provider.rewrap(moved, { ...context, tenantId: 'ffffffffffff' }), 'corrupt');
  });

  it("(why rewrap decrypts and re-encrypts) Vault's own rewrap endpoint takes no associated_data, so it cannot open our wraps", async () => {
    const wrapped = await provider.wrap(dataKey, context);
    const response = await fetch(`${fake.address}/v1/transit/rewrap/${keyName}`, {
      method: 'POST',
      headers: { 'x-vault-token': token, 'content-type': 'application/json' },
      body: JSON.stringify({ ciphertext: wrapped.slice('bwrk:vault:'.length), associated_data: wrapAad(context).toString('base64') }),
    });
    assert.equal(response.status, 400);
    assert.deepEqual(await response.json(), { errors: ['invalid ciphertext: unable to decrypt'] });
  });

  it('a revoked token is denied on every call; restoring it restores access', async () => {
    const wrapped = await provider.wrap(dataKey, context);
    fake.revoke();
    await failsWith(provider.unwrap(wrapped, context), 'denied', /revoked/);
    await failsWith(provider.wrap(dataKey, context), 'denied');
    await failsWith(provider.rewrap(wrapped, context), 'denied');
    await failsWith(provider.rotate(), 'denied');
    await failsWith(provider.describe(), 'denied');
    fake.restore();
    assert.deepEqual(await provider.unwrap(wrapped, context), dataKey);
  });

  it('a wrong token is denied', async () => {
    const wrong = new VaultTransitRootKey({ address: fake.address, token: `${token}x`, keyName });
    await failsWith(wrong.wrap(dataKey, context), 'denied');
  });

  it('503 from Vault is unavailable, for every call and for ping', async () => {
    const wrapped = await provider.wrap(dataKey, context);
    fake.mode = 'unavailable';
    await failsWith(provider.unwrap(wrapped, context), 'unavailable', /HTTP 503/);
    await failsWith(provider.wrap(dataKey, context), 'unavailable');
    await failsWith(provider.rotate(), 'unavailable');
    await failsWith(provider.describe(), 'unavailable');
    await failsWith(provider.ping(), 'unavailable', /sealed/);
    fake.mode = 'normal';
    assert.deepEqual(await provider.unwrap(wrapped, context), dataKey);
  });

  it('a Vault that never answers is unavailable within timeoutMs', async () => {
    const timeoutMs = 300;
    const impatient = providerFor(fake, { timeoutMs });
    const wrapped = await impatient.wrap(dataKey, context);
    fake.mode = 'hang';
    for (const call of [() => impatient.unwrap(wrapped, context), () => impatient.ping()]) {
      const started = performance.now();
      await failsWith(call(), 'unavailable', /did not answer .* within 300 ms/);
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= timeoutMs - 20 && elapsed < timeoutMs + 1500, `took ${Math.round(elapsed)} ms`);
    }
  });

  it('an unreachable address is unavailable', async () => {
    const gone = await startFake();
    const address = gone.address;
    await gone.close();
    fakes.splice(fakes.indexOf(gone), 1);
    const orphan = new VaultTransitRootKey({ address, token, keyName });
    await failsWith(orphan.wrap(dataKey, context), 'unavailable', /unreachable .*ECONNREFUSED/);
    await failsWith(orphan.ping(), 'unavailable');
  });

  it('another tenant or data key version, tampering or a foreign wrapped key is corrupt', async () => {
    const wrapped = await provider.wrap(dataKey, context);
    await failsWith(provider.unwrap(wrapped, { ...context, tenantId: 'ffffffffffff' }), 'corrupt', /another tenant/);
    await failsWith(provider.unwrap(wrapped, { ...context, keyVersion: 2 }), 'corrupt');
    const sealed = Buffer.from(wrapped.slice('bwrk:vault:vault:v1:'.length), 'base64');
    sealed[20] = (sealed[20] ?? 0) ^ 1;
    await failsWith(provider.unwrap(`bwrk:vault:vault:v1:${sealed.toString('base64')}`, context), 'corrupt');

    const before = fake.requests.length;
    for (const bad of ['', 'vault:v1:AAAA', 'bwrk:vault:vault:v1:', 'bwrk:vault:vault:v0:AAAA', 'bwrk:vault:vault:v1:AA AA', 'bwrk:local:v1:AAAA']) {
      await failsWith(provider.unwrap(bad, context), 'corrupt');
    }
    assert.equal(fake.requests.length, before, 'malformed wrapped keys never reach Vault');
  });

  it('a version the transit key does not have yet is unknown_version', async () => {
    const wrapped = await provider.wrap(dataKey, context);
    await failsWith(provider.unwrap(wrapped.replace(':v1:', ':v5:'), context), 'unknown_version');
  });

  it('a missing transit key or mount is unavailable with a hint, not corrupt', async () => {
    const misnamed = providerFor(fake, { keyName: 'no-such-key' });
    await failsWith(misnamed.wrap(dataKey, context), 'unavailable', /no transit key "no-such-key"/);
    await failsWith(misnamed.describe(), 'unavailable', /check the mount path/);
    await failsWith(providerFor(fake, { mountPath: 'elsewhere' }).wrap(dataKey, context), 'unavailable', /HTTP 404/);
  });

  it('sends X-Vault-Namespace when configured, and honours a custom mount path', async () => {
    const namespaced = await startFake({ namespace: 'tenant-kms/eu', mountPath: 'kms/transit' });
    const client = providerFor(namespaced, { namespace: '/tenant-kms/eu/', mountPath: '/kms/transit/' });
    const wrapped = await client.wrap(dataKey, context);
    assert.deepEqual(await client.unwrap(wrapped, context), dataKey);
    assert.equal((await client.describe()).keyName, `tenant-kms/eu/kms/transit/keys/${keyName}`);
    assert.deepEqual(
      namespaced.requests.map(({ path, namespace }) => [path, namespace]),
      [
        [`/v1/kms/transit/encrypt/${keyName}`, 'tenant-kms/eu'],
        [`/v1/kms/transit/decrypt/${keyName}`, 'tenant-kms/eu'],
        [`/v1/kms/transit/keys/${keyName}`, 'tenant-kms/eu'],
      ],
    );
    await failsWith(providerFor(namespaced, { mountPath: 'kms/transit' }).wrap(dataKey, context), 'denied');
  });

  it('ping reaches sys/health without the token; active and standby nodes count as reachable', async () => {
    await provider.ping();
    fake.standby = true;
    await provider.ping();
    assert.deepEqual(
      fake.requests.map(({ method, path, sentToken }) => [method, path, sentToken]),
      [
        ['GET', '/v1/sys/health', false],
        ['GET', '/v1/sys/health', false],
      ],
    );
  });

  it('does not follow redirects (the token would go along) and rejects answers that are not Vault', async () => {
    let calls = 0;
    const redirecting = new VaultTransitRootKey({
      address: 'https://vault.invalid:8200',
      token,
      keyName,
      fetch: async (_input, init) => {
        calls += 1;
        assert.equal(init?.redirect, 'manual');
        return new Response(null, { status: 307, headers: { location: 'https://elsewhere.invalid/v1/transit/encrypt/x' } });
      },
    });
    await failsWith(redirecting.wrap(dataKey, context), 'unavailable', /redirected .* 307/);
    assert.equal(calls, 1);

    const notVault = new VaultTransitRootKey({
      address: 'https://vault.invalid:8200',
      token,
      keyName,
      fetch: async () => new Response('<html>proxy login</html>', { status: 200 }),
    });
    await failsWith(notVault.wrap(dataKey, context), 'unavailable', /unexpected answer/);
    await failsWith(notVault.describe(), 'unavailable', /unexpected answer/);
  });

  it('redacts the token should a proxy echo it back in an error', async () => {
    const echoing = new VaultTransitRootKey({
      address: 'https://vault.invalid:8200',
      token,
      keyName,
      fetch: async (_input, init) => {
        const headers = new Headers(init?.headers);
        return Response.json({ errors: [`bad gateway for token ${headers.get('x-vault-token') ?? ''}`] }, { status: 502 });
      },
    });
    await failsWith(echoing.wrap(dataKey, context), 'unavailable', /\[redacted\]/);
  });

  it('validates its options without echoing the token, and keeps the token out of inspect()', () => {
    const base = { address: fake.address, token, keyName };
    assert.throws(() => new VaultTransitRootKey({ ...base, address: 'vault:8200' }), /address must be/);
    assert.throws(() => new VaultTransitRootKey({ ...base, address: `https://user:${token}@vault:8200` }), (error: unknown) => error instanceof Error && !error.message.includes(token));
    assert.throws(() => new VaultTransitRootKey({ ...base, token: `${token} ` }), (error: unknown) => error instanceof Error && /token must be/.test(error.message) && !error.message.includes(token));
    assert.throws(() => new VaultTransitRootKey({ ...base, token: '' }), /token must be/);
    assert.throws(() => new VaultTransitRootKey({ ...base, keyName: '../sys' }), /keyName/);
    assert.throws(() => new VaultTransitRootKey({ ...base, mountPath: 'transit/../sys' }), /mountPath/);
    assert.throws(() => new VaultTransitRootKey({ ...base, namespace: 'a b' }), /namespace/);
    assert.throws(() => new VaultTransitRootKey({ ...base, timeoutMs: 0 }), /timeoutMs/);
    assert.ok(!inspect(provider, { showHidden: true, depth: Infinity }).includes(token));
    assert.ok(!JSON.stringify(provider).includes(token));
  });
});
