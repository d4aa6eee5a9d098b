import * as oidc from 'openid-client';
import { Type, type Static } from 'typebox';
import type { Clock } from '../../../platform/clock.ts';
import { type ExternalIdentity, SsoProtocolError, SsoProviderUnavailableError } from './protocol.ts';

// https anywhere; plain http only to a loopback issuer, and then only with allowInsecureHttp (the `if` below).
// An issuer identifier has no query and no fragment (OpenID Connect Discovery 1.0, section 2), and never names a
// `.well-known` document: openid-client would fetch that URL as is and skip the issuer check.
const httpsIssuer = 'https://[^\\s/?#]+(/[^\\s?#]*)?';
const loopbackHttpIssuer = 'http://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:[0-9]{1,5})?(/[^\\s?#]*)?';
// RFC 6749 appendix A.4: a scope token is %x21 / %x23-5B / %x5D-7E.
const scopeToken = '^[\\x21\\x23-\\x5b\\x5d-\\x7e]+$';

export const oidcConnectionConfig = Type.Object(
  {
    issuer: Type.String({
      format: 'uri',
      maxLength: 2048,
      pattern: `^(?!.*/\\.well-known/)(${httpsIssuer}|${loopbackHttpIssuer})$`,
      description: "The provider's issuer identifier; its discovery document is read from `<issuer>/.well-known/openid-configuration`.",
    }),
    clientId: Type.String({ minLength: 1, maxLength: 512, pattern: '^[\\x20-\\x7e]+$', description: 'The client id registered at the provider.' }),
    scopes: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 256, pattern: scopeToken }), {
        minItems: 1,
        maxItems: 50,
        uniqueItems: true,
        contains: Type.Literal('openid'),
        description: "Scopes to request; must include 'openid'. Default ['openid', 'email', 'profile'].",
      }),
    ),
    groupsClaim: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: "The claim that carries the user's groups. Default 'groups'." })),
    tokenEndpointAuthMethod: Type.Optional(
      Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')], {
        description: "How the client secret is sent to the token endpoint, as registered at the provider. Default 'client_secret_basic'.",
      }),
    ),
    allowInsecureHttp: Type.Optional(
      Type.Boolean({ description: 'Tests only: accept a plain-http issuer on loopback (127.0.0.1, localhost, [::1]). Never set it in production.' }),
    ),
  },
  {
    additionalProperties: false,
    // Sub-schemas of a condition, not objects of their own: they must let the other members through.
    if: { properties: { issuer: { pattern: '^http:' } }, required: ['issuer'] },
    then: { properties: { allowInsecureHttp: { const: true } }, required: ['allowInsecureHttp'] },
  },
);
export type OidcConnectionConfig = Static<typeof oidcConnectionConfig>;

/** Stable words for `SsoProtocolError.reason`. */
export type OidcRefusal =
  | 'idp_error'
  | 'state_mismatch'
  | 'authorization_response_invalid'
  | 'token_exchange_failed'
  | 'nonce_mismatch'
  | 'id_token_invalid'
  | 'userinfo_failed'
  | 'too_many_groups';

/** What `start` hands back: the URL to send the browser to, and the values `finish` must be given again. */
export interface OidcLoginStart {
  url: string;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export type OidcExpected = Omit<OidcLoginStart, 'url'>;

export interface OidcAdapterOptions {
  clock: Clock;
  /** How long a discovery document is reused. Default 1 hour. */
  discoveryTtlMs?: number;
  /** Per HTTP request to the provider. Default 10 seconds. */
  timeoutMs?: number;
  /** Issuers whose discovery documents are kept at once; the oldest goes first. Default 1000. */
  maxCachedIssuers?: number;
}

const defaultScopes = ['openid', 'email', 'profile'];
const maxGroups = 1000;
const maxGroupLength = 256;

interface Discovery {
  expiresAt: number;
  metadata: Promise<oidc.ServerMetadata>;
  /** The provider's signing keys as last fetched; openid-client refreshes them itself (5 minutes, or an unknown kid). */
  jwks: oidc.ExportedJWKSCache | undefined;
}

type Phase = 'discovery' | 'token' | 'userinfo';

/**
 * OpenID Connect relying party: authorization code flow with PKCE (S256), state and nonce, on openid-client.
 * Pure protocol: configuration, secret and the expected values come in as arguments; the only state is a
 * bounded, TTL'd cache of discovery documents and signing keys per issuer (they are public and the same for
 * every client of that issuer).
 *
 * @example
 * const adapter = new OidcAdapter({ clock: systemClock });
 * const { url, ...expected } = await adapter.start(config, 'https://bulwark.example/v1/sso/callback');
 * // keep `expected` in the login flow's row, send the browser to `url`; on its return:
 * const identity = await adapter.finish(config, clientSecret, redirectUri, callbackUrl, expected);
 */
export class OidcAdapter {
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #timeoutSeconds: number;
  readonly #maxIssuers: number;
  readonly #discoveries = new Map<string, Discovery>();

