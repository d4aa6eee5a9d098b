import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { newId } from '../../platform/ids.ts';
import { openSealedSecret, SealedSecretError } from '../../sdk/secrets.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { storedDataContains } from '../../testing/at-rest.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import type { SecretMetadata, SealedSecret, Service } from './schemas.ts';
import { generateServiceKeyPair } from './sealing.ts';
import { keptVersions } from './service.ts';

interface RegisteredService extends Service {
  credential: string;
  privateKeyPem: string;
}

for (const engine of engines) {
  describe(`secrets [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let pgliteDir: string;
    let tenantId: string;
    let apiKey: string;
    let adminToken: string;
    /** Every credential and value handed out: none may show in an answer it does not belong to. */
    const secrets: string[] = [];

    const register = async (name = `svc-${newId()}`): Promise<RegisteredService> => {
      const keys = generateServiceKeyPair();
      const response = await test.call({ method: 'POST', url: '/v1/services', token: test.operatorToken, body: { name, publicKey: keys.publicKey } });
      assert.equal(response.statusCode, 201, response.body);
      const service = response.json<Service & { credential: string }>();
      secrets.push(service.credential, keys.privateKeyPem);
      return { ...service, privateKeyPem: keys.privateKeyPem };
    };
    const put = (name: string, body: unknown, tenant = tenantId, token = apiKey) => test.call({ method: 'PUT', url: `/v1/tenants/${tenant}/secrets/${name}`, token, body });
    const read = (service: { id: string }, name: string, token: string | undefined, options: { tenant?: string; query?: string } = {}) =>
      test.call({ method: 'GET', url: `/v1/services/${service.id}/secrets/${options.tenant ?? tenantId}/${name}${options.query ?? ''}`, token });
    /** Reads and opens a copy as the service does: its credential, its private key, the binding it expects. */
    const readValue = async (service: RegisteredService, name: string, options: { tenant?: string; version?: number } = {}) => {
      const response = await read(service, name, service.credential, { tenant: options.tenant ?? tenantId, query: options.version === undefined ? '' : `?version=${options.version}` });
      assert.equal(response.statusCode, 200, response.body);
      return openSealedSecret(response.json(), service.privateKeyPem, { tenantId: options.tenant ?? tenantId, name, serviceId: service.id });
    };
    const rows = async () => {
      const [services, secretRows, versions, copies] = await Promise.all(
        ['services', 'secrets', 'secret_versions', 'secret_copies'].map((table) => test.storage.asOwner(`SELECT to_jsonb(t)::text AS row FROM ${table} t ORDER BY 1`)),
      );
      return { services, secrets: secretRows, versions, copies };
    };
    const events = (action: string, tenant = tenantId) =>
      test.storage.asOwner('SELECT actor_kind, actor_id, target_id, outcome, detail FROM audit_events WHERE tenant_id = $1 AND action = $2 ORDER BY seq', [tenant, action]);

    before(async () => {
      pgliteDir = join(mkdtempSync(join(tmpdir(), 'bulwark-secrets-')), 'pglite');
      test = await createTestApp(engine, { pgliteDir });
      ({ tenantId, apiKey, adminToken } = await test.tenantWithKey('Secrets'));
      secrets.push(apiKey, adminToken, test.operatorToken);
    });
    after(async () => {
      await test.close();
      rmSync(dirname(pgliteDir), { recursive: true, force: true });
    });

    it('an operator registers a service: base64url or SPKI PEM, a real X25519 key; the credential is shown once', async () => {
      const { publicKey } = generateKeyPairSync('x25519');
      const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
      const name = `pem-${newId()}`;
      const created = await test.call({ method: 'POST', url: '/v1/services', token: test.operatorToken, body: { name, publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() } });
      assert.equal(created.statusCode, 201, created.body);
      const service = created.json<Service & { credential: string }>();
      assert.match(service.credential, new RegExp(`^bwsv_${service.id}[A-Za-z0-9_-]{43}$`));
      assert.deepEqual({ ...service, id: '', credential: '', createdAt: '' }, { id: '', name, publicKey: raw.toString('base64url'), status: 'active', createdAt: '', retiredAt: null, credential: '' });
      // Read back: never the credential.
      const shown = await test.call({ method: 'GET', url: `/v1/services/${service.id}`, token: test.operatorToken });
      assert.equal(shown.statusCode, 200);
      assert.deepEqual(shown.json(), { id: service.id, name, publicKey: service.publicKey, status: 'active', createdAt: service.createdAt, retiredAt: null });
      const listed = await test.call({ method: 'GET', url: '/v1/services?limit=200', token: test.operatorToken });
      assert.ok(listed.json<{ items: Service[] }>().items.some((item) => item.id === service.id));
      assert.ok(!listed.body.includes(service.credential.slice(17)) && !shown.body.includes(service.credential.slice(17)));
      const audited = await test.storage.asOwner("SELECT actor_kind, detail FROM platform_audit_events WHERE action = 'service.register' AND target_id = $1", [service.id]);
      assert.deepEqual(audited, [{ actor_kind: 'operator', detail: { name } }]);
      // The tenant's own credentials reach no service route.
      for (const token of [apiKey, adminToken]) assertProblem(await test.call({ method: 'GET', url: `/v1/services/${service.id}`, token }), 403, 'forbidden');
    });

    it('refuses keys that are not X25519 public keys, and a name or key an active service has; nothing is stored', async () => {
      const existing = await register();
      const before = await rows();
      const x25519 = generateKeyPairSync('x25519');
      const badKeys = [
        generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        x25519.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        Buffer.alloc(32).toString('base64url'),
        Buffer.from(`e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800`, 'hex').toString('base64url'),
        randomBytes(31).toString('base64url'),
        randomBytes(33).toString('base64url'),
        `${'A'.repeat(42)}=`,
        'x'.repeat(512),
      ];
      for (const publicKey of badKeys) {
        const problem = assertProblem(await test.call({ method: 'POST', url: '/v1/services', token: test.operatorToken, body: { name: `bad-${newId()}`, publicKey } }), 400, 'validation_failed', secrets);
        assert.deepEqual(problem.errors?.map((error) => error.path), ['/publicKey'], publicKey.slice(0, 40));
      }
      for (const body of [{ name: 'Upper', publicKey: generateServiceKeyPair().publicKey }, { name: `ok-${newId()}` }, { name: `ok-${newId()}`, publicKey: generateServiceKeyPair().publicKey, extra: 1 }]) {
        assertProblem(await test.call({ method: 'POST', url: '/v1/services', token: test.operatorToken, body }), 400, 'validation_failed', secrets);
      }
      assertProblem(await test.call({ method: 'POST', url: '/v1/services', token: test.operatorToken, body: { name: existing.name, publicKey: generateServiceKeyPair().publicKey } }), 409, 'conflict');
      assertProblem(await test.call({ method: 'POST', url: '/v1/services', token: test.operatorToken, body: { name: `other-${newId()}`, publicKey: existing.publicKey } }), 409, 'conflict');
      assert.deepEqual(await rows(), before);
      // Once retired, its name can be registered again (a new key after the old one was lost).
      assert.equal((await test.call({ method: 'DELETE', url: `/v1/services/${existing.id}`, token: test.operatorToken })).statusCode, 200);
      const again = await register(existing.name);
      assert.notEqual(again.id, existing.id);
    });

    it('a tenant writes a secret: version 1 then rotation, metadata only, readers named per version', async () => {
      const [first, second] = [await register(), await register()];
      const name = `db.password-${newId()}`;
      const value = `hunter2-${newId()}`;
      secrets.push(value);
      const created = await put(name, { value, readers: [first.id] });
      assert.equal(created.statusCode, 201, created.body);
      const v1 = created.json<SecretMetadata>();
      assert.deepEqual({ ...v1, createdAt: '', updatedAt: '', versions: v1.versions.map((entry) => ({ ...entry, createdAt: '' })) }, {
        name,
        currentVersion: 1,
        readers: [first.id],
        createdAt: '',
        updatedAt: '',
        versions: [{ version: 1, createdAt: '', readers: [first.id] }],
      });
      const rotated = await put(name, { value: `${value}-2`, readers: [second.id, first.id] });
      assert.equal(rotated.statusCode, 200, rotated.body);
      const v2 = rotated.json<SecretMetadata>();
      assert.equal(v2.currentVersion, 2);
      assert.deepEqual(v2.readers, [first.id, second.id].sort());
      assert.deepEqual(v2.versions.map((entry) => [entry.version, entry.readers]), [[2, [first.id, second.id].sort()], [1, [first.id]]]);
      assert.equal(v2.createdAt, v1.createdAt);
      for (const response of [created, rotated]) assert.ok(!response.body.includes(value), 'no answer carries the value');

      const got = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/secrets/${name}`, token: adminToken });
      assert.deepEqual(got.json(), v2);
      const listed = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/secrets?limit=200`, token: apiKey });
      assert.deepEqual(
        listed.json<{ items: unknown[] }>().items.find((item) => (item as { name: string }).name === name),
        { name, currentVersion: 2, readers: v2.readers, createdAt: v2.createdAt, updatedAt: v2.updatedAt },
      );
      // The readers open their own versions: the first reads both, the second only the one it was named in.
      assert.equal(await readValue(first, name), `${value}-2`);
      assert.equal(await readValue(first, name, { version: 1 }), value);
      assert.equal(await readValue(second, name), `${value}-2`);
      assertProblem(await read(second, name, second.credential, { query: '?version=1' }), 404, 'not_found');
      const put1 = await events('secret.put');
      assert.deepEqual(
        put1.filter((event) => event['target_id'] === name).map((event) => event['detail']),
        [{ version: 1, readers: [first.id], created: true }, { version: 2, readers: [first.id, second.id].sort(), created: false }],
      );
    });

    it('lists page by name with a cursor', async () => {
      const { tenantId: pagedTenant, apiKey: pagedKey } = await test.tenantWithKey('Paged');
      const reader = await register();
      const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo'];
      for (const name of names) assert.equal((await put(name, { value: name, readers: [reader.id] }, pagedTenant, pagedKey)).statusCode, 201);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await test.call({ method: 'GET', url: `/v1/tenants/${pagedTenant}/secrets?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`, token: pagedKey });
        assert.equal(page.statusCode, 200);
        const body: { items: { name: string }[]; nextCursor: string | null } = page.json();
        seen.push(...body.items.map((item) => item.name));
        cursor = body.nextCursor;
      } while (cursor !== null);
      assert.deepEqual(seen, names);
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${pagedTenant}/secrets?cursor=${Buffer.from('v1:Bad').toString('base64url')}`, token: pagedKey }), 400, 'invalid_cursor');
    });

    it('bad input changes nothing: unknown or retired readers, oversized values, names with bad characters, malformed bodies', async () => {
      const reader = await register();
      const retired = await register();
      assert.equal((await test.call({ method: 'DELETE', url: `/v1/services/${retired.id}`, token: test.operatorToken })).statusCode, 200);
      const name = `bad-input-${newId()}`;
      assert.equal((await put(name, { value: 'kept', readers: [reader.id] })).statusCode, 201);
      const before = await rows();
      const unknownReader = assertProblem(await put(name, { value: 'v', readers: [reader.id, newId()] }), 400, 'validation_failed', secrets);
      assert.deepEqual(unknownReader.errors, [{ in: 'body', path: '/readers/1', message: 'must be a registered, active service' }]);
      const retiredReader = assertProblem(await put(name, { value: 'v', readers: [retired.id] }), 400, 'validation_failed', secrets);
      assert.deepEqual(retiredReader.errors, [{ in: 'body', path: '/readers/0', message: 'must be a registered, active service' }]);
      // 64 KiB is counted in bytes: 30,000 three-byte characters are over it though under the character bound.
      const tooBig = assertProblem(await put(name, { value: '€'.repeat(30_000), readers: [reader.id] }), 400, 'validation_failed', secrets);
      assert.equal(tooBig.errors?.[0]?.path, '/value');
      const bodies: unknown[] = [
        { value: 'x'.repeat(64 * 1024 + 1), readers: [reader.id] },
        { value: '', readers: [reader.id] },
        { value: 'v', readers: [] },
        { value: 'v', readers: [reader.id, reader.id] },
        { value: 'v', readers: Array.from({ length: 21 }, () => newId()) },
        { value: 'v', readers: ['not-an-id'] },
        { value: 'v' },
        { readers: [reader.id] },
        { value: 7, readers: [reader.id] },
        { value: 'v', readers: [reader.id], extra: true },
      ];
      for (const body of bodies) assertProblem(await put(name, body), 400, 'validation_failed', secrets);
      for (const badName of ['Upper', '-dash-first', '9digit-first', 'a'.repeat(64), 'sp%20ace', 'semi%3Bcolon', '%C3%A9t%C3%A9', 'a%2Fb']) {
        const response = await put(badName, { value: 'v', readers: [reader.id] });
        assert.ok([400, 404].includes(response.statusCode), `${badName}: ${response.statusCode}`);
        assert.match(response.headers['content-type'] ?? '', /problem\+json/);
      }
      assert.deepEqual(await rows(), before);
      assert.equal(await readValue(reader, name), 'kept');
    });

    it('a tenant keeps at most 1000 secrets; rotating one of them still works', async () => {
      const full = await test.tenantWithKey('Full');
      const reader = await register();
      await test.storage.asOwner("INSERT INTO secrets (tenant_id, name, current_version, created_at, updated_at) SELECT $1, 'filler-' || n, 1, now(), now() FROM generate_series(1, 1000) AS n", [full.tenantId]);
      assertProblem(await put('one-too-many', { value: 'v', readers: [reader.id] }, full.tenantId, full.apiKey), 409, 'conflict');
      const rotated = await put('filler-7', { value: 'v', readers: [reader.id] }, full.tenantId, full.apiKey);
      assert.equal(rotated.statusCode, 200, rotated.body);
      assert.equal(rotated.json<SecretMetadata>().currentVersion, 2);
    });

    it('only the named service opens its copy: another service, another credential or another path learns nothing', async () => {
      const [reader, other] = [await register(), await register()];
      const name = `aws-credentials-${newId()}`;
      const value = `AKIA${randomBytes(12).toString('hex')}`;
      secrets.push(value);
      assert.equal((await put(name, { value, readers: [reader.id] })).statusCode, 201);
      const response = await read(reader, name, reader.credential);
      assert.equal(response.statusCode, 200, response.body);
      const sealed = response.json<SealedSecret>();
      assert.deepEqual(
        { ...sealed, enc: '', ciphertext: '', createdAt: '' },
        { format: 'bulwark.sealed-secret.v1', tenantId, name, version: 1, serviceId: reader.id, algorithm: { mode: 'base', kemId: 32, kdfId: 1, aeadId: 2 }, enc: '', ciphertext: '', createdAt: '' },
      );
      assert.ok(!response.body.includes(value));
      assert.equal(await openSealedSecret(sealed, reader.privateKeyPem, { tenantId, name, serviceId: reader.id }), value);
      // Another service's private key does not open it, whatever it claims to be.
      await assert.rejects(openSealedSecret(sealed, other.privateKeyPem, { tenantId, name, serviceId: reader.id }), (error: unknown) => error instanceof SealedSecretError && error.code === 'open_failed');
      await assert.rejects(openSealedSecret({ ...sealed, serviceId: other.id }, other.privateKeyPem, { tenantId, name, serviceId: other.id }), SealedSecretError);

      // The other service: its own path answers 404 (no copy), the reader's path too, exactly as for a secret that does not exist.
      const noCopy = assertProblem(await read(other, name, other.credential), 404, 'not_found', secrets);
      const notItsPath = assertProblem(await read(reader, name, other.credential), 404, 'not_found', secrets);
      const nothing = assertProblem(await read(other, `missing-${newId()}`, other.credential), 404, 'not_found', secrets);
      assert.deepEqual([noCopy.detail, notItsPath.detail], [nothing.detail, nothing.detail]);
      assertProblem(await read(reader, name, reader.credential, { tenant: newId() }), 404, 'not_found', secrets);
      assertProblem(await read(reader, name, reader.credential, { query: '?version=2' }), 404, 'not_found', secrets);
      // Credentials of any other kind are not a service's: the tenant admin, its API key, the operator.
      const unauthenticated = assertProblem(await read(reader, name, undefined), 401, 'unauthenticated', secrets);
      assert.ok(unauthenticated.detail.length > 0);
      for (const token of [adminToken, apiKey, test.operatorToken, 'garbage', `bwsv_${reader.id}${'A'.repeat(43)}`, `${reader.credential}x`]) {
        const refused = await read(reader, name, token);
        assertProblem(refused, 401, 'invalid_credentials', secrets);
        assert.equal(refused.headers['www-authenticate'], 'Bearer error="invalid_token"');
      }
      const basic = await test.call({ method: 'GET', url: `/v1/services/${reader.id}/secrets/${tenantId}/${name}`, headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } });
      assertProblem(basic, 401, 'invalid_credentials', secrets);
    });

    it('reads are audited in the tenant’s trail, actor the service; a refused read by a service too', async () => {
      const [reader, other] = [await register(), await register()];
      const name = `audited-${newId()}`;
      assert.equal((await put(name, { value: 'audited value', readers: [reader.id] })).statusCode, 201);
      await readValue(reader, name);
      assertProblem(await read(other, name, other.credential), 404, 'not_found');
      const reads = (await events('secret.read')).filter((event) => event['target_id'] === name);
      assert.deepEqual(reads, [
        { actor_kind: 'service', actor_id: reader.id, target_id: name, outcome: 'success', detail: { version: 1 } },
        { actor_kind: 'service', actor_id: other.id, target_id: name, outcome: 'failure', detail: { version: null, reason: 'no_copy' } },
      ]);
      // The tenant sees them through its audit API.
      const trail = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit?action=secret.read&limit=200`, token: apiKey });
      assert.equal(trail.statusCode, 200, trail.body);
      assert.ok(trail.json<{ items: { actor: { kind: string; id: string } }[] }>().items.some((event) => event.actor.kind === 'service' && event.actor.id === reader.id));
    });

    it('a suspended tenant answers its readers 403 and everyone else 404; a retired service reads nothing', async () => {
      const suspended = await test.tenantWithKey('Suspended secrets');
      const [reader, other] = [await register(), await register()];
      const name = `suspended-${newId()}`;
      assert.equal((await put(name, { value: 'v', readers: [reader.id] }, suspended.tenantId, suspended.apiKey)).statusCode, 201);
      assert.equal((await test.call({ method: 'PATCH', url: `/v1/tenants/${suspended.tenantId}`, token: test.operatorToken, body: { status: 'suspended' } })).statusCode, 200);
      assertProblem(await read(reader, name, reader.credential, { tenant: suspended.tenantId }), 403, 'tenant_suspended');
      assertProblem(await read(other, name, other.credential, { tenant: suspended.tenantId }), 404, 'not_found');
      assert.equal((await test.call({ method: 'PATCH', url: `/v1/tenants/${suspended.tenantId}`, token: test.operatorToken, body: { status: 'active' } })).statusCode, 200);
      assert.equal(await readValue(reader, name, { tenant: suspended.tenantId }), 'v');

      const retired = await test.call({ method: 'DELETE', url: `/v1/services/${reader.id}`, token: test.operatorToken });
      assert.equal(retired.statusCode, 200);
      assert.equal(retired.json<Service>().status, 'retired');
      assertProblem(await read(reader, name, reader.credential, { tenant: suspended.tenantId }), 401, 'invalid_credentials');
      assertProblem(await test.call({ method: 'DELETE', url: `/v1/services/${reader.id}`, token: test.operatorToken }), 404, 'not_found');
      const audited = await test.storage.asOwner("SELECT count(*)::int AS n FROM platform_audit_events WHERE action = 'service.retire' AND target_id = $1", [reader.id]);
      assert.deepEqual(audited, [{ n: 1 }]);
    });

    it('keeps the newest versions only, gives concurrent writes distinct versions, and deletes every version', async () => {
      const reader = await register();
      const name = `rotating-${newId()}`;
      for (let version = 1; version <= keptVersions + 2; version += 1) assert.equal((await put(name, { value: `value ${version}`, readers: [reader.id] })).statusCode, version === 1 ? 201 : 200);
      const metadata = (await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/secrets/${name}`, token: apiKey })).json<SecretMetadata>();
      assert.deepEqual(metadata.versions.map((entry) => entry.version), Array.from({ length: keptVersions }, (_, index) => keptVersions + 2 - index));
      assertProblem(await read(reader, name, reader.credential, { query: '?version=2' }), 404, 'not_found');
      assert.equal(await readValue(reader, name, { version: 3 }), 'value 3');

      const racing = await Promise.all([put(name, { value: 'a', readers: [reader.id] }), put(name, { value: 'b', readers: [reader.id] })]);
      assert.deepEqual(racing.map((response) => response.json<SecretMetadata>().currentVersion).sort(), [keptVersions + 3, keptVersions + 4]);

      const deleted = await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantId}/secrets/${name}`, token: apiKey });
      assert.equal(deleted.statusCode, 204);
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/secrets/${name}`, token: apiKey }), 404, 'not_found');
      assertProblem(await read(reader, name, reader.credential), 404, 'not_found');
      assertProblem(await read(reader, name, reader.credential, { query: '?version=3' }), 404, 'not_found');
      assertProblem(await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantId}/secrets/${name}`, token: apiKey }), 404, 'not_found');
      const left = await test.storage.asOwner('SELECT (SELECT count(*) FROM secret_versions WHERE tenant_id = $1 AND name = $2)::int + (SELECT count(*) FROM secret_copies WHERE tenant_id = $1 AND name = $2)::int AS n', [tenantId, name]);
      assert.deepEqual(left, [{ n: 0 }]);
      assert.deepEqual((await events('secret.delete')).filter((event) => event['target_id'] === name).map((event) => event['detail']), [{ currentVersion: keptVersions + 4 }]);
      // A new secret of the same name starts again at version 1.
      assert.equal((await put(name, { value: 'fresh', readers: [reader.id] })).statusCode, 201);
    });

    it('a copy moved in the database (another name, version or tenant) fails its tenant-key check: 500, never the copy', async () => {
      const reader = await register();
      const other = await test.tenantWithKey('Other secrets');
      const [source, target] = [`source-${newId()}`, `target-${newId()}`];
      assert.equal((await put(source, { value: 'source value', readers: [reader.id] })).statusCode, 201);
      assert.equal((await put(target, { value: 'target value', readers: [reader.id] })).statusCode, 201);
      assert.equal((await put(target, { value: 'target value', readers: [reader.id] }, other.tenantId, other.apiKey)).statusCode, 201);
      // What an attacker with the database could do: put the source's copy in the target's row.
      const move = (toTenant: string) =>
        test.storage.asOwner(
          `UPDATE secret_copies SET sealed = (SELECT sealed FROM secret_copies WHERE tenant_id = $1 AND name = $2), key_version = (SELECT key_version FROM secret_copies WHERE tenant_id = $1 AND name = $2)
            WHERE tenant_id = $3 AND name = $4`,
          [tenantId, source, toTenant, target],
        );
      await move(tenantId);
      assertProblem(await read(reader, target, reader.credential), 500, 'data_integrity_failed', secrets);
      await move(other.tenantId);
      assertProblem(await read(reader, target, reader.credential, { tenant: other.tenantId }), 500, 'data_integrity_failed', secrets);
      assert.equal(await readValue(reader, source), 'source value');
      // The tampered rows would fail re-encryption (as they should): they go.
      for (const [tenant, key] of [[tenantId, apiKey], [other.tenantId, other.apiKey]] as const) {
        assert.equal((await test.call({ method: 'DELETE', url: `/v1/tenants/${tenant}/secrets/${target}`, token: key })).statusCode, 204);
      }
    });

    it('key rotation and re-encryption move the tenant-key layer; the copies still open', async () => {
      const reader = await register();
      const name = `rotated-key-${newId()}`;
      assert.equal((await put(name, { value: 'survives rotation', readers: [reader.id] })).statusCode, 201);
      const keyVersions = async () => (await test.storage.asOwner('SELECT DISTINCT key_version FROM secret_copies WHERE tenant_id = $1 ORDER BY 1', [tenantId])).map((row) => row['key_version']);
      assert.deepEqual(await keyVersions(), [1]);
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/rotate`, token: apiKey })).statusCode, 200);
      const reencrypted = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/keys/reencrypt`, token: apiKey });
      assert.ok([200, 202].includes(reencrypted.statusCode), reencrypted.body);
      for (let attempt = 0; attempt < 50 && (await keyVersions()).includes(1); attempt += 1) await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(await keyVersions(), [2]);
      assert.equal(await readValue(reader, name), 'survives rotation');
    });

    // Last: on PGlite the marker search closes the database.
    it('the stored data holds no plaintext of a secret (database files and dump searched)', async () => {
      const reader = await register();
      const marker = `plaintext-marker-${randomBytes(8).toString('hex')}`;
      const control = `control-${randomBytes(8).toString('hex')}`;
      assert.equal((await put(control, { value: marker, readers: [reader.id] })).statusCode, 201);
      assert.equal((await put(control, { value: `${marker} rotated`, readers: [reader.id] })).statusCode, 200);
      assert.equal(await readValue(reader, control), `${marker} rotated`);
      const [controlFound, markerFound] = await storedDataContains(test.storage, pgliteDir, [control, marker]);
      assert.ok(controlFound, 'the search finds the secret name, stored in clear');
      assert.ok(!markerFound, 'no value is stored in clear');
    });
  });
}
