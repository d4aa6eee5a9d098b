import { toBuffer, type Queryable } from '../../platform/db/database.ts';

export interface UserRow {
  id: string;
  email_hmac: Buffer;
  /** Envelope of the PII JSON (e-mail, names, last login) under the tenant data key. */
  pii: Buffer;
  key_version: number;
  status: 'active' | 'disabled';
  password_set: boolean;
  password_changed_at: Date | null;
  must_change_password: boolean;
  created_at: Date;
  updated_at: Date;
}

// The password hash is never selected with a user: only the few statements that need it read it.
const columns = `id, email_hmac, pii, key_version, status, password_hash IS NOT NULL AS password_set, password_changed_at,
  must_change_password, created_at, updated_at`;

function normalize(row: UserRow): UserRow {
  return { ...row, email_hmac: toBuffer(row.email_hmac), pii: toBuffer(row.pii) };
}

export interface NewUser {
  tenantId: string;
  id: string;
  emailHmac: Buffer;
  pii: Buffer;
  keyVersion: number;
  passwordHash: string | null;
  mustChangePassword: boolean;
  now: Date;
}

/** Inserts a user; undefined when the id or the e-mail is taken (the caller tells which). */
export async function insertUser(tx: Queryable, user: NewUser): Promise<UserRow | undefined> {
  const { rows } = await tx.query<UserRow>(
    `INSERT INTO users (tenant_id, id, email_hmac, pii, key_version, password_hash, password_changed_at, must_change_password, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6::text IS NULL THEN NULL ELSE $7::timestamptz END, $8, $7, $7)
     ON CONFLICT DO NOTHING RETURNING ${columns}`,
    [user.tenantId, user.id, user.emailHmac, user.pii, user.keyVersion, user.passwordHash, user.now, user.mustChangePassword],
  );
  return rows[0] ? normalize(rows[0]) : undefined;
}

export async function findUser(tx: Queryable, tenantId: string, id: string, options: { forUpdate?: boolean } = {}): Promise<UserRow | undefined> {
  const { rows } = await tx.query<UserRow>(`SELECT ${columns} FROM users WHERE tenant_id = $1 AND id = $2${options.forUpdate ? ' FOR UPDATE' : ''}`, [
    tenantId,
    id,
  ]);
  return rows[0] ? normalize(rows[0]) : undefined;
}

export async function findUserIdByEmail(tx: Queryable, tenantId: string, emailHmac: Buffer): Promise<string | undefined> {
  const { rows } = await tx.query<{ id: string }>('SELECT id FROM users WHERE tenant_id = $1 AND email_hmac = $2', [tenantId, emailHmac]);
  return rows[0]?.id;
}

export async function listUsers(tx: Queryable, tenantId: string, afterId: string, limit: number, emailHmac: Buffer | undefined): Promise<UserRow[]> {
  const { rows } = await tx.query<UserRow>(
    `SELECT ${columns} FROM users WHERE tenant_id = $1 AND id > $2 AND ($4::bytea IS NULL OR email_hmac = $4::bytea) ORDER BY id LIMIT $3`,
    [tenantId, afterId, limit, emailHmac ?? null],
  );
  return rows.map(normalize);
}

export async function updateUser(
  tx: Queryable,
  tenantId: string,
  id: string,
  change: { emailHmac: Buffer; pii: Buffer; keyVersion: number; status: 'active' | 'disabled'; now: Date },
): Promise<UserRow> {
  const { rows } = await tx.query<UserRow>(
    `UPDATE users SET email_hmac = $3, pii = $4, key_version = $5, status = $6, updated_at = $7 WHERE tenant_id = $1 AND id = $2 RETURNING ${columns}`,
    [tenantId, id, change.emailHmac, change.pii, change.keyVersion, change.status, change.now],
  );
  return normalize(rows[0] as UserRow);
}

/** Locks the user's row for the rest of `tx`: `update` makes every change of it wait, `share` only its deletion and changes. */
export async function lockUser(tx: Queryable, tenantId: string, id: string, mode: 'update' | 'share'): Promise<'active' | 'disabled' | undefined> {
  const { rows } = await tx.query<{ status: 'active' | 'disabled' }>(
    `SELECT status FROM users WHERE tenant_id = $1 AND id = $2 ${mode === 'update' ? 'FOR UPDATE' : 'FOR SHARE'}`,
    [tenantId, id],
  );
  return rows[0]?.status;
}

export async function disableUser(tx: Queryable, tenantId: string, id: string, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query("UPDATE users SET status = 'disabled', updated_at = $3 WHERE tenant_id = $1 AND id = $2 AND status <> 'disabled'", [tenantId, id, now]);
  return rowCount > 0;
}