  constructor(options: OidcAdapterOptions) {
    this.#clock = options.clock;
    this.#ttlMs = options.discoveryTtlMs ?? 60 * 60 * 1000;
    this.#timeoutSeconds = (options.timeoutMs ?? 10_000) / 1000;
    this.#maxIssuers = Math.max(1, options.maxCachedIssuers ?? 1000);
  }

  /** Builds the authorization request. The client secret is not needed for it. */
  async start(config: OidcConnectionConfig, redirectUri: string): Promise<OidcLoginStart> {
    const redirect = registeredRedirect(redirectUri);
    const configuration = await this.#configuration(config, undefined);
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const parameters = {
      redirect_uri: redirect.href,
      scope: (config.scopes ?? defaultScopes).join(' '),
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    };
    try {
      return { url: oidc.buildAuthorizationUrl(configuration.client, parameters).href, state, nonce, codeVerifier };
    } catch (error) {
      // No authorization endpoint, or one on plain http: the discovery document is unusable.
      throw classify(error, 'discovery');
    }
  }

  /**
   * Checks the authorization response against `expected`, redeems the code (with the PKCE verifier), validates
   * the ID token (signature, iss, aud, azp, exp/iat on the injected clock, nonce) and reads the identity from
   * it, and from userinfo when the ID token lacks the e-mail or the groups.
   *
   * Only the query of `callbackUrl` is used: the request is rebuilt on `redirectUri`, the one sent in `start`,
   * so a Host header the browser or a proxy chose never reaches the token request.
   */
  async finish(
    config: OidcConnectionConfig,
    clientSecret: string,
    redirectUri: string,
    callbackUrl: URL,
    expected: OidcExpected,
  ): Promise<ExternalIdentity> {
    // 1. The authorization response as it arrived at our registered redirect URI.
    const response = registeredRedirect(redirectUri);
    response.search = callbackUrl.search;
    const { client, discovery } = await this.#configuration(config, clientSecret);
    // 2. Response checks (state, RFC 9207 iss, error), code exchange, ID token validation: all openid-client's.
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(client, response, {
        expectedState: expected.state,
        expectedNonce: expected.nonce,
        pkceCodeVerifier: expected.codeVerifier,
        idTokenExpected: true,
      });
    } catch (error) {
      throw classify(error, 'token', { stateMatched: response.searchParams.get('state') === expected.state, hasCode: response.searchParams.has('code') });
    } finally {
      discovery.jwks = oidc.getJwksCache(client) ?? discovery.jwks;
    }
    const idToken = tokens.claims();
    if (idToken === undefined) throw new SsoProtocolError('id_token_invalid', 'the token response has no ID token');
    // 3. Userinfo only fills what the ID token lacks; openid-client checks that its `sub` is the ID token's.
    const groupsClaim = config.groupsClaim ?? 'groups';
    let userinfo: oidc.UserInfoResponse | undefined;
    if ((idToken.email === undefined || idToken[groupsClaim] === undefined) && client.serverMetadata().userinfo_endpoint !== undefined) {
      try {
        userinfo = await oidc.fetchUserInfo(client, tokens.access_token, idToken.sub);
      } catch (error) {
        throw classify(error, 'userinfo');
      }
    }
    // 4. The address and its verification come from the same source, never one from each.
    const mailSource = typeof idToken.email === 'string' ? idToken : userinfo;
    const email = text(mailSource?.email);
    return {
      subject: idToken.sub,
      email,
      emailVerified: email !== undefined && mailSource?.email_verified === true,
      givenName: text(idToken.given_name) ?? text(userinfo?.given_name),
      familyName: text(idToken.family_name) ?? text(userinfo?.family_name),
      groups: groupNames(idToken[groupsClaim] ?? userinfo?.[groupsClaim]),
    };
  }

