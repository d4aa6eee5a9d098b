import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { text } from 'node:stream/consumers';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { movableClock } from '../../../testing/clock.ts';
import { startOidcPeer, type OidcPeer } from '../../../testing/oidc-peer.ts';
import { OidcAdapter, oidcConnectionConfig, type OidcConnectionConfig, type OidcRefusal } from './oidc.ts';
import { SsoProtocolError, SsoProviderUnavailableError } from './protocol.ts';

const redirectUri = 'https://bulwark.example.test/v1/sso/oidc/callback';
const secret = 'peer-client-secret-0123456789abcdef';

async function refused(promise: Promise<unknown>, reason: OidcRefusal, ...mustNotMention: string[]): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SsoProtocolError, `expected an SsoProtocolError, got ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    for (const value of mustNotMention) assert.ok(!error.message.includes(value), 'the message repeats a secret value');
    return true;
  });
}

async function unavailable(promise: Promise<unknown>): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SsoProviderUnavailableError, `expected an SsoProviderUnavailableError, got ${String(error)}`);
    return true;
  });
}

describe('OIDC adapter against a real OpenID Provider (oidc-provider)', () => {
  let peer: OidcPeer;
  let userinfoPeer: OidcPeer;
  let config: OidcConnectionConfig;
  const clock = movableClock();
  const adapter = new OidcAdapter({ clock });
  const ada = { sub: 'ada-7f3a', email: 'ada@example.org', emailVerified: true, givenName: 'Ada', familyName: 'Lovelace', groups: ['engineers', 'admins'] };
  const clients = [{ clientId: 'bulwark', clientSecret: secret, redirectUris: [redirectUri] }];

  before(async () => {
    peer = await startOidcPeer({ clients, accounts: [ada] });
    userinfoPeer = await startOidcPeer({ clients, accounts: [ada], claimsInIdToken: false });
    config = { issuer: peer.issuer, clientId: 'bulwark', allowInsecureHttp: true };
  });
  after(async () => {
    await peer.close();
    await userinfoPeer.close();
  });

  it('logs a user in with the code flow, PKCE S256, state and nonce, and reads the identity and groups', async () => {
    const started = await adapter.start(config, redirectUri);
    const url = new URL(started.url);
    assert.equal(`${url.origin}${url.pathname}`, `${peer.issuer}/auth`);
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      client_id: 'bulwark',
      response_type: 'code',
      redirect_uri: redirectUri,
      scope: 'openid email profile',
      code_challenge: createHash('sha256').update(started.codeVerifier).digest('base64url'),
      code_challenge_method: 'S256',
      state: started.state,
      nonce: started.nonce,
    });
    const again = await adapter.start(config, redirectUri);
    assert.notEqual(again.state, started.state);
    assert.notEqual(again.nonce, started.nonce);
    assert.notEqual(again.codeVerifier, started.codeVerifier);

    const identity = await adapter.finish(config, secret, redirectUri, await peer.login(started.url, ada.sub), started);
    assert.deepEqual(identity, {
      subject: ada.sub,
      email: ada.email,
      emailVerified: true,
      givenName: 'Ada',
      familyName: 'Lovelace',
      groups: ['engineers', 'admins'],
    });
  });

  it('sends the PKCE verifier: the provider refuses the code with another one', async () => {
    const started = await adapter.start(config, redirectUri);
    const callback = await peer.login(started.url, ada.sub);
    const code = callback.searchParams.get('code') ?? '';
    const otherVerifier = (await adapter.start(config, redirectUri)).codeVerifier;
    await refused(adapter.finish(config, secret, redirectUri, callback, { ...started, codeVerifier: otherVerifier }), 'token_exchange_failed', code, otherVerifier, secret);
  });

  it("refuses a callback whose state is not this login's, or has none", async () => {
    const started = await adapter.start(config, redirectUri);
    const callback = await peer.login(started.url, ada.sub);
    const tampered = new URL(callback);
    tampered.searchParams.set('state', `${started.state}x`);
    await refused(adapter.finish(config, secret, redirectUri, tampered, started), 'state_mismatch');
    tampered.searchParams.delete('state');
    await refused(adapter.finish(config, secret, redirectUri, tampered, started), 'state_mismatch');
    // The checks came before the code was spent: the genuine callback still works.
    assert.equal((await adapter.finish(config, secret, redirectUri, callback, started)).subject, ada.sub);
  });

  it("refuses an ID token that does not carry this login's nonce", async () => {
    const started = await adapter.start(config, redirectUri);
    const callback = await peer.login(started.url, ada.sub);
    await refused(adapter.finish(config, secret, redirectUri, callback, { ...started, nonce: `${started.nonce}x` }), 'nonce_mismatch');
  });

  it('judges the ID token expiry on the injected clock', async () => {
    const later = movableClock();
    const timeTraveller = new OidcAdapter({ clock: later });
    const started = await timeTraveller.start(config, redirectUri);
    const callback = await peer.login(started.url, ada.sub);
    // The provider issues a 1-hour ID token on its (real) clock; two hours later on ours, it has expired.
    later.advance(2 * 60 * 60 * 1000);
    await refused(timeTraveller.finish(config, secret, redirectUri, callback, started), 'id_token_invalid');
  });

  it('accepts a short-lived ID token within its lifetime and refuses it once the injected clock passes it', async () => {
    const shortPeer = await startOidcPeer({ clients, accounts: [ada], idTokenTtlSeconds: 120 });
    try {
      const shortConfig = { ...config, issuer: shortPeer.issuer };
      const moving = movableClock();
      const shortAdapter = new OidcAdapter({ clock: moving });
      let started = await shortAdapter.start(shortConfig, redirectUri);
      moving.advance(60 * 1000);
      assert.equal((await shortAdapter.finish(shortConfig, secret, redirectUri, await shortPeer.login(started.url, ada.sub), started)).subject, ada.sub);
      started = await shortAdapter.start(shortConfig, redirectUri);
      const callback = await shortPeer.login(started.url, ada.sub);
      // 120 s of lifetime plus openid-client's 30 s tolerance, and then some.
      moving.advance(3 * 60 * 1000);
      await refused(shortAdapter.finish(shortConfig, secret, redirectUri, callback, started), 'id_token_invalid');
    } finally {
      await shortPeer.close();
    }
  });

  it("refuses the provider's error=access_denied callback", async () => {
    const started = await adapter.start(config, redirectUri);
    const callback = await peer.deny(started.url);
    assert.equal(callback.searchParams.get('error'), 'access_denied');
    await assert.rejects(adapter.finish(config, secret, redirectUri, callback, started), (error: unknown) => {
      assert.ok(error instanceof SsoProtocolError);
      assert.equal(error.reason, 'idp_error');
      assert.match(error.message, /access_denied/);
      return true;
    });
  });

  it("refuses a callback without the provider's iss (RFC 9207 mix-up defence), with another issuer's, or without a code", async () => {
    const started = await adapter.start(config, redirectUri);
    const callback = await peer.login(started.url, ada.sub);
    const altered = new URL(callback);
    altered.searchParams.delete('iss');
    await refused(adapter.finish(config, secret, redirectUri, altered, started), 'authorization_response_invalid');
    altered.searchParams.set('iss', userinfoPeer.issuer);
    await refused(adapter.finish(config, secret, redirectUri, altered, started), 'authorization_response_invalid');
    const codeless = new URL(callback);
    codeless.searchParams.delete('code');
    await refused(adapter.finish(config, secret, redirectUri, codeless, started), 'authorization_response_invalid');
  });

  it('redeems a code once', async () => {
    const started = await adapter.start(config, redirectUri);
    const callback = await peer.login(started.url, ada.sub);
    await adapter.finish(config, secret, redirectUri, callback, started);
    await refused(adapter.finish(config, secret, redirectUri, callback, started), 'token_exchange_failed');
  });

  it('refuses a wrong client secret, with either authentication method', async () => {
    for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
      const withMethod = { ...config, tokenEndpointAuthMethod: method };
      const started = await adapter.start(withMethod, redirectUri);
      const callback = await peer.login(started.url, ada.sub);
      await refused(adapter.finish(withMethod, `${secret}x`, redirectUri, callback, started), 'token_exchange_failed', secret);
    }
  });

  it('sends the registered redirect URI, whatever host the callback arrived on', async () => {
    const started = await adapter.start(config, redirectUri);
    const callback = await peer.login(started.url, ada.sub);
    const elsewhere = new URL(`https://evil.example.test/other${callback.search}`);
    assert.equal((await adapter.finish(config, secret, redirectUri, elsewhere, started)).subject, ada.sub);
    await assert.rejects(adapter.start(config, `${redirectUri}?tenant=1`), TypeError);
  });

  it('reads e-mail, names and groups from userinfo when the ID token lacks them', async () => {
    const viaUserinfo = { ...config, issuer: userinfoPeer.issuer };
    const started = await adapter.start(viaUserinfo, redirectUri);
    const identity = await adapter.finish(viaUserinfo, secret, redirectUri, await userinfoPeer.login(started.url, ada.sub), started);
    assert.deepEqual(identity, {
      subject: ada.sub,
      email: ada.email,
      emailVerified: true,
      givenName: 'Ada',
      familyName: 'Lovelace',
      groups: ['engineers', 'admins'],
    });
  });

  it('an unreachable issuer is SsoProviderUnavailableError, and is asked again next time', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const nowhere = { ...config, issuer: `http://127.0.0.1:${port}` };
    await unavailable(adapter.start(nowhere, redirectUri));
    await unavailable(adapter.start(nowhere, redirectUri));
  });
});