/** What an erasure removes with a user: the rows that hang off it (deleted by its foreign keys' cascade) and its throttles. */
export interface ErasedUserRows {
  users: number;
  passwordHistory: number;
  sessions: number;
  refreshTokens: number;
  mfaFactors: number;
  recoveryCodes: number;
  mfaChallenges: number;
  ssoIdentities: number;
  roleAssignments: number;
  loginThrottles: number;
}

/**
 * Deletes a user and everything that hangs off it, counted first (the caller holds the row lock, so the
 * counts are what the cascade removes), and the throttle rows keyed on it: its e-mail's keyed hash (the
 * `account:` subject is the same HMAC as `email_hmac`) and its second factor's. Source-address throttles
 * name no user and stay.
 */
export async function eraseUser(tx: Queryable, tenantId: string, id: string): Promise<ErasedUserRows | undefined> {
  const { rows } = await tx.query<Omit<ErasedUserRows, 'users' | 'loginThrottles'> & { subjects: string[] }>(
    `SELECT (SELECT count(*)::int FROM password_history WHERE tenant_id = $1 AND user_id = $2) AS "passwordHistory",
            (SELECT count(*)::int FROM user_sessions WHERE tenant_id = $1 AND user_id = $2) AS sessions,
            (SELECT count(*)::int FROM refresh_tokens t JOIN user_sessions s ON s.tenant_id = t.tenant_id AND s.id = t.session_id
              WHERE t.tenant_id = $1 AND s.user_id = $2) AS "refreshTokens",
            (SELECT count(*)::int FROM mfa_factors WHERE tenant_id = $1 AND user_id = $2) AS "mfaFactors",
            (SELECT count(*)::int FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2) AS "recoveryCodes",
            (SELECT count(*)::int FROM mfa_challenges WHERE tenant_id = $1 AND user_id = $2) AS "mfaChallenges",
            (SELECT count(*)::int FROM sso_identities WHERE tenant_id = $1 AND user_id = $2) AS "ssoIdentities",
            (SELECT count(*)::int FROM user_roles WHERE tenant_id = $1 AND user_id = $2) AS "roleAssignments",
            ARRAY['account:' || encode(u.email_hmac, 'hex'), 'mfa:' || u.id] AS subjects
       FROM users u WHERE u.tenant_id = $1 AND u.id = $2`,
    [tenantId, id],
  );
  const counted = rows[0];
  if (counted === undefined) return undefined;
  const { subjects, ...children } = counted;
  const throttles = await tx.query('DELETE FROM login_throttles WHERE tenant_id = $1 AND subject = ANY($2)', [tenantId, subjects]);
  const deleted = await deleteUser(tx, tenantId, id);
  return { users: deleted ? 1 : 0, ...children, loginThrottles: throttles.rowCount };
}

export async function deleteUser(tx: Queryable, tenantId: string, id: string): Promise<boolean> {
  const { rowCount } = await tx.query('DELETE FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
  return rowCount > 0;
}

export async function passwordHashOf(tx: Queryable, tenantId: string, id: string): Promise<string | null> {
  const { rows } = await tx.query<{ password_hash: string | null }>('SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
  return rows[0]?.password_hash ?? null;
}

/** Replaces the password, moving the previous hash into the history and keeping only the newest `keep`. */
export async function replacePassword(
  tx: Queryable,
  tenantId: string,
  id: string,
  change: { hash: string; previous: string | null; mustChange: boolean; keep: number; now: Date },
): Promise<void> {
  if (change.previous !== null && change.keep > 0) {
    await tx.query('INSERT INTO password_history (tenant_id, user_id, password_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [
      tenantId,
      id,
      change.previous,
      change.now,
    ]);
  }
  await tx.query(
    `DELETE FROM password_history WHERE tenant_id = $1 AND user_id = $2 AND password_hash NOT IN (
       SELECT password_hash FROM password_history WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC LIMIT $3)`,
    [tenantId, id, change.keep],
  );
  await tx.query(
    'UPDATE users SET password_hash = $3, password_changed_at = $4, must_change_password = $5, updated_at = $4 WHERE tenant_id = $1 AND id = $2',
    [tenantId, id, change.hash, change.now, change.mustChange],
  );
}

/** Earlier password hashes, newest first. */
export async function passwordHistory(tx: Queryable, tenantId: string, id: string, limit: number): Promise<string[]> {
  const { rows } = await tx.query<{ password_hash: string }>(
    'SELECT password_hash FROM password_history WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC LIMIT $3',
    [tenantId, id, limit],
  );
  return rows.map((row) => row.password_hash);
}

/** Users still on an imported legacy hash; the algorithm is read from the stored prefix, never the hash. */
export async function legacyHashUsers(tx: Queryable, tenantId: string, limit: number): Promise<{ rows: { id: string; algorithm: string }[]; counts: Record<string, number> }> {
  const algorithm = "CASE WHEN password_hash LIKE 'md5:%' THEN 'md5' WHEN password_hash LIKE 'pbkdf2-sha256:%' THEN 'pbkdf2-sha256' END";
  const legacy = "(password_hash LIKE 'md5:%' OR password_hash LIKE 'pbkdf2-sha256:%')";
  const { rows } = await tx.query<{ id: string; algorithm: string }>(
    `SELECT id, ${algorithm} AS algorithm FROM users WHERE tenant_id = $1 AND ${legacy} ORDER BY id LIMIT $2`,
    [tenantId, limit],
  );
  const counts = await tx.query<{ algorithm: string; count: number }>(
    `SELECT ${algorithm} AS algorithm, count(*)::int AS count FROM users WHERE tenant_id = $1 AND ${legacy} GROUP BY 1`,
    [tenantId],
  );
  return { rows, counts: Object.fromEntries(counts.rows.map((row) => [row.algorithm, row.count])) };
}

export async function lockStaleUsers(tx: Queryable, tenantId: string, current: number, minDecryption: number, limit: number): Promise<UserRow[]> {
  const { rows } = await tx.query<UserRow>(
    `SELECT ${columns} FROM users WHERE tenant_id = $1 AND key_version < $2 AND key_version >= $3 ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED`,
    [tenantId, current, minDecryption, limit],
  );
  return rows.map(normalize);
}

/** Re-sealed PII only: not a change of the user, so updated_at stays. */
export async function resealUser(tx: Queryable, tenantId: string, id: string, pii: Buffer, keyVersion: number): Promise<void> {
  await tx.query('UPDATE users SET pii = $3, key_version = $4 WHERE tenant_id = $1 AND id = $2', [tenantId, id, pii, keyVersion]);
}

export async function countUsersByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
  const { rows } = await tx.query<{ key_version: number | null; count: number }>(
    'SELECT key_version, count(*)::int AS count FROM users WHERE tenant_id = $1 GROUP BY key_version ORDER BY key_version',
    [tenantId],
  );
  return rows;
}

