import { toBuffer, type Queryable } from '../../platform/db/database.ts';
import type { PlatformRole } from '../access/permissions.ts';
import type { LoginAccount } from '../identity/store.ts';

/** Operators (migration 0008): platform tables, read and written only in the platform scope. */
export interface OperatorRow {
  id: string;
  email_hmac: Buffer;
  /** Envelope of {email, name, lastLoginAt} under the operators platform key. */
  pii: Buffer;
  role: PlatformRole;
  status: 'active' | 'disabled';
  password_set: boolean;
  password_changed_at: Date | null;
  must_change_password: boolean;
  created_at: Date;
  updated_at: Date;
}

// The password hash is never selected with an operator: only the statements that need it read it.
const columns = `id, email_hmac, pii, role, status, password_hash IS NOT NULL AS password_set, password_changed_at, must_change_password, created_at, updated_at`;

function normalize(row: OperatorRow): OperatorRow {
  return { ...row, email_hmac: toBuffer(row.email_hmac), pii: toBuffer(row.pii) };
}

export interface NewOperator {
  id: string;
  emailHmac: Buffer;
  pii: Buffer;
  role: PlatformRole;
  passwordHash: string | null;
  mustChangePassword: boolean;
  now: Date;
}

/** Inserts an operator; undefined when the id or the e-mail is taken (the caller tells which). */
export async function insertOperator(tx: Queryable, operator: NewOperator): Promise<OperatorRow | undefined> {
  const { rows } = await tx.query<OperatorRow>(
    `INSERT INTO operators (id, email_hmac, pii, role, password_hash, password_changed_at, must_change_password, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::text IS NULL THEN NULL ELSE $6::timestamptz END, $7, $6, $6)
     ON CONFLICT DO NOTHING RETURNING ${columns}`,
    [operator.id, operator.emailHmac, operator.pii, operator.role, operator.passwordHash, operator.now, operator.mustChangePassword],
  );
  return rows[0] ? normalize(rows[0]) : undefined;
}

