import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines, testConfig } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import { systemClock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import { EnvelopeError, open } from './envelope.ts';
import { openRootKeyProvider } from './root-providers.ts';
import { openLocalFileRootKey } from './root/local-file.ts';
import { FakeVaultTransit } from './root/vault-transit-fake.ts';
import { KeyringService } from './service.ts';

/**
 * The KMS paths end to end, through the HTTP API: a Vault transit root key (opened from configuration,
 * as the server does), and customer-managed keys held in a customer's own Vault. The Vault is the
 * in-test transit server, which speaks the same wire calls (docs/root-keys.md).
 */

const rootToken = 'hvs.root-token-for-tests';
const customerToken = 'hvs.customer-token-for-tests';

interface Keyring {
  currentVersion: number;
  customerManaged: boolean;
  effectiveRotationEncryptions: number;
  versions: { version: number; state: string; encryptions: number }[];
}

const recordUrl = (tenantId: string, id: string) => `/v1/tenants/${tenantId}/collections/kms/records/${id}`;

describe('Vault transit as the root key provider', () => {
  let vault: FakeVaultTransit;
  let test: TestApp;

  before(async () => {
    vault = await FakeVaultTransit.start({ token: rootToken, keyName: 'bulwark-root' });
    const config = testConfig({ rootKeyProvider: 'vault-transit', vaultAddr: vault.address, vaultToken: rootToken });
    const { provider, warnings } = await openRootKeyProvider(config, systemClock);
    assert.deepEqual(warnings, []);
    // No key cache: every request unwraps, so revocation shows at once.
    test = await createTestApp('pglite', { rootKeys: provider, config: { keyCacheTtlMs: '0' } });
  });
  after(async () => {
    await test.close();
    await vault.close();
  });

  it('wraps data keys in Vault, rotates the root there, and answers 423 while revoked, 503 while down', async () => {
    const { tenantId, apiKey } = await test.tenantWithKey('Vaulted');
    const id = newId();
    assert.equal((await test.call({ method: 'PUT', url: recordUrl(tenantId, id), token: apiKey, body: { data: { kept: 1 } } })).statusCode, 201);
    const { rows } = await test.storage.db.withTenant(tenantId, (tx) =>
      tx.query<{ wrapped_key: string }>('SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1', [tenantId]),
    );
    assert.match(rows[0]?.wrapped_key ?? '', /^bwrk:vault:vault:v1:/);
    assert.ok(vault.requests.every((request) => request.body === undefined || !JSON.stringify(request.body).includes('kept')), 'record data never goes to the KMS');

    const rotation = await test.call({ method: 'POST', url: '/v1/keys/root/rotate', token: test.operatorToken });
    assert.equal(rotation.statusCode, 200);
    assert.equal(rotation.json<{ rootVersion: number }>().rootVersion, 2);
    assert.equal(vault.latestVersion, 2);
    const root = await test.call({ method: 'GET', url: '/v1/keys/root', token: test.operatorToken });
    assert.equal(root.json<{ kind: string; currentVersion: number }>().kind, 'vault-transit');

    vault.revoke();
    const read = () => test.call({ method: 'GET', url: recordUrl(tenantId, id), token: apiKey });
    assertProblem(await read(), 423, 'key_access_denied', [rootToken]);
    assertProblem(await test.call({ method: 'PUT', url: recordUrl(tenantId, id), token: apiKey, body: { data: { kept: 2 } } }), 423, 'key_access_denied');
    assertProblem(await test.call({ method: 'POST', url: '/v1/tenants', token: test.operatorToken, body: { name: 'No key' } }), 423, 'key_access_denied');
    vault.restore();
    const restored = await read();
    assert.equal(restored.statusCode, 200);
    assert.deepEqual(restored.json<{ data: unknown }>().data, { kept: 1 }, 'the refused write changed nothing');

    vault.mode = 'unavailable';
    assertProblem(await read(), 503, 'key_provider_unavailable');
    const ready = await test.call({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    vault.mode = 'normal';
    assert.equal((await read()).statusCode, 200);
  });
});

for (const engine of engines) {
  describe(`customer-managed keys (BYOK) [${engine}]`, { skip: engineSkip(engine) }, () => {
    let customerVault: FakeVaultTransit;
    let test: TestApp;
    let customerKey: Record<string, string>;

    before(async () => {
      customerVault = await FakeVaultTransit.start({ token: customerToken, keyName: 'acme-kek', mountPath: 'acme/transit' });
      customerKey = { provider: 'vault-transit', address: customerVault.address, token: customerToken, mountPath: 'acme/transit', keyName: 'acme-kek' };
      // A local key file as the root: unlike an env key, it can rotate.
      const rootKeys = await openLocalFileRootKey(join(mkdtempSync(join(tmpdir(), 'bulwark-byok-')), 'root-key.json'));
      test = await createTestApp(engine, { rootKeys, config: { keyCacheTtlMs: '0', customerKmsAllowedOrigins: customerVault.address } });
    });
    after(async () => {
      await test.close();
      await customerVault.close();
    });

    const url = (tenantId: string) => `/v1/tenants/${tenantId}/keys/customer-key`;
    const keyring = async (tenantId: string, token: string) => (await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/keys`, token })).json<Keyring>();
    const storedKeys = (tenantId: string) =>
      test.storage.db.withTenant(tenantId, async (tx) => ({
        keys: (
          await tx.query<{ version: number; wrapped_key: string | null; customer_wrapped_share: string | null }>(
            'SELECT version, wrapped_key, customer_wrapped_share FROM tenant_keys WHERE tenant_id = $1 ORDER BY version',
            [tenantId],
          )
        ).rows,
        settings: (await tx.query<{ sealed: Uint8Array | null }>('SELECT customer_kms_sealed AS sealed FROM tenant_keyrings WHERE tenant_id = $1', [tenantId]))
          .rows[0]?.sealed,
      }));

    it('refuses settings that do not work, and changes nothing', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Picky');
      const put = (body: unknown) => test.call({ method: 'PUT', url: url(tenantId), token: apiKey, body });
      assertProblem(await put({ ...customerKey, address: 'http://127.0.0.1:1' }), 422, 'customer_key_rejected');
      assertProblem(await put({ ...customerKey, token: 'hvs.wrong' }), 422, 'customer_key_rejected', ['hvs.wrong']);
      assertProblem(await put({ ...customerKey, keyName: 'no-such-key' }), 422, 'customer_key_rejected', [customerToken]);
      assertProblem(await put({ ...customerKey, token: 'has space' }), 400, 'validation_failed');
      assertProblem(await put({ ...customerKey, extra: true }), 400, 'validation_failed');
      assertProblem(await put({ ...customerKey, provider: 'aws-kms' }), 400, 'validation_failed');
      assertProblem(await put({ ...customerKey, mountPath: '../sys' }), 400, 'validation_failed');
      assertProblem(await test.call({ method: 'GET', url: url(tenantId), token: apiKey }), 404, 'not_found');
      assertProblem(await test.call({ method: 'DELETE', url: url(tenantId), token: apiKey }), 404, 'not_found');
      const { keys, settings } = await storedKeys(tenantId);
      assert.equal(keys[0]?.customer_wrapped_share, null);
      assert.equal(settings, null);
      assert.equal((await keyring(tenantId, apiKey)).customerManaged, false);
    });

    it("needs both the root key and the customer's key; revoking the customer's locks the tenant out until restored", async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Acme');
      const bystander = await test.tenantWithKey('Bystander');
      const id = newId();
      const read = (tenant = tenantId, token = apiKey, recordId = id) => test.call({ method: 'GET', url: recordUrl(tenant, recordId), token });
      assert.equal((await test.call({ method: 'PUT', url: recordUrl(tenantId, id), token: apiKey, body: { data: { before: 'byok' } } })).statusCode, 201);
      const bystanderId = newId();
      await test.call({ method: 'PUT', url: recordUrl(bystander.tenantId, bystanderId), token: bystander.apiKey, body: { data: { fine: true } } });
      const sealedBefore = await test.storage.db.withTenant(tenantId, async (tx) =>
        (await tx.query<{ body: Uint8Array }>('SELECT body FROM records WHERE tenant_id = $1 AND id = $2', [tenantId, id])).rows[0]?.body,
      );

      const enabled = await test.call({ method: 'PUT', url: url(tenantId), token: apiKey, body: customerKey });
      assert.equal(enabled.statusCode, 200, enabled.body);
      assert.ok(!enabled.body.includes(customerToken), 'the token is never returned');
      assert.deepEqual(Object.keys(enabled.json<object>()).sort(), ['address', 'configuredAt', 'keyName', 'mountPath', 'namespace', 'provider']);
      assert.equal((await keyring(tenantId, apiKey)).customerManaged, true);

      const { keys, settings } = await storedKeys(tenantId);
      assert.match(keys[0]?.customer_wrapped_share ?? '', /^bwrk:vault:vault:v1:/);
      assert.ok(settings !== null && settings !== undefined && !Buffer.from(settings).includes(Buffer.from(customerToken)), 'the token is stored sealed');
      // The data was not re-encrypted: the same ciphertext still opens.
      const sealedAfter = await test.storage.db.withTenant(tenantId, async (tx) =>
        (await tx.query<{ body: Uint8Array }>('SELECT body FROM records WHERE tenant_id = $1 AND id = $2', [tenantId, id])).rows[0]?.body,
      );
      assert.deepEqual(Buffer.from(sealedAfter ?? []), Buffer.from(sealedBefore ?? []));
      assert.deepEqual((await read()).json<{ data: unknown }>().data, { before: 'byok' });

      // What the root key alone unwraps is a share, not the key: the operator cannot read the tenant.
      const rootShare = await test.rootKeys.unwrap(keys[0]?.wrapped_key ?? '', { tenantId, keyVersion: 1 });
      assert.throws(
        () => open(Buffer.from(sealedAfter ?? []), { tenantId, table: 'records', column: 'body', rowId: `kms/${id}` }, () => rootShare),
        (error: unknown) => error instanceof EnvelopeError,
      );

      customerVault.revoke();
      assertProblem(await read(), 423, 'customer_key_access_denied', [customerToken]);
      assertProblem(
        await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/crypto/encrypt`, token: apiKey, body: { items: [{ plaintext: 'eA==' }] } }),
        423,
        'customer_key_access_denied',
      );
      assertProblem(await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/rotate`, token: apiKey }), 423, 'customer_key_access_denied');
      assertProblem(await test.call({ method: 'DELETE', url: url(tenantId), token: apiKey }), 423, 'customer_key_access_denied');
      assert.equal((await read(bystander.tenantId, bystander.apiKey, bystanderId)).statusCode, 200, 'other tenants are unaffected');
      assert.equal((await keyring(tenantId, apiKey)).currentVersion, 1, 'the refused rotation left no version behind');

      customerVault.mode = 'unavailable';
      customerVault.restore();
      assertProblem(await read(), 503, 'customer_key_unavailable');
      customerVault.mode = 'normal';
      assert.deepEqual((await read()).json<{ data: unknown }>().data, { before: 'byok' });

      // Rotation and root rotation keep working under the customer key.
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/rotate`, token: apiKey })).statusCode, 200);
      const second = newId();
      await test.call({ method: 'PUT', url: recordUrl(tenantId, second), token: apiKey, body: { data: { after: 'rotation' } } });
      assert.equal((await test.call({ method: 'POST', url: '/v1/keys/root/rotate', token: test.operatorToken })).statusCode, 200);
      assert.ok((await storedKeys(tenantId)).keys.every((key) => key.customer_wrapped_share !== null), 'the new version has a customer share too');
      assert.equal((await read()).statusCode, 200);
      assert.equal((await read(tenantId, apiKey, second)).statusCode, 200);
      assert.equal((await test.call({ method: 'GET', url: url(tenantId), token: apiKey })).statusCode, 200, 'settings still open after root rotation');

      // Removing the customer key needs it one last time; afterwards its revocation no longer matters.
      assert.equal((await test.call({ method: 'DELETE', url: url(tenantId), token: apiKey })).statusCode, 204);
      assert.ok((await storedKeys(tenantId)).keys.every((key) => key.customer_wrapped_share === null));
      customerVault.revoke();
      assert.deepEqual((await read()).json<{ data: unknown }>().data, { before: 'byok' });
      customerVault.restore();
    });

    it('crypto-shredding removes the customer KMS settings with the keys', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Leaving');
      assert.equal((await test.call({ method: 'PUT', url: url(tenantId), token: apiKey, body: customerKey })).statusCode, 200);
      await test.app.services.keyring.destroy(tenantId);
      const { keys, settings } = await storedKeys(tenantId);
      assert.deepEqual(keys.map((key) => [key.wrapped_key, key.customer_wrapped_share]), [[null, null]]);
      assert.equal(settings, null);
    });
  });

  describe(`automatic rotation and the env root key [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    before(async () => {
      test = await createTestApp(engine, { config: { keyCacheTtlMs: '0' } });
    });
    after(() => test.close());

    /** A tenant whose current key version (2) has sealed nothing: version 1 already sealed the first admin. */
    const freshTenant = async (name: string) => {
      const tenant = await test.tenantWithKey(name);
      const rotated = await test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/keys/rotate`, token: tenant.apiKey });
      assert.equal(rotated.json<Keyring>().currentVersion, 2);
      return tenant;
    };
    const counts = (keyring: Keyring) => keyring.versions.filter((version) => version.version >= 2).map((version) => [version.version, version.encryptions]);

    it('rotates once the current version has made rotationEncryptions encryptions', async () => {
      const { tenantId, apiKey } = await freshTenant('Busy');
      const settings = await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}/keys`, token: apiKey, body: { rotationEncryptions: 3 } });
      assert.equal(settings.json<Keyring>().effectiveRotationEncryptions, 3);
      assertProblem(
        await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}/keys`, token: apiKey, body: { rotationEncryptions: 2 ** 31 + 1 } }),
        400,
        'validation_failed',
      );
      const encrypt = async (count: number) =>
        (
          await test.call({
            method: 'POST',
            url: `/v1/tenants/${tenantId}/crypto/encrypt`,
            token: apiKey,
            body: { items: Array.from({ length: count }, () => ({ plaintext: 'eA==' })) },
          })
        ).json<{ items: { keyVersion: number }[] }>().items.map((item) => item.keyVersion);
      assert.deepEqual(await encrypt(2), [2, 2]);
      assert.deepEqual(await encrypt(1), [2]);
      assert.deepEqual(await encrypt(1), [3], 'the fourth encryption uses a new version');
      const info = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/keys`, token: apiKey });
      assert.deepEqual(counts(info.json<Keyring>()), [[2, 3], [3, 1]]);
    });

    it('root rotation with the env provider only re-wraps, under the current version (rotated: false)', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Env root');
      const rotation = await test.call({ method: 'POST', url: '/v1/keys/root/rotate', token: test.operatorToken });
      assert.equal(rotation.statusCode, 200);
      assert.equal(rotation.json<{ rotated: boolean; rootVersion: number }>().rotated, false);
      assert.equal(rotation.json<{ rootVersion: number }>().rootVersion, 1);
      const sealed = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/crypto/encrypt`, token: apiKey, body: { items: [{ plaintext: 'eA==' }] } });
      assert.equal(sealed.statusCode, 200);
    });

    it('an idle tenant\'s cached keys leave memory on a timer, which stores their encryption count', async () => {
      const { tenantId, apiKey } = await freshTenant('Idle');
      const cached = new KeyringService(test.storage.db, test.rootKeys, systemClock, { cacheTtlMs: 1000, cacheMaxTenants: 10, audit: test.app.services.audit });
      try {
        const context = { tenantId, table: 'transit', column: 'transit', rowId: '' };
        await cached.seal(tenantId, Buffer.from('x'), context);
        await cached.seal(tenantId, Buffer.from('y'), context);
        const encryptions = async () => counts((await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/keys`, token: apiKey })).json<Keyring>())[0]?.[1];
        assert.equal(await encryptions(), 0, 'counted in memory while cached');
        const deadline = Date.now() + 5000;
        while ((await encryptions()) !== 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
        assert.equal(await encryptions(), 2, 'stored once the expired entry was swept, with no further use');
      } finally {
        await cached.close();
      }
    });

    it('with keys cached, the instance that spends the budget reloads and rotates', async () => {
      const { tenantId, apiKey } = await freshTenant('Cached');
      await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}/keys`, token: apiKey, body: { rotationEncryptions: 5 } });
      const cached = new KeyringService(test.storage.db, test.rootKeys, systemClock, { cacheTtlMs: 60_000, cacheMaxTenants: 10, audit: test.app.services.audit });
      const context = { tenantId, table: 'transit', column: 'transit', rowId: '' };
      const versions: number[] = [];
      for (let index = 0; index < 7; index += 1) versions.push((await cached.seal(tenantId, Buffer.from('x'), context)).keyVersion);
      assert.deepEqual(versions, [2, 2, 2, 2, 2, 3, 3]);
      await cached.close();
      const info = (await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/keys`, token: apiKey })).json<Keyring>();
      assert.deepEqual(counts(info), [[2, 5], [3, 2]], 'close() stores the counts');
    });
  });
}
