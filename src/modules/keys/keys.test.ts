import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { storedDataContains } from '../../testing/at-rest.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import { newId } from '../../platform/ids.ts';
import { EnvelopeError, fromTransitText, open } from './envelope.ts';
import { openLocalFileRootKey } from './root/local-file.ts';

interface Keyring {
  currentVersion: number;
  minDecryptionVersion: number;
  versions: { version: number; state: string; records: number; sealedRows: number }[];
  unencryptedRecords: number;
  reencrypting: boolean;
}

for (const engine of engines) {
  describe(`keys and encryption at rest [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let pgliteDir: string;
    const recordUrl = (tenantId: string, id: string) => `/v1/tenants/${tenantId}/collections/secrets/records/${id}`;

    before(async () => {
      pgliteDir = mkdtempSync(join(tmpdir(), 'bulwark-keys-'));
      const rootKeys = await openLocalFileRootKey(join(pgliteDir, 'root', 'root-key.json'));
      test = await createTestApp(engine, { rootKeys, pgliteDir: join(pgliteDir, 'pglite'), config: { keyCacheTtlMs: '0' } });
    });
    after(() => test.close());

    const put = (tenantId: string, token: string, id: string, data: unknown) =>
      test.call({ method: 'PUT', url: recordUrl(tenantId, id), token, body: { data } });
    const keyring = async (tenantId: string, token: string) =>
      (await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/keys`, token })).json<Keyring>();

    it('a new tenant has a 256-bit data key, version 1, wrapped by the root key', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Keyed');
      const info = await keyring(tenantId, apiKey);
      assert.equal(info.currentVersion, 1);
      assert.deepEqual(info.versions.map((version) => [version.version, version.state]), [[1, 'current']]);
      const { rows } = await test.storage.db.withTenant(tenantId, (tx) =>
        tx.query<{ wrapped_key: string }>('SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1', [tenantId]),
      );
      assert.match(rows[0]?.wrapped_key ?? '', /^bwrk:local:v1:/);
    });

    it('ciphertexts open with the stored data key unwrapped by the root key, and with nothing else', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Real key');
      const sealed = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/crypto/encrypt`, token: apiKey, body: { items: [{ plaintext: 'c2VjcmV0' }] } });
      const ciphertext = fromTransitText(sealed.json<{ items: { ciphertext: string }[] }>().items[0]?.ciphertext ?? '');
      const { rows } = await test.storage.db.withTenant(tenantId, (tx) =>
        tx.query<{ wrapped_key: string }>('SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1 AND version = 1', [tenantId]),
      );
      const dataKey = await test.rootKeys.unwrap(rows[0]?.wrapped_key ?? '', { tenantId, keyVersion: 1 });
      const context = { tenantId, table: 'transit', column: 'transit', rowId: '' };
      assert.equal(open(ciphertext, context, () => dataKey).toString(), 'secret');
      assert.throws(
        () => open(ciphertext, context, () => Buffer.alloc(32)),
        (error: unknown) => error instanceof EnvelopeError && error.reason === 'authentication_failed',
        'a zeroed key does not open it',
      );
    });

    it('record bodies never reach the database files in plaintext', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey(`Visible ${'n'.repeat(4)}`);
      const marker = `marker-${randomBytes(12).toString('hex')}`;
      // A positive control in a column that is not encrypted: proves the search can find a string.
      const control = `control-${randomBytes(12).toString('hex')}`;
      assert.equal((await put(tenantId, apiKey, newId(), { note: marker })).statusCode, 201);
      assert.equal((await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}`, token: test.operatorToken, body: { name: control } })).statusCode, 200);

      const dir = join(pgliteDir, 'pglite');
      const [controlFound, markerFound] = await storedDataContains(test.storage, dir, [control, marker]);
      assert.ok(controlFound, 'the search finds the unencrypted control');
      assert.ok(!markerFound, 'the record body is not in the stored data');
      if (engine === 'pglite') {
        // The search closed the embedded database: reopen it for the remaining tests.
        await test.close();
        test = await createTestApp(engine, {
          rootKeys: await openLocalFileRootKey(join(pgliteDir, 'root', 'root-key.json')),
          pgliteDir: dir,
          config: { keyCacheTtlMs: '0' },
          operator: test.operator,
        });
      }
    });

    it('a body copied to another row or tenant fails its integrity check', async () => {
      const a = await test.tenantWithKey('Copy A');
      const b = await test.tenantWithKey('Copy B');
      const [x, y, z] = [newId(), newId(), newId()];
      await put(a.tenantId, a.apiKey, x, { who: 'x' });
      await put(a.tenantId, a.apiKey, y, { who: 'y' });
      await put(b.tenantId, b.apiKey, z, { who: 'z' });
      const [body] = (
        await test.storage.db.withTenant(a.tenantId, (tx) =>
          tx.query<{ body: Uint8Array }>('SELECT body FROM records WHERE tenant_id = $1 AND id = $2', [a.tenantId, x]),
        )
      ).rows;
      assert.ok(body);
      await test.storage.db.withTenant(a.tenantId, (tx) => tx.query('UPDATE records SET body = $3 WHERE tenant_id = $1 AND id = $2', [a.tenantId, y, body.body]));
      await test.storage.db.withTenant(b.tenantId, (tx) => tx.query('UPDATE records SET body = $3 WHERE tenant_id = $1 AND id = $2', [b.tenantId, z, body.body]));
      assertProblem(await test.call({ method: 'GET', url: recordUrl(a.tenantId, y), token: a.apiKey }), 500, 'data_integrity_failed');
      assertProblem(await test.call({ method: 'GET', url: recordUrl(b.tenantId, z), token: b.apiKey }), 500, 'data_integrity_failed');
      assert.equal((await test.call({ method: 'GET', url: recordUrl(a.tenantId, x), token: a.apiKey })).statusCode, 200);
    });

    it('a body swapped for plain JSON behind Bulwark is refused, and re-encryption does not launder it', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Downgrade');
      const id = newId();
      await put(tenantId, apiKey, id, { genuine: true });
      await test.storage.db.withTenant(tenantId, (tx) =>
        tx.query('UPDATE records SET body = $3, key_version = NULL WHERE tenant_id = $1 AND id = $2', [tenantId, id, Buffer.from('{"forged":true}')]),
      );
      assertProblem(await test.call({ method: 'GET', url: recordUrl(tenantId, id), token: apiKey }), 500, 'data_integrity_failed');
      assert.equal(await test.app.services.keyring.reencrypt(tenantId), 0);
      assert.equal((await keyring(tenantId, apiKey)).unencryptedRecords, 1, 'the unsealed row is reported');
      assertProblem(await test.call({ method: 'GET', url: recordUrl(tenantId, id), token: apiKey }), 500, 'data_integrity_failed');
    });

    it('rotation, re-encryption, minimum decryption version and trim', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Rotating');
      const ids = [newId(), newId(), newId()];
      for (const id of ids) await put(tenantId, apiKey, id, { id });
      const sealed = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/crypto/encrypt`, token: apiKey, body: { items: [{ plaintext: 'djE=' }] } });
      const v1Ciphertext = sealed.json<{ items: { ciphertext: string }[] }>().items[0]?.ciphertext ?? '';
      assert.match(v1Ciphertext, /^bulwark:v1:/);

      const rotated = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/rotate`, token: apiKey });
      assert.equal(rotated.json<Keyring>().currentVersion, 2);
      await put(tenantId, apiKey, newId(), { after: 'rotation' });
      let info = await keyring(tenantId, apiKey);
      assert.deepEqual(info.versions.map((version) => [version.version, version.state, version.records]), [[1, 'active', 3], [2, 'current', 1]]);
      for (const id of ids) assert.equal((await test.call({ method: 'GET', url: recordUrl(tenantId, id), token: apiKey })).statusCode, 200);

      // Retiring v1 while records still use it is refused.
      assertProblem(await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}/keys`, token: apiKey, body: { minDecryptionVersion: 2 } }), 409, 'conflict');

      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/reencrypt`, token: apiKey })).statusCode, 202);
      // Follow the background job as a client would: until the keyring says it is done.
      for (info = await keyring(tenantId, apiKey); info.reencrypting; info = await keyring(tenantId, apiKey)) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.deepEqual(info.versions.map((version) => [version.version, version.records]), [[1, 0], [2, 4]]);
      const before = (await test.call({ method: 'GET', url: recordUrl(tenantId, ids[0] ?? ''), token: apiKey })).json<{ version: number }>();
      assert.equal(before.version, 1, 're-encryption is not a content change');

      const retired = await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}/keys`, token: apiKey, body: { minDecryptionVersion: 2 } });
      assert.equal(retired.statusCode, 200);
      assert.equal(retired.json<Keyring>().versions[0]?.state, 'retired');
      assertProblem(
        await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/crypto/decrypt`, token: apiKey, body: { items: [{ ciphertext: v1Ciphertext }] } }),
        409,
        'key_version_retired',
      );
      const trimmed = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/trim`, token: apiKey });
      assert.deepEqual(trimmed.json(), { trimmedVersions: [1] });
      assert.equal((await keyring(tenantId, apiKey)).versions[0]?.state, 'destroyed');
      for (const id of ids) assert.equal((await test.call({ method: 'GET', url: recordUrl(tenantId, id), token: apiKey })).statusCode, 200);
    });

    it('a re-encryption job that ends while the keyring is read still shows as running, so "done" comes with the final counts', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Progress');
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/rotate`, token: apiKey })).statusCode, 200);
      // A store of this test with one row on version 1. Once armed, a read of the keyring takes its count, lets the
      // waiting batch move the row and returns only when the job has ended: the window a loaded machine opens by chance.
      let counted: () => void = () => undefined;
      const countTaken = new Promise<void>((resolve) => (counted = resolve));
      let batchReached: () => void = () => undefined;
      const reached = new Promise<void>((resolve) => (batchReached = resolve));
      let [armed, moved] = [false, false];
      const { keyring: service } = test.app.services;
      service.registerReencryptor({
        name: 'progress-probe',
        async countByKeyVersion(_tx, id) {
          if (id !== tenantId) return [];
          const rows = moved ? [] : [{ key_version: 1, count: 1 }];
          if (armed) {
            counted();
            while (service.isReencrypting(tenantId)) await new Promise((resolve) => setImmediate(resolve));
          }
          return rows;
        },
        async reencryptBatch(id) {
          if (id !== tenantId) return 0;
          batchReached();
          await countTaken;
          moved = true;
          return 1;
        },
      });
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/reencrypt`, token: apiKey })).statusCode, 202);
      await reached;
      armed = true;
      const during = await keyring(tenantId, apiKey);
      const sealedAtV1 = (info: Keyring) => info.versions.find((version) => version.version === 1)?.sealedRows;
      assert.equal(sealedAtV1(during), 1, 'the read took its count before the job moved the row');
      assert.equal(during.reencrypting, true, 'so it does not report the job as done');
      const done = await keyring(tenantId, apiKey);
      assert.deepEqual([done.reencrypting, sealedAtV1(done)], [false, 0]);
    });

    it('root key rotation re-wraps every data key and leaves all data readable', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Root rotation');
      const id = newId();
      await put(tenantId, apiKey, id, { survives: 'root rotation' });
      const rotation = await test.call({ method: 'POST', url: '/v1/keys/root/rotate', token: test.operatorToken });
      assert.equal(rotation.statusCode, 200);
      const { rootVersion, keysRewrapped } = rotation.json<{ rootVersion: number; keysRewrapped: number }>();
      assert.ok(rootVersion >= 2 && keysRewrapped >= 1);
      const { rows } = await test.storage.db.withPlatform((tx) => tx.query<{ wrapped_key: string | null }>('SELECT wrapped_key FROM tenant_keys WHERE wrapped_key IS NOT NULL'));
      assert.ok(rows.every((row) => row.wrapped_key?.startsWith(`bwrk:local:v${rootVersion}:`)), 'every live key is under the new root version');
      test.app.services.keyring.forgetUnwrappedKeys();
      const read = await test.call({ method: 'GET', url: recordUrl(tenantId, id), token: apiKey });
      assert.deepEqual(read.json<{ data: unknown }>().data, { survives: 'root rotation' });
    });

    it('crypto-shredding makes every ciphertext of the tenant permanently unreadable', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Shredded');
      const id = newId();
      await put(tenantId, apiKey, id, { doomed: true });
      const other = await test.tenantWithKey('Bystander');
      const otherId = newId();
      await put(other.tenantId, other.apiKey, otherId, { fine: true });

      const proof = await test.app.services.keyring.destroy(tenantId);
      assert.deepEqual(proof.destroyedVersions, [1]);
      const { rows } = await test.storage.db.withTenant(tenantId, (tx) =>
        tx.query<{ wrapped_key: string | null }>('SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1', [tenantId]),
      );
      assert.deepEqual(rows, [{ wrapped_key: null }], 'no key material is left');
      assertProblem(await test.call({ method: 'GET', url: recordUrl(tenantId, id), token: apiKey }), 410, 'keys_destroyed');
      assertProblem(
        await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/crypto/encrypt`, token: apiKey, body: { items: [{ plaintext: 'eA==' }] } }),
        410,
        'keys_destroyed',
      );
      // Another tenant is untouched.
      assert.equal((await test.call({ method: 'GET', url: recordUrl(other.tenantId, otherId), token: other.apiKey })).statusCode, 200);
    });

    it('transit: round trip, caller context, batches, and bad input changes nothing', async () => {
      const a = await test.tenantWithKey('Transit A');
      const b = await test.tenantWithKey('Transit B');
      const call = (tenantId: string, token: string, operation: string, body: unknown) =>
        test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/crypto/${operation}`, token, body });
      const context = Buffer.from('invoice-42').toString('base64');
      const plaintexts = ['aGVsbG8=', '', 'AAECAwQ='];
      const encrypted = await call(a.tenantId, a.apiKey, 'encrypt', { items: plaintexts.map((plaintext) => ({ plaintext, context })) });
      assert.equal(encrypted.statusCode, 200);
      const ciphertexts = encrypted.json<{ items: { ciphertext: string }[] }>().items.map((item) => item.ciphertext);
      const decrypted = await call(a.tenantId, a.apiKey, 'decrypt', { items: ciphertexts.map((ciphertext) => ({ ciphertext, context })) });
      assert.deepEqual(decrypted.json<{ items: { plaintext: string }[] }>().items.map((item) => item.plaintext), plaintexts);

      const [first = ''] = ciphertexts;
      const wrongContext = await call(a.tenantId, a.apiKey, 'decrypt', { items: [{ ciphertext: first, context }, { ciphertext: first }] });
      assert.equal(assertProblem(wrongContext, 400, 'invalid_ciphertext').item, 1);
      assertProblem(await call(b.tenantId, b.apiKey, 'decrypt', { items: [{ ciphertext: first, context }] }), 400, 'invalid_ciphertext');
      // Flip a character inside the tag (the last character may carry unused padding bits).
      const tampered = `${first.slice(0, -2)}${first.at(-2) === 'A' ? 'B' : 'A'}${first.slice(-1)}`;
      assertProblem(await call(a.tenantId, a.apiKey, 'decrypt', { items: [{ ciphertext: tampered, context }] }), 400, 'invalid_ciphertext');
      for (const ciphertext of ['bulwark:v1:', 'vault:v1:abc', 'bulwark:v9:AAAA', 'not a ciphertext']) {
        assertProblem(await call(a.tenantId, a.apiKey, 'decrypt', { items: [{ ciphertext }] }), 400, 'invalid_ciphertext');
      }
      for (const body of [
        { items: [{ plaintext: 'not base64!' }] },
        { items: [] },
        { items: Array.from({ length: 101 }, () => ({ plaintext: 'eA==' })) },
        { items: [{ plaintext: 'eA==', extra: 1 }] },
        { items: [{ plaintext: 'A'.repeat(90_000) }] },
        { plaintext: 'eA==' },
      ]) {
        assertProblem(await call(a.tenantId, a.apiKey, 'encrypt', body), 400, 'validation_failed');
      }

      await test.call({ method: 'POST', url: `/v1/tenants/${a.tenantId}/keys/rotate`, token: a.apiKey });
      const rewrapped = await call(a.tenantId, a.apiKey, 'rewrap', { items: [{ ciphertext: first, context }] });
      const moved = rewrapped.json<{ items: { ciphertext: string; keyVersion: number }[] }>().items[0];
      assert.ok(moved);
      assert.equal(moved.keyVersion, 2);
      assert.match(moved.ciphertext, /^bulwark:v2:/);
      const back = await call(a.tenantId, a.apiKey, 'decrypt', { items: [{ ciphertext: moved.ciphertext, context }] });
      assert.equal(back.json<{ items: { plaintext: string }[] }>().items[0]?.plaintext, 'aGVsbG8=');
    });
  });
}
