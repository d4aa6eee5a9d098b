import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOMParser, onWarningStopParsing } from '@xmldom/xmldom';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, type TestApp } from '../../../testing/app.ts';
import { movableClock } from '../../../testing/clock.ts';
import { engineSkip, engines } from '../../../testing/engines.ts';
import { type AuditItem, type Tokens } from '../../../testing/login-state.ts';
import {
  createSamlSigningKey,
  type SamlResponseOptions,
  SamlTestIdp,
  type SeenAuthnRequest,
  toSamlBase64,
  wrapSignature,
  type XswVariant,
} from '../../../testing/saml-idp.ts';
import { assertNoLeak, assertProblem } from '../../../testing/security-suite.ts';

interface Connection {
  id: string;
  endpoints: { start: string; acsUrl: string; entityId: string };
}

/** A login the SP started: what the IdP was asked, the RelayState and the browser's flow cookie. */
interface Flow {
  request: SeenAuthnRequest;
  relayState: string;
  cookie: string | undefined;
}

// Bulwark behind a TLS-terminating proxy, as in production: the proxy says https, so the SAML flow is bound
// to the browser by a SameSite=None cookie besides the AuthnRequest id.
const publicUrl = 'https://auth.bulwark.test';
const https = { 'x-forwarded-proto': 'https' };

const alice = {
  nameId: 'alice@corp.example',
  attributes: { email: 'alice@corp.example', givenName: 'Alice', surname: 'Liddell', groups: ['staff', 'engineering'] },
};
const mallory = { nameId: 'mallory@corp.example', attributes: { email: 'mallory@corp.example', groups: ['staff'] } };
// Each connection is its own identity namespace: a user of one is not linked by e-mail on another, so the
// logins on other connections are other people.
const bob = { nameId: 'bob@corp.example', attributes: { email: 'bob@corp.example', groups: ['staff'] } };
const carol = { nameId: 'carol@corp.example', attributes: { email: 'carol@corp.example', groups: ['staff'] } };
// Who an attacker would like to be: the tenant's SSO administrators.
const forgedAdmin = { nameId: 'root@corp.example', attributes: { email: 'root@corp.example', groups: ['bulwark-admins'] } };

// RSA key generation is the slow part: one IdP and one attacker key for both engines.
const [idp, attackerKey] = await Promise.all([SamlTestIdp.create({ entityId: 'https://idp.corp.example/saml' }), createSamlSigningKey('Attacker')]);

