import type { Queryable } from '../../platform/db/database.ts';

export type RevokedReason = 'logout' | 'refresh_token_reuse' | 'admin' | 'user_deleted' | 'password_changed';

export interface SessionRow {
  id: string;
  user_id: string;
  created_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
}

export interface RefreshRow {
  session_id: string;
  expires_at: Date;
  used_at: Date | null;
}

export async function insertSession(tx: Queryable, tenantId: string, session: { id: string; userId: string; now: Date; expiresAt: Date }): Promise<boolean> {
  const { rowCount } = await tx.query(
    'INSERT INTO user_sessions (tenant_id, id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING',
    [tenantId, session.id, session.userId, session.now, session.expiresAt],
  );
  return rowCount > 0;
}

export async function insertRefreshToken(tx: Queryable, tenantId: string, token: { hash: Buffer; sessionId: string; now: Date; expiresAt: Date }): Promise<void> {
  await tx.query('INSERT INTO refresh_tokens (tenant_id, token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)', [
    tenantId,
    token.hash,
    token.sessionId,
    token.now,
    token.expiresAt,
  ]);
}

/** The refresh token and its session, locked: two refreshes of one token serialise here. */
export async function lockRefreshToken(tx: Queryable, tenantId: string, hash: Buffer): Promise<(RefreshRow & { session: SessionRow }) | undefined> {
  const { rows } = await tx.query<RefreshRow & { user_id: string; session_created_at: Date; session_expires_at: Date; revoked_at: Date | null }>(
    `SELECT t.session_id, t.expires_at, t.used_at, s.user_id, s.created_at AS session_created_at, s.expires_at AS session_expires_at, s.revoked_at
       FROM refresh_tokens t JOIN user_sessions s ON s.tenant_id = t.tenant_id AND s.id = t.session_id
      WHERE t.tenant_id = $1 AND t.token_hash = $2
      FOR UPDATE OF t, s`,
    [tenantId, hash],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  return {
    session_id: row.session_id,
    expires_at: row.expires_at,
    used_at: row.used_at,
    session: { id: row.session_id, user_id: row.user_id, created_at: row.session_created_at, expires_at: row.session_expires_at, revoked_at: row.revoked_at },
  };
}

export async function markRefreshTokenUsed(tx: Queryable, tenantId: string, hash: Buffer, now: Date): Promise<void> {
  await tx.query('UPDATE refresh_tokens SET used_at = $3 WHERE tenant_id = $1 AND token_hash = $2', [tenantId, hash, now]);
}

export async function revokeSession(tx: Queryable, tenantId: string, sessionId: string, reason: RevokedReason, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query(
    'UPDATE user_sessions SET revoked_at = $3, revoked_reason = $4 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL',
    [tenantId, sessionId, now, reason],
  );
  return rowCount > 0;
}

export async function revokeUserSessions(tx: Queryable, tenantId: string, userId: string, reason: RevokedReason, now: Date): Promise<string[]> {
  const { rows } = await tx.query<{ id: string }>(
    'UPDATE user_sessions SET revoked_at = $3, revoked_reason = $4 WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id',
    [tenantId, userId, now, reason],
  );
  return rows.map((row) => row.id);
}

export async function findSession(tx: Queryable, tenantId: string, sessionId: string): Promise<SessionRow | undefined> {
  const { rows } = await tx.query<SessionRow>(
    'SELECT id, user_id, created_at, expires_at, revoked_at FROM user_sessions WHERE tenant_id = $1 AND id = $2',
    [tenantId, sessionId],
  );
  return rows[0];
}
