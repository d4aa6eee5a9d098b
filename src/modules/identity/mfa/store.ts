import { toBuffer, type Queryable } from '../../../platform/db/database.ts';

export type MfaMode = 'off' | 'optional' | 'required' | 'required_for_admins';

export interface LoginPolicyRow {
  mfa_mode: MfaMode;
  sso_required: boolean;
  sso_break_glass: string[];
  updated_at: Date;
}

export async function findLoginPolicy(tx: Queryable, tenantId: string): Promise<LoginPolicyRow | undefined> {
  const { rows } = await tx.query<LoginPolicyRow>('SELECT mfa_mode, sso_required, sso_break_glass, updated_at FROM login_policies WHERE tenant_id = $1', [tenantId]);
  return rows[0];
}

/** Sets the columns given, keeping the others (a new row takes the defaults for them). */
export async function upsertLoginPolicy(
  tx: Queryable,
  tenantId: string,
  change: { mfaMode?: MfaMode; ssoRequired?: boolean; ssoBreakGlass?: readonly string[] },
  now: Date,
): Promise<LoginPolicyRow> {
  const { rows } = await tx.query<LoginPolicyRow>(
    `INSERT INTO login_policies (tenant_id, mfa_mode, sso_required, sso_break_glass, updated_at)
     VALUES ($1, coalesce($2, 'optional'), coalesce($3, false), coalesce($4::jsonb, '[]'::jsonb), $5)
     ON CONFLICT (tenant_id) DO UPDATE SET
       mfa_mode = coalesce($2, login_policies.mfa_mode),
       sso_required = coalesce($3, login_policies.sso_required),
       sso_break_glass = coalesce($4::jsonb, login_policies.sso_break_glass),
       updated_at = $5
     RETURNING mfa_mode, sso_required, sso_break_glass, updated_at`,
    [tenantId, change.mfaMode ?? null, change.ssoRequired ?? null, change.ssoBreakGlass === undefined ? null : JSON.stringify(change.ssoBreakGlass), now],
  );
  return rows[0] as LoginPolicyRow;
}

export interface FactorRow {
  id: string;
  user_id: string;
  kind: 'totp' | 'webauthn';
  name: string;
  status: 'pending' | 'active';
  secret: Buffer | null;
  key_version: number | null;
  last_used_step: number | null;
  credential_id: string | null;
  public_key: Buffer | null;
  sign_count: number | null;
  transports: string[] | null;
  created_at: Date;
  last_used_at: Date | null;
}

const factorColumns = `id, user_id, kind, name, status, secret, key_version, last_used_step::float8 AS last_used_step, credential_id, public_key,
  sign_count::float8 AS sign_count, transports, created_at, last_used_at`;

function normalizeFactor(row: FactorRow): FactorRow {
  return { ...row, secret: row.secret === null ? null : toBuffer(row.secret), public_key: row.public_key === null ? null : toBuffer(row.public_key) };
}

export async function listFactors(tx: Queryable, tenantId: string, userId: string): Promise<FactorRow[]> {
  const { rows } = await tx.query<FactorRow>(`SELECT ${factorColumns} FROM mfa_factors WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id`, [tenantId, userId]);
  return rows.map(normalizeFactor);
}

export async function findFactor(tx: Queryable, tenantId: string, userId: string, id: string): Promise<FactorRow | undefined> {
  const { rows } = await tx.query<FactorRow>(`SELECT ${factorColumns} FROM mfa_factors WHERE tenant_id = $1 AND user_id = $2 AND id = $3 FOR UPDATE`, [tenantId, userId, id]);
  return rows[0] === undefined ? undefined : normalizeFactor(rows[0]);
}

export interface NewFactor {
  tenantId: string;
  id: string;
  userId: string;
  kind: 'totp' | 'webauthn';
  name: string;
  status: 'pending' | 'active';
  secret?: { ciphertext: Buffer; keyVersion: number };
  webauthn?: { credentialId: string; publicKey: Buffer; signCount: number; transports: string[] };
  now: Date;
}