export async function findOperator(tx: Queryable, id: string, options: { forUpdate?: boolean } = {}): Promise<OperatorRow | undefined> {
  const { rows } = await tx.query<OperatorRow>(`SELECT ${columns} FROM operators WHERE id = $1${options.forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0] ? normalize(rows[0]) : undefined;
}

export async function findOperatorIdByEmail(tx: Queryable, emailHmac: Buffer): Promise<string | undefined> {
  const { rows } = await tx.query<{ id: string }>('SELECT id FROM operators WHERE email_hmac = $1', [emailHmac]);
  return rows[0]?.id;
}

export async function listOperators(tx: Queryable, afterId: string, limit: number): Promise<OperatorRow[]> {
  const { rows } = await tx.query<OperatorRow>(`SELECT ${columns} FROM operators WHERE id > $1 ORDER BY id LIMIT $2`, [afterId, limit]);
  return rows.map(normalize);
}

export async function countOperators(tx: Queryable): Promise<number> {
  const { rows } = await tx.query<{ count: number }>('SELECT count(*)::int AS count FROM operators');
  return rows[0]?.count ?? 0;
}

// One fleet-wide lock for changes that could remove the last platform admin (transaction-scoped).
const adminChangeLockKey = 7_245_183_008;

/**
 * Active platform admins other than `exceptId`, counted under a lock that every such change takes: two
 * admins demoting each other at once cannot leave the platform with none.
 */
export async function countOtherActiveAdmins(tx: Queryable, exceptId: string): Promise<number> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [adminChangeLockKey]);
  const { rows } = await tx.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM operators WHERE role = 'platform-admin' AND status = 'active' AND id <> $1",
    [exceptId],
  );
  return rows[0]?.count ?? 0;
}

export async function updateOperator(
  tx: Queryable,
  id: string,
  change: { emailHmac: Buffer; pii: Buffer; role: PlatformRole; status: 'active' | 'disabled'; now: Date },
): Promise<OperatorRow> {
  const { rows } = await tx.query<OperatorRow>(
    `UPDATE operators SET email_hmac = $2, pii = $3, role = $4, status = $5, updated_at = $6 WHERE id = $1 RETURNING ${columns}`,
    [id, change.emailHmac, change.pii, change.role, change.status, change.now],
  );
  return normalize(rows[0] as OperatorRow);
}

export async function deleteOperator(tx: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await tx.query('DELETE FROM operators WHERE id = $1', [id]);
  return rowCount > 0;
}

/** What login needs of an operator, by e-mail hash: never selected with anything else. */
export async function findLoginOperator(tx: Queryable, emailHmac: Buffer): Promise<LoginAccount | undefined> {
  const { rows } = await tx.query<LoginAccount>(
    'SELECT id, status, password_hash, password_changed_at, must_change_password, pii FROM operators WHERE email_hmac = $1',
    [emailHmac],
  );
  return rows[0] === undefined ? undefined : { ...rows[0], pii: toBuffer(rows[0].pii) };
}

/** The login stamp: re-seals the PII only if it is still `previous` (a concurrent change wins). */
export async function resealOperatorIfUnchanged(tx: Queryable, id: string, previous: Buffer, pii: Buffer): Promise<void> {
  await tx.query('UPDATE operators SET pii = $3 WHERE id = $1 AND pii = $2', [id, previous, pii]);
}

export async function upgradeOperatorHash(tx: Queryable, id: string, previous: string, hash: string): Promise<void> {
  await tx.query('UPDATE operators SET password_hash = $3 WHERE id = $1 AND password_hash = $2', [id, previous, hash]);
}

/** The current hash and the earlier ones, newest first: what the history rule compares against. */
export async function operatorPasswordHashes(tx: Queryable, id: string, historyCount: number): Promise<{ current: string | null; history: string[] }> {
  const current = await tx.query<{ password_hash: string | null }>('SELECT password_hash FROM operators WHERE id = $1', [id]);
  const history = await tx.query<{ password_hash: string }>(
    'SELECT password_hash FROM operator_password_history WHERE operator_id = $1 ORDER BY created_at DESC LIMIT $2',
    [id, historyCount],
  );
  return { current: current.rows[0]?.password_hash ?? null, history: history.rows.map((row) => row.password_hash) };
}

/** Replaces the password, moving the previous hash into the history and keeping only the newest `keep`. */
export async function replaceOperatorPassword(
  tx: Queryable,
  id: string,
  change: { hash: string; previous: string | null; mustChange: boolean; keep: number; now: Date },
): Promise<void> {
  if (change.previous !== null && change.keep > 0) {
    await tx.query('INSERT INTO operator_password_history (operator_id, password_hash, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
      id,
      change.previous,
      change.now,
    ]);
  }
  await tx.query(
    `DELETE FROM operator_password_history WHERE operator_id = $1 AND password_hash NOT IN (
       SELECT password_hash FROM operator_password_history WHERE operator_id = $1 ORDER BY created_at DESC LIMIT $2)`,
    [id, change.keep],
  );
  await tx.query('UPDATE operators SET password_hash = $2, password_changed_at = $3, must_change_password = $4, updated_at = $3 WHERE id = $1', [
    id,
    change.hash,
    change.now,
    change.mustChange,
  ]);
}

// --- the one-time setup token (operator_bootstrap, migration 0001) ---

export async function readSetupTokenHash(tx: Queryable, options: { forUpdate?: boolean } = {}): Promise<Buffer | undefined> {
  const { rows } = await tx.query<{ token_hash: Uint8Array }>(`SELECT token_hash FROM operator_bootstrap${options.forUpdate ? ' FOR UPDATE' : ''}`);
  return rows[0] ? toBuffer(rows[0].token_hash) : undefined;
}

export async function writeSetupTokenHash(tx: Queryable, hash: Buffer): Promise<void> {
  await tx.query(
    `INSERT INTO operator_bootstrap (singleton, token_hash) VALUES (true, $1)
     ON CONFLICT (singleton) DO UPDATE SET token_hash = excluded.token_hash, created_at = now()`,
    [hash],
  );
}

export async function deleteSetupToken(tx: Queryable): Promise<void> {
  await tx.query('DELETE FROM operator_bootstrap');
}
