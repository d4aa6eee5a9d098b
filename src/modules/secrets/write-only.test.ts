import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { openSealedSecret } from '../../sdk/secrets.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { RouteFixture, type SuiteTenant, type Targets } from '../../testing/route-samples.ts';

/**
 * DESIGN.md invariant 7 from the outside: once written, a secret's value comes back through no route of the
 * OpenAPI document, whatever credential asks (the tenant admin, its API key, the operator, the reading service).
 */
for (const engine of engines) {
  describe(`write-only secrets: no route answers a value [${engine}]`, { skip: engineSkip(engine) }, () => {
    let fixture: RouteFixture;
    let tenant: SuiteTenant;
    let values: Targets;
    const marker = `write-only-marker-${randomBytes(8).toString('hex')}`;
    const name = `marker-${randomBytes(4).toString('hex')}`;
    /** The value as it could leak: in clear, or encoded. */
    const encodings = [marker, Buffer.from(marker).toString('base64'), Buffer.from(marker).toString('base64url'), Buffer.from(marker).toString('hex')];

    before(async () => {
      fixture = await RouteFixture.start(engine);
      tenant = await fixture.tenant('Write-only');
      values = { ...(await fixture.targets(tenant)), secretName: name };
      const written = await fixture.test.call({
        method: 'PUT',
        url: `/v1/tenants/${tenant.tenantId}/secrets/${name}`,
        token: tenant.adminToken,
        body: { value: marker, readers: [values['serviceId']] },
      });
      assert.equal(written.statusCode, 201, written.body);
    });
    after(() => fixture.close());

    it('the value is there: its reader fetches its sealed copy and opens it (control)', async () => {
      const response = await fixture.test.call({ method: 'GET', url: `/v1/services/${values['serviceId'] ?? ''}/secrets/${tenant.tenantId}/${name}`, token: values['serviceCredential'] });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(await openSealedSecret(response.json(), values['servicePrivateKey'] ?? '', { tenantId: tenant.tenantId, name, serviceId: values['serviceId'] ?? '' }), marker);
    });

    it('every route, called by the tenant admin, its API key, the operator and the service, never answers it', async () => {
      const callers = [tenant.adminToken, tenant.apiKey, fixture.test.operatorToken, values['serviceCredential']];
      // Reads first, while the secret and its targets exist; then the routes that change or delete them.
      const operations = [...fixture.operations].sort((a, b) => Number(a.method !== 'GET') - Number(b.method !== 'GET'));
      const answered = new Set<string>();
      for (const operation of operations) {
        for (const token of callers) {
          const response = await fixture.send(operation, values, token);
          if (response.statusCode < 300) answered.add(operation.key);
          const headers = JSON.stringify(response.headers);
          for (const encoded of encodings) {
            assert.ok(!response.body.includes(encoded) && !headers.includes(encoded), `${operation.key}: the value appears in the answer`);
          }
        }
      }
      // The walk reached the routes that could have told: the metadata, the list, the audit export, the sealed copy.
      for (const key of [
        'GET /v1/tenants/{tenantId}/secrets/{secretName}',
        'GET /v1/tenants/{tenantId}/secrets',
        'GET /v1/tenants/{tenantId}/audit/export',
        'GET /v1/services/{serviceId}/secrets/{tenantId}/{secretName}',
      ]) {
        assert.ok(answered.has(key), `${key} answered`);
      }
      assert.ok(answered.size > fixture.operations.length / 2, `${answered.size} of ${fixture.operations.length} routes answered`);
    });
  });
}
