import { createHash, type JsonWebKey, randomBytes, verify } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../platform/db/database.ts';
import type { RootKeyProvider } from '../keys/root/provider.ts';
import {
  clockToleranceSeconds,
  defaultSigningKeyringOptions,
  maxAccessTokenTtlSeconds,
  signingAlgorithm,
  SigningKeyring,
  type SigningKeyringOptions,
} from './signing-keys.ts';

/** What an access token says about its bearer. */
export interface AccessClaims {
  sub: string;
  /** null for operators. */
  tenantId: string | null;
  /** The session id. */
  sid: string;
  roles: string[];
  /** The authorization version: a change to the user's roles or status bumps it. */
  ver: number;
  kind: 'user' | 'operator';
}

export type VerifiedAccessClaims = AccessClaims & { exp: number; iat: number; jti: string };

export interface TokenConfig {
  issuer: string;
  audience: string;
  /** 300 .. 900 (5 to 15 minutes); the config default is 600. */
  accessTtlSeconds: number;
  /** The signing key is replaced once it is this old (checked when a token is issued); default 30. */
  rotateAfterDays: number;
  /** Verified tokens kept in memory (0: none, e.g. to measure the signature check); default 10,000. */
  verifyCacheMaxEntries?: number;
  /** Longest time a verified token stays cached (never past its exp); default 60 s. */
  verifyCacheTtlMs?: number;
  /** Advanced: how often the signing keys are re-read; defaults in `defaultSigningKeyringOptions`. */
  keyring?: Partial<Pick<SigningKeyringOptions, 'refreshMs' | 'unknownKidReloadMs'>>;
  /** Told about failures that do not fail a request (an automatic key rotation that did not go through). */
  onBackgroundError?: (error: unknown, message: string) => void;
}

/** RFC 9068's media type for JWT access tokens: a token of another type (an ID token, say) is refused. */
export const accessTokenType = 'at+jwt';
// Generous for our claims (a few hundred bytes); a bearer far longer is not ours and is not hashed or parsed.
const maxTokenChars = 8192;
const ed25519SignatureChars = 86;
const jtiBytes = 16;
const segment = /^[A-Za-z0-9_-]+$/;
const jwtShape = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Access tokens: short-lived JWTs (RFC 9068 shape) signed with the platform's Ed25519 key (`kid` rotation,
 * JWKS). Issuing uses jose. Verifying does not: it is the hot path of every authenticated request, and jose's
 * `jwtVerify` (WebCrypto, asynchronous) measured 62% of a raw `crypto.verify`, under the 80% target; the checks
 * below follow RFC 8725 strictly instead (one algorithm, exact header, exact types). A verified token is cached
 * by its SHA-256 until min(exp, 60 s), so a repeated token costs a hash and a map lookup.
 *
 * @example
 * const tokens = new TokenService(db, rootKeys, systemClock, { issuer: 'bulwark', audience: 'bulwark', accessTtlSeconds: 600, rotateAfterDays: 30 });
 * await tokens.init();
 * const { token } = await tokens.issueAccessToken({ sub: userId, tenantId, sid, roles: [], ver: 1, kind: 'user' });
 * const claims = await tokens.verifyAccessToken(token); // null for any bad token
 */
export class TokenService {
  readonly #keys: SigningKeyring;
  readonly #clock: Clock;
  readonly #issuer: string;
  readonly #audience: string;
  readonly #ttlSeconds: number;
  readonly #cache: VerifiedTokenCache;
  readonly #cacheTtlMs: number;
  #signatureChecks = 0;
  #cacheHits = 0;

