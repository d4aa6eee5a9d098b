import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../../../testing/app.ts';
import { engineSkip, engines } from '../../../testing/engines.ts';
import { assertProblem } from '../../../testing/security-suite.ts';

const ldap = (name: string, extra: Record<string, unknown> = {}) => ({
  protocol: 'ldap',
  name,
  config: { url: 'ldaps://ldap.example.test', security: 'ldaps', userBaseDn: 'ou=people,dc=example,dc=test' },
  ...extra,
});

/**
 * Administering connections: a connection logs people in, so who may set one up is bounded by what they
 * could give by hand; and a tenant that requires SSO keeps an enabled connection.
 */
for (const engine of engines) {
  describe(`SSO connection administration [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let tenantId: string;
    let admin: string;
    let ssoOnly: string;

    const as = (token: string, method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, body?: unknown) =>
      test.call({ method, url: `/v1/tenants/${tenantId}${path}`, token, ...(body === undefined ? {} : { body }) });
    const count = async () => (await as(admin, 'GET', '/sso-connections')).json<{ items: unknown[] }>().items.length;

    before(async () => {
      test = await createTestApp(engine);
      ({ tenantId, apiKey: admin } = await test.tenantWithKey('Connections'));
      const key = await as(admin, 'POST', '/api-keys', { name: 'sso only', scopes: ['sso:read', 'sso:write', 'policies:read', 'policies:write'] });
      assert.equal(key.statusCode, 201, key.body);
      ssoOnly = key.json<{ key: string }>().key;
    });
    after(() => test.close());

    it('group mappings may give only roles whose every permission the caller holds; unknown roles are refused', async () => {
      const before = await count();
      assertProblem(await as(ssoOnly, 'POST', '/sso-connections', ldap('Escalation', { roleMappings: [{ group: 'g', role: 'tenant-admin' }] })), 403, 'forbidden');
      assertProblem(await as(ssoOnly, 'POST', '/sso-connections', ldap('Escalation', { roleMappings: [{ group: 'g', role: 'member' }] })), 403, 'forbidden');
      assertProblem(await as(admin, 'POST', '/sso-connections', ldap('Typo', { roleMappings: [{ group: 'g', role: 'no-such-role' }] })), 400, 'validation_failed');
      assert.equal(await count(), before, 'nothing created');
      // Without mappings the same caller may create one; and may not add a mapping to it later either.
      const plain = await as(ssoOnly, 'POST', '/sso-connections', ldap('Plain'));
      assert.equal(plain.statusCode, 201, plain.body);
      const id = plain.json<{ id: string }>().id;
      assertProblem(await as(ssoOnly, 'PATCH', `/sso-connections/${id}`, { protocol: 'ldap', roleMappings: [{ group: 'g', role: 'viewer' }] }), 403, 'forbidden');
      const mapped = await as(admin, 'PATCH', `/sso-connections/${id}`, { protocol: 'ldap', roleMappings: [{ group: 'g', role: 'viewer' }] });
      assert.equal(mapped.statusCode, 200, mapped.body);
      assert.deepEqual(mapped.json<{ roleMappings: unknown }>().roleMappings, [{ group: 'g', role: 'viewer' }]);
    });

    it('linking by e-mail reaches every account, administrators included: it needs every tenant permission', async () => {
      assertProblem(await as(ssoOnly, 'POST', '/sso-connections', ldap('Linker', { linkByEmail: true })), 403, 'forbidden');
      const created = await as(admin, 'POST', '/sso-connections', ldap('Linker', { linkByEmail: true }));
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      assertProblem(await as(ssoOnly, 'PATCH', `/sso-connections/${id}`, { protocol: 'ldap', linkByEmail: true }), 403, 'forbidden');
      // Turning it off is always allowed.
      assert.equal((await as(ssoOnly, 'PATCH', `/sso-connections/${id}`, { protocol: 'ldap', linkByEmail: false })).statusCode, 200);
    });

    it('while SSO is required the last enabled connection can be neither disabled nor deleted; requiring needs an enabled one', async () => {
      const listed = (await as(admin, 'GET', '/sso-connections')).json<{ items: { id: string }[] }>().items;
      for (const { id } of listed) assert.equal((await as(admin, 'PATCH', `/sso-connections/${id}`, { protocol: 'ldap', enabled: false })).statusCode, 200);
      assertProblem(await as(admin, 'PUT', '/sso-policy', { required: true }), 409, 'conflict');
      const last = listed[0]?.id ?? '';
      assert.equal((await as(admin, 'PATCH', `/sso-connections/${last}`, { protocol: 'ldap', enabled: true })).statusCode, 200);
      assert.equal((await as(admin, 'PUT', '/sso-policy', { required: true })).statusCode, 200);
      assertProblem(await as(admin, 'PATCH', `/sso-connections/${last}`, { protocol: 'ldap', enabled: false }), 409, 'conflict');
      assertProblem(await as(admin, 'DELETE', `/sso-connections/${last}`), 409, 'conflict');
      // A disabled one may go; with a second enabled one, so may the first.
      assert.equal((await as(admin, 'DELETE', `/sso-connections/${listed[1]?.id ?? ''}`)).statusCode, 204);
      const second = await as(admin, 'POST', '/sso-connections', ldap('Second'));
      assert.equal((await as(admin, 'DELETE', `/sso-connections/${last}`)).statusCode, 204);
      assert.equal((await as(admin, 'PUT', '/sso-policy', { required: false })).statusCode, 200);
      assert.equal((await as(admin, 'DELETE', `/sso-connections/${second.json<{ id: string }>().id}`)).statusCode, 204);
    });
  });
}

// Production refuses a superuser database login, as the test PostgreSQL's is: this check (of settings, not of
// storage) runs on PGlite.
describe('SSO connections in production [pglite]', { skip: engineSkip('pglite') }, () => {
  let test: TestApp;
  before(async () => {
    test = await createTestApp('pglite', { config: { env: 'production' } });
  });
  after(() => test.close());

  it('refuses the test-only escapes: a plain-HTTP OIDC issuer and plain LDAP', async () => {
    const { tenantId, apiKey } = await test.tenantWithKey('Production');
    const create = (body: unknown) => test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/sso-connections`, token: apiKey, body });
    const oidc = await create({ protocol: 'oidc', name: 'Local', config: { issuer: 'http://127.0.0.1:9000', clientId: 'c', allowInsecureHttp: true }, secret: 's' });
    assert.match(assertProblem(oidc, 400, 'validation_failed').detail, /refused in production/);
    const plain = await create(ldap('Plain', { config: { url: 'ldap://ldap.example.test', security: 'none', allowInsecure: true, userBaseDn: 'dc=example,dc=test' } }));
    assert.match(assertProblem(plain, 400, 'validation_failed').detail, /refused in production/);
    assert.equal((await create(ldap('Fine'))).statusCode, 201);
  });
});
