import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { newId } from '../../platform/ids.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import {
  findSession,
  insertRefreshToken,
  insertSession,
  lockRefreshToken,
  markRefreshTokenUsed,
  type RevokedReason,
  revokeSession,
  revokeUserSessions,
} from './user-sessions-store.ts';

export interface UserSessionOptions {
  /** One refresh token's lifetime; each refresh issues a new one. */
  refreshTtlMs: number;
  /** The absolute end of a session, however often it refreshes. */
  sessionMaxMs: number;
  /** How long "this session is live" is cached; a revocation reaches every instance within it. */
  revocationCacheTtlMs: number;
}

/** `bwr_<tenantId><43 base64url chars>`: the tenant routes the lookup (RLS), the rest is 256 random bits. */
const refreshShape = /^bwr_([0-9a-f]{12})[A-Za-z0-9_-]{43}$/;
const sha256 = (value: string) => createHash('sha256').update(value).digest();
const invalidRefresh = () => new BulwarkError('invalid_credentials', { message: 'The refresh token is invalid, expired or revoked.' });

export interface IssuedRefresh {
  tenantId: string;
  userId: string;
  sessionId: string;
  refreshToken: string;
  refreshExpiresAt: Date;
}

/**
 * Login sessions and their refresh tokens. A refresh token is opaque, stored as a SHA-256 hash and good
 * for one use: each refresh marks it used and issues the next. Presenting a used token again means it was
 * copied (the thief or the owner raced the other), so the whole session is revoked. Access tokens carry
 * the session id; `isLive` answers the auth hook, cached briefly.
 */
export class UserSessionService {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #options: UserSessionOptions;
  readonly #live: TtlCache<boolean>;

  constructor(db: Database, clock: Clock, options: UserSessionOptions) {
    this.#db = db;
    this.#clock = clock;
    this.#options = options;
    this.#live = new TtlCache(options.revocationCacheTtlMs, 100_000, clock);
  }

  async start(tenantId: string, userId: string): Promise<IssuedRefresh> {
    const now = this.#clock.now();
    const expiresAt = new Date(now.getTime() + this.#options.sessionMaxMs);
    return this.#db.withTenant(tenantId, async (tx) => {
      let sessionId = newId();
      while (!(await insertSession(tx, tenantId, { id: sessionId, userId, now, expiresAt }))) sessionId = newId();
      const { token, refreshExpiresAt } = await this.#issueRefresh(tx, tenantId, sessionId, now, expiresAt);
      return { tenantId, userId, sessionId, refreshToken: token, refreshExpiresAt };
    });
  }

  /** Rotates a refresh token. Reuse of a rotated one revokes the session (and is reported as invalid). */
  async refresh(refreshToken: string): Promise<IssuedRefresh> {
    const tenantId = refreshShape.exec(refreshToken)?.[1];
    if (tenantId === undefined) throw invalidRefresh();
    const hash = sha256(refreshToken);
    const now = this.#clock.now();
    const outcome = await this.#db.withTenant(tenantId, async (tx) => {
      const row = await lockRefreshToken(tx, tenantId, hash);
      if (row === undefined) return { kind: 'invalid' as const };
      const { session } = row;
      if (row.used_at !== null) {
        await revokeSession(tx, tenantId, session.id, 'refresh_token_reuse', now);
        return { kind: 'reused' as const, sessionId: session.id };
      }
      if (session.revoked_at !== null || row.expires_at <= now || session.expires_at <= now) return { kind: 'invalid' as const };
      await markRefreshTokenUsed(tx, tenantId, hash, now);
      const { token, refreshExpiresAt } = await this.#issueRefresh(tx, tenantId, session.id, now, session.expires_at);
      return { kind: 'rotated' as const, issued: { tenantId, userId: session.user_id, sessionId: session.id, refreshToken: token, refreshExpiresAt } };
    });
    if (outcome.kind === 'rotated') return outcome.issued;
    if (outcome.kind === 'reused') this.#live.delete(`${tenantId}/${outcome.sessionId}`);
    throw invalidRefresh();
  }

  /** Logout with the refresh token: its session ends. Unknown or already revoked: nothing to do. */
  async logout(refreshToken: string): Promise<void> {
    const tenantId = refreshShape.exec(refreshToken)?.[1];
    if (tenantId === undefined) return;
    const sessionId = await this.#db.withTenant(tenantId, async (tx) => {
      const row = await lockRefreshToken(tx, tenantId, sha256(refreshToken));
      if (row === undefined) return undefined;
      await revokeSession(tx, tenantId, row.session.id, 'logout', this.#clock.now());
      return row.session.id;
    });
    if (sessionId !== undefined) this.#live.delete(`${tenantId}/${sessionId}`);
  }

  async revoke(tenantId: string, sessionId: string, reason: RevokedReason): Promise<void> {
    await this.#db.withTenant(tenantId, (tx) => revokeSession(tx, tenantId, sessionId, reason, this.#clock.now()));
    this.#live.delete(`${tenantId}/${sessionId}`);
  }

  async revokeAllOfUser(tenantId: string, userId: string, reason: RevokedReason): Promise<void> {
    const ids = await this.#db.withTenant(tenantId, (tx) => revokeUserSessions(tx, tenantId, userId, reason, this.#clock.now()));
    for (const id of ids) this.#live.delete(`${tenantId}/${id}`);
  }

  /** Whether a session may still be used (not revoked, not past its end). Cached per instance. */
  async isLive(tenantId: string, sessionId: string): Promise<boolean> {
    const key = `${tenantId}/${sessionId}`;
    const cached = this.#live.get(key);
    if (cached !== undefined) return cached;
    const session = await this.#db.withTenant(tenantId, (tx) => findSession(tx, tenantId, sessionId));
    const live = session !== undefined && session.revoked_at === null && session.expires_at > this.#clock.now();
    this.#live.set(key, live);
    return live;
  }

  async #issueRefresh(
    tx: Queryable,
    tenantId: string,
    sessionId: string,
    now: Date,
    sessionEnd: Date,
  ): Promise<{ token: string; refreshExpiresAt: Date }> {
    const token = `bwr_${tenantId}${randomBytes(32).toString('base64url')}`;
    const refreshExpiresAt = new Date(Math.min(now.getTime() + this.#options.refreshTtlMs, sessionEnd.getTime()));
    await insertRefreshToken(tx, tenantId, { hash: sha256(token), sessionId, now, expiresAt: refreshExpiresAt });
    return { token, refreshExpiresAt };
  }
}
