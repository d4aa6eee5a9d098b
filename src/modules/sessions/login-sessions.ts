import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { newId } from '../../platform/ids.ts';
import { CacheInvalidations } from '../../platform/invalidation.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import type { AuditRecorder, AuditScope } from '../audit/service.ts';
import {
  findSession,
  insertRefreshToken,
  insertSessionWithRefresh,
  listPrincipalSessions,
  lockRefreshToken,
  markRefreshTokenUsed,
  operatorSessionTables,
  type RevokedReason,
  revokePrincipalSessions,
  revokeSession,
  type SessionTables,
  userSessionTables,
} from './login-sessions-store.ts';

export interface LoginSessionOptions {
  /** One refresh token's lifetime; each refresh issues a new one. */
  refreshTtlMs: number;
  /** The absolute end of a session, however often it refreshes. */
  sessionMaxMs: number;
  /** How long "this session is live" is cached; a revocation reaches every instance within it. */
  revocationCacheTtlMs: number;
  /** Tells the other instances about revocations, at once (without it: this instance only). */
  invalidations?: CacheInvalidations;
}

/**
 * Where one realm keeps its sessions: a tenant's users (scope = the tenant id, under its RLS context) or
 * the platform's operators (scope = 'platform', in the platform scope).
 */
export interface SessionRealm {
  readonly tables: SessionTables;
  /** Whose sessions these are, as the actor of their events. */
  readonly accountKind: 'user' | 'operator';
  auditScope(scope: string): AuditScope;
  /** The scope a refresh token of this realm names; undefined when the token is not of this realm. */
  scopeOf(refreshToken: string): string | undefined;
  /** The token text for 256 random bits (base64url) in a scope. */
  refreshToken(scope: string, secret: string): string;
  transaction<T>(scope: string, work: (tx: Queryable) => Promise<T>): Promise<T>;
}

/** `bwr_<tenantId><43 base64url chars>`: the tenant routes the lookup (RLS), the rest is 256 random bits. */
export function tenantSessionRealm(db: Database): SessionRealm {
  return {
    tables: userSessionTables,
    accountKind: 'user',
    auditScope: (tenantId) => ({ tenantId }),
    scopeOf: (token) => /^bwr_([0-9a-f]{12})[A-Za-z0-9_-]{43}$/.exec(token)?.[1],
    refreshToken: (tenantId, secret) => `bwr_${tenantId}${secret}`,
    transaction: (tenantId, work) => db.withTenant(tenantId, work),
  };
}

/** `bwrp_<43 base64url chars>`: an operator's refresh token, looked up in the platform scope. */
export function platformSessionRealm(db: Database): SessionRealm {
  return {
    tables: operatorSessionTables,
    accountKind: 'operator',
    auditScope: () => 'platform',
    scopeOf: (token) => (/^bwrp_[A-Za-z0-9_-]{43}$/.test(token) ? platformScope : undefined),
    refreshToken: (_scope, secret) => `bwrp_${secret}`,
    transaction: (_scope, work) => db.withPlatform(work),
  };
}

export const platformScope = 'platform';

const sha256 = (value: string) => createHash('sha256').update(value).digest();
const invalidRefresh = () => new BulwarkError('invalid_credentials', { message: 'The refresh token is invalid, expired or revoked.' });

export interface IssuedRefresh {
  /** The tenant id, or 'platform' for an operator. */
  scope: string;
  /** The user or operator. */
  principalId: string;
  sessionId: string;
  refreshToken: string;
  refreshExpiresAt: Date;
}

/**
 * Login sessions and their refresh tokens, for one realm. A refresh token is opaque, stored as a SHA-256
 * hash and good for one use: each refresh marks it used and issues the next. Presenting a used token again
 * means it was copied (the thief or the owner raced the other), so the whole session is revoked. Access
 * tokens carry the session id; `isLive` answers the auth hook, cached briefly.
 */
export class LoginSessionService {
  readonly #realm: SessionRealm;
  readonly #audit: AuditRecorder;
  readonly #clock: Clock;
  readonly #options: LoginSessionOptions;
  readonly #live: TtlCache<boolean>;
  readonly #invalidations: CacheInvalidations;

