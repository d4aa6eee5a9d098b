import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, type TestApp } from '../../../testing/app.ts';
import { storedDataContains } from '../../../testing/at-rest.ts';
import { movableClock } from '../../../testing/clock.ts';
import { engineSkip, engines } from '../../../testing/engines.ts';
import { freePort } from '../../../testing/ports.ts';
import { type AuditItem, loginState, type Me, type Tokens } from '../../../testing/login-state.ts';
import { assertNoLeak, assertProblem } from '../../../testing/security-suite.ts';
import { ldapGroupsDn, ldapPeopleDn, type PrivateSlapd, type SeededLdapUser, slapdSkip, startPrivateSlapd } from '../../../testing/slapd.ts';

interface ConnectionAnswer {
  id: string;
  protocol: string;
  secretSet: boolean;
  config: Record<string, unknown>;
  endpoints: { login?: string };
}

const publicUrl = 'https://auth.bulwark.test';
const localPassword = 'a long and unusual passphrase 9!';
// Directory groups (the group entries' cn) to tenant roles; 'unmapped' groups give nothing.
const roleMappings = [
  { group: 'admins', role: 'auditor' },
  { group: 'engineers', role: 'member' },
  { group: 'support', role: 'viewer' },
];
// Per-source failures before an address is locked out of the tenant. Each test logs in from an address of its
// own (TEST-NET ranges), so only the test about it comes near.
const sourceMaxFailures = 12;