/** Inserts a factor; false when the id (or the WebAuthn credential) is taken. */
export async function insertFactor(tx: Queryable, factor: NewFactor): Promise<boolean> {
  const { rowCount } = await tx.query(
    `INSERT INTO mfa_factors (tenant_id, id, user_id, kind, name, status, secret, key_version, credential_id, public_key, sign_count, transports, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13) ON CONFLICT DO NOTHING`,
    [
      factor.tenantId,
      factor.id,
      factor.userId,
      factor.kind,
      factor.name,
      factor.status,
      factor.secret?.ciphertext ?? null,
      factor.secret?.keyVersion ?? null,
      factor.webauthn?.credentialId ?? null,
      factor.webauthn?.publicKey ?? null,
      factor.webauthn?.signCount ?? null,
      factor.webauthn === undefined ? null : JSON.stringify(factor.webauthn.transports),
      factor.now,
    ],
  );
  return rowCount > 0;
}

/** An unfinished TOTP enrolment is replaced by a new one: one pending seed per user at most. */
export async function deletePendingTotp(tx: Queryable, tenantId: string, userId: string): Promise<void> {
  await tx.query("DELETE FROM mfa_factors WHERE tenant_id = $1 AND user_id = $2 AND kind = 'totp' AND status = 'pending'", [tenantId, userId]);
}

/**
 * Accepts a TOTP step for the factor only if it is later than the last one accepted (compare-and-set: two
 * requests with one code cannot both win); `activate` finishes an enrolment with it.
 */
export async function acceptTotpStep(tx: Queryable, tenantId: string, id: string, step: number, now: Date, activate: boolean): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE mfa_factors SET last_used_step = $3, last_used_at = $4, status = CASE WHEN $5 THEN 'active' ELSE status END
     WHERE tenant_id = $1 AND id = $2 AND (last_used_step IS NULL OR last_used_step < $3)`,
    [tenantId, id, step, now, activate],
  );
  return rowCount > 0;
}

/** A WebAuthn assertion's new signature counter, if nobody moved it since it was read. */
export async function advanceSignCount(tx: Queryable, tenantId: string, id: string, previous: number, next: number, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query('UPDATE mfa_factors SET sign_count = $4, last_used_at = $5 WHERE tenant_id = $1 AND id = $2 AND sign_count = $3', [
    tenantId,
    id,
    previous,
    next,
    now,
  ]);
  return rowCount > 0;
}

export async function deleteFactor(tx: Queryable, tenantId: string, userId: string, id: string): Promise<boolean> {
  const { rowCount } = await tx.query('DELETE FROM mfa_factors WHERE tenant_id = $1 AND user_id = $2 AND id = $3', [tenantId, userId, id]);
  return rowCount > 0;
}

/** Every factor and recovery code of a user (an admin's reset of a lost device). */
export async function deleteAllFactors(tx: Queryable, tenantId: string, userId: string): Promise<number> {
  const { rowCount } = await tx.query('DELETE FROM mfa_factors WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
  await tx.query('DELETE FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
  return rowCount;
}

export async function replaceRecoveryCodes(tx: Queryable, tenantId: string, userId: string, hmacs: readonly Buffer[], now: Date): Promise<void> {
  await tx.query('DELETE FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
  await tx.query('INSERT INTO mfa_recovery_codes (tenant_id, user_id, code_hmac, created_at) SELECT $1, $2, unnest($3::bytea[]), $4', [tenantId, userId, hmacs, now]);
}

/** Spends a recovery code: true once per code, however many requests race with it. */
export async function spendRecoveryCode(tx: Queryable, tenantId: string, userId: string, hmac: Buffer, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query('UPDATE mfa_recovery_codes SET used_at = $4 WHERE tenant_id = $1 AND user_id = $2 AND code_hmac = $3 AND used_at IS NULL', [
    tenantId,
    userId,
    hmac,
    now,
  ]);
  return rowCount > 0;
}

export async function unusedRecoveryCodes(tx: Queryable, tenantId: string, userId: string): Promise<number> {
  const { rows } = await tx.query<{ count: number }>('SELECT count(*)::int AS count FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL', [
    tenantId,
    userId,
  ]);
  return rows[0]?.count ?? 0;
}

export interface ChallengeRow {
  id: string;
  user_id: string;
  purpose: 'verify' | 'enroll';
  webauthn_challenge: string | null;
  attempts: number;
  expires_at: Date;
  consumed_at: Date | null;
}

export async function insertChallenge(
  tx: Queryable,
  challenge: { tenantId: string; id: string; userId: string; tokenHash: Buffer; purpose: 'verify' | 'enroll'; webauthnChallenge: string | null; expiresAt: Date; now: Date },
): Promise<boolean> {
  // Spent and expired challenges of the user go with the new one: the table stays small without a sweeper.
  await tx.query('DELETE FROM mfa_challenges WHERE tenant_id = $1 AND user_id = $2 AND (expires_at <= $3 OR consumed_at IS NOT NULL)', [
    challenge.tenantId,
    challenge.userId,
    challenge.now,
  ]);
  const { rowCount } = await tx.query(
    `INSERT INTO mfa_challenges (tenant_id, id, user_id, token_hash, purpose, webauthn_challenge, expires_at, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
    [challenge.tenantId, challenge.id, challenge.userId, challenge.tokenHash, challenge.purpose, challenge.webauthnChallenge, challenge.expiresAt, challenge.now],
  );
  return rowCount > 0;
}

