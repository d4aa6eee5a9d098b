import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { movableClock } from '../../testing/clock.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import { insertSessionWithRefresh, userSessionTables } from './login-sessions-store.ts';

interface Tokens {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
  expiresIn: number;
}

const password = 'a long and unusual passphrase 9!';

for (const engine of engines) {
  describe(`login, tokens and sessions [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof movableClock>;
    let tenantId: string;
    let apiKey: string;

    before(async () => {
      clock = movableClock();
      // No auth cache: a revoked session is refused on the next request.
      // A high per-source limit: every request of this suite comes from one address.
      test = await createTestApp(engine, { clock, config: { authCacheTtlMs: '0', loginSourceMaxFailures: '10000' } });
      ({ tenantId, apiKey } = await test.tenantWithKey('Login'));
    });
    after(() => test.close());

    const newUser = async (email: string, body: Record<string, unknown> = {}) => {
      const created = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/users`, token: apiKey, body: { email, password, ...body } });
      assert.equal(created.statusCode, 201, created.body);
      return created.json<{ id: string }>().id;
    };
    const login = (email: string, secret = password, tenant = tenantId) =>
      test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId: tenant, email, password: secret } });
    const refresh = (refreshToken: string) => test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken } });
    const me = (token: string) => test.call({ method: 'GET', url: '/v1/me', token });

    it('logs in, and the access token is a JWT that the published JWKS verifies', async () => {
      const userId = await newUser('jo@example.org', { firstName: 'Jo' });
      const response = await login('JO@example.org');
      assert.equal(response.statusCode, 200, response.body);
      const tokens = response.json<Tokens>();
      assert.match(tokens.refreshToken, /^bwr_[0-9a-f]{12}/);
      const profile = await me(tokens.accessToken);
      assert.equal(profile.statusCode, 200);
      assert.equal(profile.json<{ id: string; email: string; lastLoginAt: string | null }>().id, userId);
      assert.ok(profile.json<{ lastLoginAt: string | null }>().lastLoginAt !== null, 'the login is recorded');

      const jwks = await test.call({ method: 'GET', url: '/.well-known/jwks.json' });
      const verified = await jwtVerify(tokens.accessToken, createLocalJWKSet(jwks.json()), { issuer: 'bulwark', audience: 'bulwark' });
      assert.deepEqual([verified.payload.sub, verified.payload['tenantId'], verified.payload['sid']], [userId, tenantId, tokens.sessionId]);
      assert.equal(verified.protectedHeader.alg, 'EdDSA');

      // A user's token does not reach tenant administration (until roles exist), nor operator routes.
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/users`, token: tokens.accessToken }), 403, 'forbidden');
      assertProblem(await test.call({ method: 'GET', url: '/v1/tenants', token: tokens.accessToken }), 403, 'forbidden');
      assertProblem(await me(apiKey), 403, 'forbidden');
    });

    it('a wrong password and an unknown user get the same answer', async () => {
      await newUser('same@example.org');
      const wrong = await login('same@example.org', 'not the password at all');
      const unknown = await login('nobody-here@example.org', 'not the password at all');
      const otherTenant = await login('same@example.org', password, '0123456789ab');
      for (const response of [wrong, unknown, otherTenant]) assertProblem(response, 401, 'invalid_credentials', [password]);
      const strip = (body: string) => {
        const problem = JSON.parse(body) as Record<string, unknown>;
        delete problem.requestId;
        return problem;
      };
      assert.deepEqual(strip(wrong.body), strip(unknown.body));
      assert.deepEqual(strip(wrong.body), strip(otherTenant.body));
    });

    it('brute force: 50 parallel guesses get at most 5 password checks; then locked even with the right password; unlocks by time or admin', async () => {
      const userId = await newUser('target@example.org');
      const guesses = await Promise.all(Array.from({ length: 50 }, (_, index) => login('target@example.org', `wrong guess number ${index}`)));
      const checked = guesses.filter((response) => response.statusCode === 401).length;
      const refused = guesses.filter((response) => response.statusCode === 429).length;
      assert.ok(checked <= 5, `${checked} password checks ran`);
      assert.equal(checked + refused, 50);
      const locked = await login('target@example.org');
      assertProblem(locked, 429, 'too_many_attempts');
      assert.ok(Number(locked.headers['retry-after']) > 0);

      // The same lockout for an address that has no account: a lockout says nothing about existence.
      await Promise.all(Array.from({ length: 6 }, () => login('ghost@example.org', 'whatever it is')));
      assertProblem(await login('ghost@example.org', 'whatever it is'), 429, 'too_many_attempts');

      assert.equal((await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantId}/users/${userId}/lockout`, token: apiKey })).statusCode, 204);
      assert.equal((await login('target@example.org')).statusCode, 200, 'an admin unlocked it');

      for (let attempt = 0; attempt < 5; attempt += 1) {
        clock.advance(60_000);
        await login('target@example.org', 'wrong again');
      }
      assertProblem(await login('target@example.org'), 429, 'too_many_attempts');
      clock.advance(16 * 60_000);
      assert.equal((await login('target@example.org')).statusCode, 200, 'the lockout ran out');
    });

    it('refresh tokens rotate; reusing a spent one ends the session; logout ends it too', async () => {
      await newUser('rotor@example.org');
      const first = (await login('rotor@example.org')).json<Tokens>();
      const second = await refresh(first.refreshToken);
      assert.equal(second.statusCode, 200);
      const rotated = second.json<Tokens>();
      assert.notEqual(rotated.refreshToken, first.refreshToken);
      assert.equal(rotated.sessionId, first.sessionId);
      assert.equal((await me(rotated.accessToken)).statusCode, 200);

      assertProblem(await refresh(first.refreshToken), 401, 'invalid_credentials');
      assertProblem(await refresh(rotated.refreshToken), 401, 'invalid_credentials', [], );
      assertProblem(await me(rotated.accessToken), 401, 'invalid_credentials');
      assertProblem(await me(first.accessToken), 401, 'invalid_credentials');

      const again = (await login('rotor@example.org')).json<Tokens>();
      assert.equal((await test.call({ method: 'POST', url: '/v1/auth/logout', body: { refreshToken: again.refreshToken } })).statusCode, 204);
      assertProblem(await refresh(again.refreshToken), 401, 'invalid_credentials');
      assertProblem(await me(again.accessToken), 401, 'invalid_credentials');
      for (const refreshToken of ['', 'bwr_nope', `bwr_${tenantId}${'A'.repeat(43)}`]) {
        const response = await refresh(refreshToken);
        assert.ok(response.statusCode === 400 || response.statusCode === 401, `${response.statusCode}`);
      }
    });

    it('an imported legacy hash logs in once and is replaced by Argon2id', async () => {
      const imported = await test.call({
        method: 'POST',
        url: `/v1/tenants/${tenantId}/user-imports`,
        token: apiKey,
        body: { users: [{ email: 'legacy@example.org', credential: { algorithm: 'md5', hash: createHash('md5').update('old secret').digest('hex') } }] },
      });
      const [legacy] = imported.json<{ users: { id: string }[] }>().users;
      const stored = async () =>
        (
          await test.storage.db.withTenant(tenantId, (tx) =>
            tx.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, legacy?.id ?? '']),
          )
        ).rows[0]?.password_hash ?? '';
      assert.match(await stored(), /^md5:/);
      assert.equal((await login('legacy@example.org', 'old secret')).statusCode, 200);
      assert.match(await stored(), /^\$argon2id\$/, 'upgraded on login');
      assert.equal((await login('legacy@example.org', 'old secret')).statusCode, 200, 'and still the same password');
      const report = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/legacy-password-hashes`, token: apiKey });
      assert.ok(!report.json<{ users: { id: string }[] }>().users.some((user) => user.id === legacy?.id));
    });

    it('a password set by an admin, or expired, must be changed before login; the change ends every session', async () => {
      const userId = await newUser('forced@example.org');
      const before = (await login('forced@example.org')).json<Tokens>();
      const admin = await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/users/${userId}/password`, token: apiKey, body: { password: 'admin chosen phrase, temporary 1' } });
      assert.equal(admin.statusCode, 204);
      assertProblem(await me(before.accessToken), 401, 'invalid_credentials', [], );
      assertProblem(await login('forced@example.org', 'admin chosen phrase, temporary 1'), 403, 'password_change_required');
      const change = (newPassword: string, current = 'admin chosen phrase, temporary 1') =>
        test.call({ method: 'POST', url: '/v1/auth/password', body: { tenantId, email: 'forced@example.org', currentPassword: current, newPassword } });
      assertProblem(await change('short'), 422, 'password_policy_violation');
      assertProblem(await change('admin chosen phrase, temporary 1'), 422, 'password_policy_violation');
      assertProblem(await change('my own secret phrase 2025!', 'wrong current password'), 401, 'invalid_credentials');
      assert.equal((await change('my own secret phrase 2025!')).statusCode, 204);
      assert.equal((await login('forced@example.org', 'my own secret phrase 2025!')).statusCode, 200);

      const policy = (await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/password-policy`, token: apiKey })).json<Record<string, unknown>>();
      await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/password-policy`, token: apiKey, body: { ...policy, expiryDays: 30 } });
      clock.advance(31 * 86_400_000);
      assertProblem(await login('forced@example.org', 'my own secret phrase 2025!'), 403, 'password_change_required');
      await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/password-policy`, token: apiKey, body: policy });
    });

    it('a disabled user with the right password is told so; with a wrong one, nothing', async () => {
      const userId = await newUser('off@example.org');
      await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}/users/${userId}`, token: apiKey, body: { status: 'disabled' } });
      assertProblem(await login('off@example.org'), 403, 'account_disabled');
      assertProblem(await login('off@example.org', 'not the right one at all'), 401, 'invalid_credentials');
    });

    it('bad input answers 400 and logs nobody in', async () => {
      for (const body of [{}, { tenantId, email: 'a@b' }, { tenantId: 'nope', email: 'a@b', password: 'x' }, { tenantId, email: 'a@b', password: 'x', extra: 1 }]) {
        assertProblem(await test.call({ method: 'POST', url: '/v1/auth/login', body }), 400, 'validation_failed');
      }
      assertProblem(await test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: 'x'.repeat(500) } }), 400, 'validation_failed');
      assertProblem(await me('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.'), 401, 'invalid_credentials');
    });
  });
}

