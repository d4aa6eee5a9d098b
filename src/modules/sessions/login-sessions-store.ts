import type { Queryable } from '../../platform/db/database.ts';

export type RevokedReason = 'logout' | 'refresh_token_reuse' | 'admin' | 'user_deleted' | 'password_changed';

/**
 * The tables of one realm's sessions. Tenant users: `user_sessions` and `refresh_tokens`, keyed by
 * tenant_id; operators: `operator_sessions` and `operator_refresh_tokens`, keyed by realm ('platform').
 * The names come from these two constants only, never from input, so the statements below stay
 * parameterised in everything a caller supplies.
 */
export interface SessionTables {
  sessions: 'user_sessions' | 'operator_sessions';
  refreshTokens: 'refresh_tokens' | 'operator_refresh_tokens';
  /** The column that scopes a row to its realm (the first column of every key). */
  scope: 'tenant_id' | 'realm';
  /** The column naming whose session it is. */
  principal: 'user_id' | 'operator_id';
}

export const userSessionTables: SessionTables = { sessions: 'user_sessions', refreshTokens: 'refresh_tokens', scope: 'tenant_id', principal: 'user_id' };
export const operatorSessionTables: SessionTables = { sessions: 'operator_sessions', refreshTokens: 'operator_refresh_tokens', scope: 'realm', principal: 'operator_id' };

export interface SessionRow {
  id: string;
  principal_id: string;
  created_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
}

export interface RefreshRow {
  session_id: string;
  expires_at: Date;
  used_at: Date | null;
}

/**
 * A new session and its first refresh token, in one statement. False when the session id is taken (a
 * 48-bit collision): then neither row is written and the caller draws another id.
 */
export async function insertSessionWithRefresh(
  tx: Queryable,
  t: SessionTables,
  scope: string,
  session: { id: string; principalId: string; now: Date; expiresAt: Date; refreshHash: Buffer; refreshExpiresAt: Date },
): Promise<boolean> {
  const { rowCount } = await tx.query(
    `WITH session AS (
       INSERT INTO ${t.sessions} (${t.scope}, id, ${t.principal}, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id)
     INSERT INTO ${t.refreshTokens} (${t.scope}, token_hash, session_id, created_at, expires_at) SELECT $1, $6, id, $4, $7 FROM session`,
    [scope, session.id, session.principalId, session.now, session.expiresAt, session.refreshHash, session.refreshExpiresAt],
  );
  return rowCount > 0;
}

export async function insertRefreshToken(tx: Queryable, t: SessionTables, scope: string, token: { hash: Buffer; sessionId: string; now: Date; expiresAt: Date }): Promise<void> {
  await tx.query(`INSERT INTO ${t.refreshTokens} (${t.scope}, token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`, [
    scope,
    token.hash,
    token.sessionId,
    token.now,
    token.expiresAt,
  ]);
}

/** The refresh token and its session, locked: two refreshes of one token serialise here. */
export async function lockRefreshToken(tx: Queryable, t: SessionTables, scope: string, hash: Buffer): Promise<(RefreshRow & { session: SessionRow }) | undefined> {
  const { rows } = await tx.query<RefreshRow & { principal_id: string; session_created_at: Date; session_expires_at: Date; revoked_at: Date | null }>(
    `SELECT t.session_id, t.expires_at, t.used_at, s.${t.principal} AS principal_id, s.created_at AS session_created_at,
            s.expires_at AS session_expires_at, s.revoked_at
       FROM ${t.refreshTokens} t JOIN ${t.sessions} s ON s.${t.scope} = t.${t.scope} AND s.id = t.session_id
      WHERE t.${t.scope} = $1 AND t.token_hash = $2
      FOR UPDATE OF t, s`,
    [scope, hash],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  return {
    session_id: row.session_id,
    expires_at: row.expires_at,
    used_at: row.used_at,
    session: { id: row.session_id, principal_id: row.principal_id, created_at: row.session_created_at, expires_at: row.session_expires_at, revoked_at: row.revoked_at },
  };
}

export async function markRefreshTokenUsed(tx: Queryable, t: SessionTables, scope: string, hash: Buffer, now: Date): Promise<void> {
  await tx.query(`UPDATE ${t.refreshTokens} SET used_at = $3 WHERE ${t.scope} = $1 AND token_hash = $2`, [scope, hash, now]);
}

export async function revokeSession(tx: Queryable, t: SessionTables, scope: string, sessionId: string, reason: RevokedReason, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE ${t.sessions} SET revoked_at = $3, revoked_reason = $4 WHERE ${t.scope} = $1 AND id = $2 AND revoked_at IS NULL`,
    [scope, sessionId, now, reason],
  );
  return rowCount > 0;
}

export async function revokePrincipalSessions(tx: Queryable, t: SessionTables, scope: string, principalId: string, reason: RevokedReason, now: Date): Promise<string[]> {
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE ${t.sessions} SET revoked_at = $3, revoked_reason = $4 WHERE ${t.scope} = $1 AND ${t.principal} = $2 AND revoked_at IS NULL RETURNING id`,
    [scope, principalId, now, reason],
  );
  return rows.map((row) => row.id);
}

/** A principal's sessions, newest first (revoked and expired ones too). */
export async function listPrincipalSessions(
  tx: Queryable,
  t: SessionTables,
  scope: string,
  principalId: string,
): Promise<(SessionRow & { revoked_reason: RevokedReason | null })[]> {
  const { rows } = await tx.query<SessionRow & { revoked_reason: RevokedReason | null }>(
    `SELECT id, ${t.principal} AS principal_id, created_at, expires_at, revoked_at, revoked_reason FROM ${t.sessions}
      WHERE ${t.scope} = $1 AND ${t.principal} = $2 ORDER BY created_at DESC, id`,
    [scope, principalId],
  );
  return rows;
}

export async function findSession(tx: Queryable, t: SessionTables, scope: string, sessionId: string): Promise<SessionRow | undefined> {
  const { rows } = await tx.query<SessionRow>(
    `SELECT id, ${t.principal} AS principal_id, created_at, expires_at, revoked_at FROM ${t.sessions} WHERE ${t.scope} = $1 AND id = $2`,
    [scope, sessionId],
  );
  return rows[0];
}