  /** A fresh openid-client configuration per call: the secret and the injected clock's offset are per call. */
  async #configuration(config: OidcConnectionConfig, clientSecret: string | undefined): Promise<{ client: oidc.Configuration; discovery: Discovery }> {
    const discovery = this.#discovery(config);
    const metadata = await discovery.metadata;
    const authentication =
      clientSecret === undefined
        ? oidc.None()
        : config.tokenEndpointAuthMethod === 'client_secret_post'
          ? oidc.ClientSecretPost(clientSecret)
          : oidc.ClientSecretBasic(clientSecret);
    // openid-client checks exp/nbf/iat against Date.now() + clockSkew (seconds): the skew makes that the injected clock.
    const clockSkew = Math.round((this.#clock.now().getTime() - Date.now()) / 1000);
    const client = new oidc.Configuration(metadata, config.clientId, { [oidc.clockSkew]: clockSkew }, authentication);
    client.timeout = this.#timeoutSeconds;
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- deprecated only to stand out; gated by the schema to loopback issuers for tests.
    if (config.allowInsecureHttp === true) oidc.allowInsecureRequests(client);
    // openid-client skips the ID token's signature when it comes straight from the token endpoint over TLS (OIDC
    // Core 3.1.3.7 allows it); we check it too, so only the issuer's published keys can vouch for a login.
    oidc.enableNonRepudiationChecks(client);
    if (discovery.jwks !== undefined) oidc.setJwksCache(client, discovery.jwks);
    return { client, discovery };
  }

  /** The cached discovery of the config's issuer, or a new one; concurrent logins share one request. */
  #discovery(config: OidcConnectionConfig): Discovery {
    const issuer = issuerUrl(config);
    const now = this.#clock.now().getTime();
    const cached = this.#discoveries.get(issuer.href);
    if (cached !== undefined && cached.expiresAt > now) return cached;
    this.#discoveries.delete(issuer.href);
    if (this.#discoveries.size >= this.#maxIssuers) {
      const oldest = this.#discoveries.keys().next();
      if (oldest.done !== true) this.#discoveries.delete(oldest.value);
    }
    const discovery: Discovery = { expiresAt: now + this.#ttlMs, metadata: this.#discover(issuer, config), jwks: undefined };
    // A failure is not cached: the next login asks again. The caller awaits `metadata` and sees the error.
    void discovery.metadata.catch(() => {
      if (this.#discoveries.get(issuer.href) === discovery) this.#discoveries.delete(issuer.href);
    });
    this.#discoveries.set(issuer.href, discovery);
    return discovery;
  }

  async #discover(issuer: URL, config: OidcConnectionConfig): Promise<oidc.ServerMetadata> {
    try {
      const discovered = await oidc.discovery(issuer, config.clientId, undefined, undefined, {
        timeout: this.#timeoutSeconds,
        // eslint-disable-next-line @typescript-eslint/no-deprecated -- as in #configuration: loopback test issuers only.
        execute: config.allowInsecureHttp === true ? [oidc.allowInsecureRequests] : [],
      });
      return discovered.serverMetadata();
    } catch (error) {
      throw classify(error, 'discovery');
    }
  }
}

/** The schema already says so; checked again here because this is where the request leaves. */
function issuerUrl(config: OidcConnectionConfig): URL {
  const issuer = new URL(config.issuer);
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(issuer.hostname);
  if (issuer.protocol !== 'https:' && !(issuer.protocol === 'http:' && loopback && config.allowInsecureHttp === true)) {
    throw new TypeError('the OIDC issuer must be an https URL (plain http only on loopback, with allowInsecureHttp)');
  }
  if (issuer.href.includes('/.well-known/')) throw new TypeError('the OIDC issuer must be the issuer, not a discovery document URL');
  return issuer;
}

/** openid-client derives the token request's redirect_uri by stripping the query, so the URI must not have one. */
function registeredRedirect(redirectUri: string): URL {
  const redirect = new URL(redirectUri);
  if (redirect.search !== '' || redirect.hash !== '') throw new TypeError('the OIDC redirect URI must have no query and no fragment');
  return redirect;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * An array of strings, or one string as one group. A name that is empty or too long is dropped, not truncated:
 * a truncated name could be another group's. More groups than the limit fail the login (as LDAP's do): roles
 * decided on a cut list would take away what the cut-off groups give.
 */
function groupNames(value: unknown): string[] {
  const names: unknown[] = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
  const groups = new Set<string>();
  for (const name of names) {
    if (typeof name === 'string' && name !== '' && name.length <= maxGroupLength) groups.add(name);
  }
  if (groups.size > maxGroups) throw refuse('too_many_groups', `the provider sent more than ${maxGroups} groups`, undefined);
  return [...groups];
}

/** A code or error word from the provider, for a message: only if it looks like one (it is attacker-reachable). */
function word(value: unknown): string {
  return typeof value === 'string' && /^[\w.-]{1,64}$/.test(value) ? value : 'an unrecognised error';
}

const refuse = (reason: OidcRefusal, message: string, cause: unknown) => new SsoProtocolError(reason, message, { cause });
const unavailable = (message: string, cause: unknown) => new SsoProviderUnavailableError(message, { cause });

/** The detail openid-client wraps: ClientError -> OperationProcessingError -> a plain object. */
function detail(error: oidc.ClientError): Record<string, unknown> {
  const inner: unknown = error.cause instanceof Error ? error.cause.cause : undefined;
  return typeof inner === 'object' && inner !== null ? (inner as Record<string, unknown>) : {};
}

/**
 * Maps openid-client's errors to the two SSO errors; the original stays the `cause`. Messages never carry a token,
 * a code or the provider's free-text description.
 */
function classify(error: unknown, phase: Phase, callback = { stateMatched: true, hasCode: true }): Error {
  // Argument errors of openid-client (ERR_INVALID_ARG_*) are our bugs, not the provider's.
  if (error instanceof TypeError && 'code' in error && typeof error.code === 'string' && error.code.startsWith('ERR_INVALID_ARG')) return error;
  if (phase === 'discovery') return unavailable('the OIDC discovery document could not be fetched or is unusable', error);
  if (error instanceof oidc.AuthorizationResponseError) {
    return refuse('idp_error', `the identity provider answered the authorization request with ${word(error.error)}`, error);
  }
  const refusal: OidcRefusal = phase === 'token' ? 'token_exchange_failed' : 'userinfo_failed';
  if (error instanceof oidc.ResponseBodyError) {
    if (error.status >= 500) return unavailable(`the identity provider failed (HTTP ${error.status})`, error);
    return refuse(refusal, `the identity provider refused the ${phase} request with ${word(error.error)}`, error);
  }
  if (error instanceof oidc.WWWAuthenticateChallengeError) {
    return refuse(refusal, `the identity provider refused the ${phase} request (HTTP ${error.status})`, error);
  }
  if (!(error instanceof oidc.ClientError)) return unavailable('the identity provider could not be reached', error);
  const inner = detail(error);
  switch (error.code) {
    case 'OAUTH_INVALID_RESPONSE':
      // The authorization response's checks carry its parameters (a missing code fails without them); the token
      // response and ID token checks do not.
      if (!callback.stateMatched) return refuse('state_mismatch', 'the authorization response does not carry the state of this login', error);
      if (inner['parameters'] instanceof URLSearchParams || !callback.hasCode) {
        return refuse('authorization_response_invalid', 'the authorization response is invalid (issuer or code)', error);
      }
      return refuse(phase === 'token' ? 'id_token_invalid' : refusal, `the ${phase} response is invalid`, error);
    case 'OAUTH_JWT_CLAIM_COMPARISON_FAILED':
      if (inner['claim'] === 'nonce') return refuse('nonce_mismatch', 'the ID token does not carry the nonce of this login', error);
      return refuse('id_token_invalid', `the ID token's ${word(inner['claim'])} claim is not the expected one`, error);
    case 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED':
      return refuse('id_token_invalid', `the ID token's ${word(inner['claim'])} claim is out of its time window`, error);
    case 'OAUTH_KEY_SELECTION_FAILED':
    case 'OAUTH_UNSUPPORTED_OPERATION':
      return refuse('id_token_invalid', 'the ID token is not signed with a key or an algorithm of the provider', error);
    case 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED':
      return refuse(refusal, `the ${phase} response is for another subject or issuer`, error);
    default:
      // Timeouts, network, non-JSON or non-200 answers, unparsable bodies, endpoints on plain http.
      return unavailable(`the identity provider's ${phase} endpoint could not be reached or answered garbage`, error);
  }
}
