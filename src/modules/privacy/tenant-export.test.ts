import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { newId } from '../../platform/ids.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';

for (const engine of engines) {
  describe(`tenant export (${engine})`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let tenant: { tenantId: string; apiKey: string };
    let other: { tenantId: string; apiKey: string };
    const marker = `export-marker-${newId()}`;
    const otherMarker = `other-marker-${newId()}`;

    before(async () => {
      test = await createTestApp(engine);
      tenant = await test.tenantWithKey('Exported');
      other = await test.tenantWithKey('Other');
      for (const [{ tenantId, apiKey }, mark] of [[tenant, marker], [other, otherMarker]] as const) {
        for (const collection of ['notes', 'tasks']) {
          const put = await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/collections/${collection}/records/${newId()}`, token: apiKey, body: { data: { text: `${mark} ${collection}` } } });
          assert.equal(put.statusCode, 201, put.body);
        }
        const user = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/users`, token: apiKey, body: { email: `${mark}@example.org`, firstName: 'Ada' } });
        assert.equal(user.statusCode, 201, user.body);
      }
      const role = await test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/roles`, token: tenant.apiKey, body: { name: 'exporter', description: `${marker} role`, permissions: ['records:read'] } });
      assert.equal(role.statusCode, 201, role.body);
    });

    after(async () => {
      await test.close();
    });

    it('streams every user, role, record (decrypted) and audit event of the tenant, and only of it; audited', async () => {
      const response = await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/export`, token: tenant.apiKey });
      assert.equal(response.statusCode, 200, response.body);
      assert.match(String(response.headers['content-type']), /^application\/x-ndjson/);
      assert.match(String(response.headers['content-disposition']), new RegExp(`tenant-${tenant.tenantId}\\.ndjson`));
      const lines = response.body.trim().split('\n').map((line) => JSON.parse(line) as { type: string } & Record<string, unknown>);
      const [header] = lines;
      assert.equal(header?.type, 'header');
      assert.equal(header['tenantId'], tenant.tenantId);
      const of = (type: string) => lines.filter((line) => line.type === type);
      assert.ok(of('user').some((user) => user['email'] === `${marker}@example.org` && Array.isArray(user['roles'])));
      assert.ok(of('role').some((role) => role['name'] === 'exporter' && role['description'] === `${marker} role`));
      assert.deepEqual(of('record').map((record) => (record['data'] as { text: string }).text).sort(), [`${marker} notes`, `${marker} tasks`]);
      assert.ok(of('audit-event').some((event) => event['action'] === 'record.create'));
      assert.ok(of('audit-event').some((event) => event['action'] === 'tenant.export'), 'the export itself is in the trail');
      assert.ok(!response.body.includes(otherMarker) && !response.body.includes(other.tenantId), 'nothing of the other tenant');
    });

    it("another tenant's key gets 404, a key without data:export 403; neither is exported", async () => {
      const foreign = await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/export`, token: other.apiKey });
      assert.equal(foreign.statusCode, 404);
      assert.ok(!foreign.body.includes(marker));
      const limited = await test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/api-keys`, token: tenant.apiKey, body: { name: 'reader', scopes: ['records:read'] } });
      const refused = await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/export`, token: limited.json<{ key: string }>().key });
      assert.equal(refused.statusCode, 403);
      assert.equal(refused.json<{ code: string }>().code, 'forbidden');
      assert.equal((await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/export?format=zip`, token: tenant.apiKey })).statusCode, 400);
    });
  });
}
