import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, type TestApp } from '../../../testing/app.ts';
import { storedDataContains } from '../../../testing/at-rest.ts';
import { movableClock } from '../../../testing/clock.ts';
import { engineSkip, engines } from '../../../testing/engines.ts';
import { type AuditItem, loginState, type Me, type Tokens } from '../../../testing/login-state.ts';
import { startOidcPeer, type OidcPeer, type OidcPeerAccount } from '../../../testing/oidc-peer.ts';
import { assertNoLeak, assertProblem } from '../../../testing/security-suite.ts';

interface ConnectionAnswer {
  id: string;
  enabled: boolean;
  secretSet: boolean;
  linkByEmail: boolean;
  jitProvisioning: boolean;
  endpoints: { start?: string; redirectUri?: string };
}

/** A browser's view of one started login: where Bulwark sent it, and the flow cookie it holds. */
interface Started {
  location: URL;
  cookie: string;
}

// Bulwark's public URL: the redirect URIs registered at the peer. The peer never calls it.
const publicUrl = 'https://bulwark.example.test';
// Connections are created before the peers exist (the redirect URI names the connection id), then pointed at them.
const placeholderIssuer = 'https://idp.placeholder.test';
const password = 'a long and unusual passphrase 9!';
const roleMappings = [
  { group: 'engineers', role: 'member' },
  { group: 'auditors', role: 'auditor' },
];

// main: the login, roles and refusals; other: a second client at the same peer; linking: linkByEmail and JIT;
// short: a peer whose ID tokens live 30 s, for the expiry.
const names = ['main', 'other', 'linking', 'short'] as const;
type Name = (typeof names)[number];

