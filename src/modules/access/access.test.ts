import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { newId } from '../../platform/ids.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { movableClock } from '../../testing/clock.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import { assertRouteAccess, builtInRoles } from './permissions.ts';

describe('route access declarations (start-up check)', () => {
  it('accepts a tenant route with a tenant permission, an operator route with a platform one, public and self routes with none', () => {
    assertRouteAccess('GET /t', { auth: 'tenant', permission: 'records:read' });
    assertRouteAccess('GET /o', { auth: 'operator', permission: 'platform:tenants:read' });
    assertRouteAccess('GET /p', { auth: 'public' });
    assertRouteAccess('GET /u', { auth: 'self' });
  });

  it('refuses a route without auth, without a permission, with an unknown one or one of the wrong realm', () => {
    const refused: Parameters<typeof assertRouteAccess>[1][] = [
      {},
      { auth: 'tenant' },
      { auth: 'tenant', permission: 'records:delete-everything' },
      { auth: 'tenant', permission: 'platform:tenants:read' },
      { auth: 'operator' },
      { auth: 'operator', permission: 'records:read' },
      { auth: 'public', permission: 'records:read' },
      { auth: 'self', permission: 'users:read' },
      { auth: 'user' },
      { auth: 'tenant', permission: '__proto__' },
      { auth: 'nobody' },
    ];
    for (const config of refused) assert.throws(() => assertRouteAccess('GET /x', config), /route GET \/x/, JSON.stringify(config));
  });
});

