import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Secret } from 'otpauth';
import { newId } from '../../platform/ids.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import { totpCode } from '../identity/mfa/totp.ts';
import type { Deferred, Erased, ErasureRequest, LegalHold, ReleasedHold, SubjectExportDocument } from './schemas.ts';

interface Person {
  id: string;
  email: string;
  password: string;
  lastName: string;
  accessToken: string;
}

for (const engine of engines) {
  describe(`privacy [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let tenantId: string;
    let apiKey: string;
    let other: { tenantId: string; apiKey: string; adminToken: string };

    before(async () => {
      test = await createTestApp(engine);
      ({ tenantId, apiKey } = await test.tenantWithKey('Privacy'));
      other = await test.tenantWithKey('Other');
    });
    after(() => test.close());

    const call = (method: string, path: string, body?: unknown, token = apiKey, headers: Record<string, string> = {}) =>
      test.call({ method, url: `/v1/tenants/${tenantId}${path}`, token, body, headers });
    const login = (person: { email: string; password: string }, headers: Record<string, string> = {}) =>
      test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email: person.email, password: person.password }, headers });

    /** A user with a password, a role, a logged-in session, an active TOTP factor (with recovery codes) and a failed login. */
    async function person(marker = newId()): Promise<Person> {
      const email = `Subject-${marker}@Example.org`;
      const password = `amber meadow ${newId()} signal`;
      const lastName = `Lovelace${marker}`;
      const created = await call('POST', '/users', { email, password, firstName: 'Ada', lastName });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      assert.equal((await call('PUT', `/users/${id}/roles`, { roles: ['viewer'] })).statusCode, 200);
      assert.equal((await login({ email, password: 'not the password at all' })).statusCode, 401);
      const session = await login({ email, password }, { 'user-agent': `agent-${marker}` });
      assert.equal(session.statusCode, 200, session.body);
      const accessToken = session.json<{ accessToken: string }>().accessToken;
      const enrol = await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token: accessToken, body: { name: `Phone of ${lastName}` } });
      const { factorId, secret } = enrol.json<{ factorId: string; secret: string }>();
      const verified = await test.call({
        method: 'POST',
        url: `/v1/me/mfa/totp/${factorId}/verify`,
        token: accessToken,
        body: { code: totpCode(Buffer.from(Secret.fromBase32(secret).bytes), new Date()) },
      });
      assert.equal(verified.statusCode, 200, verified.body);
      return { id, email, password, lastName, accessToken };
    }

    const hold = async (body: Record<string, unknown>) => {
      const response = await call('POST', '/legal-holds', { name: 'Case 2024-17', reason: 'Litigation: keep everything', ...body });
      assert.equal(response.statusCode, 201, response.body);
      return response.json<LegalHold>();
    };
    const eventsOf = async (action: string) =>
      (await call('GET', `/audit?action=${action}&limit=200`)).json<{ items: { action: string; target: { id: string } | null; detail: Record<string, unknown> }[] }>().items;

    /** Every row of every table, as text, read as the owner (past RLS): where a plaintext could still hide. */
    async function everyRow(): Promise<string> {
      const tables = await test.storage.asOwner("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
      const texts: string[] = [];
      for (const { tablename } of tables) texts.push(...(await test.storage.asOwner(`SELECT t::text AS row FROM ${String(tablename)} t`)).map((row) => String(row['row'])));
      return texts.join('\n');
    }
    /** A plaintext as the row texts would show it: as itself, or inside a bytea (hex). */
    const traces = (value: string) => [value, value.toLowerCase(), Buffer.from(value).toString('hex'), Buffer.from(value.toLowerCase()).toString('hex')];

    describe('legal holds', () => {
      it('are placed on the tenant or a user, listed, read and released (and stay listed); each step is audited', async () => {
        const target = await person();
        const onUser = await hold({ userId: target.id });
        const onTenant = await hold({ name: 'Regulator inquiry' });
        assert.deepEqual([onUser.userId, onUser.active, onUser.createdBy.startsWith('api-key:'), onUser.releasedAt], [target.id, true, true, null]);
        assert.equal(onTenant.userId, null);
        assert.deepEqual((await call('GET', `/legal-holds/${onUser.id}`)).json(), onUser);
        assert.deepEqual(await test.app.services.privacy.activeHolds(tenantId).then((holds) => holds.filter((h) => [onUser.id, onTenant.id].includes(h.id))), [
          { id: onUser.id, name: 'Case 2024-17', userId: target.id },
          { id: onTenant.id, name: 'Regulator inquiry', userId: null },
        ]);

        const released = await call('DELETE', `/legal-holds/${onTenant.id}`);
        assert.equal(released.statusCode, 200, released.body);
        const body = released.json<ReleasedHold>();
        assert.deepEqual([body.active, body.releasedBy?.startsWith('api-key:'), typeof body.releasedAt, body.erasuresCompleted], [false, true, 'string', []]);
        // Released twice: a conflict, and the first release's time stays.
        assertProblem(await call('DELETE', `/legal-holds/${onTenant.id}`), 409, 'conflict');
        assert.equal((await call('GET', `/legal-holds/${onTenant.id}`)).json<LegalHold>().releasedAt, body.releasedAt);

        const listed = (await call('GET', '/legal-holds?limit=200')).json<{ items: LegalHold[] }>().items;
        assert.ok(listed.some((entry) => entry.id === onTenant.id && !entry.active));
        assert.ok(!(await test.app.services.privacy.activeHolds(tenantId)).some((entry) => entry.id === onTenant.id));
        const created = await eventsOf('legal-hold.create');
        assert.ok(created.some((event) => event.target?.id === onUser.id && event.detail['userId'] === target.id));
        assert.ok((await eventsOf('legal-hold.release')).some((event) => event.target?.id === onTenant.id));
        // The tenant's free text stays out of the trail.
        assert.ok(!JSON.stringify(created).includes('Litigation'));
        assert.equal((await call('DELETE', `/legal-holds/${onUser.id}`)).statusCode, 200);
      });

      it('refuse bad input (400) and users or holds of another tenant (404), changing nothing', async () => {
        const before = (await call('GET', '/legal-holds?limit=200')).json<{ items: LegalHold[] }>().items.length;
        const otherUser = (await test.call({ method: 'POST', url: `/v1/tenants/${other.tenantId}/users`, token: other.apiKey, body: { email: `o-${newId()}@example.org` } })).json<{ id: string }>().id;
        for (const body of [
          { name: 'ok', reason: 'ok', unknown: true },
          { name: 'x'.repeat(101), reason: 'ok' },
          { name: 'line\nbreak', reason: 'ok' },
          { name: '   ', reason: 'ok' },
          { name: 'ok', reason: 'y'.repeat(1001) },
          { name: 'ok' },
          { name: 'ok', reason: 'ok', userId: 'NOT-AN-ID' },
          { name: 42, reason: 'ok' },
        ]) {
          assertProblem(await call('POST', '/legal-holds', body), 400, 'validation_failed');
        }
        assertProblem(await call('POST', '/legal-holds', { name: 'ok', reason: 'ok', userId: otherUser }), 404, 'not_found');
        assertProblem(await call('POST', '/legal-holds', { name: 'ok', reason: 'ok', userId: newId() }), 404, 'not_found');
        assert.equal((await call('GET', '/legal-holds?limit=200')).json<{ items: LegalHold[] }>().items.length, before);

        const theirs = (await test.call({ method: 'POST', url: `/v1/tenants/${other.tenantId}/legal-holds`, token: other.apiKey, body: { name: 'Theirs', reason: 'theirs' } })).json<LegalHold>();
        assertProblem(await call('GET', `/legal-holds/${theirs.id}`), 404, 'not_found');
        assertProblem(await call('DELETE', `/legal-holds/${theirs.id}`), 404, 'not_found');
        assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${other.tenantId}/legal-holds/${theirs.id}`, token: apiKey }), 404, 'not_found');
        assert.equal((await test.call({ method: 'GET', url: `/v1/tenants/${other.tenantId}/legal-holds/${theirs.id}`, token: other.apiKey })).json<LegalHold>().active, true);
        assertProblem(await call('GET', `/legal-holds/${newId()}`), 404, 'not_found');
      });

      it('keep a held user from being deleted (409 legal_hold_active, naming the hold)', async () => {
        const target = await person();
        const placed = await hold({ userId: target.id, name: 'Keep this one' });
        const problem = assertProblem(await call('DELETE', `/users/${target.id}`), 409, 'legal_hold_active');
        assert.match(problem.detail, new RegExp(`"Keep this one" \\(${placed.id}\\)`));
        assert.equal((await call('GET', `/users/${target.id}`)).statusCode, 200);
        assert.equal((await call('DELETE', `/legal-holds/${placed.id}`)).statusCode, 200);
        assert.equal((await call('DELETE', `/users/${target.id}`)).statusCode, 204);
      });
    });

    describe('data subject export', () => {
      it("holds the user's profile, roles, sessions, factors, links, holds and audit events, decrypted; another person's data in them is withheld", async () => {
        const subject = await person();
        // An admin acts on the user: the admin's address in that event is the admin's, not the subject's.
        assert.equal((await call('PATCH', `/users/${subject.id}`, { firstName: 'Augusta' }, apiKey, { 'user-agent': 'admin-console/7' })).statusCode, 200);
        const placed = await hold({ userId: subject.id });
        const response = await call('GET', `/users/${subject.id}/export`);
        assert.equal(response.statusCode, 200, response.body);
        assert.match(response.headers['content-type'] ?? '', /^application\/json/);
        assert.equal(response.headers['content-disposition'], `attachment; filename="user-${subject.id}.json"`);
        const copy = response.json<SubjectExportDocument>();
        assert.equal(copy.format, 'bulwark-data-subject-export/v1');
        assert.deepEqual([copy.user.email, copy.user.firstName, copy.user.lastName], [subject.email, 'Augusta', subject.lastName]);
        assert.deepEqual(copy.roles, ['viewer']);
        assert.ok(copy.sessions.length >= 1 && copy.sessions.every((session) => !('refreshToken' in session)));
        assert.deepEqual(copy.mfa.factors.map((factor) => [factor.kind, factor.name, factor.status]), [['totp', `Phone of ${subject.lastName}`, 'active']]);
        assert.equal(copy.mfa.recoveryCodesLeft, 10);
        assert.deepEqual(copy.legalHolds.map((entry) => entry.id), [placed.id]);

        const events = copy.auditEvents;
        const success = events.find((event) => event.action === 'auth.login' && event.outcome === 'success');
        assert.deepEqual([success?.userAgent, success?.personalData], [`agent-${subject.lastName.slice('Lovelace'.length)}`, 'present']);
        // The failed login named the user: its personal data is theirs, sealed under their key.
        const failure = events.find((event) => event.action === 'auth.login' && event.outcome === 'failure');
        assert.deepEqual([failure?.actor.kind, failure?.email, failure?.personalData], ['anonymous', subject.email, 'present']);
        const changed = events.find((event) => event.action === 'user.update');
        assert.deepEqual([changed?.personalData, changed?.source, changed?.userAgent], ['withheld', null, null]);
        assert.ok(events.some((event) => event.action === 'mfa.factor.activate'));
        assert.deepEqual(events.map((event) => event.seq), [...events.map((event) => event.seq)].sort((a, b) => a - b), 'oldest first');
        assert.ok(!response.body.includes('admin-console/7'), "the admin's user agent is not in the subject's copy");
        assert.ok(!response.body.includes(subject.password) && !/"secret"/.test(response.body), 'no secret');

        const exported = await eventsOf('privacy.export');
        assert.ok(exported.some((event) => event.target?.id === subject.id));
        assert.equal((await call('DELETE', `/legal-holds/${placed.id}`)).statusCode, 200);
      });

      it("answers 404 for another tenant's admin or an unknown user, and 403 without the permission", async () => {
        const subject = await person();
        assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/users/${subject.id}/export`, token: other.adminToken }), 404, 'not_found');
        assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${other.tenantId}/users/${subject.id}/export`, token: other.adminToken }), 404, 'not_found');
        assertProblem(await call('GET', `/users/${newId()}/export`), 404, 'not_found');
        // The user holds `viewer`: no privacy:export, not even for their own data through this route.
        assertProblem(await call('GET', `/users/${subject.id}/export`, undefined, subject.accessToken), 403, 'forbidden');
        const scoped = (await call('POST', '/api-keys', { name: 'reader', scopes: ['users:read'] })).json<{ key: string }>().key;
        assertProblem(await call('GET', `/users/${subject.id}/export`, undefined, scoped), 403, 'forbidden');
      });
    });

    describe('erasure', () => {
      it("removes the user and everything hanging off them; their e-mail is nowhere in the database or the audit export; the chain verifies; they cannot log in", async () => {
        const subject = await person();
        const [stored] = await test.storage.asOwner("SELECT encode(email_hmac, 'hex') AS hmac FROM users WHERE tenant_id = $1 AND id = $2", [tenantId, subject.id]);
        const accountThrottle = `account:${String(stored?.['hmac'])}`;
        // A failure after the last login stays counted on the account (a login settles the count).
        assert.equal((await login({ email: subject.email.toUpperCase(), password: 'still not the password' })).statusCode, 401);
        assert.equal((await test.storage.asOwner('SELECT 1 FROM login_throttles WHERE tenant_id = $1 AND subject = $2', [tenantId, accountThrottle])).length, 1, 'the failed login left a throttle row');
        // The control: before the erasure the e-mail opens in the audit export.
        const exportBefore = (await call('GET', '/audit/export')).body;
        assert.ok(exportBefore.includes(subject.email));

        const response = await call('POST', `/users/${subject.id}/erase`, { reason: 'Ticket 4711' });
        assert.equal(response.statusCode, 200, response.body);
        const answer = response.json<Erased>();
        assert.equal(answer.outcome, 'erased');
        assert.deepEqual(
          { ...answer.removed, sessions: answer.removed.sessions >= 1, refreshTokens: answer.removed.refreshTokens >= 1 },
          { users: 1, passwordHistory: 0, sessions: true, refreshTokens: true, mfaFactors: 1, recoveryCodes: 10, mfaChallenges: 0, ssoIdentities: 0, roleAssignments: 1, loginThrottles: 1, auditSubjectKeys: 1 },
        );

        const rows = await everyRow();
        for (const trace of [...traces(subject.email), ...traces(subject.lastName), `Phone of ${subject.lastName}`]) assert.ok(!rows.includes(trace), `a trace of the user remains: ${trace.slice(0, 12)}...`);
        assert.ok(rows.includes(subject.id), 'the pseudonym remains (audit events, the request)');
        assert.deepEqual(await test.storage.asOwner('SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, subject.id]), []);
        assert.deepEqual(await test.storage.asOwner('SELECT 1 FROM login_throttles WHERE tenant_id = $1 AND subject = ANY($2)', [tenantId, [accountThrottle, `mfa:${subject.id}`]]), []);
        assert.deepEqual(await test.storage.asOwner("SELECT 1 FROM audit_subject_keys WHERE tenant_id = $1 AND subject = $2 AND sealed_key IS NOT NULL", [tenantId, `user:${subject.id}`]), []);

        const exported = (await call('GET', '/audit/export')).body;
        for (const trace of [subject.email, subject.email.toLowerCase(), subject.lastName, `agent-${subject.lastName.slice('Lovelace'.length)}`]) assert.ok(!exported.includes(trace), 'not in the audit export');
        // Their own events and the failed logins naming them stay, with the personal data erased.
        const theirs = exported
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as { actor: { kind: string; id: string | null }; target: { id: string } | null; personalData: string })
          .filter((event) => event.actor.id === subject.id || (event.actor.kind === 'anonymous' && event.target?.id === subject.id));
        assert.ok(theirs.length >= 5, `${theirs.length} events`);
        assert.ok(theirs.every((event) => event.personalData === 'erased'), JSON.stringify(theirs.map((event) => event.personalData)));
        const verified = await call('POST', '/audit/verify');
        assert.equal(verified.json<{ ok: boolean }>().ok, true, verified.body);

        assertProblem(await login(subject), 401, 'invalid_credentials');
        assertProblem(await test.call({ method: 'GET', url: '/v1/me', token: subject.accessToken }), 401, 'invalid_credentials');
        assertProblem(await call('POST', `/users/${subject.id}/erase`, {}), 404, 'not_found');

        const erased = (await eventsOf('privacy.erase')).find((event) => event.target?.id === subject.id);
        assert.deepEqual(erased?.detail['requestId'], answer.requestId);
        const requests = (await call('GET', '/erasure-requests?limit=200')).json<{ items: ErasureRequest[] }>().items;
        const request = requests.find((entry) => entry.id === answer.requestId);
        assert.deepEqual([request?.status, request?.userId, request?.reason, request?.removed?.users], ['completed', subject.id, 'Ticket 4711', 1]);
      });

      it('under a hold: 202 deferred, the user disabled and their sessions ended, the data kept; the release erases', async () => {
        const subject = await person();
        const placed = await hold({ userId: subject.id });
        const response = await call('POST', `/users/${subject.id}/erase`, {});
        assert.equal(response.statusCode, 202, response.body);
        const answer = response.json<Deferred>();
        assert.deepEqual([answer.outcome, answer.reason, answer.holds], ['deferred', 'legal_hold', [{ id: placed.id, name: 'Case 2024-17', userId: subject.id }]]);
        assert.ok(answer.sessionsRevoked >= 1);
        const kept = (await call('GET', `/users/${subject.id}`)).json<{ email: string; status: string }>();
        assert.deepEqual([kept.email, kept.status], [subject.email, 'disabled']);
        assertProblem(await test.call({ method: 'GET', url: '/v1/me', token: subject.accessToken }), 401, 'invalid_credentials');
        assertProblem(await login(subject), 403, 'account_disabled');
        assert.ok((await call('GET', '/audit/export')).body.includes(subject.email), 'the audit data is kept too');
        // Asked again: the same request.
        const again = await call('POST', `/users/${subject.id}/erase`, {});
        assert.deepEqual([again.statusCode, again.json<Deferred>().requestId], [202, answer.requestId]);
        const pending = (await call('GET', '/erasure-requests?limit=200')).json<{ items: ErasureRequest[] }>().items.find((entry) => entry.id === answer.requestId);
        assert.deepEqual([pending?.status, pending?.heldBy], ['pending', [placed.id]]);
        assert.ok((await eventsOf('privacy.erase.deferred')).some((event) => event.detail['requestId'] === answer.requestId));

        const released = await call('DELETE', `/legal-holds/${placed.id}`);
        assert.deepEqual(released.json<ReleasedHold>().erasuresCompleted, [answer.requestId]);
        assertProblem(await call('GET', `/users/${subject.id}`), 404, 'not_found');
        const done = (await call('GET', '/erasure-requests?limit=200')).json<{ items: ErasureRequest[] }>().items.find((entry) => entry.id === answer.requestId);
        assert.deepEqual([done?.status, done?.removed?.mfaFactors, done?.removed?.auditSubjectKeys], ['completed', 1, 1]);
        const event = (await eventsOf('privacy.erase')).find((entry) => entry.detail['requestId'] === answer.requestId);
        assert.deepEqual([event?.detail['trigger'], event?.detail['holdId']], ['legal-hold.release', placed.id]);
        assert.ok(!(await call('GET', '/audit/export')).body.includes(subject.email));
        assert.equal((await call('POST', '/audit/verify')).json<{ ok: boolean }>().ok, true);
      });

      it('waits for the last hold over the user: a tenant-wide one counts; releasing one of two changes nothing', async () => {
        const subject = await person();
        const tenantWide = await hold({ name: 'Everything' });
        const onUser = await hold({ userId: subject.id, name: 'This one' });
        const answer = (await call('POST', `/users/${subject.id}/erase`, {})).json<Deferred>();
        assert.deepEqual(answer.holds.map((entry) => entry.id).sort(), [tenantWide.id, onUser.id].sort());
        assert.deepEqual((await call('DELETE', `/legal-holds/${onUser.id}`)).json<ReleasedHold>().erasuresCompleted, []);
        assert.equal((await call('GET', `/users/${subject.id}`)).statusCode, 200);
        assert.deepEqual((await call('DELETE', `/legal-holds/${tenantWide.id}`)).json<ReleasedHold>().erasuresCompleted, [answer.requestId]);
        assertProblem(await call('GET', `/users/${subject.id}`), 404, 'not_found');
      });

      it('two erasures of one user at once: one erases, the other finds nobody; one request, one event', async () => {
        const subject = await person();
        const answers = await Promise.all([call('POST', `/users/${subject.id}/erase`, {}), call('POST', `/users/${subject.id}/erase`, {})]);
        assert.deepEqual(answers.map((answer) => answer.statusCode).sort(), [200, 404]);
        const requests = (await call('GET', '/erasure-requests?limit=200')).json<{ items: ErasureRequest[] }>().items.filter((entry) => entry.userId === subject.id);
        assert.equal(requests.length, 1);
        assert.equal((await eventsOf('privacy.erase')).filter((event) => event.target?.id === subject.id).length, 1);
      });

      it("refuses the tenant's last active tenant-admin (409), another tenant's user (404), bad input (400), and a caller lacking the user's permissions (403)", async () => {
        const fresh = await test.tenantWithKey('Alone');
        const [admin] = (await test.call({ method: 'GET', url: `/v1/tenants/${fresh.tenantId}/users`, token: fresh.apiKey })).json<{ items: { id: string }[] }>().items;
        assert.ok(admin);
        assertProblem(await test.call({ method: 'POST', url: `/v1/tenants/${fresh.tenantId}/users/${admin.id}/erase`, token: fresh.apiKey, body: {} }), 409, 'conflict');
        assert.equal((await test.call({ method: 'GET', url: `/v1/tenants/${fresh.tenantId}/users/${admin.id}`, token: fresh.apiKey })).json<{ status: string }>().status, 'active');

        const subject = await person();
        assertProblem(await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/users/${subject.id}/erase`, token: other.apiKey, body: {} }), 404, 'not_found');
        assertProblem(await test.call({ method: 'POST', url: `/v1/tenants/${other.tenantId}/users/${subject.id}/erase`, token: other.apiKey, body: {} }), 404, 'not_found');
        assertProblem(await call('POST', `/users/${subject.id}/erase`, { reason: 'x'.repeat(501) }), 400, 'validation_failed');
        assertProblem(await call('POST', `/users/${subject.id}/erase`, { who: 'me' }), 400, 'validation_failed');
        // A key that may erase but not hold `roles:read`... the user holds only viewer's permissions: give the key erase alone.
        const eraser = (await call('POST', '/api-keys', { name: 'eraser', scopes: ['privacy:erase'] })).json<{ key: string }>().key;
        const problem = assertProblem(await call('POST', `/users/${subject.id}/erase`, {}, eraser), 403, 'forbidden');
        assert.match(problem.detail, /records:read|users:read/);
        assert.equal((await call('GET', `/users/${subject.id}`)).statusCode, 200);
      });
    });
  });
}