  constructor(db: Database, rootKeys: RootKeyProvider, clock: Clock, config: TokenConfig) {
    const { issuer, audience, accessTtlSeconds, rotateAfterDays } = config;
    if (typeof issuer !== 'string' || issuer === '' || typeof audience !== 'string' || audience === '') {
      throw new TypeError('token config: issuer and audience must be non-empty strings');
    }
    if (!Number.isInteger(accessTtlSeconds) || accessTtlSeconds < 300 || accessTtlSeconds > maxAccessTokenTtlSeconds) {
      throw new RangeError(`token config: accessTtlSeconds must be an integer from 300 to ${maxAccessTokenTtlSeconds}`);
    }
    if (!Number.isInteger(rotateAfterDays) || rotateAfterDays < 1 || rotateAfterDays > 365) {
      throw new RangeError('token config: rotateAfterDays must be an integer from 1 to 365');
    }
    const cacheMaxEntries = config.verifyCacheMaxEntries ?? 10_000;
    this.#cacheTtlMs = config.verifyCacheTtlMs ?? 60_000;
    if (!Number.isInteger(cacheMaxEntries) || cacheMaxEntries < 0 || !Number.isInteger(this.#cacheTtlMs) || this.#cacheTtlMs < 0) {
      throw new RangeError('token config: the verify cache size and TTL must be non-negative integers');
    }
    this.#clock = clock;
    this.#issuer = issuer;
    this.#audience = audience;
    this.#ttlSeconds = accessTtlSeconds;
    this.#cache = new VerifiedTokenCache(this.#cacheTtlMs === 0 ? 0 : cacheMaxEntries);
    this.#keys = new SigningKeyring(db, rootKeys, clock, {
      ...defaultSigningKeyringOptions,
      ...config.keyring,
      rotateAfterMs: rotateAfterDays * 86_400_000,
      ...(config.onBackgroundError === undefined ? {} : { onBackgroundError: config.onBackgroundError }),
    });
  }

  /** Ensures an active signing key exists (creates the first at start-up) and loads the public keys; call once at start. */
  async init(): Promise<void> {
    await this.#keys.init();
  }

  /**
   * Signs an access token for `claims`, valid from now for `accessTtlSeconds`. Rotates the signing key first
   * when it is due. Throws TypeError for malformed claims (a programming error), BulwarkError when the
   * root key provider or the database fails.
   */
  async issueAccessToken(claims: AccessClaims): Promise<{ token: string; expiresAt: Date; expiresIn: number }> {
    assertAccessClaims(claims);
    const key = await this.#keys.signingKey();
    const iat = Math.floor(this.#clock.now().getTime() / 1000);
    const exp = iat + this.#ttlSeconds;
    const { sub, tenantId, sid, roles, ver, kind } = claims;
    const token = await new SignJWT({ tenantId, sid, roles: [...roles], ver, kind })
      .setProtectedHeader({ alg: signingAlgorithm, typ: accessTokenType, kid: key.kid })
      .setIssuer(this.#issuer)
      .setAudience(this.#audience)
      .setSubject(sub)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(exp)
      .setJti(randomBytes(jtiBytes).toString('base64url'))
      .sign(key.privateKey);
    return { token, expiresAt: new Date(exp * 1000), expiresIn: this.#ttlSeconds };
  }

  /**
   * The claims of a valid access token, or null for any failure: malformed, another algorithm (`none`,
   * HS256 with the public key as secret), another type, an unknown or expired key, a bad signature, another
   * issuer or audience, expired, not yet valid, a missing or mistyped claim. Never throws for a bad token;
   * a database failure while looking up an unknown `kid` is null too.
   */
  async verifyAccessToken(token: string): Promise<VerifiedAccessClaims | null> {
    if (typeof token !== 'string' || token.length > maxTokenChars) return null;
    const nowMs = this.#clock.now().getTime();
    const cacheKey = createHash('sha256').update(token).digest('base64');
    const cached = this.#cache.get(cacheKey, nowMs);
    if (cached !== undefined) {
      this.#cacheHits += 1;
      return cached;
    }
    let claims: VerifiedAccessClaims | null;
    try {
      claims = await this.#verifyUncached(token, nowMs);
    } catch {
      return null;
    }
    if (claims !== null) this.#cache.set(cacheKey, claims, Math.min((claims.exp + clockToleranceSeconds) * 1000, nowMs + this.#cacheTtlMs));
    return claims;
  }

  /** Looks like a JWT (three base64url segments, the header decodes to a JSON object): routes bearer tokens. */
  accepts(token: string): boolean {
    if (typeof token !== 'string' || token.length > maxTokenChars || !jwtShape.test(token)) return false;
    return isRecord(decodeJson(token.slice(0, token.indexOf('.'))));
  }

  /** A new signing key now; the old one retires (its tokens still verify for the verification window). */
  async rotate(): Promise<{ kid: string }> {
    return this.#keys.rotate();
  }

  /** The JWKS document: the active key and the retired keys still inside their verification window. */
  async jwks(): Promise<{ keys: JsonWebKey[] }> {
    return { keys: await this.#keys.jwks() };
  }

  /** Counters for tests and metrics: full signature checks run, and verifications answered by the cache. */
  get stats(): { signatureChecks: number; cacheHits: number } {
    return { signatureChecks: this.#signatureChecks, cacheHits: this.#cacheHits };
  }

  async #verifyUncached(token: string, nowMs: number): Promise<VerifiedAccessClaims | null> {
    // 1. Shape: exactly three canonical base64url segments.
    const headerEnd = token.indexOf('.');
    const payloadEnd = token.indexOf('.', headerEnd + 1);
    if (headerEnd <= 0 || payloadEnd <= headerEnd + 1 || token.indexOf('.', payloadEnd + 1) !== -1) return null;
    const headerText = token.slice(0, headerEnd);
    const payloadText = token.slice(headerEnd + 1, payloadEnd);
    const signatureText = token.slice(payloadEnd + 1);
    if (!segment.test(headerText) || !segment.test(payloadText) || signatureText.length !== ed25519SignatureChars || !segment.test(signatureText)) return null;

    // 2. Header: exactly the one we issue. The algorithm comes from our allowlist of one, never from the token,
    //    so `none` and HS256-with-the-public-key (key confusion) fail here; unknown parameters (crit, jku, jwk,
    //    x5u, b64) are refused rather than ignored.
    const header = decodeJson(headerText);
    if (!isRecord(header) || Object.keys(header).length !== 3) return null;
    const { alg, typ, kid } = header;
    if (alg !== signingAlgorithm || typ !== accessTokenType || typeof kid !== 'string') return null;

    // 3. Key: active, or retired within its window; an unknown kid reloads the keys (rate-limited).
    const key = this.#keys.verificationKey(kid) ?? (await this.#keys.findVerificationKey(kid));
    if (key === undefined) return null;

    // 4. Signature over the ASCII signing input, before anything in the payload is believed. Canonical
    //    base64url only: one signature, one token string.
    const signature = Buffer.from(signatureText, 'base64url');
    if (signature.length !== 64 || signature.toString('base64url') !== signatureText) return null;
    this.#signatureChecks += 1;
    if (!verify(null, Buffer.from(token.slice(0, payloadEnd), 'latin1'), key.key, signature)) return null;

    // 5. Claims: issuer, audience, times (with the clock tolerance), and every claim present and well-typed.
    return this.#checkClaims(decodeJson(payloadText), nowMs / 1000);
  }

  #checkClaims(payload: unknown, now: number): VerifiedAccessClaims | null {
    if (!isRecord(payload)) return null;
    const { iss, aud, sub, exp, nbf, iat, jti, tenantId, sid, roles, ver, kind } = payload;
    if (iss !== this.#issuer || aud !== this.#audience) return null;
    if (!isNumericDate(exp) || !isNumericDate(nbf) || !isNumericDate(iat)) return null;
    if (exp + clockToleranceSeconds <= now || nbf - clockToleranceSeconds > now || iat - clockToleranceSeconds > now) return null;
    if (exp <= iat || exp - iat > maxAccessTokenTtlSeconds) return null;
    if (!isNonEmptyString(sub) || !isNonEmptyString(sid) || !isNonEmptyString(jti)) return null;
    if (kind !== 'user' && kind !== 'operator') return null;
    // A user token names its tenant; an operator token names none (null, not absent).
    const tenant = kind === 'user' ? (isNonEmptyString(tenantId) ? tenantId : undefined) : tenantId === null ? null : undefined;
    if (tenant === undefined) return null;
    if (!Array.isArray(roles) || !roles.every(isNonEmptyString)) return null;
    if (typeof ver !== 'number' || !Number.isSafeInteger(ver) || ver < 0) return null;
    // Frozen: the same object answers every cache hit, so no caller can change what the next one sees.
    return Object.freeze({ sub, tenantId: tenant, sid, roles: Object.freeze([...roles]) as string[], ver, kind, exp, iat, jti });
  }
}

function assertAccessClaims(claims: AccessClaims): void {
  const { sub, tenantId, sid, roles, ver } = claims;
  // Typed callers cannot get this wrong; untyped ones (JSON from elsewhere) can.
  const kind: unknown = claims.kind;
  const valid =
    isNonEmptyString(sub) &&
    isNonEmptyString(sid) &&
    (kind === 'user' ? isNonEmptyString(tenantId) : kind === 'operator' && tenantId === null) &&
    Array.isArray(roles) &&
    roles.every(isNonEmptyString) &&
    Number.isSafeInteger(ver) &&
    ver >= 0;
  if (!valid) throw new TypeError('access claims: sub, sid non-empty; tenantId a string for users and null for operators; roles strings; ver an integer >= 0');
}

function decodeJson(base64url: string): unknown {
  try {
    return JSON.parse(Buffer.from(base64url, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

function isNumericDate(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Verified tokens by SHA-256, least recently used out first; each entry carries its own expiry (never past
 * the token's exp), checked on every hit. Only verified tokens get in, so a flood of forgeries evicts nothing.
 */
class VerifiedTokenCache {
  readonly #entries = new Map<string, { claims: VerifiedAccessClaims; expiresAt: number }>();
  readonly #maxEntries: number;

  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries;
  }

  get(key: string, nowMs: number): VerifiedAccessClaims | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    if (entry.expiresAt <= nowMs) return undefined;
    this.#entries.set(key, entry);
    return entry.claims;
  }

  set(key: string, claims: VerifiedAccessClaims, expiresAt: number): void {
    if (this.#maxEntries === 0) return;
    this.#entries.delete(key);
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { claims, expiresAt });
  }
}