  constructor(realm: SessionRealm, audit: AuditRecorder, clock: Clock, options: LoginSessionOptions) {
    this.#realm = realm;
    this.#audit = audit;
    this.#clock = clock;
    this.#options = options;
    this.#live = new TtlCache(options.revocationCacheTtlMs, 100_000, clock);
    this.#invalidations = options.invalidations ?? new CacheInvalidations();
    this.#invalidations.on('sessions', ({ realm: accountKind, scope, ids }) => {
      if (accountKind !== realm.accountKind) return;
      for (const id of ids) this.#live.delete(`${scope}/${id}`);
    });
  }

  /** Whether a refresh token is of this realm (by its shape; nothing is looked up). */
  accepts(refreshToken: string): boolean {
    return this.#realm.scopeOf(refreshToken) !== undefined;
  }

  /** Starts a session in the caller's transaction (the login's), which must be of this realm and scope. */
  async startIn(tx: Queryable, scope: string, principalId: string): Promise<IssuedRefresh> {
    const now = this.#clock.now();
    const expiresAt = new Date(now.getTime() + this.#options.sessionMaxMs);
    const refreshToken = this.#realm.refreshToken(scope, randomBytes(32).toString('base64url'));
    const refreshExpiresAt = this.#refreshEnd(now, expiresAt);
    const refreshHash = sha256(refreshToken);
    let sessionId = newId();
    while (!(await insertSessionWithRefresh(tx, this.#realm.tables, scope, { id: sessionId, principalId, now, expiresAt, refreshHash, refreshExpiresAt }))) sessionId = newId();
    return { scope, principalId, sessionId, refreshToken, refreshExpiresAt };
  }

  /** Rotates a refresh token. Reuse of a rotated one revokes the session (and is reported as invalid). */
  async refresh(refreshToken: string): Promise<IssuedRefresh> {
    const scope = this.#realm.scopeOf(refreshToken);
    if (scope === undefined) throw invalidRefresh();
    const hash = sha256(refreshToken);
    const now = this.#clock.now();
    const tables = this.#realm.tables;
    const outcome = await this.#realm.transaction(scope, async (tx) => {
      const row = await lockRefreshToken(tx, tables, scope, hash);
      if (row === undefined) return { kind: 'invalid' as const };
      const { session } = row;
      const event = { actor: { kind: this.#realm.accountKind, id: session.principal_id }, sessionId: session.id, target: { type: 'session', id: session.id } };
      if (row.used_at !== null) {
        const revoked = await revokeSession(tx, tables, scope, session.id, 'refresh_token_reuse', now);
        // A spent token again: it was copied. The whole session ends, and that is worth an alert.
        await this.#audit.record(tx, this.#realm.auditScope(scope), { ...event, action: 'auth.refresh.reuse', outcome: 'denied', detail: { sessionRevoked: revoked } });
        return { kind: 'reused' as const, sessionId: session.id };
      }
      if (session.revoked_at !== null || row.expires_at <= now || session.expires_at <= now) return { kind: 'invalid' as const };
      await markRefreshTokenUsed(tx, tables, scope, hash, now);
      await this.#audit.record(tx, this.#realm.auditScope(scope), { ...event, action: 'auth.refresh' });
      const { token, refreshExpiresAt } = await this.#issueRefresh(tx, scope, session.id, now, session.expires_at);
      return { kind: 'rotated' as const, issued: { scope, principalId: session.principal_id, sessionId: session.id, refreshToken: token, refreshExpiresAt } };
    });
    if (outcome.kind === 'rotated') return outcome.issued;
    if (outcome.kind === 'reused') this.forgetLive(scope, [outcome.sessionId]);
    throw invalidRefresh();
  }

  /** Logout with the refresh token: its session ends. Unknown or already revoked: nothing to do. */
  async logout(refreshToken: string): Promise<void> {
    const scope = this.#realm.scopeOf(refreshToken);
    if (scope === undefined) return;
    const sessionId = await this.#realm.transaction(scope, async (tx) => {
      const row = await lockRefreshToken(tx, this.#realm.tables, scope, sha256(refreshToken));
      if (row === undefined) return undefined;
      await revokeSession(tx, this.#realm.tables, scope, row.session.id, 'logout', this.#clock.now());
      await this.#audit.record(tx, this.#realm.auditScope(scope), {
        action: 'auth.logout',
        actor: { kind: this.#realm.accountKind, id: row.session.principal_id },
        sessionId: row.session.id,
        target: { type: 'session', id: row.session.id },
      });
      return row.session.id;
    });
    if (sessionId !== undefined) this.forgetLive(scope, [sessionId]);
  }

  async revoke(scope: string, sessionId: string, reason: RevokedReason): Promise<void> {
    await this.#realm.transaction(scope, (tx) => revokeSession(tx, this.#realm.tables, scope, sessionId, reason, this.#clock.now()));
    this.forgetLive(scope, [sessionId]);
  }

  async revokeAllOf(scope: string, principalId: string, reason: RevokedReason): Promise<void> {
    const ids = await this.#realm.transaction(scope, (tx) => revokePrincipalSessions(tx, this.#realm.tables, scope, principalId, reason, this.#clock.now()));
    this.forgetLive(scope, ids);
  }

  /**
   * `revokeAllOf` in the caller's transaction (a change that records its own event): answers the ids it
   * revoked, to pass to `forgetLive` once the transaction committed.
   */
  async revokeAllIn(tx: Queryable, scope: string, principalId: string, reason: RevokedReason): Promise<string[]> {
    return revokePrincipalSessions(tx, this.#realm.tables, scope, principalId, reason, this.#clock.now());
  }

  /** Drops sessions' cached liveness here and on every other instance (after their revocation committed). */
  forgetLive(scope: string, sessionIds: readonly string[]): void {
    // A message stays small: a principal with more sessions than a message holds is sent in parts.
    for (let start = 0; start < sessionIds.length; start += 1000) {
      this.#invalidations.invalidate({ kind: 'sessions', realm: this.#realm.accountKind, scope, ids: sessionIds.slice(start, start + 1000) });
    }
  }

  /** A principal's sessions, newest first, revoked and expired ones included: metadata only. */
  async listOf(scope: string, principalId: string): Promise<{ id: string; createdAt: string; expiresAt: string; revokedAt: string | null; revokedReason: RevokedReason | null }[]> {
    const rows = await this.#realm.transaction(scope, (tx) => listPrincipalSessions(tx, this.#realm.tables, scope, principalId));
    return rows.map((row) => ({
      id: row.id,
      createdAt: row.created_at.toISOString(),
      expiresAt: row.expires_at.toISOString(),
      revokedAt: row.revoked_at?.toISOString() ?? null,
      revokedReason: row.revoked_reason,
    }));
  }

  /** When the session's login happened (a refresh does not move it); undefined for an unknown session. */
  async startedAt(scope: string, sessionId: string): Promise<Date | undefined> {
    return (await this.#realm.transaction(scope, (tx) => findSession(tx, this.#realm.tables, scope, sessionId)))?.created_at;
  }

  /** Whether a session may still be used (not revoked, not past its end). Cached per instance. */
  async isLive(scope: string, sessionId: string): Promise<boolean> {
    // getOrLoad does not cache a read that raced a revocation's invalidation (it may predate the commit).
    return this.#live.getOrLoad(`${scope}/${sessionId}`, async () => {
      const session = await this.#realm.transaction(scope, (tx) => findSession(tx, this.#realm.tables, scope, sessionId));
      return session !== undefined && session.revoked_at === null && session.expires_at > this.#clock.now();
    });
  }

  async #issueRefresh(tx: Queryable, scope: string, sessionId: string, now: Date, sessionEnd: Date): Promise<{ token: string; refreshExpiresAt: Date }> {
    const token = this.#realm.refreshToken(scope, randomBytes(32).toString('base64url'));
    const refreshExpiresAt = this.#refreshEnd(now, sessionEnd);
    await insertRefreshToken(tx, this.#realm.tables, scope, { hash: sha256(token), sessionId, now, expiresAt: refreshExpiresAt });
    return { token, refreshExpiresAt };
  }

  #refreshEnd(now: Date, sessionEnd: Date): Date {
    return new Date(Math.min(now.getTime() + this.#options.refreshTtlMs, sessionEnd.getTime()));
  }
}
