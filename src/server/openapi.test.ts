import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../testing/app.ts';

interface Operation {
  summary?: string;
  tags?: string[];
  security?: unknown[];
  responses?: Record<string, { content?: Record<string, unknown> }>;
}

describe('OpenAPI document', () => {
  let test: TestApp;
  let document: { openapi: string; paths: Record<string, Record<string, Operation>> };

  before(async () => {
    test = await createTestApp('pglite');
    const response = await test.call({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    document = response.json();
  });
  after(() => test.close());

  const operations = () =>
    Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ path, method, operation })));

  it('is OpenAPI 3.1 and lists the foundation routes', () => {
    assert.equal(document.openapi, '3.1.0');
    for (const path of ['/healthz', '/readyz', '/v1/tenants', '/v1/tenants/{tenantId}', '/v1/tenants/{tenantId}/collections/{collection}/records/{recordId}']) {
      assert.ok(document.paths[path], path);
    }
  });

  it('describes every operation: summary, tag, success response, problem response', () => {
    for (const { path, method, operation } of operations()) {
      const where = `${method.toUpperCase()} ${path}`;
      assert.ok(operation.summary, `${where} has a summary`);
      assert.ok(operation.tags?.length, `${where} has a tag`);
      const statuses = Object.keys(operation.responses ?? {});
      // A redirect is the success of a browser hop (the SSO start).
      assert.ok(statuses.some((status) => status.startsWith('2') || status === '302'), `${where} documents its success response`);
      assert.ok(operation.responses?.['default']?.content?.['application/problem+json'], `${where} documents problem+json errors`);
    }
  });

  it('marks every operation except health, setup, login, the JWKS, the checkpoint key and the TLS CA as requiring a bearer credential', () => {
    const publicOperations = [
      'GET /healthz',
      'GET /readyz',
      'GET /.well-known/jwks.json',
      'POST /v1/setup',
      'POST /v1/auth/login',
      'POST /v1/auth/refresh',
      'POST /v1/auth/logout',
      'POST /v1/auth/password',
      'POST /v1/auth/operator/login',
      'POST /v1/auth/operator/password',
      'GET /v1/audit/checkpoint-key',
      // The TLS CA's certificate: public, for clients to trust.
      'GET /v1/tls/ca.pem',
      // The second step of a login: the challenge token is the credential.
      'POST /v1/auth/mfa',
      'POST /v1/auth/mfa/totp',
      'POST /v1/auth/mfa/webauthn/options',
      // SSO: the identity provider's answer (or the directory's bind) is the credential.
      'POST /v1/auth/discover',
      'POST /v1/auth/ldap',
      'GET /v1/sso/{tenantId}/{connectionId}/start',
      'GET /v1/sso/{tenantId}/{connectionId}/callback',
      'POST /v1/sso/{tenantId}/{connectionId}/acs',
      'GET /v1/sso/{tenantId}/{connectionId}/metadata',
      // A service's sealed copy: the route checks the service's own credential itself.
      'GET /v1/services/{serviceId}/secrets/{tenantId}/{secretName}',
      // Agents: the pairing code is the credential of the pairing; the agent token or certificate, checked by the route, of the gateway and the renewal.
      'POST /v1/agents/pair',
      'POST /v1/agents/{agentId}/messages',
      'POST /v1/agents/{agentId}/certificate',
    ];
    for (const { path, method, operation } of operations()) {
      const isPublic = publicOperations.includes(`${method.toUpperCase()} ${path}`);
      assert.equal(operation.security !== undefined, !isPublic, `${method.toUpperCase()} ${path}`);
    }
  });

  it('serves a browsable /docs page without credentials', async () => {
    const page = await test.call({ method: 'GET', url: '/docs/' });
    assert.equal(page.statusCode, 200);
    assert.match(page.headers['content-type'] ?? '', /text\/html/);
  });
});