for (const engine of engines) {
  describe(`OIDC login through Bulwark's HTTP API, oidc-provider as the IdP [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof movableClock>;
    let pgliteDir: string;
    let tenantId: string;
    let apiKey: string;
    let peer: OidcPeer;
    let shortPeer: OidcPeer;
    const secrets = Object.fromEntries(names.map((name) => [name, `oidc-secret-${name}-${randomBytes(16).toString('hex')}`])) as Record<Name, string>;
    const connections = new Map<Name, { id: string; redirectUri: string; issuer: string }>();
    const account = (sub: string, extra: Partial<OidcPeerAccount> = {}): OidcPeerAccount => ({
      sub,
      email: `${sub}@example.org`,
      emailVerified: true,
      givenName: sub.charAt(0).toUpperCase() + sub.slice(1),
      familyName: 'Tester',
      groups: [],
      ...extra,
    });

    const connection = (name: Name) => {
      const found = connections.get(name);
      assert.ok(found !== undefined, name);
      return found;
    };
    const admin = (method: 'GET' | 'POST' | 'PATCH' | 'PUT', path: string, body?: unknown) =>
      test.call({ method, url: `/v1/tenants/${tenantId}${path}`, token: apiKey, body });
    const configOf = (name: Name) => ({ issuer: connection(name).issuer, clientId: `client-${name}`, allowInsecureHttp: true });

    before(async () => {
      pgliteDir = join(mkdtempSync(join(tmpdir(), 'bulwark-oidc-')), 'pglite');
      clock = movableClock();
      // No auth cache: a role, policy or connection change shows at once. Every request comes from one address.
      test = await createTestApp(engine, { clock, pgliteDir, config: { authCacheTtlMs: '0', loginSourceMaxFailures: '10000', publicUrl } });
      ({ tenantId, apiKey } = await test.tenantWithKey('OIDC'));
      for (const name of names) {
        const created = await admin('POST', '/sso-connections', {
          protocol: 'oidc',
          name: `IdP ${name}`,
          config: { issuer: placeholderIssuer, clientId: `client-${name}` },
          secret: secrets[name],
          ...(name === 'main' ? { roleMappings } : {}),
        });
        assert.equal(created.statusCode, 201, created.body);
        assertNoLeak(created.body, [secrets[name]]);
        const answer = created.json<ConnectionAnswer>();
        assert.equal(answer.secretSet, true);
        assert.equal(answer.endpoints.redirectUri, `${publicUrl}/v1/sso/${tenantId}/${answer.id}/callback`);
        assert.equal(answer.endpoints.start, `${publicUrl}/v1/sso/${tenantId}/${answer.id}/start`);
        connections.set(name, { id: answer.id, redirectUri: answer.endpoints.redirectUri, issuer: placeholderIssuer });
      }
      const clientOf = (name: Name) => ({ clientId: `client-${name}`, clientSecret: secrets[name], redirectUris: [connection(name).redirectUri] });
      peer = await startOidcPeer({
        clients: [clientOf('main'), clientOf('other'), clientOf('linking')],
        accounts: [account('ada', { familyName: 'Lovelace', groups: ['engineers', 'auditors', 'unmapped'] }), account('mallory'), account('lin'), account('nobody')],
      });
      shortPeer = await startOidcPeer({ clients: [clientOf('short')], accounts: [account('early'), account('late')], idTokenTtlSeconds: 30 });
      for (const name of names) {
        connection(name).issuer = name === 'short' ? shortPeer.issuer : peer.issuer;
        const pointed = await admin('PATCH', `/sso-connections/${connection(name).id}`, { protocol: 'oidc', config: configOf(name) });
        assert.equal(pointed.statusCode, 200, pointed.body);
      }
    });
    after(async () => {
      await peer.close();
      await shortPeer.close();
      await test.close();
    });

    const base = (name: Name) => `/v1/sso/${tenantId}/${connection(name).id}`;

    /** GET start as a browser: the 302 to the IdP and the flow cookie it set. */
    const start = async (name: Name): Promise<Started> => {
      const response = await test.call({ method: 'GET', url: `${base(name)}/start` });
      assert.equal(response.statusCode, 302, response.body);
      const setCookie = response.headers['set-cookie'];
      assert.equal(typeof setCookie, 'string', 'one Set-Cookie');
      const cookie = String(setCookie).split(';', 1)[0] ?? '';
      assert.match(cookie, new RegExp(`^bulwark_sso_${connection(name).id}=[A-Za-z0-9_-]{43}$`));
      return { location: new URL(String(response.headers.location)), cookie };
    };
    /** The browser arriving at Bulwark's callback (the path and query the IdP redirected to), with a cookie or none. */
    const callback = (url: URL, cookie: string | undefined) =>
      test.call({ method: 'GET', url: `${url.pathname}${url.search}`, headers: cookie === undefined ? {} : { cookie } });
    const idpOf = (name: Name) => (name === 'short' ? shortPeer : peer);
    const ssoLogin = async (name: Name, sub: string): Promise<LightMyRequestResponse> => {
      const started = await start(name);
      return callback(await idpOf(name).login(started.location.href, sub), started.cookie);
    };
    const loggedIn = async (name: Name, sub: string): Promise<{ tokens: Tokens; me: Me }> => {
      const response = await ssoLogin(name, sub);
      assert.equal(response.statusCode, 200, response.body);
      const tokens = response.json<Tokens>();
      const me = await test.call({ method: 'GET', url: '/v1/me', token: tokens.accessToken });
      assert.equal(me.statusCode, 200, me.body);
      return { tokens, me: me.json<Me>() };
    };
    const userByEmail = async (email: string) => {
      const found = await admin('GET', `/users?email=${encodeURIComponent(email)}`);
      assert.equal(found.statusCode, 200, found.body);
      return found.json<{ items: { id: string; email: string }[] }>().items;
    };
    const rolesOf = async (userId: string) => {
      const roles = await admin('GET', `/users/${userId}/roles`);
      assert.equal(roles.statusCode, 200, roles.body);
      return roles.json<{ roles: string[] }>().roles.toSorted();
    };
    const audit = async (query: string) => {
      const events = await admin('GET', `/audit?${query}`);
      assert.equal(events.statusCode, 200, events.body);
      return events.json<{ items: AuditItem[] }>().items;
    };
    const snapshot = () => loginState(test, tenantId);
    /** A refusal as a client sees it (401 sso_failed, no secret echoed), the reason the trail keeps, and nothing changed. */
    const refusedWith = async (response: LightMyRequestResponse, reason: string, before: Awaited<ReturnType<typeof snapshot>>, mustNotEcho: string[] = []) => {
      assertProblem(response, 401, 'sso_failed', [...Object.values(secrets), ...mustNotEcho]);
      assert.deepEqual(await snapshot(), before, 'a refused login changed something');
      const [latest] = await audit('action=auth.sso&outcome=failure&limit=1');
      assert.ok(latest !== undefined);
      assert.equal(latest.detail['reason'], reason);
      assert.deepEqual(latest.actor, { kind: 'anonymous', id: null });
    };

    it('code + PKCE through Bulwark: start redirects to the peer with S256, state and nonce; the callback answers tokens of a JIT-created user', async () => {
      const before = await snapshot();
      const started = await start('main');
      const { location } = started;
      assert.equal(`${location.origin}${location.pathname}`, `${peer.issuer}/auth`);
      const query = Object.fromEntries(location.searchParams);
      assert.deepEqual(Object.keys(query).toSorted(), ['client_id', 'code_challenge', 'code_challenge_method', 'nonce', 'redirect_uri', 'response_type', 'scope', 'state']);
      assert.equal(query['client_id'], 'client-main');
      assert.equal(query['response_type'], 'code');
      assert.equal(query['redirect_uri'], connection('main').redirectUri);
      assert.equal(query['code_challenge_method'], 'S256');
      assert.match(query['code_challenge'] ?? '', /^[A-Za-z0-9_-]{43}$/);
      assert.ok((query['state'] ?? '').length >= 43 && (query['nonce'] ?? '').length >= 43);
      // The browser's binding is its own value, not something the IdP or the URL ever sees.
      assert.ok(!location.href.includes(started.cookie.split('=')[1] ?? '-'));
      assert.deepEqual(await snapshot(), before, 'starting a login creates nobody');

      const back = await peer.login(location.href, 'ada');
      assert.equal(`${back.origin}${back.pathname}`, connection('main').redirectUri);
      const response = await callback(back, started.cookie);
      assert.equal(response.statusCode, 200, response.body);
      assert.match(String(response.headers['set-cookie']), new RegExp(`^bulwark_sso_${connection('main').id}=; .*Max-Age=0`), 'the flow cookie is cleared');
      const tokens = response.json<Tokens>();
      assert.match(tokens.refreshToken, /^bwr_/);
      const me = await test.call({ method: 'GET', url: '/v1/me', token: tokens.accessToken });
      assert.equal(me.statusCode, 200, me.body);
      const user = me.json<Me>();
      assert.equal(user.kind, 'user');
      assert.equal(user.tenantId, tenantId);
      assert.deepEqual([user.email, user.firstName, user.lastName], ['ada@example.org', 'Ada', 'Lovelace']);
      assert.deepEqual((await userByEmail('ada@example.org')).map((found) => found.id), [user.id]);
      // The session is an ordinary one: its refresh token rotates.
      const refreshed = await test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      assert.equal(refreshed.json<Tokens>().sessionId, tokens.sessionId);

      const [event] = await audit('action=auth.sso&outcome=success&limit=1');
      assert.ok(event !== undefined);
      assert.deepEqual(event.actor, { kind: 'user', id: user.id });
      assert.equal(event.sessionId, tokens.sessionId);
      assert.deepEqual(event.target, { type: 'sso-connection', id: connection('main').id });
      assert.equal(event.detail['provisioned'], true);
      assert.equal((await audit(`action=sso.identity.link&targetId=${user.id}`)).length, 1);
    });

    it('maps groups to roles at every login: exactly the mapped roles of its groups; a removed group takes its role away, a hand-set role stays', async () => {
      const ada = peer.accounts.get('ada');
      assert.ok(ada !== undefined);
      const first = await loggedIn('main', 'ada');
      const userId = first.me.id;
      // engineers -> member, auditors -> auditor; 'unmapped' maps to nothing.
      assert.deepEqual(await rolesOf(userId), ['auditor', 'member']);
      // What the roles give is real: the auditor role reads the audit trail.
      assert.equal((await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit?limit=1`, token: first.tokens.accessToken })).statusCode, 200);

      const byHand = await admin('PUT', `/users/${userId}/roles`, { roles: ['auditor', 'member', 'viewer'] });
      assert.equal(byHand.statusCode, 200, byHand.body);

      peer.accounts.set('ada', { ...ada, groups: ['engineers'] });
      const second = await loggedIn('main', 'ada');
      assert.equal(second.me.id, userId);
      assert.deepEqual(await rolesOf(userId), ['member', 'viewer']);
      // The access token reflects it: the auditor's audit read is gone.
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit?limit=1`, token: second.tokens.accessToken }), 403, 'forbidden');

      peer.accounts.set('ada', { ...ada, groups: [] });
      await loggedIn('main', 'ada');
      assert.deepEqual(await rolesOf(userId), ['viewer']);

      peer.accounts.set('ada', { ...ada, groups: ['auditors', 'engineers'] });
      await loggedIn('main', 'ada');
      assert.deepEqual(await rolesOf(userId), ['auditor', 'member', 'viewer']);

      const changes = await audit(`action=user.roles.set&targetId=${userId}`);
      const bySso = changes.filter((event) => event.detail['source'] === 'sso');
      assert.equal(bySso.length, 4, 'each login that changed the roles is recorded, the hand change is not from SSO');
      assert.ok(bySso.every((event) => event.detail['connectionId'] === connection('main').id));
    });

    it('a second login links to the same user: no duplicate user, one linked identity, a new session', async () => {
      const first = await loggedIn('main', 'ada');
      const before = await snapshot();
      const second = await loggedIn('main', 'ada');
      assert.equal(second.me.id, first.me.id);
      assert.notEqual(second.tokens.sessionId, first.tokens.sessionId);
      assert.equal((await userByEmail('ada@example.org')).length, 1);
      const after = await snapshot();
      assert.equal(after['users'], before['users']);
      assert.equal(after['sessions'], Number(before['sessions']) + 1);
      const identities = await test.storage.asOwner('SELECT user_id FROM sso_identities WHERE tenant_id = $1 AND connection_id = $2', [tenantId, connection('main').id]);
      assert.deepEqual(identities, [{ user_id: first.me.id }]);
      const [event] = await audit('action=auth.sso&outcome=success&limit=1');
      assert.equal(event?.detail['provisioned'], false);
    });

    it('refuses, 401 sso_failed with nothing changed: tampered state, no cookie, another browser, a code of another client, access_denied, a replayed callback', async () => {
      const mallory = 'mallory@example.org';
      let before = await snapshot();

      // The state is the flow's key: a tampered one finds no flow, and spends none.
      const genuine = await start('main');
      const genuineBack = await peer.login(genuine.location.href, 'mallory');
      const code = genuineBack.searchParams.get('code') ?? '';
      const tampered = new URL(genuineBack);
      tampered.searchParams.set('state', `${tampered.searchParams.get('state') ?? ''}x`);
      await refusedWith(await callback(tampered, genuine.cookie), 'state_mismatch', before, [code]);
      tampered.searchParams.delete('state');
      await refusedWith(await callback(tampered, genuine.cookie), 'state_mismatch', before, [code]);

      // The browser that finishes must be the one that started (login CSRF).
      const noCookie = await start('main');
      await refusedWith(await callback(await peer.login(noCookie.location.href, 'mallory'), undefined), 'browser_mismatch', before);
      const victim = await start('main');
      const attacker = await start('main');
      await refusedWith(await callback(await peer.login(victim.location.href, 'mallory'), attacker.cookie), 'browser_mismatch', before);

      // A code the peer issued to another client (connection), sent with this connection's own state and cookie:
      // the peer refuses to redeem it for this client.
      const mine = await start('main');
      const theirs = await start('other');
      const theirsBack = await peer.login(theirs.location.href, 'mallory');
      const spliced = new URL(mine.location.searchParams.get('redirect_uri') ?? '');
      spliced.search = theirsBack.search;
      spliced.searchParams.set('state', mine.location.searchParams.get('state') ?? '');
      await refusedWith(await callback(spliced, mine.cookie), 'token_exchange_failed', before);
      // Their whole callback, brought to this connection: its state is no flow of this connection.
      const moved = new URL(`${base('main')}/callback${theirsBack.search}`, publicUrl);
      await refusedWith(await callback(moved, theirs.cookie.replace(connection('other').id, connection('main').id)), 'state_mismatch', before);

      const denied = await start('main');
      const deniedBack = await peer.deny(denied.location.href);
      assert.equal(deniedBack.searchParams.get('error'), 'access_denied');
      await refusedWith(await callback(deniedBack, denied.cookie), 'idp_error', before);

      assert.deepEqual(await userByEmail(mallory), [], 'no user was created');
      // The control: the genuine callback, after all of that, logs the user in (the tampered ones spent nothing).
      const accepted = await callback(genuineBack, genuine.cookie);
      assert.equal(accepted.statusCode, 200, accepted.body);
      assert.equal((await userByEmail(mallory)).length, 1);

      // The flow is spent: the same callback again is refused, and starts no second session.
      before = await snapshot();
      await refusedWith(await callback(genuineBack, genuine.cookie), 'state_mismatch', before, [code]);
    });

    it("refuses an ID token that expired on Bulwark's clock (the app's injected clock moved past its exp)", async () => {
      // The control: the same connection logs in while the token is fresh.
      const fresh = await loggedIn('short', 'early');
      assert.equal(fresh.me.email, 'early@example.org');

      const before = await snapshot();
      const started = await start('short');
      const back = await shortPeer.login(started.location.href, 'late');
      // 30 s of ID token lifetime plus openid-client's 30 s tolerance, well inside the 10-minute flow.
      clock.advance(2 * 60_000);
      await refusedWith(await callback(back, started.cookie), 'id_token_invalid', before);
      assert.deepEqual(await userByEmail('late@example.org'), []);
    });

    it('links an existing local user by e-mail only with linkByEmail and a verified address; jitProvisioning false refuses unknown identities', async () => {
      const created = await admin('POST', '/users', { email: 'lin@example.org', password, firstName: 'Local' });
      assert.equal(created.statusCode, 201, created.body);
      const localId = created.json<{ id: string }>().id;
      const lin = peer.accounts.get('lin');
      assert.ok(lin !== undefined);
      const id = connection('linking').id;
      const setFlags = async (flags: { linkByEmail?: boolean; jitProvisioning?: boolean }) => {
        const changed = await admin('PATCH', `/sso-connections/${id}`, { protocol: 'oidc', ...flags });
        assert.equal(changed.statusCode, 200, changed.body);
      };
      const notProvisioned = async (sub: string, code: 'sso_user_not_provisioned' | 'account_disabled' = 'sso_user_not_provisioned') => {
        const before = await snapshot();
        assertProblem(await ssoLogin('linking', sub), 403, code, Object.values(secrets));
        assert.deepEqual(await snapshot(), before, 'a refused login changed something');
        const [latest] = await audit('action=auth.sso&outcome=failure&limit=1');
        assert.equal(latest?.detail['reason'], code, 'the refusal is in the trail');
      };

      // Default: the IdP's address does not take over a local account, verified or not.
      await notProvisioned('lin');
      await setFlags({ linkByEmail: true });
      peer.accounts.set('lin', { ...lin, emailVerified: false });
      await notProvisioned('lin');
      peer.accounts.set('lin', { ...lin, emailVerified: true });
      const linked = await loggedIn('linking', 'lin');
      assert.equal(linked.me.id, localId, 'linked to the local user, not a new one');
      assert.equal(linked.me.firstName, 'Local', 'the local profile stays');
      assert.equal((await userByEmail('lin@example.org')).length, 1);
      assert.equal((await audit(`action=sso.identity.link&targetId=${localId}`)).length, 1);

      await setFlags({ jitProvisioning: false });
      await notProvisioned('nobody');
      assert.deepEqual(await userByEmail('nobody@example.org'), []);
      // A linked identity still logs in without provisioning; a later unverified address changes nothing for it.
      peer.accounts.set('lin', { ...lin, emailVerified: false });
      assert.equal((await loggedIn('linking', 'lin')).me.id, localId);
      await setFlags({ jitProvisioning: true });
      const provisioned = await loggedIn('linking', 'nobody');
      assert.equal(provisioned.me.email, 'nobody@example.org');
      // A disabled user stays out, whatever the IdP says.
      assert.equal((await admin('PATCH', `/users/${provisioned.me.id}`, { status: 'disabled' })).statusCode, 200);
      await notProvisioned('nobody', 'account_disabled');
    });

    it("with SSO required, an admin's password login answers 403 sso_required; a break-glass user still logs in with the password", async () => {
      const newUser = async (email: string, roles: string[]) => {
        const created = await admin('POST', '/users', { email, password });
        assert.equal(created.statusCode, 201, created.body);
        const userId = created.json<{ id: string }>().id;
        assert.equal((await admin('PUT', `/users/${userId}/roles`, { roles })).statusCode, 200);
        return userId;
      };
      const passwordLogin = (email: string) => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email, password } });
      await newUser('root@example.org', ['tenant-admin']);
      const glassId = await newUser('glass@example.org', ['tenant-admin']);
      assert.equal((await passwordLogin('root@example.org')).statusCode, 200, 'the control: before the policy, the password works');

      const policy = await admin('PUT', '/sso-policy', { required: true, breakGlassUserIds: [glassId] });
      assert.equal(policy.statusCode, 200, policy.body);
      assert.deepEqual(policy.json<{ required: boolean; breakGlassUserIds: string[] }>().breakGlassUserIds, [glassId]);
      const before = await snapshot();
      assertProblem(await passwordLogin('root@example.org'), 403, 'sso_required', [password]);
      assert.deepEqual(await snapshot(), before, 'the refused password login started no session');
      assert.equal((await passwordLogin('glass@example.org')).statusCode, 200);
      // SSO itself is what still works.
      assert.equal((await ssoLogin('main', 'ada')).statusCode, 200);

      assert.equal((await admin('PUT', '/sso-policy', { required: false })).statusCode, 200);
      assert.equal((await passwordLogin('root@example.org')).statusCode, 200);
    });

    it("a disabled connection's start answers 404, and so does its callback for a flow started before", async () => {
      const id = connection('main').id;
      const started = await start('main');
      const back = await peer.login(started.location.href, 'ada');
      assert.equal((await admin('PATCH', `/sso-connections/${id}`, { protocol: 'oidc', enabled: false })).statusCode, 200);
      const before = await snapshot();
      assertProblem(await test.call({ method: 'GET', url: `${base('main')}/start` }), 404, 'not_found');
      assertProblem(await callback(back, started.cookie), 404, 'not_found');
      assert.deepEqual(await snapshot(), before);
      assertProblem(await test.call({ method: 'GET', url: `/v1/sso/${tenantId}/000000000000/start` }), 404, 'not_found');
      assert.equal((await admin('PATCH', `/sso-connections/${id}`, { protocol: 'oidc', enabled: true })).statusCode, 200);
      assert.equal((await test.call({ method: 'GET', url: `${base('main')}/start` })).statusCode, 302);
    });

    it('the client secret is write-only: secretSet, never returned; the stored one is what the peer gets; not in the database in clear (last: the PGlite search closes the database)', async () => {
      const id = connection('main').id;
      const read = await admin('GET', `/sso-connections/${id}`);
      assert.equal(read.statusCode, 200, read.body);
      assert.equal(read.json<ConnectionAnswer>().secretSet, true);
      const list = await admin('GET', '/sso-connections');
      assert.equal(list.statusCode, 200, list.body);
      for (const body of [read.body, list.body]) assertNoLeak(body, Object.values(secrets));

      // The sealed secret is the one sent to the token endpoint: a wrong one is refused there, the right one works again.
      const wrong = `${secrets.main}-wrong`;
      const replaced = await admin('PATCH', `/sso-connections/${id}`, { protocol: 'oidc', secret: wrong });
      assert.equal(replaced.statusCode, 200, replaced.body);
      assertNoLeak(replaced.body, [wrong, secrets.main]);
      const before = await snapshot();
      await refusedWith(await ssoLogin('main', 'ada'), 'token_exchange_failed', before, [wrong]);
      assert.equal((await admin('PATCH', `/sso-connections/${id}`, { protocol: 'oidc', secret: secrets.main })).statusCode, 200);
      assert.equal((await ssoLogin('main', 'ada')).statusCode, 200);
      const [update] = await audit(`action=sso.connection.update&targetId=${id}&limit=1`);
      assert.equal(update?.detail['secretReplaced'], true);
      assertNoLeak(JSON.stringify((await audit('limit=500')).map((event) => event.detail)), [...Object.values(secrets), wrong]);

      const control = `control-${randomBytes(8).toString('hex')}`;
      assert.equal((await admin('PATCH', `/sso-connections/${connection('other').id}`, { protocol: 'oidc', name: control })).statusCode, 200);
      const everySecret = [...Object.values(secrets), wrong];
      // A bytea in clear would show as hex in the PostgreSQL dump.
      const found = await storedDataContains(test.storage, pgliteDir, [control, ...everySecret, ...everySecret.map((value) => Buffer.from(value).toString('hex'))]);
      assert.ok(found[0], 'the search finds the unencrypted control');
      assert.equal(found.slice(1).filter(Boolean).length, 0, 'a client secret is stored in clear');
    });
  });
}
