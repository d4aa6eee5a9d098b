import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { type AccountClaims, type ClientMetadata } from 'oidc-provider';

export interface OidcPeerClient {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  /** As registered at the provider. Default 'client_secret_basic' (the OAuth default). */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post';
}

export interface OidcPeerAccount {
  sub: string;
  email?: string;
  emailVerified?: boolean;
  givenName?: string;
  familyName?: string;
  /** Released as the `groups` claim with the `openid` scope, as Entra ID and Okta group claims are. */
  groups?: string[];
}

export interface OidcPeerOptions {
  clients: OidcPeerClient[];
  accounts: OidcPeerAccount[];
  /** Lifetime of the ID tokens it issues. Default 1 hour. */
  idTokenTtlSeconds?: number;
  /**
   * Whether the profile claims (email, names, groups) are in the ID token, as most enterprise providers do.
   * Default true; false keeps only `sub` there and releases the rest at userinfo (oidc-provider's conform mode).
   */
  claimsInIdToken?: boolean;
}

export interface OidcPeer {
  /** `http://127.0.0.1:<port>`: configure the relying party with it and `allowInsecureHttp: true`. */
  issuer: string;
  /** Read at every token and userinfo request: change an account between logins to change its claims. */
  accounts: Map<string, OidcPeerAccount>;
  /**
   * Plays the browser: follows `authorizationUrl`, logs `sub` in and consents to everything requested, and returns
   * the URL the provider redirects to (one of the client's redirect URIs, with `code`, `state` and `iss`).
   */
  login(authorizationUrl: string, sub: string): Promise<URL>;
  /** As `login`, but the user refuses: the redirect carries `error=access_denied`. */
  deny(authorizationUrl: string): Promise<URL>;
  close(): Promise<void>;
}

/**
 * A real OpenID Provider (oidc-provider) on a free loopback port, for relying-party tests. Its interaction
 * (login and consent) is a route of this helper, driven over HTTP by `login`/`deny` with a cookie jar, so no
 * browser and no HTML form is involved; everything else (authorization, PKCE, token, ID token, userinfo, JWKS,
 * discovery) is the provider's own.
 */
export async function startOidcPeer(options: OidcPeerOptions): Promise<OidcPeer> {
  const accounts = new Map(options.accounts.map((account) => [account.sub, account]));
  const redirectUris = new Set(options.clients.flatMap((client) => client.redirectUris));
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: options.clients.map(
      (client): ClientMetadata => ({
        client_id: client.clientId,
        client_secret: client.clientSecret,
        redirect_uris: client.redirectUris,
        token_endpoint_auth_method: client.tokenEndpointAuthMethod ?? 'client_secret_basic',
        grant_types: ['authorization_code'],
        response_types: ['code'],
      }),
    ),
    jwks: { keys: [{ ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'peer-rs256', use: 'sig' }] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: { openid: ['sub', 'groups'], email: ['email', 'email_verified'], profile: ['given_name', 'family_name'] },
    conformIdTokenClaims: !(options.claimsInIdToken ?? true),
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    ttl: {
      IdToken: options.idTokenTtlSeconds ?? 3600,
      AccessToken: 600,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 600,
      Grant: 600,
    },
    clientBasedCORS: () => false,
    // A JSON error page: readable in a failing test's message, and no default-function notice on stdout.
    renderError: (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
    findAccount: (_ctx, sub) => {
      const account = accounts.get(sub);
      return account === undefined ? undefined : { accountId: sub, claims: () => claimsOf(account) };
    },
  });
  // The issuer names the port, so the provider comes after listen(); nothing knows the port before this.
  const handle = provider.callback();
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    if (request.url?.startsWith('/interaction/') === true) void interact(provider, accounts, request, response);
    else void handle(request, response);
  });

  const drive = async (authorizationUrl: string, interaction: Record<string, string>): Promise<URL> => {
    const jar = new Map<string, string>();
    let next = new URL(authorizationUrl);
    for (let hop = 0; hop < 10; hop += 1) {
      if (next.origin === issuer && next.pathname.startsWith('/interaction/')) {
        for (const [name, value] of Object.entries(interaction)) next.searchParams.set(name, value);
      }
      // The provider's cookies have distinct names, so one jar without paths is enough.
      const cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
      const response = await fetch(next, { redirect: 'manual', headers: cookie === '' ? {} : { cookie } });
      for (const line of response.headers.getSetCookie()) {
        const pair = line.split(';', 1)[0] ?? '';
        const name = pair.slice(0, pair.indexOf('='));
        const value = pair.slice(pair.indexOf('=') + 1);
        if (value === '') jar.delete(name);
        else jar.set(name, value);
      }
      const body = await response.text();
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || location === null) {
        throw new Error(`the OIDC peer answered ${response.status} at ${next.pathname}: ${body.slice(0, 500)}`);
      }
      next = new URL(location, next);
      if (redirectUris.has(`${next.origin}${next.pathname}`)) return next;
    }
    throw new Error('the OIDC peer redirected more than 10 times');
  };

  return {
    issuer,
    accounts,
    login: (authorizationUrl, sub) => drive(authorizationUrl, { login: sub }),
    deny: (authorizationUrl) => drive(authorizationUrl, { deny: 'access_denied' }),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        // fetch keeps connections alive; they would hold close() open.
        server.closeAllConnections();
      }),
  };
}

function claimsOf(account: OidcPeerAccount): AccountClaims {
  return {
    sub: account.sub,
    email: account.email,
    email_verified: account.emailVerified,
    given_name: account.givenName,
    family_name: account.familyName,
    groups: account.groups,
  };
}

/** The login and consent step: `?login=<sub>` logs that account in and grants all it asked for; `?deny=<error>` refuses. */
async function interact(provider: Provider, accounts: Map<string, OidcPeerAccount>, request: IncomingMessage, response: ServerResponse): Promise<void> {
  try {
    const query = new URL(request.url ?? '/', 'http://peer').searchParams;
    const details = await provider.interactionDetails(request, response);
    const refusal = query.get('deny');
    if (refusal !== null) {
      await provider.interactionFinished(request, response, { error: refusal, error_description: 'the user refused' }, { mergeWithLastSubmission: false });
      return;
    }
    const sub = query.get('login') ?? '';
    const { client_id: clientId, scope } = details.params;
    if (!accounts.has(sub) || typeof clientId !== 'string' || typeof scope !== 'string') {
      response.writeHead(400, { 'content-type': 'text/plain' }).end(`no account ${sub} at the OIDC peer, or no client_id/scope`);
      return;
    }
    const grant = new provider.Grant({ accountId: sub, clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    await provider.interactionFinished(request, response, { login: { accountId: sub }, consent: { grantId } }, { mergeWithLastSubmission: false });
  } catch (error) {
    response.writeHead(400, { 'content-type': 'text/plain' }).end(error instanceof Error ? error.message : 'interaction failed');
  }
}
