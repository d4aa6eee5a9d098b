import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { Database } from '../platform/db/database.ts';
import { newId } from '../platform/ids.ts';
import type { TestApp } from '../testing/app.ts';
import { engineSkip, engines } from '../testing/engines.ts';
import { assertNoLeak, assertProblem, fillPath, type Operation, requestIdPattern, type RouteAuth, platformState, storedState } from '../testing/security-suite.ts';
import { RouteFixture, routeSamples, sampleCollection as collection, type SuiteTenant, type Targets } from '../testing/route-samples.ts';
import { allTenantPermissions, isPlatformPermission, isTenantPermission, platformRoles } from '../modules/access/permissions.ts';
import { buildApp } from './app.ts';

/**
 * The shared security suite, driven by the app's own route table (its OpenAPI document) and the route
 * samples: a route missing from them fails the first test, so a new route cannot skip the suite.
 */
for (const engine of engines) {
  describe(`security suite [${engine}]`, { skip: engineSkip(engine) }, () => {
    let fixture: RouteFixture;
    let test: TestApp;
    let operations: Operation[];
    let tenantA: SuiteTenant;
    let tenantB: SuiteTenant;
    let secrets: string[];

    const authOf = (operation: Operation): RouteAuth => fixture.authOf(operation);
    const byAuth = (auth: RouteAuth) => fixture.byAuth(auth);
    const targets = (tenant: SuiteTenant) => fixture.targets(tenant);
    const send = (operation: Operation, values: Targets, token: string | undefined) => fixture.send(operation, values, token);
    /**
     * Targets for a run of requests that succeed, one route after another. A GET uses up nothing, so the
     * routes after it share its targets; any other request may use up what it aimed at (a deleted user, a
     * spent refresh token, a confirmed offboarding), so the route after it gets fresh ones.
     */
    const targetsInTurn = (tenant: SuiteTenant) => {
      let unspent: Promise<Targets> | undefined;
      return async (operation: Operation): Promise<Targets> => {
        const values = await (unspent ??= targets(tenant));
        if (operation.method !== 'GET') unspent = undefined;
        return values;
      };
    };
    /** The GETs of a run first: they all share one set of targets. */
    const getsFirst = (list: Operation[]) => [...list.filter((operation) => operation.method === 'GET'), ...list.filter((operation) => operation.method !== 'GET')];
    /** The credential a route's own caller uses in tenant A: its key, the operator, the target user, or none. */
    const callerOf = (operation: Operation, values: Targets): string | undefined => {
      switch (authOf(operation)) {
        case 'tenant':
          return tenantA.apiKey;
        case 'operator':
          return test.operatorToken;
        case 'self':
          return values['accessToken'];
        case 'public':
          return undefined;
      }
    };
    /** Tenant A's targets in turn, anew in each test: what a test shares is used only by its own requests. */
    let targetsOfA: (operation: Operation) => Promise<Targets>;
    /**
     * Each route sent once by its own caller in tenant A: the controls (the tenant key's, the platform-admin's,
     * a user's own) check that it succeeded, and the audit check reads the events of the same request instead
     * of sending it again.
     */
    const ownCallerResponses = new Map<string, Promise<{ response: LightMyRequestResponse; values: Targets }>>();
    const sentByOwnCaller = (operation: Operation) => {
      let sent = ownCallerResponses.get(operation.key);
      if (sent === undefined) {
        sent = targetsOfA(operation).then(async (values) => ({ response: await send(operation, values, callerOf(operation, values)), values }));
        ownCallerResponses.set(operation.key, sent);
      }
      return sent;
    };

    before(async () => {
      fixture = await RouteFixture.start(engine);
      ({ test, operations, secrets } = fixture);
      tenantA = await fixture.tenant('Tenant A');
      tenantB = await fixture.tenant('Tenant B');
    });
    beforeEach(() => {
      targetsOfA = targetsInTurn(tenantA);
    });
    after(() => fixture.close());

    it('classifies every documented route, and only those', () => {
      assert.deepEqual(operations.map((operation) => operation.key).sort(), Object.keys(routeSamples).sort());
      for (const operation of operations) {
        const auth = authOf(operation);
        assert.equal(operation.secured, auth !== 'public', `${operation.key}: OpenAPI security matches its auth level`);
        if (auth === 'tenant') assert.match(operation.path, /^\/v1\/tenants\/\{tenantId\}\//, `${operation.key} is tenant-scoped`);
        assert.ok(operation.successStatuses.length > 0, `${operation.key} documents a success status`);
      }
      assert.ok(byAuth('tenant').length > 0 && byAuth('operator').length > 0 && byAuth('self').length > 0);
    });

    it('without credentials every non-public route answers 401 unauthenticated', async () => {
      const values = await targets(tenantA);
      for (const operation of operations) {
        const response = await send(operation, values, undefined);
        if (authOf(operation) === 'public') {
          const expected = routeSamples[operation.key]?.publicStatus;
          if (expected === undefined) assert.ok(operation.successStatuses.includes(response.statusCode), `${operation.key}: ${response.statusCode} ${response.body.slice(0, 200)}`);
          else assert.equal(response.statusCode, expected, `${operation.key}: ${response.body.slice(0, 200)}`);
          continue;
        }
        assertProblem(response, 401, 'unauthenticated', secrets);
        assert.equal(response.headers['www-authenticate'], 'Bearer');
        if (operation.method === 'GET') {
          const head = await test.app.inject({ method: 'HEAD', url: fillPath(operation.path, values) });
          assert.equal(head.statusCode, 401, `HEAD ${operation.path}`);
        }
      }
    });

    it('a garbage or malformed credential answers 401 invalid_credentials on every non-public route', async () => {
      const values = await targets(tenantA);
      const wellShapedUnknownKey = `bwk_${tenantA.tenantId}${newId()}${'A'.repeat(43)}`;
      const headers = [
        'Bearer garbage',
        'Bearer bwk_short',
        `Bearer ${wellShapedUnknownKey}`,
        `Bearer ${test.operatorToken}x`,
        `Basic ${Buffer.from('operator:secret').toString('base64')}`,
        'Bearer',
        `Bearer ${tenantA.apiKey} extra`,
      ];
      for (const operation of operations.filter((candidate) => authOf(candidate) !== 'public')) {
        for (const authorization of headers) {
          const { body } = routeSamples[operation.key] ?? {};
          const response = await test.call({ method: operation.method, url: fillPath(operation.path, values), body, headers: { authorization } });
          assertProblem(response, 401, 'invalid_credentials', secrets);
          assert.equal(response.headers['www-authenticate'], 'Bearer error="invalid_token"');
        }
      }
    });

    it('a tenant API key on an operator route answers 403 forbidden, even for its own tenant', async () => {
      const before = await storedState(test, tenantA.tenantId);
      const values = await targets(tenantA);
      const state = await storedState(test, tenantA.tenantId);
      const platform = await platformState(test);
      for (const operation of byAuth('operator')) {
        assertProblem(await send(operation, values, tenantA.apiKey), 403, 'forbidden', secrets);
      }
      assert.deepEqual(await storedState(test, tenantA.tenantId), state);
      assert.deepEqual(await platformState(test), platform);
      assert.notDeepEqual(state, before, 'the targets were created');
    });

    it('a user without roles gets 403 forbidden on operator and tenant routes; API keys get 403 on self routes, user and operator tokens reach them', async () => {
      const values = await targets(tenantA);
      const state = await storedState(test, tenantA.tenantId);
      const platform = await platformState(test);
      for (const operation of [...byAuth('operator'), ...byAuth('tenant')]) {
        assertProblem(await send(operation, values, values['accessToken']), 403, 'forbidden', secrets);
      }
      for (const operation of byAuth('self')) assertProblem(await send(operation, values, tenantA.apiKey), 403, 'forbidden', secrets);
      assert.deepEqual(await storedState(test, tenantA.tenantId), state);
      assert.deepEqual(await platformState(test), platform);
      // Control, on targets no earlier success used up (a self route may change its user's state): the user's
      // own token reaches it; so does an operator's, unless the route is for tenant users only.
      for (const operation of getsFirst(byAuth('self'))) {
        const { response: user, values: own } = await sentByOwnCaller(operation);
        const sample = routeSamples[operation.key];
        if (sample?.selfStatus === undefined) assert.ok(operation.successStatuses.includes(user.statusCode), `${operation.key}: ${user.statusCode} ${user.body.slice(0, 200)}`);
        else assert.equal(user.statusCode, sample.selfStatus, `${operation.key}: ${user.body.slice(0, 200)}`);
        const operator = await send(operation, own, test.operatorToken);
        if (sample?.userOnly === true) assertProblem(operator, 403, 'forbidden', secrets);
        else assert.ok(operation.successStatuses.includes(operator.statusCode), `${operation.key} as an operator: ${operator.statusCode}`);
        for (const response of [user, operator]) assertNoLeak(response.body, secrets, operation.key);
      }
    });

    it("an operator whose platform role lacks an operator route's permission gets 403 forbidden and changes nothing; with it, the route works", async () => {
      const values = await targets(tenantA);
      const login = await test.call({ method: 'POST', url: '/v1/auth/operator/login', body: { email: values['operatorEmail'], password: values['operatorPassword'] } });
      assert.equal(login.statusCode, 200, login.body);
      const auditor = login.json<{ accessToken: string }>().accessToken;
      secrets.push(auditor);
      const [allowed, refused] = [byAuth('operator').filter((operation) => operation.permission?.endsWith(':read')), byAuth('operator').filter((operation) => !operation.permission?.endsWith(':read'))];
      assert.ok(allowed.length >= 4 && refused.length >= 6);
      const platform = await platformState(test);
      for (const operation of refused) {
        const problem = assertProblem(await send(operation, values, auditor), 403, 'forbidden', secrets);
        assert.match(problem.detail, new RegExp(operation.permission ?? 'none'), operation.key);
      }
      assert.deepEqual(await platformState(test), platform);
      for (const operation of allowed) {
        const response = await send(operation, values, auditor);
        assert.ok(operation.successStatuses.includes(response.statusCode), `${operation.key}: ${response.statusCode} ${response.body.slice(0, 200)}`);
      }
      // The platform-admin holds every platform permission.
      for (const operation of getsFirst(byAuth('operator'))) {
        const { response } = await sentByOwnCaller(operation);
        assert.ok(operation.successStatuses.includes(response.statusCode), `${operation.key}: ${response.statusCode} ${response.body.slice(0, 200)}`);
      }
    });

    it('every route declares its permission; an API key with every permission but that one gets 403 forbidden and changes nothing', async () => {
      for (const operation of operations) {
        const auth = authOf(operation);
        if (auth === 'tenant') assert.ok(operation.permission !== undefined && isTenantPermission(operation.permission), `${operation.key}: ${String(operation.permission)}`);
        else if (auth === 'operator') assert.ok(operation.permission !== undefined && isPlatformPermission(operation.permission), operation.key);
        else assert.equal(operation.permission, undefined, operation.key);
      }
      const values = await targets(tenantA);
      // One key per permission, all made before the state is taken: every request after that is refused, so
      // one comparison at the end covers them all (the diff shows the rows a refusal would have changed).
      const lacking = new Map<string, string>();
      for (const permission of new Set(byAuth('tenant').map((operation) => operation.permission ?? ''))) {
        const scopes = allTenantPermissions.filter((candidate) => candidate !== permission);
        const created = await test.call({ method: 'POST', url: `/v1/tenants/${tenantA.tenantId}/api-keys`, token: tenantA.apiKey, body: { name: 'all but one', scopes } });
        assert.equal(created.statusCode, 201, created.body);
        const { key } = created.json<{ key: string }>();
        secrets.push(key);
        lacking.set(permission, key);
      }
      const state = await storedState(test, tenantA.tenantId);
      for (const operation of byAuth('tenant')) {
        const problem = assertProblem(await send(operation, values, lacking.get(operation.permission ?? '')), 403, 'forbidden', secrets);
        assert.match(problem.detail, new RegExp(operation.permission ?? 'none'), operation.key);
      }
      assert.deepEqual(await storedState(test, tenantA.tenantId), state);
    });

    it('an operator without a support grant gets 403 support_grant_required outside its standing key permissions, and changes nothing', async () => {
      const values = await targets(tenantA);
      // Earlier targets left live grants: revoke every one.
      const grants = await test.call({ method: 'GET', url: `/v1/tenants/${tenantA.tenantId}/support-grants?limit=200`, token: tenantA.apiKey });
      for (const grant of grants.json<{ items: { id: string; active: boolean }[] }>().items.filter((candidate) => candidate.active)) {
        const revoked = await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantA.tenantId}/support-grants/${grant.id}`, token: tenantA.apiKey });
        assert.equal(revoked.json<{ active: boolean }>().active, false);
      }
      const state = await storedState(test, tenantA.tenantId);
      const standingPermissions: readonly string[] = platformRoles['platform-admin'].standingTenantPermissions;
      const [standing, needGrant] = [byAuth('tenant').filter((operation) => standingPermissions.includes(operation.permission ?? '')), byAuth('tenant').filter((operation) => !standingPermissions.includes(operation.permission ?? ''))];
      assert.ok(standing.length >= 4 && needGrant.length > 20);
      for (const operation of needGrant) assertProblem(await send(operation, values, test.operatorToken), 403, 'support_grant_required', secrets);
      assert.deepEqual(await storedState(test, tenantA.tenantId), state);
      for (const operation of standing) {
        const response = await send(operation, values, test.operatorToken);
        assert.ok(operation.successStatuses.includes(response.statusCode), `${operation.key}: ${response.statusCode} ${response.body.slice(0, 200)}`);
      }
    });

    it('a tenant API key reaches every tenant route of its own tenant (control)', async () => {
      for (const operation of getsFirst(byAuth('tenant'))) {
        const { response } = await sentByOwnCaller(operation);
        assert.ok(operation.successStatuses.includes(response.statusCode), `${operation.key}: ${response.statusCode} ${response.body.slice(0, 200)}`);
        // Only key creation returns key material (the new key, once); nothing echoes the caller's credential.
        if (operation.key !== 'POST /v1/tenants/{tenantId}/api-keys') assertNoLeak(response.body, secrets, operation.key);
        assert.ok(!response.body.includes(tenantA.apiKey) && !response.body.includes(test.operatorToken), operation.key);
      }
    });

    it("tenant A's key on tenant B's routes answers 404 not_found and leaves B unchanged", async () => {
      const valuesB = await targets(tenantB);
      // The targets are real: B's own key sees them.
      const record = await test.call({ method: 'GET', url: `/v1/tenants/${tenantB.tenantId}/collections/${collection}/records/${valuesB['recordId'] ?? ''}`, token: tenantB.apiKey });
      assert.equal(record.statusCode, 200);
      const apiKeysBefore = await test.call({ method: 'GET', url: `/v1/tenants/${tenantB.tenantId}/api-keys`, token: tenantB.apiKey });
      const recordsBefore = await test.call({ method: 'GET', url: `/v1/tenants/${tenantB.tenantId}/collections/${collection}/records`, token: tenantB.apiKey });
      const stateBefore = await storedState(test, tenantB.tenantId);

      for (const operation of byAuth('tenant')) {
        const problem = assertProblem(await send(operation, valuesB, tenantA.apiKey), 404, 'not_found', secrets);
        assert.equal(problem.detail, 'The resource does not exist.');
      }

      const apiKeysAfter = await test.call({ method: 'GET', url: `/v1/tenants/${tenantB.tenantId}/api-keys`, token: tenantB.apiKey });
      const recordsAfter = await test.call({ method: 'GET', url: `/v1/tenants/${tenantB.tenantId}/collections/${collection}/records`, token: tenantB.apiKey });
      assert.deepEqual(apiKeysAfter.json(), apiKeysBefore.json());
      assert.deepEqual(recordsAfter.json(), recordsBefore.json());
      assert.deepEqual(await storedState(test, tenantB.tenantId), stateBefore);
      // B's own key still works: nothing of B was revoked.
      const own = await test.call({ method: 'GET', url: `/v1/tenants/${tenantB.tenantId}/api-keys`, token: tenantB.apiKey });
      assert.equal(own.statusCode, 200);
    });

    it("every tenant table, below the routes: under A's context B's rows are neither seen, changed, deleted nor copied in", async () => {
      const valuesB = await targets(tenantB);
      // A login of the target user (it has a factor: an MFA challenge row) and a login policy row.
      assert.equal((await test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId: tenantB.tenantId, email: valuesB['email'], password: valuesB['password'] } })).statusCode, 200);
      assert.equal((await test.call({ method: 'PUT', url: `/v1/tenants/${tenantB.tenantId}/mfa-policy`, token: tenantB.apiKey, body: { mode: 'optional' } })).statusCode, 200);
      // An erasure of a user of its own: an erasure request row (the targets already hold a legal hold).
      const erased = await test.call({ method: 'POST', url: `/v1/tenants/${tenantB.tenantId}/users`, token: tenantB.apiKey, body: { email: `erased-${newId()}@example.org` } });
      assert.equal(erased.statusCode, 201, erased.body);
      const erasure = await test.call({ method: 'POST', url: `/v1/tenants/${tenantB.tenantId}/users/${erased.json<{ id: string }>().id}/erase`, token: tenantB.apiKey, body: {} });
      assert.equal(erasure.statusCode, 200, erasure.body);
      const tables = (
        await test.storage.asOwner(
          "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id' AND table_name <> 'tenants' ORDER BY table_name",
        )
      ).map((row) => String(row['table_name']));
      const covered: string[] = [];
      for (const table of tables) {
        // As the owner (past RLS): B's rows, the control that there is something to hide.
        const rowsOfB = await test.storage.asOwner(`SELECT to_jsonb(t) AS row FROM ${table} t WHERE tenant_id = $1 LIMIT 1`, [tenantB.tenantId]);
        const sample = rowsOfB[0]?.['row'];
        if (sample === undefined) continue;
        covered.push(table);
        // Each statement alone: one the app role has no grant for is refused outright (as good as none seen).
        const asA = async (sql: string) => {
          try {
            const { rows, rowCount } = await test.storage.db.withTenant(tenantA.tenantId, (tx) => tx.query(sql, [tenantB.tenantId]));
            return (rows[0] as { n?: number } | undefined)?.n ?? rowCount;
          } catch (error) {
            if ((error as { code?: string }).code === '42501') return 'no grant';
            throw error;
          }
        };
        const seen = {
          read: await asA(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`),
          updated: await asA(`UPDATE ${table} SET tenant_id = tenant_id WHERE tenant_id = $1`),
          deleted: await asA(`DELETE FROM ${table} WHERE tenant_id = $1`),
        };
        assert.equal(seen.read, 0, `${table}: read`);
        assert.ok(seen.updated === 0 || seen.updated === 'no grant', `${table}: updated ${String(seen.updated)}`);
        assert.ok(seen.deleted === 0 || seen.deleted === 'no grant', `${table}: deleted ${String(seen.deleted)}`);
        // A copy of B's row written under A's context, B's tenant id kept: refused by the policy's check.
        await assert.rejects(
          test.storage.db.withTenant(tenantA.tenantId, (tx) => tx.query(`INSERT INTO ${table} SELECT (jsonb_populate_record(NULL::${table}, $1::jsonb)).*`, [JSON.stringify(sample)])),
          /row-level security|permission denied/,
          table,
        );
      }
      // The tables this routes fill (the targets make rows in each) are among those proven.
      for (const table of ['login_policies', 'mfa_factors', 'mfa_recovery_codes', 'mfa_challenges', 'sso_connections', 'tenant_domains', 'secrets', 'secret_versions', 'secret_copies', 'agents', 'agent_pairing_codes', 'agent_certificate_authorities', 'legal_holds', 'erasure_requests']) {
        assert.ok(covered.includes(table), `${table} has rows of B to hide (covered: ${covered.join(', ')})`);
      }
    });

    it("B's record and key ids under A's own tenant path answer 404 not_found", async () => {
      const valuesB = await targets(tenantB);
      const stateBefore = await storedState(test, tenantB.tenantId);
      const mixed = { ...valuesB, tenantId: tenantA.tenantId };
      const byId = byAuth('tenant').filter((operation) => /\{(recordId|keyId|userId|roleName|grantId)\}/.test(operation.path) && ['GET', 'DELETE'].includes(operation.method));
      assert.ok(byId.length >= 8);
      for (const operation of byId) {
        for (const token of [tenantA.apiKey, tenantA.adminToken]) {
          assertProblem(await send(operation, mixed, token), 404, 'not_found', secrets);
        }
      }
      assert.deepEqual(await storedState(test, tenantB.tenantId), stateBefore);
    });

    it('a suspended tenant answers 403 tenant_suspended on every tenant route, for its key and the operator', async () => {
      const suspended = await test.tenantWithKey('Tenant S');
      secrets.push(suspended.apiKey);
      const values = await targets(suspended);
      const patch = (status: string) =>
        test.call({ method: 'PATCH', url: `/v1/tenants/${suspended.tenantId}`, token: test.operatorToken, body: { status } });
      assert.equal((await patch('suspended')).statusCode, 200);
      const stateBefore = await storedState(test, suspended.tenantId);

      for (const operation of byAuth('tenant')) {
        for (const token of [suspended.apiKey, test.operatorToken]) {
          assertProblem(await send(operation, values, token), 403, 'tenant_suspended', secrets);
        }
        // Another tenant's key still learns nothing about the suspended tenant.
        assertProblem(await send(operation, values, tenantA.apiKey), 404, 'not_found', secrets);
      }
      assertProblem(await test.call({ method: 'GET', url: '/v1/me', token: values['accessToken'] }), 403, 'tenant_suspended', secrets);
      // The operator still manages the tenant; its key still may not.
      const shown = await test.call({ method: 'GET', url: `/v1/tenants/${suspended.tenantId}`, token: test.operatorToken });
      assert.equal(shown.json<{ status: string }>().status, 'suspended');
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${suspended.tenantId}`, token: suspended.apiKey }), 403, 'forbidden', secrets);
      assert.deepEqual(await storedState(test, suspended.tenantId), stateBefore);

      assert.equal((await patch('active')).statusCode, 200);
      const targetsOfS = targetsInTurn(suspended);
      for (const operation of getsFirst(byAuth('tenant'))) {
        const response = await send(operation, await targetsOfS(operation), suspended.apiKey);
        assert.ok(operation.successStatuses.includes(response.statusCode), `${operation.key} after reactivation: ${response.statusCode}`);
      }
    });

    it('every response carries a 12-hex x-request-id; a well-formed inbound id is echoed, a malformed one replaced', async () => {
      const values = await targets(tenantA);
      const seen = new Set<string>();
      for (const operation of operations) {
        for (const token of [undefined, test.operatorToken]) {
          const response = await send(operation, values, token);
          const id = response.headers['x-request-id'];
          assert.ok(typeof id === 'string' && requestIdPattern.test(id), `${operation.key}: ${String(id)}`);
          seen.add(id);
        }
      }
      assert.equal(seen.size, operations.length * 2, 'request ids are not reused');
      for (const url of ['/healthz', '/v1/tenants', '/nope']) {
        const inbound = newId();
        const echoed = await test.call({ method: 'GET', url, headers: { 'x-request-id': inbound } });
        assert.equal(echoed.headers['x-request-id'], inbound, url);
        if (echoed.statusCode >= 400) assert.equal(echoed.json<{ requestId: string }>().requestId, inbound);
      }
      for (const malformed of ['ABCDEF012345', 'abcdef01234', 'abcdef0123456', 'abcdef01234g', '', "abcdef012345' OR 1=1", 'x'.repeat(300)]) {
        const response = await test.call({ method: 'GET', url: '/v1/tenants', headers: { 'x-request-id': malformed } });
        const id = response.headers['x-request-id'];
        assert.ok(typeof id === 'string' && requestIdPattern.test(id), `replaced ${JSON.stringify(malformed)}`);
        assert.notEqual(id, malformed.trim());
        assert.equal(response.json<{ requestId: string }>().requestId, id);
      }
    });

    it('an unknown route answers 404 route_not_found, with or without credentials', async () => {
      for (const url of ['/', '/v1', '/v2/tenants', `/v1/tenants/${tenantA.tenantId}/nope`, '/healthz/x', '/docsx', '/v1/tenants/x/y']) {
        assertProblem(await test.call({ method: 'GET', url }), 404, 'route_not_found', secrets);
        assertProblem(await test.call({ method: 'POST', url, token: tenantA.apiKey, body: {} }), 404, 'route_not_found', secrets);
      }
    });

    it('a known path with a wrong method answers 405 method_not_allowed with the exact Allow header', async () => {
      const values = await targets(tenantA);
      const methodsByPath = new Map<string, Set<string>>();
      for (const operation of operations) methodsByPath.set(operation.path, (methodsByPath.get(operation.path) ?? new Set()).add(operation.method));
      for (const [path, documented] of methodsByPath) {
        const allowed = new Set(documented);
        if (allowed.has('GET')) allowed.add('HEAD');
        const expectedAllow = [...allowed].sort().join(', ');
        for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((candidate) => !allowed.has(candidate))) {
          const response = await test.call({ method, url: fillPath(path, values), token: test.operatorToken });
          assertProblem(response, 405, 'method_not_allowed', secrets);
          assert.equal(response.headers['allow'], expectedAllow, `${method} ${path}`);
        }
      }
    });

    /** What changes state, and what hands out personal data in bulk: each is audited. */
    const audited = () =>
      operations.filter((operation) => {
        const sample = routeSamples[operation.key];
        const stateChanging = operation.method !== 'GET' || operation.path.endsWith('/audit/export');
        return stateChanging && sample?.publicStatus === undefined && sample?.selfStatus === undefined && sample?.unaudited === undefined;
      });
    const eventsOf = async (requestId: string) => {
      const [tenant, platform] = await Promise.all([
        test.storage.asOwner('SELECT action FROM audit_events WHERE request_id = $1', [requestId]),
        test.storage.asOwner('SELECT action FROM platform_audit_events WHERE request_id = $1', [requestId]),
      ]);
      return [...tenant, ...platform].map((row) => String(row['action']));
    };

    it('every successful mutating request (and every export) leaves exactly one audit event, with its request id', async () => {
      const routesChecked: string[] = [];
      for (const operation of getsFirst(audited())) {
        const { response } = await sentByOwnCaller(operation);
        assert.ok(operation.successStatuses.includes(response.statusCode), `${operation.key}: ${response.statusCode} ${response.body.slice(0, 200)}`);
        const requestId = String(response.headers['x-request-id']);
        const events = await eventsOf(requestId);
        assert.equal(events.length, 1, `${operation.key}: ${events.join(', ') || 'no event'}`);
        routesChecked.push(`${operation.key} -> ${events[0] ?? ''}`);
      }
      assert.ok(routesChecked.length >= 45, `${routesChecked.length} routes`);
    });

    it('when the audit event cannot be written, every mutating route answers 500 and changes nothing (fail-closed)', async () => {
      const values = await targets(tenantA);
      const state = await storedState(test, tenantA.tenantId);
      const platform = await platformState(test);
      // What the app role cannot see coming: both event tables refuse every insert.
      for (const table of ['audit_events', 'platform_audit_events']) await test.storage.asOwner(`ALTER TABLE ${table} ADD CONSTRAINT audit_blocked CHECK (false) NOT VALID`);
      try {
        for (const operation of audited()) {
          const response = await send(operation, values, callerOf(operation, values));
          assertProblem(response, 500, 'internal_error', secrets);
          assert.equal(response.json<{ detail: string }>().detail, 'An internal error occurred.', operation.key);
        }
      } finally {
        for (const table of ['audit_events', 'platform_audit_events']) await test.storage.asOwner(`ALTER TABLE ${table} DROP CONSTRAINT IF EXISTS audit_blocked`);
      }
      assert.deepEqual(await storedState(test, tenantA.tenantId), state);
      const after = (await platformState(test)) as { throttles: unknown };
      // Login reservations are counted before the password check (by design) and survive the refusal.
      assert.deepEqual({ ...after, throttles: null }, { ...(platform as object), throttles: null });
    });

    it('a database failure is a bare 500 internal_error: no SQL, no stack, no detail', async () => {
      // The same real database, with every tenant-scoped statement replaced by one the engine rejects.
      const db = test.storage.db;
      const broken: Database = {
        engine: db.engine,
        tenantQuery: (tenantId) => db.tenantQuery(tenantId, 'SELECT secret_hash FROM api_keys WHERE no_such_column = $1', [tenantId]),
        withTenant: (tenantId, work) => db.withTenant(tenantId, work),
        withPlatform: (work) => db.withPlatform(work),
        withSnapshot: (work) => db.withSnapshot(work),
        session: () => db.session(),
        ping: () => db.ping(),
        close: async () => undefined,
      };
      const app: FastifyInstance = await buildApp({ config: test.storage.config, db: broken, rootKeys: test.rootKeys });
      try {
        const values = await targets(tenantA);
        for (const operation of byAuth('tenant')) {
          const { body } = routeSamples[operation.key] ?? {};
          const response = await app.inject({
            method: operation.method,
            url: fillPath(operation.path, values),
            headers: { authorization: `Bearer ${tenantA.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
            ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
          });
          const problem = assertProblem(response, 500, 'internal_error', secrets);
          assert.equal(problem.detail, 'An internal error occurred.');
          assert.doesNotMatch(response.body, /no_such_column|secret_hash|api_keys/);
        }
      } finally {
        await app.close();
      }
    });
  });
}