/** The challenge behind a token, locked for this transaction (its attempts and its WebAuthn challenge change). */
export async function lockChallenge(tx: Queryable, tenantId: string, tokenHash: Buffer): Promise<ChallengeRow | undefined> {
  const { rows } = await tx.query<ChallengeRow>(
    'SELECT id, user_id, purpose, webauthn_challenge, attempts, expires_at, consumed_at FROM mfa_challenges WHERE tenant_id = $1 AND token_hash = $2 FOR UPDATE',
    [tenantId, tokenHash],
  );
  return rows[0];
}

/** The newest live WebAuthn registration ceremony that a logged-in user started. */
export async function lockRegistrationCeremony(tx: Queryable, tenantId: string, userId: string, now: Date): Promise<ChallengeRow | undefined> {
  const { rows } = await tx.query<ChallengeRow>(
    `SELECT id, user_id, purpose, webauthn_challenge, attempts, expires_at, consumed_at FROM mfa_challenges
     WHERE tenant_id = $1 AND user_id = $2 AND purpose = 'enroll' AND webauthn_challenge IS NOT NULL AND consumed_at IS NULL AND expires_at > $3
     ORDER BY created_at DESC LIMIT 1 FOR UPDATE`,
    [tenantId, userId, now],
  );
  return rows[0];
}

export async function updateChallenge(tx: Queryable, tenantId: string, id: string, change: { attempts?: number; webauthnChallenge?: string | null; consumedAt?: Date }): Promise<void> {
  await tx.query(
    `UPDATE mfa_challenges SET attempts = coalesce($3, attempts),
       webauthn_challenge = CASE WHEN $4 THEN $5 ELSE webauthn_challenge END, consumed_at = coalesce($6, consumed_at)
     WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id, change.attempts ?? null, change.webauthnChallenge !== undefined, change.webauthnChallenge ?? null, change.consumedAt ?? null],
  );
}

/** Whether the user may still log in: an admin may disable the account while a challenge is open. */
export async function userIsActive(tx: Queryable, tenantId: string, userId: string): Promise<boolean> {
  const { rows } = await tx.query<{ status: string }>('SELECT status FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, userId]);
  return rows[0]?.status === 'active';
}

export async function countFactorsByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
  const { rows } = await tx.query<{ key_version: number | null; count: number }>(
    "SELECT key_version, count(*)::int AS count FROM mfa_factors WHERE tenant_id = $1 AND kind = 'totp' GROUP BY key_version",
    [tenantId],
  );
  return rows;
}

export async function lockStaleTotpSeeds(tx: Queryable, tenantId: string, current: number, minDecryption: number, limit: number): Promise<{ id: string; secret: Buffer }[]> {
  const { rows } = await tx.query<{ id: string; secret: Buffer }>(
    "SELECT id, secret FROM mfa_factors WHERE tenant_id = $1 AND kind = 'totp' AND key_version < $2 AND key_version >= $3 ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED",
    [tenantId, current, minDecryption, limit],
  );
  return rows.map((row) => ({ id: row.id, secret: toBuffer(row.secret) }));
}

export async function resealTotpSeed(tx: Queryable, tenantId: string, id: string, sealed: { ciphertext: Buffer; keyVersion: number }): Promise<void> {
  await tx.query('UPDATE mfa_factors SET secret = $3, key_version = $4 WHERE tenant_id = $1 AND id = $2', [tenantId, id, sealed.ciphertext, sealed.keyVersion]);
}