/**
 * A hand-made issuer (jose) for what a real provider will not do: an ID token for another audience, from another
 * issuer, under a key it does not publish, odd claim shapes, garbage and silence. Issuers live under path prefixes
 * (`/<name>`) so one server serves many of them.
 */
describe('OIDC adapter against a rogue issuer', () => {
  const clientId = 'bulwark';
  const server = createServer((request, response) => void serve(request, response));
  let origin = '';
  let signingKey: CryptoKey;
  let publicJwk: Record<string, unknown>;
  let otherKey: CryptoKey;
  const discoveryHits = new Map<string, number>();
  const jwksHits = new Map<string, number>();
  let tokenRequest: { authorization: string | undefined; body: URLSearchParams } | undefined;
  const garbageDiscovery = new Set<string>();
  let tokenEndpoint: 'ok' | 'html-500' | 'silent' = 'ok';
  let idToken = '';
  const held: ServerResponse[] = [];

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://rogue');
    const [, name = '', endpoint = ''] = /^\/([\w-]+)\/(.+)$/.exec(url.pathname) ?? [];
    const issuer = `${origin}/${name}`;
    const json = (body: unknown) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (endpoint === '.well-known/openid-configuration') {
      discoveryHits.set(name, (discoveryHits.get(name) ?? 0) + 1);
      if (garbageDiscovery.has(name)) {
        response.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>');
        return;
      }
      json({
        issuer,
        authorization_endpoint: `${issuer}/auth`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
      });
    } else if (endpoint === 'jwks') {
      jwksHits.set(name, (jwksHits.get(name) ?? 0) + 1);
      json({ keys: [publicJwk] });
    } else if (endpoint === 'token' && tokenEndpoint === 'silent') {
      held.push(response);
    } else if (endpoint === 'token' && tokenEndpoint === 'html-500') {
      response.writeHead(500, { 'content-type': 'text/html' }).end('<html>oops</html>');
    } else if (endpoint === 'token') {
      tokenRequest = { authorization: request.headers.authorization, body: new URLSearchParams(await text(request)) };
      json({ access_token: 'rogue-access-token', token_type: 'Bearer', expires_in: 300, id_token: idToken });
    } else {
      response.writeHead(404).end();
    }
  }

  const connection = (name: string, extra: Partial<OidcConnectionConfig> = {}): OidcConnectionConfig => ({
    issuer: `${origin}/${name}`,
    clientId,
    allowInsecureHttp: true,
    ...extra,
  });

  /** A whole login at the rogue issuer whose ID token is the base claims with `claims` over them. */
  async function login(adapter: OidcAdapter, config: OidcConnectionConfig, claims: JWTPayload = {}, key = signingKey) {
    const started = await adapter.start(config, redirectUri);
    const now = Math.floor(Date.now() / 1000);
    const base = { iss: config.issuer, sub: 'rogue-user', aud: clientId, iat: now, exp: now + 300, nonce: started.nonce };
    idToken = await new SignJWT({ ...base, ...claims }).setProtectedHeader({ alg: 'RS256', kid: 'rogue-1' }).sign(key);
    const callback = new URL(`${redirectUri}?code=rogue-code&state=${encodeURIComponent(started.state)}`);
    return adapter.finish(config, secret, redirectUri, callback, started);
  }

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const keys = await generateKeyPair('RS256');
    signingKey = keys.privateKey;
    publicJwk = { ...(await exportJWK(keys.publicKey)), kid: 'rogue-1', alg: 'RS256', use: 'sig' };
    otherKey = (await generateKeyPair('RS256')).privateKey;
  });
  after(async () => {
    for (const response of held) response.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('accepts its well-formed ID token (the baseline of the refusals below)', async () => {
    const identity = await login(new OidcAdapter({ clock: movableClock() }), connection('baseline'), { email: 'eve@example.org', email_verified: true });
    assert.deepEqual(identity, { subject: 'rogue-user', email: 'eve@example.org', emailVerified: true, givenName: undefined, familyName: undefined, groups: [] });
  });

  it('refuses an ID token for another audience, or for ours and another', async () => {
    const adapter = new OidcAdapter({ clock: movableClock() });
    await refused(login(adapter, connection('audience'), { aud: 'someone-else' }), 'id_token_invalid');
    await refused(login(adapter, connection('audience'), { aud: [clientId, 'someone-else'] }), 'id_token_invalid');
  });

  it('refuses an ID token from another issuer, or signed with a key the issuer does not publish', async () => {
    const adapter = new OidcAdapter({ clock: movableClock() });
    await refused(login(adapter, connection('issuer'), { iss: `${origin}/elsewhere` }), 'id_token_invalid');
    await refused(login(adapter, connection('issuer'), {}, otherKey), 'id_token_invalid');
  });

  it('reads groups from the configured claim: an array of strings, or one string; nothing else', async () => {
    const adapter = new OidcAdapter({ clock: movableClock() });
    const roles = connection('groups', { groupsClaim: 'roles' });
    const groupsOf = async (value: unknown) => (await login(adapter, roles, { roles: value, groups: ['not-this-claim'] })).groups;
    assert.deepEqual(await groupsOf('admins'), ['admins']);
    assert.deepEqual(await groupsOf({ admins: true }), []);
    assert.deepEqual(await groupsOf(7), []);
    // Too long names are dropped, not truncated into another group's name; duplicates collapse.
    assert.deepEqual(await groupsOf(['a', 7, '', 'x'.repeat(257), 'a', 'x'.repeat(256), null]), ['a', 'x'.repeat(256)]);
    const many = Array.from({ length: 1000 }, (_, index) => `g${index}`);
    assert.deepEqual(await groupsOf(many), many);
    await assert.rejects(groupsOf([...many, 'one more']), (error: unknown) => error instanceof SsoProtocolError && error.reason === 'too_many_groups');
  });

  it('vouches for an e-mail address only on a boolean email_verified: true', async () => {
    const adapter = new OidcAdapter({ clock: movableClock() });
    const mail = async (claims: JWTPayload) => {
      const identity = await login(adapter, connection('mail'), claims);
      return { email: identity.email, emailVerified: identity.emailVerified };
    };
    assert.deepEqual(await mail({ email: 'eve@example.org', email_verified: 'true' }), { email: 'eve@example.org', emailVerified: false });
    assert.deepEqual(await mail({ email: 'eve@example.org' }), { email: 'eve@example.org', emailVerified: false });
    assert.deepEqual(await mail({ email: ['eve@example.org'], email_verified: true }), { email: undefined, emailVerified: false });
  });

  it('a garbage discovery document is SsoProviderUnavailableError, and is not cached', async () => {
    const adapter = new OidcAdapter({ clock: movableClock() });
    garbageDiscovery.add('garbage');
    await unavailable(adapter.start(connection('garbage'), redirectUri));
    garbageDiscovery.delete('garbage');
    await adapter.start(connection('garbage'), redirectUri);
    assert.equal(discoveryHits.get('garbage'), 2);
  });

  it('authenticates at the token endpoint as configured: Basic by default, or client_secret_post', async () => {
    const adapter = new OidcAdapter({ clock: movableClock() });
    await login(adapter, connection('auth-method'));
    const basic = tokenRequest;
    assert.ok(basic !== undefined);
    const [scheme = '', credentials = ''] = basic.authorization?.split(' ') ?? [];
    assert.equal(scheme, 'Basic');
    // RFC 6749 2.3.1: both halves are form-encoded before base64.
    const [user = '', password = ''] = Buffer.from(credentials, 'base64').toString().split(':');
    assert.deepEqual([decodeURIComponent(user), decodeURIComponent(password)], [clientId, secret]);
    assert.equal(basic.body.get('client_secret'), null);
    assert.equal(basic.body.get('code_verifier')?.length, 43, 'the PKCE verifier goes with the code');
    assert.equal(basic.body.get('redirect_uri'), redirectUri);
    await login(adapter, connection('auth-method', { tokenEndpointAuthMethod: 'client_secret_post' }));
    const post = tokenRequest;
    assert.ok(post !== undefined && post !== basic);
    assert.equal(post.authorization, undefined);
    assert.deepEqual([post.body.get('client_id'), post.body.get('client_secret')], [clientId, secret]);
  });

  it('caches discovery per issuer for its TTL on the injected clock, for a bounded number of issuers', async () => {
    const clock = movableClock();
    const adapter = new OidcAdapter({ clock, discoveryTtlMs: 60_000, maxCachedIssuers: 2 });
    await Promise.all([adapter.start(connection('cache-a'), redirectUri), adapter.start(connection('cache-a'), redirectUri)]);
    await login(adapter, connection('cache-a'));
    await login(adapter, connection('cache-a'));
    assert.equal(discoveryHits.get('cache-a'), 1, 'concurrent and later logins share one discovery');
    assert.equal(jwksHits.get('cache-a'), 1, 'and the signing keys');
    clock.advance(61_000);
    await adapter.start(connection('cache-a'), redirectUri);
    assert.equal(discoveryHits.get('cache-a'), 2, 'expired after its TTL');
    await adapter.start(connection('cache-b'), redirectUri);
    await adapter.start(connection('cache-c'), redirectUri);
    await adapter.start(connection('cache-c'), redirectUri);
    await adapter.start(connection('cache-a'), redirectUri);
    assert.deepEqual([discoveryHits.get('cache-a'), discoveryHits.get('cache-b'), discoveryHits.get('cache-c')], [3, 1, 1], 'the oldest issuer went first');
  });

  it('a token endpoint that fails or stays silent is SsoProviderUnavailableError', async () => {
    const adapter = new OidcAdapter({ clock: movableClock(), timeoutMs: 300 });
    try {
      tokenEndpoint = 'html-500';
      await unavailable(login(adapter, connection('broken')));
      tokenEndpoint = 'silent';
      await unavailable(login(adapter, connection('broken')));
    } finally {
      tokenEndpoint = 'ok';
    }
  });
});

