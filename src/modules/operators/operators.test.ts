import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { randomBytes } from 'node:crypto';
import { newId } from '../../platform/ids.ts';
import { createBareTestApp, createTestApp, type TestApp } from '../../testing/app.ts';
import { storedDataContains } from '../../testing/at-rest.ts';
import { movableClock } from '../../testing/clock.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem, platformState } from '../../testing/security-suite.ts';
import { platformRoles } from '../access/permissions.ts';
import { createOperatorBody } from './schemas.ts';

interface Tokens {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
}

interface OperatorBody {
  id: string;
  email: string;
  name: string | null;
  role: string;
  status: string;
  passwordSet: boolean;
  mustChangePassword: boolean;
  lastLoginAt: string | null;
}

const passphrase = () => `distant lighthouse ${newId()} keeper`;

describe('operator schemas', () => {
  it('offer exactly the platform roles', () => {
    const offered = (createOperatorBody.properties.role.anyOf as { const: string }[]).map((literal) => literal.const).sort();
    assert.deepEqual(offered, Object.keys(platformRoles).sort());
  });
});

for (const engine of engines) {
  describe(`first-run setup [${engine}]`, { skip: engineSkip(engine) }, () => {
    it('the setup token creates one platform-admin exactly once: wrong token 401, weak password 422 (token kept), parallel setups one winner', async () => {
      const test = await createTestApp(engine);
      try {
        // The test app went through setup already: every further call is 409, whatever the token.
        const body = { setupToken: `bws_${'A'.repeat(43)}`, email: 'late@operator.example', password: passphrase() };
        assertProblem(await test.call({ method: 'POST', url: '/v1/setup', body }), 409, 'setup_completed');
        const stored = await test.storage.db.withPlatform((tx) => tx.query('SELECT 1 FROM operator_bootstrap'));
        assert.equal(stored.rows.length, 0, 'setup spent the token');
        const created = (await test.call({ method: 'GET', url: `/v1/operators/${test.operator.id}`, token: test.operatorToken })).json<OperatorBody>();
        assert.deepEqual([created.role, created.status, created.email], ['platform-admin', 'active', test.operator.email]);
      } finally {
        await test.close();
      }
    });

    it('on a database with no operator: refusals change nothing; of parallel setups exactly one wins; then the token is spent', async () => {
      const test = await createBareTestApp(engine);
      try {
        const token = `bws_${randomBytes(32).toString('base64url')}`;
        assert.deepEqual(await test.app.services.operators.ensureSetupToken(token), { setupDone: false });
        const setup = (body: Record<string, unknown>) => test.call({ method: 'POST', url: '/v1/setup', body: { setupToken: token, email: 'root@operator.example', password: passphrase(), ...body } });
        const before = await platformState(test);
        assertProblem(await setup({ setupToken: `${token}x` }), 401, 'invalid_credentials', [token]);
        assertProblem(await setup({ password: 'password1234' }), 422, 'password_policy_violation');
        assertProblem(await setup({ extra: true }), 400, 'validation_failed');
        assertProblem(await setup({ setupToken: 'short' }), 400, 'validation_failed');
        assert.deepEqual(await platformState(test), before, 'refused setups change nothing');

        const attempts = await Promise.all(Array.from({ length: 4 }, (_, index) => setup({ email: `root-${index}@operator.example` })));
        const statuses = attempts.map((response) => response.statusCode).sort();
        assert.deepEqual(statuses, [201, 409, 409, 409], attempts.map((response) => response.body.slice(0, 120)).join('\n'));
        const operators = await test.storage.db.withPlatform((tx) => tx.query('SELECT role FROM operators'));
        assert.deepEqual(operators.rows, [{ role: 'platform-admin' }]);
        assert.deepEqual(await test.app.services.operators.ensureSetupToken(token), { setupDone: true }, 'a configured token is ignored once set up');
        assertProblem(await setup({}), 409, 'setup_completed');
      } finally {
        await test.close();
      }
    });
  });

  describe(`operators [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof movableClock>;
    let pgliteDir: string;
    // No auth cache: revocations and role changes show on the next request. Every login comes from one address.
    const config = { authCacheTtlMs: '0', loginSourceMaxFailures: '10000' };

    before(async () => {
      clock = movableClock();
      pgliteDir = join(mkdtempSync(join(tmpdir(), 'bulwark-operators-')), 'pglite');
      test = await createTestApp(engine, { clock, pgliteDir, config });
    });
    after(() => test.close());

    const login = (email: string, password: string) => test.call({ method: 'POST', url: '/v1/auth/operator/login', body: { email, password } });
    const me = (token: string) => test.call({ method: 'GET', url: '/v1/me', token });
    const admin = (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, body?: unknown) => test.call({ method, url, token: test.operatorToken, body });
    const newOperator = async (role: string, body: Record<string, unknown> = {}) => {
      const email = `op-${newId()}@operator.example`;
      const password = passphrase();
      const created = await admin('POST', '/v1/operators', { email, role, password, mustChangePassword: false, ...body });
      assert.equal(created.statusCode, 201, created.body);
      return { ...created.json<OperatorBody>(), password };
    };

    it('logs in in its own realm: the token names no tenant, /v1/me says operator, the JWKS verifies it', async () => {
      const response = await login(test.operator.email.toUpperCase(), test.operator.password);
      assert.equal(response.statusCode, 200, response.body);
      const tokens = response.json<Tokens>();
      assert.match(tokens.refreshToken, /^bwrp_[A-Za-z0-9_-]{43}$/);
      const jwks = await test.call({ method: 'GET', url: '/.well-known/jwks.json' });
      const { payload } = await jwtVerify(tokens.accessToken, createLocalJWKSet(jwks.json()), { issuer: 'bulwark', audience: 'bulwark' });
      assert.deepEqual([payload.sub, payload['tenantId'], payload['kind'], payload['roles'], payload['sid']], [test.operator.id, null, 'operator', ['platform-admin'], tokens.sessionId]);
      const profile = (await me(tokens.accessToken)).json<OperatorBody & { kind: string }>();
      assert.deepEqual([profile.kind, profile.id, profile.email, profile.role], ['operator', test.operator.id, test.operator.email, 'platform-admin']);
      assert.ok(profile.lastLoginAt !== null, 'the login is recorded');
      assert.ok(!JSON.stringify(profile).includes('argon2'));
      // A tenant login with the operator's credentials finds nobody: the realms are apart.
      const tenant = await test.tenantWithKey('Realm check');
      assertProblem(await test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId: tenant.tenantId, email: test.operator.email, password: test.operator.password } }), 401, 'invalid_credentials');
      assertProblem(await login('nobody@operator.example', test.operator.password), 401, 'invalid_credentials');
    });

    it('refresh tokens rotate; reuse ends the session; logout ends it; a user refresh token is no operator one', async () => {
      const first = (await login(test.operator.email, test.operator.password)).json<Tokens>();
      const refresh = (refreshToken: string) => test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken } });
      const rotated = await refresh(first.refreshToken);
      assert.equal(rotated.statusCode, 200, rotated.body);
      const second = rotated.json<Tokens>();
      assert.equal(second.sessionId, first.sessionId);
      assert.match(second.refreshToken, /^bwrp_/);
      assert.equal((await me(second.accessToken)).json<{ kind: string }>().kind, 'operator');
      assertProblem(await refresh(first.refreshToken), 401, 'invalid_credentials');
      assertProblem(await me(second.accessToken), 401, 'invalid_credentials', [], );
      assertProblem(await refresh(second.refreshToken), 401, 'invalid_credentials');

      const third = (await login(test.operator.email, test.operator.password)).json<Tokens>();
      assert.equal((await test.call({ method: 'POST', url: '/v1/auth/logout', body: { refreshToken: third.refreshToken } })).statusCode, 204);
      assertProblem(await me(third.accessToken), 401, 'invalid_credentials');
      assertProblem(await refresh(`bwrp_${'A'.repeat(43)}`), 401, 'invalid_credentials');
      assertProblem(await refresh(`bwr_${newId()}${'A'.repeat(43)}`), 401, 'invalid_credentials');
    });

    it('brute force: 50 parallel guesses get at most 5 password checks; locked even with the right password; an admin unlocks', async () => {
      const target = await newOperator('platform-auditor');
      const guesses = await Promise.all(Array.from({ length: 50 }, (_, index) => login(target.email, `wrong guess ${index}`)));
      const checked = guesses.filter((response) => response.statusCode === 401).length;
      assert.ok(checked <= 5, `${checked} password checks ran`);
      assert.equal(checked + guesses.filter((response) => response.statusCode === 429).length, 50);
      assertProblem(await login(target.email, target.password), 429, 'too_many_attempts');
      // An unknown address is throttled the same way: a lockout tells nothing.
      await Promise.all(Array.from({ length: 6 }, () => login('ghost@operator.example', 'whatever it is')));
      assertProblem(await login('ghost@operator.example', 'whatever it is'), 429, 'too_many_attempts');
      assert.equal((await admin('DELETE', `/v1/operators/${target.id}/lockout`)).statusCode, 204);
      assert.equal((await login(target.email, target.password)).statusCode, 200);
      // A tenant's throttles are not the platform's: the same e-mail in a tenant is not locked by this.
      const rows = await test.storage.db.withPlatform((tx) => tx.query<{ n: number }>('SELECT count(*)::int AS n FROM operator_login_throttles'));
      assert.ok((rows.rows[0]?.n ?? 0) >= 1);
    });

    it('a platform-admin manages operators; the roles decide; disabling ends the sessions at once', async () => {
      const auditor = await newOperator('platform-auditor', { name: 'Ada Auditor' });
      assert.deepEqual([auditor.role, auditor.name, auditor.passwordSet, auditor.mustChangePassword], ['platform-auditor', 'Ada Auditor', true, false]);
      const tokens = (await login(auditor.email, auditor.password)).json<Tokens>();
      assert.equal((await test.call({ method: 'GET', url: '/v1/tenants', token: tokens.accessToken })).statusCode, 200);
      assertProblem(await test.call({ method: 'POST', url: '/v1/tenants', token: tokens.accessToken, body: { name: 'Nope' } }), 403, 'forbidden');
      assertProblem(await test.call({ method: 'POST', url: '/v1/operators', token: tokens.accessToken, body: { email: 'x@operator.example', role: 'platform-admin' } }), 403, 'forbidden');

      // Promoted: the next request sees the new role (no cache in this suite).
      assert.equal((await admin('PATCH', `/v1/operators/${auditor.id}`, { role: 'platform-admin' })).json<OperatorBody>().role, 'platform-admin');
      assert.equal((await test.call({ method: 'POST', url: '/v1/tenants', token: tokens.accessToken, body: { name: 'Promoted' } })).statusCode, 201);

      const listed = (await admin('GET', '/v1/operators?limit=200')).json<{ items: OperatorBody[] }>().items;
      assert.ok(listed.some((entry) => entry.id === auditor.id && entry.email === auditor.email));
      assertProblem(await admin('POST', '/v1/operators', { email: auditor.email.toUpperCase(), role: 'platform-auditor' }), 409, 'conflict');

      assert.equal((await admin('PATCH', `/v1/operators/${auditor.id}`, { status: 'disabled' })).statusCode, 200);
      assertProblem(await me(tokens.accessToken), 401, 'invalid_credentials');
      assertProblem(await login(auditor.email, auditor.password), 403, 'account_disabled');
      assert.equal((await admin('DELETE', `/v1/operators/${auditor.id}`)).statusCode, 204);
      assertProblem(await admin('GET', `/v1/operators/${auditor.id}`), 404, 'not_found');
      assertProblem(await login(auditor.email, auditor.password), 401, 'invalid_credentials');
    });

    it('the last active platform-admin cannot be demoted, disabled or deleted; nobody deletes themselves', async () => {
      const others = (await admin('GET', '/v1/operators?limit=200')).json<{ items: OperatorBody[] }>().items.filter((entry) => entry.id !== test.operator.id);
      for (const other of others) await admin('DELETE', `/v1/operators/${other.id}`);
      const before = await platformState(test);
      assertProblem(await admin('PATCH', `/v1/operators/${test.operator.id}`, { role: 'platform-auditor' }), 409, 'conflict');
      assertProblem(await admin('PATCH', `/v1/operators/${test.operator.id}`, { status: 'disabled' }), 409, 'conflict');
      assertProblem(await admin('DELETE', `/v1/operators/${test.operator.id}`), 409, 'conflict');
      assert.deepEqual(await platformState(test), before);

      // With a second admin, each can be demoted, but not both at once (one of two parallel demotions fails).
      const second = await newOperator('platform-admin');
      const secondToken = (await login(second.email, second.password)).json<Tokens>().accessToken;
      const demotions = await Promise.all([
        admin('PATCH', `/v1/operators/${second.id}`, { role: 'platform-auditor' }),
        test.call({ method: 'PATCH', url: `/v1/operators/${test.operator.id}`, token: secondToken, body: { role: 'platform-auditor' } }),
      ]);
      // One wins; the other is refused as the last admin (409), or because its caller was just demoted (403).
      const statuses = demotions.map((response) => response.statusCode).sort();
      assert.ok(statuses[0] === 200 && (statuses[1] === 409 || statuses[1] === 403), statuses.join(', '));
      const admins = await test.storage.db.withPlatform((tx) => tx.query("SELECT id FROM operators WHERE role = 'platform-admin' AND status = 'active'"));
      assert.equal(admins.rows.length, 1);
      // Back to the start: the test operator is the admin.
      const remaining = (admins.rows[0] as { id: string }).id;
      if (remaining !== test.operator.id) {
        await test.call({ method: 'PATCH', url: `/v1/operators/${test.operator.id}`, token: secondToken, body: { role: 'platform-admin' } });
      }
      await test.relogOperator();
      assert.equal((await admin('DELETE', `/v1/operators/${second.id}`)).statusCode, 204);
    });

    it('an admin-set password must be changed at the next login; the policy and the history apply; the change ends every session', async () => {
      const target = await newOperator('platform-auditor');
      const session = (await login(target.email, target.password)).json<Tokens>();
      const temporary = passphrase();
      assertProblem(await admin('PUT', `/v1/operators/${target.id}/password`, { password: 'password' }), 422, 'password_policy_violation');
      assert.equal((await admin('PUT', `/v1/operators/${target.id}/password`, { password: temporary })).statusCode, 204);
      assertProblem(await me(session.accessToken), 401, 'invalid_credentials');
      const forced = assertProblem(await login(target.email, temporary), 403, 'password_change_required');
      assert.match(forced.detail, /POST \/v1\/auth\/operator\/password/);
      const change = (newPassword: string, currentPassword = temporary) =>
        test.call({ method: 'POST', url: '/v1/auth/operator/password', body: { email: target.email, currentPassword, newPassword } });
      assertProblem(await change(temporary), 422, 'password_policy_violation');
      assertProblem(await change(target.password), 422, 'password_policy_violation');
      assertProblem(await change(passphrase(), 'not the current one'), 401, 'invalid_credentials');
      const own = passphrase();
      assert.equal((await change(own)).statusCode, 204);
      assert.equal((await login(target.email, own)).statusCode, 200);
    });

    it('bad input answers 400 and changes nothing', async () => {
      const target = await newOperator('platform-auditor');
      const before = await platformState(test);
      const bad: [string, string, unknown][] = [
        ['POST', '/v1/operators', { email: 'x@operator.example' }],
        ['POST', '/v1/operators', { email: 'x@operator.example', role: 'root' }],
        ['POST', '/v1/operators', { email: 'not an address', role: 'platform-auditor' }],
        ['PATCH', `/v1/operators/${target.id}`, {}],
        ['PATCH', `/v1/operators/${target.id}`, { status: 'gone' }],
        ['PATCH', '/v1/operators/NOT-AN-ID', { name: 'x' }],
        ['PUT', `/v1/operators/${target.id}/password`, { password: 'x'.repeat(2000) }],
        ['GET', '/v1/operators?limit=0', undefined],
      ];
      for (const [method, url, body] of bad) assertProblem(await admin(method as 'POST', url, body), 400, 'validation_failed');
      const poisoned = await admin('POST', '/v1/operators', '{"email":"x@operator.example","role":"platform-auditor","__proto__":{"role":"platform-admin"}}');
      assert.equal(poisoned.statusCode, 400, poisoned.body);
      for (const body of [{}, { email: 'a@b' }, { email: 'a@b', password: 'x', tenantId: newId() }]) {
        assertProblem(await test.call({ method: 'POST', url: '/v1/auth/operator/login', body }), 400, 'validation_failed');
      }
      assert.deepEqual(await platformState(test), before);
    });

    it('operator e-mail addresses and names never reach the database files in plaintext', async () => {
      const marker = `marker${randomBytes(8).toString('hex')}`;
      await newOperator('platform-auditor', { email: `${marker}@operator.example`, name: `Name ${marker}` });
      // A positive control in a column that is not encrypted: a tenant name.
      const control = `control${randomBytes(8).toString('hex')}`;
      assert.equal((await admin('POST', '/v1/tenants', { name: control })).statusCode, 201);
      const [controlFound, markerFound] = await storedDataContains(test.storage, pgliteDir, [control, marker]);
      assert.ok(controlFound, 'the search finds the control');
      assert.ok(!markerFound, 'the operator PII is sealed');
      if (engine === 'pglite') {
        // The search closed the embedded database: reopen it for the after hook.
        const { operator, rootKeys } = test;
        await test.close();
        test = await createTestApp(engine, { clock, pgliteDir, config, operator, rootKeys });
      }
    });
  });
}