export async function findPasswordPolicy(tx: Queryable, tenantId: string): Promise<unknown> {
  const { rows } = await tx.query<{ policy: unknown }>('SELECT policy FROM password_policies WHERE tenant_id = $1', [tenantId]);
  return rows[0]?.policy;
}

export async function upsertPasswordPolicy(tx: Queryable, tenantId: string, policy: object, now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO password_policies (tenant_id, policy, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (tenant_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = EXCLUDED.updated_at`,
    [tenantId, JSON.stringify(policy), now],
  );
}

/** What login needs of an account (a user here, an operator in the operators store). */
export interface LoginAccount {
  id: string;
  status: 'active' | 'disabled';
  password_hash: string | null;
  password_changed_at: Date | null;
  must_change_password: boolean;
  /** The sealed PII as read: the login stamps its time into it (compare-and-set on these bytes). */
  pii: Buffer;
}

/** What login needs of a user, by e-mail hash: never selected with anything else. */
export async function findLoginUser(tx: Queryable, tenantId: string, emailHmac: Buffer): Promise<LoginAccount | undefined> {
  const { rows } = await tx.query<LoginAccount>(
    'SELECT id, status, password_hash, password_changed_at, must_change_password, pii FROM users WHERE tenant_id = $1 AND email_hmac = $2',
    [tenantId, emailHmac],
  );
  return rows[0] === undefined ? undefined : { ...rows[0], pii: toBuffer(rows[0].pii) };
}

/** The login's view of a user found by id (an SSO login knows the user, not the address typed). */
export async function findLoginUserById(tx: Queryable, tenantId: string, id: string): Promise<LoginAccount | undefined> {
  const { rows } = await tx.query<LoginAccount>(
    'SELECT id, status, password_hash, password_changed_at, must_change_password, pii FROM users WHERE tenant_id = $1 AND id = $2',
    [tenantId, id],
  );
  return rows[0] === undefined ? undefined : { ...rows[0], pii: toBuffer(rows[0].pii) };
}

/**
 * Replaces the sealed PII only if it is still `previous`: the login stamp never overwrites a change made
 * since the login read the row (that change wins; the stamp is dropped). Not a change of the user.
 */
export async function resealUserIfUnchanged(tx: Queryable, tenantId: string, id: string, previous: Buffer, next: { pii: Buffer; keyVersion: number }): Promise<void> {
  await tx.query('UPDATE users SET pii = $4, key_version = $5 WHERE tenant_id = $1 AND id = $2 AND pii = $3', [tenantId, id, previous, next.pii, next.keyVersion]);
}

/** A transparent upgrade after login (legacy or weaker hash): not a password change, history untouched. */
export async function upgradePasswordHash(tx: Queryable, tenantId: string, id: string, previous: string, hash: string): Promise<void> {
  await tx.query('UPDATE users SET password_hash = $4 WHERE tenant_id = $1 AND id = $2 AND password_hash = $3', [tenantId, id, previous, hash]);
}