for (const engine of engines) {
  describe(`SAML 2.0 login through the HTTP API [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof movableClock>;
    let tenantId: string;
    let apiKey: string;
    let connection: Connection;

    before(async () => {
      clock = movableClock();
      // No auth cache: a role change shows on the next request. One proxy hop is trusted for X-Forwarded-Proto.
      test = await createTestApp(engine, { clock, config: { authCacheTtlMs: '0', publicUrl, trustProxy: '1' } });
      ({ tenantId, apiKey } = await test.tenantWithKey('SAML'));
      connection = await createConnection({ name: 'Corporate IdP' });
    });
    after(() => test.close());

    const createConnection = async (body: { name: string; config?: Record<string, unknown> }): Promise<Connection> => {
      const created = await test.call({
        method: 'POST',
        url: `/v1/tenants/${tenantId}/sso-connections`,
        token: apiKey,
        body: {
          protocol: 'saml',
          name: body.name,
          config: { ...idp.connection(), ...body.config },
          roleMappings: [
            { group: 'staff', role: 'member' },
            { group: 'bulwark-admins', role: 'tenant-admin' },
          ],
        },
      });
      assert.equal(created.statusCode, 201, created.body);
      return created.json<Connection>();
    };
    const sp = (of: Connection = connection) => ({ entityId: of.endpoints.entityId, acsUrl: of.endpoints.acsUrl });

    /** GET start as the browser does: a 302 to the IdP with the AuthnRequest, and the flow cookie. */
    const start = async (of: Connection = connection, headers: Record<string, string> = https): Promise<Flow> => {
      const response = await test.call({ method: 'GET', url: `/v1/sso/${tenantId}/${of.id}/start`, headers });
      assert.equal(response.statusCode, 302, response.body);
      const location = String(response.headers.location);
      assert.ok(location.startsWith(`${idp.ssoUrl}?`), location);
      const request = idp.readAuthnRequest(location);
      assert.ok(request.relayState !== undefined, 'the redirect carries a RelayState');
      const setCookie = response.headers['set-cookie'];
      const cookie = typeof setCookie === 'string' ? setCookie : undefined;
      return { request, relayState: request.relayState, cookie };
    };
    const cookieHeader = (flow: Flow, of: Connection = connection): { cookie: string } => {
      const pair = flow.cookie?.split(';')[0] ?? '';
      assert.ok(pair.startsWith(`bulwark_sso_${of.id}=`), `flow cookie ${String(flow.cookie)}`);
      return { cookie: pair };
    };

    /** The IdP's answer to a flow: alice, assertion signed, unless the options say otherwise. */
    const answer = (flow: Flow, options: Partial<SamlResponseOptions> = {}, of: Connection = connection) =>
      idp.responseBase64({ sp: sp(of), ...alice, inResponseTo: flow.request.id, sign: 'assertion', ...options });

    /** The browser's auto-submitted form: POST to the ACS, form-encoded; `postFor` adds the flow's RelayState and cookie. */
    const post = (fields: Record<string, string>, headers: Record<string, string> = {}, of: Connection = connection) =>
      test.app.inject({
        method: 'POST',
        url: `/v1/sso/${tenantId}/${of.id}/acs`,
        headers: { ...https, 'content-type': 'application/x-www-form-urlencoded', ...headers },
        payload: new URLSearchParams(fields).toString(),
      });
    const postFor = (flow: Flow, samlResponse: string, of: Connection = connection) =>
      post({ SAMLResponse: samlResponse, RelayState: flow.relayState }, cookieHeader(flow, of), of);

    const me = (token: string) => test.call({ method: 'GET', url: '/v1/me', token });
    const rolesOf = async (userId: string) => {
      const response = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/users/${userId}/roles`, token: apiKey });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<{ roles: string[] }>().roles;
    };
    const userByEmail = async (email: string) => {
      const response = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/users?email=${encodeURIComponent(email)}`, token: apiKey });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<{ items: { id: string }[] }>().items[0];
    };
    const audit = async (query: string) => {
      const response = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit?limit=500&${query}`, token: apiKey });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<{ items: AuditItem[] }>().items;
    };

    /** What a refused login must leave as it was: users, roles, linked identities, sessions and refresh tokens. */
    const fingerprint = async () =>
      test.storage.asOwner(
        `SELECT (SELECT count(*) FROM users WHERE tenant_id = $1)::int AS users,
                (SELECT count(*) FROM user_roles WHERE tenant_id = $1)::int AS roles,
                (SELECT count(*) FROM sso_identities WHERE tenant_id = $1)::int AS identities,
                (SELECT count(*) FROM user_sessions WHERE tenant_id = $1)::int AS sessions,
                (SELECT count(*) FROM refresh_tokens WHERE tenant_id = $1)::int AS refresh_tokens`,
        [tenantId],
      );

    /**
     * A refusal as the browser sees it (401 sso_failed, the reason not in the answer, no SAML in it), nothing
     * changed, and the reason in the audit trail on the event of that very request.
     */
    const assertRefused = async (attempt: () => Promise<LightMyRequestResponse>, reason: string, samlResponse?: string) => {
      const before = await fingerprint();
      const response = await attempt();
      const problem = assertProblem(response, 401, 'sso_failed', samlResponse === undefined ? [] : [samlResponse]);
      assert.doesNotMatch(problem.detail, new RegExp(reason), 'the reason stays in the audit trail');
      assert.deepEqual(await fingerprint(), before, 'a refused login changes nothing');
      const events = await audit(`action=auth.sso&outcome=failure&requestId=${String(response.headers['x-request-id'])}`);
      assert.equal(events.length, 1, 'one failure event for the request');
      const [event] = events;
      assert.ok(event !== undefined);
      assert.deepEqual({ reason: event.detail['reason'], actor: event.actor, target: event.target, sessionId: event.sessionId }, {
        reason,
        actor: { kind: 'anonymous', id: null },
        target: { type: 'sso-connection', id: connection.id },
        sessionId: null,
      });
    };

    it('publishes SP metadata (XML) naming the entity id and the ACS URL of the connection', async () => {
      assert.deepEqual(connection.endpoints, {
        start: `${publicUrl}/v1/sso/${tenantId}/${connection.id}/start`,
        acsUrl: `${publicUrl}/v1/sso/${tenantId}/${connection.id}/acs`,
        entityId: `${publicUrl}/v1/sso/${tenantId}/${connection.id}/metadata`,
      });
      const response = await test.call({ method: 'GET', url: `/v1/sso/${tenantId}/${connection.id}/metadata` });
      assert.equal(response.statusCode, 200, response.body);
      assert.match(String(response.headers['content-type']), /^application\/samlmetadata\+xml/);
      const metadata = new DOMParser({ onError: onWarningStopParsing }).parseFromString(response.body, 'text/xml').documentElement;
      assert.equal(metadata?.localName, 'EntityDescriptor');
      assert.equal(metadata.getAttribute('entityID'), connection.endpoints.entityId);
      const acs = metadata.getElementsByTagNameNS('urn:oasis:names:tc:SAML:2.0:metadata', 'AssertionConsumerService')[0];
      assert.equal(acs?.getAttribute('Location'), connection.endpoints.acsUrl);
      assert.equal(acs.getAttribute('Binding'), 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST');
      assert.equal(metadata.getElementsByTagNameNS('urn:oasis:names:tc:SAML:2.0:metadata', 'SPSSODescriptor')[0]?.getAttribute('WantAssertionsSigned'), 'true');

      assertProblem(await test.call({ method: 'GET', url: `/v1/sso/${tenantId}/0123456789ab/metadata` }), 404, 'not_found');
    });

    it('start redirects to the IdP with an AuthnRequest for this SP; the signed answer logs a new user in with mapped roles', async () => {
      const flow = await start();
      assert.deepEqual(
        { issuer: flow.request.issuer, acsUrl: flow.request.acsUrl, destination: flow.request.destination, binding: flow.request.protocolBinding },
        { issuer: connection.endpoints.entityId, acsUrl: connection.endpoints.acsUrl, destination: idp.ssoUrl, binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST' },
      );
      // The binding cookie must survive the IdP's cross-site POST back, and only over TLS.
      assert.match(String(flow.cookie), new RegExp(`^bulwark_sso_${connection.id}=[A-Za-z0-9_-]{43}; Path=/v1/sso/${tenantId}/${connection.id}; Max-Age=600; HttpOnly; SameSite=None; Secure$`));
      assert.equal(await userByEmail(alice.nameId), undefined);

      const samlResponse = answer(flow);
      const response = await postFor(flow, samlResponse);
      assert.equal(response.statusCode, 200, response.body);
      assertNoLeak(response.body, [samlResponse]);
      const tokens = response.json<Tokens>();
      assert.match(String(response.headers['set-cookie']), new RegExp(`^bulwark_sso_${connection.id}=; .*Max-Age=0`), 'the flow cookie is cleared');

      const profile = await me(tokens.accessToken);
      assert.equal(profile.statusCode, 200, profile.body);
      const user = profile.json<{ kind: string; id: string; tenantId: string; email: string; firstName: string | null; lastName: string | null; passwordSet: boolean }>();
      assert.deepEqual(
        { kind: user.kind, tenantId: user.tenantId, email: user.email, firstName: user.firstName, lastName: user.lastName, passwordSet: user.passwordSet },
        { kind: 'user', tenantId, email: 'alice@corp.example', firstName: 'Alice', lastName: 'Liddell', passwordSet: false },
      );
      assert.equal((await userByEmail(alice.nameId))?.id, user.id, 'provisioned just in time');
      assert.deepEqual(await rolesOf(user.id), ['member'], 'staff maps to member; engineering maps to nothing');
      // The member role reaches the tenant's API with the SSO session's token.
      assert.equal((await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/users/${user.id}/roles`, token: tokens.accessToken })).statusCode, 200);

      const [login] = await audit(`action=auth.sso&outcome=success&actorId=${user.id}`);
      assert.equal(login?.sessionId, tokens.sessionId);
      assert.deepEqual(login.detail, { protocol: 'saml', provisioned: true, groups: 2 });
      const [link] = await audit(`action=sso.identity.link&targetId=${user.id}`);
      assert.deepEqual(link?.detail, { connectionId: connection.id });

      // The next login is the same user; the groups now say admin and not staff, and the roles follow.
      const again = await start();
      const promoted = await postFor(again, answer(again, { attributes: { ...alice.attributes, groups: ['bulwark-admins'] } }));
      assert.equal(promoted.statusCode, 200, promoted.body);
      assert.equal((await me(promoted.json<Tokens>().accessToken)).json<{ id: string }>().id, user.id);
      assert.deepEqual(await rolesOf(user.id), ['tenant-admin']);
      const [roleChange] = await audit(`action=user.roles.set&targetId=${user.id}`);
      assert.deepEqual(roleChange?.detail, { roles: ['tenant-admin'], previousRoles: ['member'], source: 'sso', connectionId: connection.id });
    });

    it('with an HTTPS public URL the flow is bound to the browser even when a request arrives over plain HTTP (an untrusted hop)', async () => {
      const flow = await start(connection, {});
      assert.match(flow.cookie ?? '', /SameSite=None; Secure/);
      const samlResponse = answer(flow, mallory);
      await assertRefused(() => post({ SAMLResponse: samlResponse, RelayState: flow.relayState }, { 'x-forwarded-proto': 'http' }), 'browser_mismatch', samlResponse);
      assert.equal(await userByEmail(mallory.nameId), undefined);
    });

    it('over HTTPS the answer is refused in a browser without the flow cookie, or with another flow’s', async () => {
      const flow = await start();
      const other = await start();
      const samlResponse = answer(flow, forgedAdmin);
      await assertRefused(() => post({ SAMLResponse: samlResponse, RelayState: flow.relayState }), 'browser_mismatch', samlResponse);
      const second = await start();
      await assertRefused(() => post({ SAMLResponse: answer(second, forgedAdmin), RelayState: second.relayState }, cookieHeader(other)), 'browser_mismatch');
      assert.equal(await userByEmail(forgedAdmin.nameId), undefined);
    });

    it('refuses an unsigned assertion, one signed with another key, and a wrong audience or recipient', async () => {
      const cases: [string, Partial<SamlResponseOptions>][] = [
        ['unsigned', { sign: 'none' }],
        ['signature_invalid', { signingKey: attackerKey }],
        ['signature_invalid', { sign: 'both', signingKey: attackerKey }],
        ['audience_mismatch', { audience: 'https://other-sp.example/metadata' }],
        ['recipient_mismatch', { recipient: `${publicUrl}/v1/sso/${tenantId}/0123456789ab/acs` }],
      ];
      for (const [reason, options] of cases) {
        const flow = await start();
        const samlResponse = answer(flow, { ...forgedAdmin, ...options });
        await assertRefused(() => postFor(flow, samlResponse), reason, samlResponse);
      }
      // Another connection of the tenant, on the same IdP, is another audience: its assertions do not log in here.
      const sibling = await createConnection({ name: 'Same IdP, other connection' });
      const flow = await start();
      await assertRefused(() => postFor(flow, answer(flow, forgedAdmin, sibling)), 'audience_mismatch');
      assert.equal(await userByEmail(forgedAdmin.nameId), undefined);
    });

    it('an assertion logs in once: posted again with its RelayState, or after a fresh start, it is refused', async () => {
      const flow = await start();
      const samlResponse = answer(flow, mallory);
      assert.equal((await postFor(flow, samlResponse)).statusCode, 200);
      // The flow behind the RelayState is spent.
      await assertRefused(() => postFor(flow, samlResponse), 'state_mismatch', samlResponse);
      // A fresh flow has a new AuthnRequest id, which the old assertion does not answer.
      const fresh = await start();
      await assertRefused(() => postFor(fresh, samlResponse), 'in_response_to_mismatch', samlResponse);
    });

    it('an unsolicited (IdP-initiated) response is refused by default; where allowed, it logs in once', async () => {
      const unsolicited = idp.responseBase64({ sp: sp(), ...forgedAdmin, sign: 'assertion' });
      await assertRefused(() => post({ SAMLResponse: unsolicited }), 'unsolicited', unsolicited);

      const open = await createConnection({ name: 'IdP-initiated', config: { allowIdpInitiated: true } });
      const fromIdp = idp.responseBase64({ sp: sp(open), ...bob, sign: 'assertion' });
      const first = await post({ SAMLResponse: fromIdp }, {}, open);
      assert.equal(first.statusCode, 200, first.body);
      // No flow to spend: the assertion id's record is what refuses the second use.
      const before = await fingerprint();
      const replay = await post({ SAMLResponse: fromIdp }, {}, open);
      assertProblem(replay, 401, 'sso_failed', [fromIdp]);
      assert.deepEqual(await fingerprint(), before);
      const [event] = await audit(`action=auth.sso&outcome=failure&requestId=${String(replay.headers['x-request-id'])}`);
      assert.equal(event?.detail['reason'], 'replayed');
    });

    it('signature wrapping: a forged assertion around, beside or inside the signed one never logs in as its NameID', async () => {
      const variants: [XswVariant, SamlResponseOptions['sign'], string][] = [
        ['sibling-assertion', 'assertion', 'signature_invalid'],
        ['assertion-in-extensions', 'both', 'signature_invalid'],
        ['forged-wraps-signed', 'assertion', 'unsigned'],
        ['assertion-signature-object', 'assertion', 'signature_invalid'],
      ];
      for (const [variant, sign, reason] of variants) {
        const flow = await start();
        const signed = idp.responseXml({ sp: sp(), ...mallory, inResponseTo: flow.request.id, sign });
        const forged = idp.assertionXml({ sp: sp(), ...forgedAdmin, inResponseTo: flow.request.id });
        await assertRefused(() => postFor(flow, toSamlBase64(wrapSignature(signed, forged, variant))), reason);
      }
      // The forged assertion hides in the Response signature's ds:Object, outside what the signature covers:
      // the login goes through, as the signed NameID, with the signed groups.
      const open = await createConnection({ name: 'Signed responses', config: { wantResponseSigned: true } });
      const flow = await start(open);
      const signed = idp.responseXml({ sp: sp(open), ...carol, inResponseTo: flow.request.id, sign: 'both' });
      const forged = idp.assertionXml({ sp: sp(open), ...forgedAdmin, inResponseTo: flow.request.id });
      const response = await postFor(flow, toSamlBase64(wrapSignature(signed, forged, 'response-signature-object')), open);
      assert.equal(response.statusCode, 200, response.body);
      const user = (await me(response.json<Tokens>().accessToken)).json<{ id: string; email: string }>();
      assert.equal(user.email, carol.nameId);
      assert.deepEqual(await rolesOf(user.id), ['member']);
      assert.equal(await userByEmail(forgedAdmin.nameId), undefined);
    });

    it('the ACS takes only the HTTP-POST binding’s form: JSON, a missing SAMLResponse and an oversized one are 4xx problems', async () => {
      const flow = await start();
      const samlResponse = answer(flow, forgedAdmin);
      const before = await fingerprint();
      const json = await test.call({ method: 'POST', url: `/v1/sso/${tenantId}/${connection.id}/acs`, headers: { ...https, ...cookieHeader(flow) }, body: { SAMLResponse: samlResponse, RelayState: flow.relayState } });
      assertProblem(json, 415, 'unsupported_media_type', [samlResponse]);
      // ...and the published API description says so to client generators.
      const openapi = (await test.call({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, { post?: { requestBody: { content: object } } }> }>();
      assert.deepEqual(Object.keys(openapi.paths['/v1/sso/{tenantId}/{connectionId}/acs']?.post?.requestBody.content ?? {}), ['application/x-www-form-urlencoded']);
      const xml = await test.app.inject({ method: 'POST', url: `/v1/sso/${tenantId}/${connection.id}/acs`, headers: { ...https, ...cookieHeader(flow), 'content-type': 'application/xml' }, payload: Buffer.from(samlResponse, 'base64') });
      assertProblem(xml, 415, 'unsupported_media_type');
      assertProblem(await post({ RelayState: flow.relayState }, cookieHeader(flow)), 400, 'validation_failed');
      // Past the field's bound (256 KiB of base64), then past the body limit: refused before any XML is read.
      assertProblem(await post({ SAMLResponse: 'A'.repeat(300 * 1024), RelayState: flow.relayState }, cookieHeader(flow)), 400, 'validation_failed');
      assertProblem(await post({ SAMLResponse: 'A'.repeat(1024 * 1024), RelayState: flow.relayState }, cookieHeader(flow)), 413, 'payload_too_large');
      assert.deepEqual(await fingerprint(), before);
      // None of these spent the flow: the genuine answer still logs in.
      assert.equal((await postFor(flow, answer(flow, { ...alice, nameId: 'alice.b@corp.example', attributes: { email: 'alice.b@corp.example' } }))).statusCode, 200);
    });

    it('unknown and disabled connections answer 404 at start and at the ACS', async () => {
      const unknown = { ...connection, id: '0123456789ab' };
      assertProblem(await test.call({ method: 'GET', url: `/v1/sso/${tenantId}/${unknown.id}/start`, headers: https }), 404, 'not_found');
      const disabled = await createConnection({ name: 'Disabled' });
      const flow = await start(disabled);
      const patched = await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}/sso-connections/${disabled.id}`, token: apiKey, body: { protocol: 'saml', enabled: false } });
      assert.equal(patched.statusCode, 200, patched.body);
      const before = await fingerprint();
      assertProblem(await test.call({ method: 'GET', url: `/v1/sso/${tenantId}/${disabled.id}/start`, headers: https }), 404, 'not_found');
      assertProblem(await postFor(flow, answer(flow, forgedAdmin, disabled), disabled), 404, 'not_found');
      assert.deepEqual(await fingerprint(), before);
    });

    // Last: the app's clock stays moved, and every later assertion of the (real-time) IdP would be stale.
    it('an assertion posted after its validity (the app clock moved past it) is refused as expired', async () => {
      const flow = await start();
      const samlResponse = answer(flow, forgedAdmin);
      // Past the assertion's 5 minutes and the minute of accepted skew, within the flow's 10 minutes.
      clock.advance(7 * 60_000);
      await assertRefused(() => postFor(flow, samlResponse), 'expired', samlResponse);
      assert.equal(await userByEmail(forgedAdmin.nameId), undefined);
    });
  });
}