describe('OIDC connection config schema', () => {
  const validate = addFormats.default(new Ajv({ allErrors: true, strict: false })).compile(oidcConnectionConfig);
  const valid = { issuer: 'https://login.example.com/tenant-1', clientId: 'bulwark' };

  it('accepts an https issuer, and plain http only on loopback with allowInsecureHttp', () => {
    assert.ok(validate(valid));
    assert.ok(validate({ ...valid, scopes: ['openid', 'groups'], groupsClaim: 'roles', tokenEndpointAuthMethod: 'client_secret_post' }));
    assert.ok(validate({ issuer: 'http://127.0.0.1:4000', clientId: 'bulwark', allowInsecureHttp: true }));
    assert.ok(validate({ issuer: 'http://localhost:4000/realm', clientId: 'bulwark', allowInsecureHttp: true }));
  });

  it('refuses insecure, malformed or incomplete configs', () => {
    for (const config of [
      { ...valid, issuer: 'http://127.0.0.1:4000' },
      { ...valid, issuer: 'http://127.0.0.1:4000', allowInsecureHttp: false },
      { ...valid, issuer: 'http://idp.example.com', allowInsecureHttp: true },
      { ...valid, issuer: 'http://127.0.0.1.example.com', allowInsecureHttp: true },
      { ...valid, issuer: 'https://login.example.com/?tenant=1' },
      { ...valid, issuer: 'https://login.example.com/#x' },
      { ...valid, issuer: 'https://login.example.com/.well-known/openid-configuration' },
      { ...valid, issuer: 'ftp://login.example.com' },
      { ...valid, scopes: ['email', 'profile'] },
      { ...valid, scopes: [] },
      { ...valid, scopes: ['openid', 'two words'] },
      { ...valid, clientId: '' },
      { ...valid, tokenEndpointAuthMethod: 'none' },
      { ...valid, clientSecret: 'never in the config' },
      { clientId: 'bulwark' },
    ]) {
      assert.equal(validate(config), false, JSON.stringify(config));
    }
  });

  it('the adapter itself refuses a plain-http issuer off loopback', async () => {
    const adapter = new OidcAdapter({ clock: movableClock() });
    await assert.rejects(adapter.start({ issuer: 'http://idp.example.com', clientId: 'bulwark', allowInsecureHttp: true }, redirectUri), TypeError);
    await assert.rejects(adapter.start({ issuer: 'http://127.0.0.1:9', clientId: 'bulwark' }, redirectUri), TypeError);
  });
});