for (const engine of engines) {
  describe(`session store [${engine}]`, { skip: engineSkip(engine) }, () => {
    it('a session id that is taken (a 48-bit collision) writes neither the session nor its refresh token', async () => {
      const test = await createTestApp(engine);
      try {
        const { tenantId } = await test.tenantWithKey('Collision');
        const [{ id: userId } = { id: '' }] = (
          await test.storage.db.withTenant(tenantId, (tx) => tx.query<{ id: string }>('SELECT id FROM users WHERE tenant_id = $1', [tenantId]))
        ).rows;
        const now = new Date();
        const session = (refreshHash: Buffer) => ({ id: 'c0111de0c0de', principalId: userId, now, expiresAt: new Date(now.getTime() + 60_000), refreshHash, refreshExpiresAt: new Date(now.getTime() + 60_000) });
        const first = await test.storage.db.withTenant(tenantId, (tx) => insertSessionWithRefresh(tx, userSessionTables, tenantId, session(Buffer.alloc(32, 1))));
        const second = await test.storage.db.withTenant(tenantId, (tx) => insertSessionWithRefresh(tx, userSessionTables, tenantId, session(Buffer.alloc(32, 2))));
        assert.deepEqual([first, second], [true, false]);
        const refresh = await test.storage.db.withTenant(tenantId, (tx) =>
          tx.query<{ n: number }>("SELECT count(*)::int AS n FROM refresh_tokens WHERE tenant_id = $1 AND session_id = 'c0111de0c0de'", [tenantId]),
        );
        assert.equal(refresh.rows[0]?.n, 1, 'only the first session got a refresh token');
      } finally {
        await test.close();
      }
    });
  });
}