for (const engine of engines) {
  describe(`roles, assignments and support grants [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof movableClock>;
    let tenantId: string;
    let apiKey: string;
    let adminToken: string;

    before(async () => {
      clock = movableClock();
      test = await createTestApp(engine, { clock, config: { loginSourceMaxFailures: '10000', supportGrantMaxHours: '24' } });
      ({ tenantId, apiKey, adminToken } = await test.tenantWithKey('Access'));
    });
    after(() => test.close());

    const url = (path: string) => `/v1/tenants/${tenantId}${path}`;
    const as = (token: string, method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown) => test.call({ method, url: url(path), token, body });
    /** A user with the given roles, logged in; returns the id and an access token. */
    const userWith = async (roles: string[]) => {
      const email = `member-${newId()}@example.org`;
      const password = `tall cedar ${newId()} harbour`;
      const created = await as(apiKey, 'POST', '/users', { email, password });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      assert.equal((await as(apiKey, 'PUT', `/users/${id}/roles`, { roles })).statusCode, 200);
      const login = await test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email, password } });
      assert.equal(login.statusCode, 200, login.body);
      return { id, token: login.json<{ accessToken: string }>().accessToken };
    };
    const writeRecord = (token: string) => as(token, 'POST', '/collections/notes/records', { data: { n: 1 } });

    it('lists the built-in roles with their permissions; they cannot be changed, deleted or shadowed', async () => {
      const listed = await as(apiKey, 'GET', '/roles');
      assert.equal(listed.statusCode, 200);
      const roles = listed.json<{ items: { name: string; builtIn: boolean; permissions: string[] }[] }>().items;
      for (const name of Object.keys(builtInRoles)) assert.ok(roles.some((role) => role.name === name && role.builtIn), name);
      assert.deepEqual(roles.find((role) => role.name === 'viewer')?.permissions, ['records:read', 'users:read']);
      assertProblem(await as(apiKey, 'PUT', '/roles/viewer', { permissions: ['records:write'] }), 409, 'conflict');
      assertProblem(await as(apiKey, 'DELETE', '/roles/tenant-admin'), 409, 'conflict');
      assertProblem(await as(apiKey, 'POST', '/roles', { name: 'member', permissions: ['records:read'] }), 409, 'conflict');
    });

    it('the first admin made with the tenant holds tenant-admin, and the token says so', async () => {
      const me = await test.call({ method: 'GET', url: '/v1/me', token: adminToken });
      const roles = await as(apiKey, 'GET', `/users/${me.json<{ id: string }>().id}/roles`);
      assert.deepEqual(roles.json(), { roles: ['tenant-admin'] });
      const claims = JSON.parse(Buffer.from(adminToken.split('.')[1] ?? '', 'base64url').toString()) as { roles: string[] };
      assert.deepEqual(claims.roles, ['tenant-admin']);
    });

    it('a weak first-admin password refuses the tenant, and no tenant is created', async () => {
      const before = (await test.call({ method: 'GET', url: '/v1/tenants?limit=200', token: test.operatorToken })).json<{ items: unknown[] }>().items.length;
      const response = await test.call({ method: 'POST', url: '/v1/tenants', token: test.operatorToken, body: { name: 'Weak', admin: { email: 'boss@example.org', password: 'password123' } } });
      assertProblem(response, 422, 'password_policy_violation', ['password123']);
      const after = (await test.call({ method: 'GET', url: '/v1/tenants?limit=200', token: test.operatorToken })).json<{ items: unknown[] }>().items.length;
      assert.equal(after, before);
    });

    it('a viewer reads but cannot write; a role change applies to the live token at once', async () => {
      const viewer = await userWith(['viewer']);
      assert.equal((await as(viewer.token, 'GET', '/collections/notes/records')).statusCode, 200);
      assertProblem(await writeRecord(viewer.token), 403, 'forbidden');
      assertProblem(await as(viewer.token, 'GET', '/api-keys'), 403, 'forbidden');
      assert.equal((await as(apiKey, 'PUT', `/users/${viewer.id}/roles`, { roles: ['member'] })).statusCode, 200);
      assert.equal((await writeRecord(viewer.token)).statusCode, 201);
      assert.equal((await as(apiKey, 'PUT', `/users/${viewer.id}/roles`, { roles: [] })).statusCode, 200);
      assertProblem(await as(viewer.token, 'GET', '/collections/notes/records'), 403, 'forbidden');
    });

    it('custom roles: created, assigned, changed (holders follow) and deleted (taken from holders)', async () => {
      const name = `writer-${newId()}`;
      const created = await as(apiKey, 'POST', '/roles', { name, description: 'Writes records', permissions: ['records:write'] });
      assert.equal(created.statusCode, 201, created.body);
      assertProblem(await as(apiKey, 'POST', '/roles', { name, permissions: ['records:read'] }), 409, 'conflict');
      const holder = await userWith([name]);
      assert.equal((await writeRecord(holder.token)).statusCode, 201);
      assert.equal((await as(apiKey, 'PUT', `/roles/${name}`, { permissions: ['records:read'] })).statusCode, 200);
      assertProblem(await writeRecord(holder.token), 403, 'forbidden');
      assert.equal((await as(apiKey, 'DELETE', `/roles/${name}`)).statusCode, 204);
      assertProblem(await as(apiKey, 'GET', `/roles/${name}`), 404, 'not_found');
      assert.deepEqual((await as(apiKey, 'GET', `/users/${holder.id}/roles`)).json(), { roles: [] });
      assertProblem(await as(apiKey, 'PUT', `/users/${holder.id}/roles`, { roles: ['no-such-role'] }), 400, 'validation_failed');
      assertProblem(await as(apiKey, 'POST', '/roles', { name: 'bad', permissions: ['records:everything'] }), 400, 'validation_failed');
    });

    it('nobody gives away what they do not hold: roles, assignments, API key scopes, grants, other users', async () => {
      const name = `role-admin-${newId()}`;
      assert.equal((await as(apiKey, 'POST', '/roles', { name, permissions: ['roles:write', 'roles:read', 'users:read', 'users:write', 'records:read', 'api-keys:write', 'support-grants:write'] })).statusCode, 201);
      const delegate = await userWith([name]);
      const admin = (await test.call({ method: 'GET', url: '/v1/me', token: adminToken })).json<{ id: string }>();
      const state = await as(apiKey, 'GET', `/users/${delegate.id}/roles`);
      assertProblem(await as(delegate.token, 'PUT', `/users/${delegate.id}/roles`, { roles: ['tenant-admin'] }), 403, 'forbidden');
      assertProblem(await as(delegate.token, 'POST', '/roles', { name: `sneaky-${newId()}`, permissions: ['records:write'] }), 403, 'forbidden');
      assertProblem(await as(delegate.token, 'POST', '/api-keys', { name: 'wider', scopes: ['records:write'] }), 403, 'forbidden');
      assertProblem(await as(delegate.token, 'POST', '/support-grants', { permissions: ['records:write'], reason: 'x', durationHours: 1 }), 403, 'forbidden');
      // Taking over a more powerful account by setting its password, or removing it.
      assertProblem(await as(delegate.token, 'PUT', `/users/${admin.id}/password`, { password: `fresh takeover ${newId()} words` }), 403, 'forbidden');
      assertProblem(await as(delegate.token, 'DELETE', `/users/${admin.id}`), 403, 'forbidden');
      assert.deepEqual((await as(apiKey, 'GET', `/users/${delegate.id}/roles`)).json(), state.json());
      // Within its own permissions it may act: a viewer's roles, a records:read key.
      const viewer = await userWith(['viewer']);
      assert.equal((await as(delegate.token, 'PUT', `/users/${viewer.id}/roles`, { roles: [] })).statusCode, 200);
      const key = await as(delegate.token, 'POST', '/api-keys', { name: 'narrow', scopes: ['records:read'] });
      assert.equal(key.statusCode, 201, key.body);
    });

    it('the last active tenant-admin keeps the role, stays enabled and stays: also under concurrent demotions', async () => {
      const admin = (await test.call({ method: 'GET', url: '/v1/me', token: adminToken })).json<{ id: string }>();
      assertProblem(await as(apiKey, 'PUT', `/users/${admin.id}/roles`, { roles: ['member'] }), 409, 'conflict');
      assertProblem(await as(apiKey, 'PATCH', `/users/${admin.id}`, { status: 'disabled' }), 409, 'conflict');
      assertProblem(await as(apiKey, 'DELETE', `/users/${admin.id}`), 409, 'conflict');
      const second = await userWith(['tenant-admin']);
      assert.equal((await as(apiKey, 'PUT', `/users/${admin.id}/roles`, { roles: ['tenant-admin', 'auditor'] })).statusCode, 200);
      assert.equal((await as(apiKey, 'PUT', `/users/${second.id}/roles`, { roles: [] })).statusCode, 200);

      // A tenant with exactly two admins, each demoted at the same moment: one demotion wins, the other
      // finds it would leave none (per-tenant lock). Disabling and deleting race the same way.
      const fresh = await test.tenantWithKey('Two admins');
      const inFresh = (method: 'PUT' | 'PATCH' | 'DELETE' | 'POST', path: string, body?: unknown) =>
        test.call({ method, url: `/v1/tenants/${fresh.tenantId}${path}`, token: fresh.apiKey, body });
      const first = (await test.call({ method: 'GET', url: '/v1/me', token: fresh.adminToken })).json<{ id: string }>().id;
      const other = (await inFresh('POST', '/users', { email: `admin-${newId()}@example.org` })).json<{ id: string }>().id;
      const races: [string, (id: string) => Promise<{ statusCode: number }>][] = [
        ['demote', (id) => inFresh('PUT', `/users/${id}/roles`, { roles: ['member'] })],
        ['disable', (id) => inFresh('PATCH', `/users/${id}`, { status: 'disabled' })],
      ];
      for (const [what, act] of races) {
        for (let round = 0; round < 3; round += 1) {
          for (const id of [first, other]) {
            await inFresh('PATCH', `/users/${id}`, { status: 'active' });
            assert.equal((await inFresh('PUT', `/users/${id}/roles`, { roles: ['tenant-admin'] })).statusCode, 200);
          }
          const statuses = (await Promise.all([act(first), act(other)])).map((response) => response.statusCode).sort();
          assert.deepEqual(statuses, [200, 409], `${what}, round ${round}`);
        }
      }
      const [{ n } = { n: 0 }] = (
        await test.storage.db.withTenant(fresh.tenantId, (tx) =>
          tx.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM user_roles r JOIN users u ON u.tenant_id = r.tenant_id AND u.id = r.user_id WHERE r.tenant_id = $1 AND r.role_name = 'tenant-admin' AND u.status = 'active'",
            [fresh.tenantId],
          ),
        )
      ).rows;
      assert.equal(n, 1, 'exactly one active tenant-admin remains');
    });

    it("a disabled user's sessions end at once", async () => {
      const user = await userWith(['viewer']);
      const token = user.token;
      assert.equal((await test.call({ method: 'GET', url: '/v1/me', token })).statusCode, 200);
      assert.equal((await as(apiKey, 'PATCH', `/users/${user.id}`, { status: 'disabled' })).statusCode, 200);
      assertProblem(await test.call({ method: 'GET', url: '/v1/me', token }), 401, 'invalid_credentials');
    });

    it('support grants: scoped, counted, refused after expiry or revocation, and never for credentials', async () => {
      let operator = test.operatorToken;
      const readRecords = () => as(operator, 'GET', '/collections/notes/records');
      assertProblem(await readRecords(), 403, 'support_grant_required');
      assert.equal((await as(operator, 'GET', '/keys')).statusCode, 200, 'key hygiene is a standing permission');

      const created = await as(adminToken, 'POST', '/support-grants', { permissions: ['records:read'], reason: 'Ticket 4711', durationHours: 2 });
      assert.equal(created.statusCode, 201, created.body);
      const grant = created.json<{ id: string; grantedBy: string; active: boolean; useCount: number; expiresAt: string }>();
      assert.match(grant.grantedBy, /^user:[0-9a-f]{12}$/);
      assert.ok(grant.active);
      assert.equal((await readRecords()).statusCode, 200);
      assert.equal((await readRecords()).statusCode, 200);
      assertProblem(await writeRecord(operator), 403, 'support_grant_required');
      const listed = (await as(apiKey, 'GET', '/support-grants')).json<{ items: { id: string; useCount: number; lastUsedAt: string | null }[] }>().items;
      const used = listed.find((item) => item.id === grant.id);
      assert.equal(used?.useCount, 2);
      assert.ok(used.lastUsedAt);
      // Each use is in the tenant's audit trail, by the operator, through the grant.
      const uses = (await as(apiKey, 'GET', `/audit?action=support-grant.use&targetId=${grant.id}`)).json<{ items: { actor: { kind: string; id: string }; detail: Record<string, unknown> }[] }>().items;
      assert.equal(uses.length, 2);
      assert.ok(uses.every((event) => event.actor.kind === 'operator' && event.actor.id === test.operator.id && event.detail['permission'] === 'records:read'));

      clock.advance(2 * 3_600_000);
      // The access token expired with the clock too: a fresh login, and the grant has run out.
      assertProblem(await readRecords(), 401, 'invalid_credentials');
      operator = await test.relogOperator();
      assertProblem(await readRecords(), 403, 'support_grant_required');

      const another = await as(apiKey, 'POST', '/support-grants', { permissions: ['records:read'], reason: 'Ticket 4712', durationHours: 1 });
      assert.equal((await readRecords()).statusCode, 200);
      const revoked = await as(apiKey, 'DELETE', `/support-grants/${another.json<{ id: string }>().id}`);
      assert.equal(revoked.json<{ active: boolean }>().active, false);
      assertProblem(await readRecords(), 403, 'support_grant_required');

      // For another operator only.
      const forOther = await as(apiKey, 'POST', '/support-grants', { permissions: ['records:read'], reason: 'Other', durationHours: 1, operatorId: newId() });
      assert.equal(forOther.statusCode, 201);
      assertProblem(await readRecords(), 403, 'support_grant_required');
      // For this operator by its id.
      const forMe = await as(apiKey, 'POST', '/support-grants', { permissions: ['records:read'], reason: 'Mine', durationHours: 1, operatorId: test.operator.id });
      assert.equal((await readRecords()).statusCode, 200);
      await as(apiKey, 'DELETE', `/support-grants/${forMe.json<{ id: string }>().id}`);
      // A change made through a grant names the grant in its event.
      const writing = (await as(apiKey, 'POST', '/support-grants', { permissions: ['records:write'], reason: 'Fix', durationHours: 1, operatorId: test.operator.id })).json<{ id: string }>();
      const written = await writeRecord(operator);
      assert.equal(written.statusCode, 201, written.body);
      const [event] = (await as(apiKey, 'GET', `/audit?requestId=${String(written.headers['x-request-id'])}&action=record.create`)).json<{ items: { actor: { kind: string }; detail: Record<string, unknown> }[] }>().items;
      assert.deepEqual([event?.actor.kind, event?.detail['supportGrantId']], ['operator', writing.id]);
      await as(apiKey, 'DELETE', `/support-grants/${writing.id}`);

      for (const permission of ['api-keys:write', 'roles:write', 'support-grants:write', 'keys:customer-key', 'sso:write', 'secrets:write', 'agents:write']) {
        assertProblem(await as(apiKey, 'POST', '/support-grants', { permissions: [permission], reason: 'No', durationHours: 1 }), 400, 'validation_failed');
      }
      assertProblem(await as(apiKey, 'POST', '/support-grants', { permissions: ['records:read'], reason: 'Too long', durationHours: 25 }), 400, 'validation_failed');
      assertProblem(await as(apiKey, 'POST', '/support-grants', { permissions: ['records:read'], reason: 'Bad', durationHours: 0 }), 400, 'validation_failed');
      assertProblem(await as(operator, 'POST', '/support-grants', { permissions: ['records:read'], reason: 'Myself', durationHours: 1 }), 403, 'support_grant_required');
    });
  });
}