for (const engine of engines) {
  describe(`LDAP login through Bulwark's HTTP API, against a private slapd [${engine}]`, { skip: engineSkip(engine) || slapdSkip() }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof movableClock>;
    let pgliteDir: string;
    let slapd: PrivateSlapd;
    let tenantId: string;
    let apiKey: string;
    // main: StartTLS with the service account; ldaps: LDAPS, anonymous search; down: a closed port; foreign: a CA that did not sign the server's certificate.
    const connections = { main: '', ldaps: '', down: '', foreign: '' };

    const admin = (method: 'GET' | 'POST' | 'PATCH' | 'PUT', path: string, body?: unknown) =>
      test.call({ method, url: `/v1/tenants/${tenantId}${path}`, token: apiKey, body });
    const starttls = () => ({ url: slapd.url, security: 'starttls', caCertificates: [slapd.caPem], bindDn: slapd.bindDn, userBaseDn: ldapPeopleDn, groupBaseDn: ldapGroupsDn, timeoutMs: 2_000 });
    const createConnection = async (body: Record<string, unknown>): Promise<ConnectionAnswer> => {
      const created = await admin('POST', '/sso-connections', { protocol: 'ldap', roleMappings, ...body });
      assert.equal(created.statusCode, 201, created.body);
      assertNoLeak(created.body, [slapd.bindPassword]);
      return created.json<ConnectionAnswer>();
    };

    before(async () => {
      pgliteDir = join(mkdtempSync(join(tmpdir(), 'bulwark-ldap-')), 'pglite');
      clock = movableClock();
      [slapd, test] = await Promise.all([
        startPrivateSlapd(),
        // No auth cache: a role or policy change shows at once.
        createTestApp(engine, { clock, pgliteDir, config: { authCacheTtlMs: '0', loginSourceMaxFailures: String(sourceMaxFailures), publicUrl } }),
      ]);
      ({ tenantId, apiKey } = await test.tenantWithKey('LDAP'));
      const main = await createConnection({ name: 'Corporate directory', config: starttls(), secret: slapd.bindPassword });
      assert.equal(main.secretSet, true);
      assert.deepEqual(main.endpoints, { login: `${publicUrl}/v1/auth/ldap` });
      connections.main = main.id;
      // The other connections are other namespaces of the same people: they link to the users by the directory's address.
      const ldaps = await createConnection({
        name: 'Directory over LDAPS',
        config: { url: slapd.ldapsUrl, security: 'ldaps', caCertificates: [slapd.caPem], userBaseDn: ldapPeopleDn, groupBaseDn: ldapGroupsDn, timeoutMs: 2_000 },
        linkByEmail: true,
      });
      assert.equal(ldaps.secretSet, false, 'anonymous search: no service account, no secret');
      connections.ldaps = ldaps.id;
      connections.down = (await createConnection({ name: 'Down', config: { ...starttls(), url: `ldap://127.0.0.1:${await freePort()}` }, secret: slapd.bindPassword, linkByEmail: true })).id;
      connections.foreign = (await createConnection({ name: 'Foreign CA', config: { ...starttls(), caCertificates: [slapd.foreignCaPem] }, secret: slapd.bindPassword })).id;
    });
    after(async () => {
      await test.close();
      await slapd.stop();
    });

    /** POST /v1/auth/ldap as a client at `source` does. */
    const ldapLogin = (connectionId: string, username: string, password: string, source: string) =>
      test.app.inject({
        method: 'POST',
        url: '/v1/auth/ldap',
        remoteAddress: source,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ tenantId, connectionId, username, password }),
      });
    const me = async (tokens: Tokens): Promise<Me> => {
      const response = await test.call({ method: 'GET', url: '/v1/me', token: tokens.accessToken });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<Me>();
    };
    const loggedIn = async (connectionId: string, user: SeededLdapUser, source: string, username = user.uid): Promise<{ tokens: Tokens; me: Me }> => {
      const response = await ldapLogin(connectionId, username, user.password, source);
      assert.equal(response.statusCode, 200, response.body);
      assertNoLeak(response.body, [user.password, slapd.bindPassword]);
      const tokens = response.json<Tokens>();
      return { tokens, me: await me(tokens) };
    };
    const userByEmail = async (email: string) => {
      const found = await admin('GET', `/users?email=${encodeURIComponent(email)}`);
      assert.equal(found.statusCode, 200, found.body);
      return found.json<{ items: { id: string }[] }>().items;
    };
    const rolesOf = async (userId: string) => {
      const roles = await admin('GET', `/users/${userId}/roles`);
      assert.equal(roles.statusCode, 200, roles.body);
      return roles.json<{ roles: string[] }>().roles.toSorted();
    };
    const audit = async (query: string) => {
      const events = await admin('GET', `/audit?${query.includes('limit=') ? query : `limit=500&${query}`}`);
      assert.equal(events.statusCode, 200, events.body);
      return events.json<{ items: AuditItem[] }>().items;
    };
    const snapshot = () => loginState(test, tenantId);
    /** The one `auth.sso` failure event of a refused request, as the tenant's trail shows it. */
    const failureOf = async (response: LightMyRequestResponse): Promise<AuditItem> => {
      const events = await audit(`action=auth.sso&outcome=failure&requestId=${String(response.headers['x-request-id'])}`);
      assert.equal(events.length, 1, 'one failure event for the request');
      const [event] = events;
      assert.ok(event !== undefined);
      return event;
    };
    /** A refused login as the client sees it (the code, no password echoed), nothing changed, and the reason in the trail. */
    const refused = async (connectionId: string, username: string, password: string, source: string, expected: { status: 401 | 502; reason: string }) => {
      const before = await snapshot();
      const response = await ldapLogin(connectionId, username, password, source);
      const problem = assertProblem(response, expected.status, expected.status === 401 ? 'sso_failed' : 'sso_provider_unavailable', [password, slapd.bindPassword]);
      assert.doesNotMatch(problem.detail, new RegExp(expected.reason), 'the reason stays in the audit trail');
      assert.deepEqual(await snapshot(), before, 'a refused login changed something');
      const event = await failureOf(response);
      assert.deepEqual(
        { reason: event.detail['reason'], protocol: event.detail['protocol'], actor: event.actor, target: event.target, sessionId: event.sessionId },
        { reason: expected.reason, protocol: 'ldap', actor: { kind: 'anonymous', id: null }, target: { type: 'sso-connection', id: connectionId }, sessionId: null },
      );
      assertNoLeak(JSON.stringify(event), [password, slapd.bindPassword]);
      return response;
    };
    const throttled = (response: LightMyRequestResponse) => {
      assertProblem(response, 429, 'too_many_attempts');
      const seconds = Number(response.headers['retry-after']);
      assert.ok(Number.isInteger(seconds) && seconds > 0, `Retry-After ${String(response.headers['retry-after'])}`);
      return seconds;
    };

    it('StartTLS: alice logs in, GET /v1/me shows the JIT user with her mail and names, her groups map to roles; a second login is the same user', async () => {
      const { alice } = slapd.users;
      const source = '192.0.2.1';
      const before = await snapshot();
      const first = await loggedIn(connections.main, alice, source);
      assert.match(first.tokens.refreshToken, /^bwr_/);
      assert.deepEqual(
        { kind: first.me.kind, tenantId: first.me.tenantId, email: first.me.email, firstName: first.me.firstName, lastName: first.me.lastName, passwordSet: first.me.passwordSet },
        { kind: 'user', tenantId, email: alice.mail, firstName: 'Alice', lastName: 'Liddell', passwordSet: false },
      );
      assert.deepEqual((await userByEmail(alice.mail)).map((user) => user.id), [first.me.id], 'provisioned just in time');
      // admins -> auditor, engineers -> member.
      assert.deepEqual(await rolesOf(first.me.id), ['auditor', 'member']);
      // The roles are real: the auditor reads the tenant's audit trail with the LDAP session's token.
      assert.equal((await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit?limit=1`, token: first.tokens.accessToken })).statusCode, 200);
      const [login] = await audit(`action=auth.sso&outcome=success&actorId=${first.me.id}`);
      assert.deepEqual(
        { sessionId: login?.sessionId, target: login?.target, detail: login?.detail },
        { sessionId: first.tokens.sessionId, target: { type: 'sso-connection', id: connections.main }, detail: { protocol: 'ldap', provisioned: true, groups: 2 } },
      );
      assert.equal((await audit(`action=sso.identity.link&targetId=${first.me.id}`)).length, 1);
      // One linked identity on the connection.
      const identities = await test.storage.asOwner('SELECT user_id FROM sso_identities WHERE tenant_id = $1 AND connection_id = $2', [tenantId, connections.main]);
      assert.deepEqual(identities, [{ user_id: first.me.id }]);

      // The uid matches without regard to case, as the directory's matching rule says: the same person, not a new user.
      const second = await loggedIn(connections.main, alice, source, 'ALICE');
      assert.equal(second.me.id, first.me.id);
      assert.notEqual(second.tokens.sessionId, first.tokens.sessionId);
      const after = await snapshot();
      assert.equal(after['users'], Number(before['users']) + 1);
      assert.equal(after['sessions'], Number(before['sessions']) + 2);
      // The session is an ordinary one: its refresh token rotates.
      const refreshed = await test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: second.tokens.refreshToken } });
      assert.equal(refreshed.statusCode, 200, refreshed.body);
    });

    it('LDAPS (anonymous search): the same person logs in through it, linked by the directory’s address; bob is provisioned with his own groups', async () => {
      const { alice, bob } = slapd.users;
      const source = '192.0.2.2';
      const [existing] = await userByEmail(alice.mail);
      assert.ok(existing !== undefined, 'alice logged in through StartTLS before');
      const linked = await loggedIn(connections.ldaps, alice, source);
      assert.equal(linked.me.id, existing.id);
      assert.deepEqual(await rolesOf(existing.id), ['auditor', 'member']);
      assert.equal((await audit(`action=sso.identity.link&targetId=${existing.id}`)).length, 2, 'one link per connection');

      const provisioned = await loggedIn(connections.ldaps, bob, source);
      assert.deepEqual([provisioned.me.email, provisioned.me.firstName, provisioned.me.lastName], [bob.mail, 'Bob', 'Builder']);
      assert.deepEqual(await rolesOf(provisioned.me.id), ['member']);
    });

    it('a wrong password, another user’s password and an unknown user: 401 sso_failed alike, nothing created, audited as invalid_credentials', async () => {
      const { alice, bob } = slapd.users;
      const source = '192.0.2.3';
      const wrong = await refused(connections.main, alice.uid, `${alice.password}x`, source, { status: 401, reason: 'invalid_credentials' });
      const borrowed = await refused(connections.main, alice.uid, bob.password, source, { status: 401, reason: 'invalid_credentials' });
      const unknown = await refused(connections.main, 'nobody', alice.password, source, { status: 401, reason: 'invalid_credentials' });
      assert.deepEqual(await userByEmail('nobody@example.test'), []);
      // One answer for all three: the client cannot tell an unknown user from a wrong password.
      const strip = (response: LightMyRequestResponse) => {
        const problem = response.json<Record<string, unknown>>();
        delete problem['requestId'];
        return problem;
      };
      assert.deepEqual(strip(wrong), strip(unknown));
      assert.deepEqual(strip(borrowed), strip(unknown));
      // The control: the right password, from the same address, right after.
      await loggedIn(connections.main, alice, source);
    });

    it('injection usernames log nobody in (401, or 400 for what the schema refuses); the user whose uid is o*brien(x) logs in, and so does zoë', async () => {
      const { alice, special, unicode, twinA } = slapd.users;
      const source = '192.0.2.4';
      const before = await snapshot();
      // Unescaped, 'ali*' would match alice alone and her password would pass; 'o*' the same for o*brien(x).
      const attempts: [string, SeededLdapUser][] = [
        ['*', alice],
        ['ali*', alice],
        ['alice)(uid=*', alice],
        ['*)(|(uid=*', alice],
        ['\\', alice],
        ['alice\0', alice],
        ['\0', alice],
        ['o*', special],
        ['o\\2abrien(x)', special],
      ];
      for (const [username, user] of attempts) {
        const response = await ldapLogin(connections.main, username, user.password, source);
        assertProblem(response, 401, 'sso_failed', [user.password]);
        assert.equal((await failureOf(response)).detail['reason'], 'invalid_credentials', JSON.stringify(username));
      }
      for (const username of ['', 'a'.repeat(257)]) assertProblem(await ldapLogin(connections.main, username, alice.password, source), 400, 'validation_failed', [alice.password]);
      // Two entries share the uid 'twin': ambiguous, so nobody, even with the right password.
      assertProblem(await ldapLogin(connections.main, twinA.uid, twinA.password, source), 401, 'sso_failed', [twinA.password]);
      assert.deepEqual(await snapshot(), before, 'an injection attempt changed something');
      assert.deepEqual(await userByEmail(special.mail), []);

      assert.equal(special.uid, 'o*brien(x)');
      const owen = await loggedIn(connections.main, special, source);
      assert.deepEqual([owen.me.email, owen.me.firstName, owen.me.lastName], [special.mail, 'Owen', 'Obrien']);
      // Its group search ran on its escaped DN: support -> viewer.
      assert.deepEqual(await rolesOf(owen.me.id), ['viewer']);
      const zoe = await loggedIn(connections.main, unicode, source);
      assert.deepEqual([zoe.me.firstName, zoe.me.lastName], ['Zoë', 'Åström']);
      assert.deepEqual(await rolesOf(zoe.me.id), ['member']);
    });

    it('throttling: wrong passwords answer 401, then 429 with Retry-After, then even the right password 429 until the lockout ends; an unknown username the same', async () => {
      const { alice } = slapd.users;
      /**
       * Five wrong passwords as the policy meets them: from the third a delay (1 s, then 2 s), waited out on the
       * app's clock, and the fifth starts the lockout. Returns what the client saw of each request.
       */
      const hammer = async (username: (attempt: number) => string, source: string) => {
        const seen: (number | string)[] = [];
        const guess = async (attempt: number) => {
          const response = await ldapLogin(connections.main, username(attempt), `wrong guess ${attempt}`, source);
          if (response.statusCode === 429) return `429 after ${throttled(response)} s`;
          assertProblem(response, 401, 'sso_failed');
          return response.statusCode;
        };
        for (const attempt of [1, 2, 3]) seen.push(await guess(attempt));
        seen.push(await guess(4));
        clock.advance(1_100);
        seen.push(await guess(4));
        seen.push(await guess(5));
        clock.advance(2_100);
        seen.push(await guess(5));
        return seen;
      };
      const expected = [401, 401, 401, '429 after 1 s', 401, '429 after 2 s', 401];
      // Case variants of the uid are one subject, as they are one entry.
      const casings = ['alice', 'ALICE', 'Alice', 'aLice', 'alicE'];
      const aliceSource = '192.0.2.5';
      const before = await snapshot();
      assert.deepEqual(await hammer((attempt) => casings[attempt - 1] ?? 'alice', aliceSource), expected);
      // Locked for the configured 15 minutes: the right password too, and no event per refusal.
      const events = (await audit('action=auth.sso')).length;
      const locked = await ldapLogin(connections.main, alice.uid, alice.password, aliceSource);
      assert.ok(throttled(locked) > 14 * 60);
      assertNoLeak(locked.body, [alice.password]);
      assert.equal((await audit('action=auth.sso')).length, events, 'a refusal while locked is not audited');
      const [lockout] = await audit('action=auth.lockout&limit=1');
      assert.equal(lockout?.detail['throttled'], 'account');
      // Another address does not escape the username's lockout.
      throttled(await ldapLogin(connections.main, alice.uid, alice.password, '192.0.2.55'));
      assert.deepEqual(await snapshot(), before, 'a throttled login changed something');

      // An unknown username, from an address of its own, meets exactly the same answers.
      const ghostSource = '192.0.2.6';
      assert.deepEqual(await hammer(() => 'ghost', ghostSource), expected);
      assert.ok(throttled(await ldapLogin(connections.main, 'ghost', 'any password', ghostSource)) > 14 * 60);
      // The lockout is the connection's: the same username through another connection is its own subject.
      assert.equal((await ldapLogin(connections.ldaps, alice.uid, alice.password, aliceSource)).statusCode, 200);

      clock.advance(10 * 60_000);
      throttled(await ldapLogin(connections.main, alice.uid, alice.password, aliceSource));
      clock.advance(6 * 60_000);
      const back = await loggedIn(connections.main, alice, aliceSource);
      assert.equal(back.me.email, alice.mail);
      // The success starts the username clean: a wrong password now is a plain 401 again.
      await refused(connections.main, alice.uid, 'wrong once more', aliceSource, { status: 401, reason: 'invalid_credentials' });
    });

    it('throttling per source address: one address spraying usernames is locked out of every account of the tenant, password login included; another address is not', async () => {
      const { alice } = slapd.users;
      const spray = '198.51.100.7';
      for (let attempt = 1; attempt <= sourceMaxFailures; attempt += 1) {
        assertProblem(await ldapLogin(connections.main, `sprayed-${attempt}`, alice.password, spray), 401, 'sso_failed', [alice.password]);
      }
      throttled(await ldapLogin(connections.main, alice.uid, alice.password, spray));
      throttled(await test.app.inject({ method: 'POST', url: '/v1/auth/login', remoteAddress: spray, payload: { tenantId, email: alice.mail, password: alice.password } }));
      const [lockout] = await audit('action=auth.lockout&limit=1');
      assert.equal(lockout?.detail['throttled'], 'source');
      await loggedIn(connections.main, alice, '198.51.100.8');
    });

    it('an unreachable directory answers 502 sso_provider_unavailable and costs no attempt; so does a certificate from a CA not configured', async () => {
      const { alice, bob } = slapd.users;
      const source = '192.0.2.7';
      // More than the lockout's five attempts on one username: none of them is held against it.
      for (let attempt = 0; attempt < 7; attempt += 1) {
        await refused(connections.down, alice.uid, alice.password, source, { status: 502, reason: 'sso_provider_unavailable' });
      }
      // More than the source's limit, from one address: none held against the address either.
      const spray = '192.0.2.77';
      for (let attempt = 0; attempt <= sourceMaxFailures; attempt += 1) {
        assertProblem(await ldapLogin(connections.down, `someone-${attempt}`, 'whatever', spray), 502, 'sso_provider_unavailable');
      }
      // A certificate the configured CA did not sign: the directory cannot prove who it is, so nobody's password is tried there.
      await refused(connections.foreign, alice.uid, alice.password, source, { status: 502, reason: 'sso_provider_unavailable' });

      // The directory back (the connection repointed): the same username and the same addresses log in at once.
      const repointed = await admin('PATCH', `/sso-connections/${connections.down}`, { protocol: 'ldap', config: starttls() });
      assert.equal(repointed.statusCode, 200, repointed.body);
      const [existing] = await userByEmail(alice.mail);
      assert.equal((await loggedIn(connections.down, alice, source)).me.id, existing?.id);
      assert.equal((await loggedIn(connections.down, bob, spray)).me.email, bob.mail);
    });

    it("creating or changing a connection to security 'none' without allowInsecure, or an ldaps url with starttls, answers 400 validation_failed and stores nothing", async () => {
      const list = async () => {
        const response = await admin('GET', '/sso-connections');
        assert.equal(response.statusCode, 200, response.body);
        return response.json<{ items: ConnectionAnswer[] }>().items;
      };
      const before = await list();
      const creates = (await audit('action=sso.connection.create')).length;
      const plain = { ...starttls(), security: 'none', caCertificates: undefined };
      // Each refused for its own rule, which the answer names (the schema alone would accept every one of them).
      const bad: [Record<string, unknown>, RegExp][] = [
        [plain, /security 'none' sends passwords in clear and is refused unless allowInsecure is set/],
        [{ ...plain, allowInsecure: false }, /unless allowInsecure is set/],
        [{ ...starttls(), url: slapd.ldapsUrl }, /security 'starttls' needs an ldap:\/\/ url/],
        [{ ...starttls(), security: 'ldaps' }, /security 'ldaps' needs an ldaps:\/\/ url/],
      ];
      const invalid = (response: LightMyRequestResponse, rule: RegExp) => {
        const problem = assertProblem(response, 400, 'validation_failed', [slapd.bindPassword]);
        assert.match(problem.detail, rule);
        assert.deepEqual(problem.errors?.map((error) => [error.in, error.path]), [['body', '/config']]);
      };
      for (const [config, rule] of bad) {
        invalid(await admin('POST', '/sso-connections', { protocol: 'ldap', name: 'Refused', config, secret: slapd.bindPassword }), rule);
        invalid(await admin('PATCH', `/sso-connections/${connections.main}`, { protocol: 'ldap', config }), rule);
      }
      assert.deepEqual(await list(), before, 'nothing created, nothing changed');
      assert.equal((await audit('action=sso.connection.create')).length, creates);
      // The control: plain LDAP is accepted when the admin says it is insecure on purpose, and it works.
      const insecure = await createConnection({ name: 'Plain, on purpose', config: { ...plain, allowInsecure: true }, secret: slapd.bindPassword, linkByEmail: true });
      assert.equal((await loggedIn(insecure.id, slapd.users.alice, '192.0.2.8')).me.email, slapd.users.alice.mail);
    });

    it('a disabled, unknown or non-LDAP connection answers 404, and nothing changes', async () => {
      const { alice } = slapd.users;
      const source = '192.0.2.9';
      const oidc = await admin('POST', '/sso-connections', { protocol: 'oidc', name: 'Not LDAP', config: { issuer: 'https://idp.example.test', clientId: 'c' }, secret: 'oidc-client-secret' });
      assert.equal(oidc.statusCode, 201, oidc.body);
      assert.equal((await admin('PATCH', `/sso-connections/${connections.ldaps}`, { protocol: 'ldap', enabled: false })).statusCode, 200);
      const before = await snapshot();
      for (const connectionId of [connections.ldaps, '0123456789ab', oidc.json<{ id: string }>().id]) {
        assertProblem(await ldapLogin(connectionId, alice.uid, alice.password, source), 404, 'not_found', [alice.password]);
      }
      assert.deepEqual(await snapshot(), before);
      assert.equal((await admin('PATCH', `/sso-connections/${connections.ldaps}`, { protocol: 'ldap', enabled: true })).statusCode, 200);
      await loggedIn(connections.ldaps, alice, source);
    });

    it('a right directory password refused for the account (no user may be created) answers 403 each time, never a lockout', async () => {
      const closed = await createConnection({ name: 'No provisioning', config: starttls(), secret: slapd.bindPassword, jitProvisioning: false });
      const { bob } = slapd.users;
      for (let attempt = 0; attempt < 8; attempt += 1) {
        assertProblem(await ldapLogin(closed.id, bob.uid, bob.password, '192.0.2.10'), 403, 'sso_user_not_provisioned', [bob.password]);
      }
      // Control: a wrong password on the same connection and username still counts toward the lockout.
      const wrong = [];
      for (let attempt = 0; attempt < 8; attempt += 1) wrong.push((await ldapLogin(closed.id, bob.uid, 'not his password', '192.0.2.10')).statusCode);
      assert.ok(wrong.includes(429), wrong.join(','));
    });

    it('with SSO required, password login answers 403 sso_required and LDAP login still works', async () => {
      const { alice } = slapd.users;
      const email = 'local.user@example.org';
      const created = await admin('POST', '/users', { email, password: localPassword });
      assert.equal(created.statusCode, 201, created.body);
      const passwordLogin = () => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email, password: localPassword } });
      assert.equal((await passwordLogin()).statusCode, 200, 'the control: before the policy, the password works');

      const policy = await admin('PUT', '/sso-policy', { required: true });
      assert.equal(policy.statusCode, 200, policy.body);
      const before = await snapshot();
      assertProblem(await passwordLogin(), 403, 'sso_required', [localPassword]);
      assert.deepEqual(await snapshot(), before, 'the refused password login started no session');
      assert.equal((await loggedIn(connections.main, alice, '192.0.2.10')).me.email, alice.mail);

      assert.equal((await admin('PUT', '/sso-policy', { required: false })).statusCode, 200);
      assert.equal((await passwordLogin()).statusCode, 200);
    });

    it('the service password is write-only: secretSet, never returned; the stored one is what the directory gets; nothing of it or of a user password in the database in clear (last: the PGlite search closes the database)', async () => {
      const { alice } = slapd.users;
      const source = '192.0.2.11';
      const read = await admin('GET', `/sso-connections/${connections.main}`);
      assert.equal(read.statusCode, 200, read.body);
      assert.equal(read.json<ConnectionAnswer>().secretSet, true);
      assert.equal('secret' in read.json<ConnectionAnswer>(), false);
      const list = await admin('GET', '/sso-connections');
      assert.equal(list.statusCode, 200, list.body);
      for (const body of [read.body, list.body]) assertNoLeak(body, [slapd.bindPassword]);

      // A wrong service password: the directory refuses the service account, which is the connection's fault (502), not the user's.
      const wrong = `${slapd.bindPassword}-wrong`;
      const replaced = await admin('PATCH', `/sso-connections/${connections.main}`, { protocol: 'ldap', secret: wrong });
      assert.equal(replaced.statusCode, 200, replaced.body);
      assertNoLeak(replaced.body, [wrong, slapd.bindPassword]);
      assert.equal(replaced.json<ConnectionAnswer>().secretSet, true);
      await refused(connections.main, alice.uid, alice.password, source, { status: 502, reason: 'sso_provider_unavailable' });
      assert.equal((await admin('PATCH', `/sso-connections/${connections.main}`, { protocol: 'ldap', secret: slapd.bindPassword })).statusCode, 200);
      await loggedIn(connections.main, alice, source);
      const [update] = await audit(`action=sso.connection.update&targetId=${connections.main}&limit=1`);
      assert.equal(update?.detail['secretReplaced'], true);
      const userPasswords = Object.values(slapd.users).map((user) => user.password);
      assertNoLeak(JSON.stringify(await audit('')), [slapd.bindPassword, wrong, ...userPasswords]);

      const control = `control-${Date.now().toString(36)}-${connections.main}`;
      assert.equal((await admin('PATCH', `/sso-connections/${connections.foreign}`, { protocol: 'ldap', name: control })).statusCode, 200);
      const secrets = [slapd.bindPassword, wrong, ...userPasswords];
      // A bytea in clear would show as hex in the PostgreSQL dump.
      const found = await storedDataContains(test.storage, pgliteDir, [control, ...secrets, ...secrets.map((value) => Buffer.from(value).toString('hex'))]);
      assert.ok(found[0], 'the search finds the unencrypted control');
      assert.equal(found.slice(1).filter(Boolean).length, 0, 'a password is stored in clear');
    });
  });
}
