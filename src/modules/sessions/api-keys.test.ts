import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { newId } from '../../platform/ids.ts';
import { allTenantPermissions } from '../access/permissions.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertNoLeak, assertProblem } from '../../testing/security-suite.ts';

interface KeyBody {
  id: string;
  name: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  scopes: string[];
  lastUsedAt: string | null;
  key?: string;
}

const hour = 3_600_000;

for (const engine of engines) {
  describe(`API keys and operator token [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let now = new Date('2030-01-01T00:00:00.000Z');
    const clock = { now: () => new Date(now.getTime()) };
    let tenantA: { tenantId: string; apiKey: string; apiKeyId: string };
    let tenantB: { tenantId: string; apiKey: string; apiKeyId: string };

    const keysUrl = (tenantId: string) => `/v1/tenants/${tenantId}/api-keys`;
    const recordsUrl = (tenantId: string) => `/v1/tenants/${tenantId}/collections/c/records`;
    const keyOf = (tenantId: string) => (tenantId === tenantA.tenantId ? tenantA.apiKey : tenantB.apiKey);
    const createKey = async (tenantId: string, body: unknown, token = keyOf(tenantId)) => {
      const response = await test.call({ method: 'POST', url: keysUrl(tenantId), token, body });
      assert.equal(response.statusCode, 201, response.body);
      return response.json<Required<KeyBody>>();
    };
    const canRead = async (tenantId: string, token: string) => (await test.call({ method: 'GET', url: recordsUrl(tenantId), token })).statusCode;
    const listKeys = async (tenantId: string) => {
      const response = await test.call({ method: 'GET', url: `${keysUrl(tenantId)}?limit=200`, token: keyOf(tenantId) });
      assert.equal(response.statusCode, 200);
      return response;
    };

    before(async () => {
      test = await createTestApp(engine, { clock });
      tenantA = await test.tenantWithKey('Keys A');
      tenantB = await test.tenantWithKey('Keys B');
    });
    after(() => test.close());

    it('shows the key once; listings never carry key material or its hash', async () => {
      const created = await createKey(tenantA.tenantId, { name: 'ci' });
      assert.match(created.key, new RegExp(`^bwk_${tenantA.tenantId}${created.id}[A-Za-z0-9_-]{43}$`));
      const scopes = [...allTenantPermissions].sort();
      assert.deepEqual({ ...created, id: '', key: '' }, { id: '', name: 'ci', scopes, createdAt: now.toISOString(), expiresAt: null, revokedAt: null, lastUsedAt: null, key: '' });

      const response = await listKeys(tenantA.tenantId);
      const { items, nextCursor } = response.json<{ items: KeyBody[]; nextCursor: string | null }>();
      assert.equal(nextCursor, null);
      assert.deepEqual(items.find((item) => item.id === created.id), { id: created.id, name: 'ci', scopes, createdAt: now.toISOString(), expiresAt: null, revokedAt: null, lastUsedAt: null });
      for (const item of items) assert.deepEqual(Object.keys(item).sort(), ['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'revokedAt', 'scopes']);
      const secret = created.key.slice(-43);
      assertNoLeak(response.body, [created.key, secret, tenantA.apiKey, tenantA.apiKey.slice(-43)]);
      // No member named like key material (scope names such as secrets:read are values, not members).
      assert.doesNotMatch(response.body, /"[^"]*(hash|secret)[^"]*":/i);
    });

    it('a key authenticates its own tenant, and may manage that tenant’s keys', async () => {
      assert.equal(await canRead(tenantA.tenantId, tenantA.apiKey), 200);
      const own = await createKey(tenantA.tenantId, { name: 'made by a key' }, tenantA.apiKey);
      assert.equal(await canRead(tenantA.tenantId, own.key), 200);
      assertProblem(await test.call({ method: 'GET', url: recordsUrl(tenantB.tenantId), token: own.key }), 404, 'not_found');
      assertProblem(await test.call({ method: 'POST', url: keysUrl(tenantB.tenantId), token: own.key, body: { name: 'x' } }), 404, 'not_found');
      // Case-insensitive scheme (RFC 9110 11.1).
      const lower = await test.call({ method: 'GET', url: recordsUrl(tenantA.tenantId), headers: { authorization: `bearer ${own.key}` } });
      assert.equal(lower.statusCode, 200);
    });

    it('a revoked key is refused at once, even right after a successful (cached) use', async () => {
      const created = await createKey(tenantA.tenantId, { name: 'to revoke' });
      assert.equal(await canRead(tenantA.tenantId, created.key), 200);
      const revoked = await test.call({ method: 'DELETE', url: `${keysUrl(tenantA.tenantId)}/${created.id}`, token: tenantA.apiKey });
      assert.equal(revoked.statusCode, 204);
      assertProblem(await test.call({ method: 'GET', url: recordsUrl(tenantA.tenantId), token: created.key }), 401, 'invalid_credentials');

      const listed = (await listKeys(tenantA.tenantId)).json<{ items: KeyBody[] }>().items.find((item) => item.id === created.id);
      assert.equal(listed?.revokedAt, now.toISOString());
      // Revoking again keeps the first revocation time; an unknown key is 404.
      now = new Date(now.getTime() + 1_000);
      assert.equal((await test.call({ method: 'DELETE', url: `${keysUrl(tenantA.tenantId)}/${created.id}`, token: tenantA.apiKey })).statusCode, 204);
      const again = (await listKeys(tenantA.tenantId)).json<{ items: KeyBody[] }>().items.find((item) => item.id === created.id);
      assert.equal(again?.revokedAt, listed.revokedAt);
      assertProblem(await test.call({ method: 'DELETE', url: `${keysUrl(tenantA.tenantId)}/${newId()}`, token: tenantA.apiKey }), 404, 'not_found');
      // A key may revoke itself; its next request is refused.
      const self = await createKey(tenantA.tenantId, { name: 'self' });
      assert.equal((await test.call({ method: 'DELETE', url: `${keysUrl(tenantA.tenantId)}/${self.id}`, token: self.key })).statusCode, 204);
      assertProblem(await test.call({ method: 'GET', url: recordsUrl(tenantA.tenantId), token: self.key }), 401, 'invalid_credentials');
      // Other keys of the tenant are untouched.
      assert.equal(await canRead(tenantA.tenantId, tenantA.apiKey), 200);
    });

    it('an expired key is refused; an expiry in the past is 400', async () => {
      const expiresAt = new Date(now.getTime() + hour).toISOString();
      const created = await createKey(tenantA.tenantId, { name: 'short-lived', expiresAt });
      assert.equal(created.expiresAt, expiresAt);
      assert.equal(await canRead(tenantA.tenantId, created.key), 200);

      now = new Date(now.getTime() + hour - 1);
      assert.equal(await canRead(tenantA.tenantId, created.key), 200, 'valid until its expiry');
      now = new Date(now.getTime() + 1);
      assertProblem(await test.call({ method: 'GET', url: recordsUrl(tenantA.tenantId), token: created.key }), 401, 'invalid_credentials');
      now = new Date(now.getTime() + hour);
      assertProblem(await test.call({ method: 'GET', url: recordsUrl(tenantA.tenantId), token: created.key }), 401, 'invalid_credentials');

      const before = (await listKeys(tenantA.tenantId)).json<{ items: KeyBody[] }>().items.length;
      for (const past of [new Date(now.getTime() - 1).toISOString(), now.toISOString(), '2000-01-01T00:00:00Z']) {
        assertProblem(await test.call({ method: 'POST', url: keysUrl(tenantA.tenantId), token: tenantA.apiKey, body: { name: 'late', expiresAt: past } }), 400, 'validation_failed');
      }
      for (const body of [{ name: 'x', expiresAt: 'tomorrow' }, { name: 'x', expiresAt: 1_900_000_000 }, { name: '' }, { name: ' ' }, { name: 'x'.repeat(101) }, { name: 'x', extra: 1 }, {}, { name: 'n\u0000ul' }]) {
        assertProblem(await test.call({ method: 'POST', url: keysUrl(tenantA.tenantId), token: tenantA.apiKey, body }), 400, 'validation_failed');
      }
      assert.equal((await listKeys(tenantA.tenantId)).json<{ items: KeyBody[] }>().items.length, before, 'nothing was created');
    });

    it('a tampered key or one carrying another tenant’s prefix is refused', async () => {
      const key = tenantA.apiKey;
      const secret = key.slice(-43);
      const flip = (text: string, index: number) => `${text.slice(0, index)}${text[index] === 'A' ? 'B' : 'A'}${text.slice(index + 1)}`;
      const forged = [
        flip(key, key.length - 1),
        flip(key, key.length - 43),
        key.slice(0, -1),
        `${key}A`,
        key.toUpperCase(),
        key.replace(/^bwk_/, 'bwx_'),
        // A's key id and secret under B's tenant id, and B's key id with A's secret.
        `bwk_${tenantB.tenantId}${tenantA.apiKeyId}${secret}`,
        `bwk_${tenantB.tenantId}${tenantB.apiKeyId}${secret}`,
        `bwk_${tenantA.tenantId}${tenantB.apiKeyId}${tenantB.apiKey.slice(-43)}`,
        `bwk_${tenantA.tenantId}${newId()}${secret}`,
      ];
      for (const token of forged) {
        for (const tenantId of [tenantA.tenantId, tenantB.tenantId]) {
          assertProblem(await test.call({ method: 'GET', url: recordsUrl(tenantId), token }), 401, 'invalid_credentials', [key, tenantB.apiKey]);
        }
      }
      // The genuine keys still work.
      assert.equal(await canRead(tenantA.tenantId, tenantA.apiKey), 200);
      assert.equal(await canRead(tenantB.tenantId, tenantB.apiKey), 200);
    });

    it('scopes: a key holds only its scopes, never more than its creator; lastUsedAt follows use', async () => {
      const reader = await createKey(tenantA.tenantId, { name: 'reader', scopes: ['records:read'] });
      assert.deepEqual(reader.scopes, ['records:read']);
      assert.equal(await canRead(tenantA.tenantId, reader.key), 200);
      assertProblem(await test.call({ method: 'POST', url: recordsUrl(tenantA.tenantId), token: reader.key, body: { data: {} } }), 403, 'forbidden');
      assertProblem(await test.call({ method: 'GET', url: keysUrl(tenantA.tenantId), token: reader.key }), 403, 'forbidden');

      const delegate = await createKey(tenantA.tenantId, { name: 'delegate', scopes: ['api-keys:write', 'records:read'] });
      const before = (await listKeys(tenantA.tenantId)).json<{ items: KeyBody[] }>().items.length;
      assertProblem(await test.call({ method: 'POST', url: keysUrl(tenantA.tenantId), token: delegate.key, body: { name: 'wider', scopes: ['records:write'] } }), 403, 'forbidden');
      assert.equal((await listKeys(tenantA.tenantId)).json<{ items: KeyBody[] }>().items.length, before, 'nothing was created');
      const inherited = await createKey(tenantA.tenantId, { name: 'inherits' }, delegate.key);
      assert.deepEqual(inherited.scopes, ['api-keys:write', 'records:read']);
      for (const scopes of [['records:everything'], [], ['records:read', 'records:read'], 'records:read']) {
        assertProblem(await test.call({ method: 'POST', url: keysUrl(tenantA.tenantId), token: tenantA.apiKey, body: { name: 'bad', scopes } }), 400, 'validation_failed');
      }

      const lastUsed = async (id: string) => (await listKeys(tenantA.tenantId)).json<{ items: KeyBody[] }>().items.find((item) => item.id === id)?.lastUsedAt;
      assert.equal(await lastUsed(inherited.id), null);
      assert.equal(await canRead(tenantA.tenantId, inherited.key), 200);
      // Recorded off the request path: poll briefly.
      const deadline = Date.now() + 2000;
      while ((await lastUsed(inherited.id)) === null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(await lastUsed(inherited.id), now.toISOString());
    });

    it('the operator token reaches operator routes but no tenant data without a grant; a wrong operator token is 401 invalid_credentials', async () => {
      // The tests above moved the clock by hours: the login's access token has expired by now.
      const token = await test.relogOperator();
      assert.equal((await test.call({ method: 'GET', url: '/v1/tenants', token })).statusCode, 200);
      assertProblem(await test.call({ method: 'GET', url: recordsUrl(tenantA.tenantId), token }), 403, 'support_grant_required');
      assertProblem(await test.call({ method: 'GET', url: recordsUrl(tenantB.tenantId), token }), 403, 'support_grant_required');
      for (const wrong of [`${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`, token.slice(0, -1), `${token}x`, token.toUpperCase(), 'bws_', `bws_${'A'.repeat(43)}`, `bwk_${token.slice(4)}`]) {
        for (const url of ['/v1/tenants', recordsUrl(tenantA.tenantId)]) {
          assertProblem(await test.call({ method: 'GET', url, token: wrong }), 401, 'invalid_credentials', [token]);
        }
      }
    });
  });
}
