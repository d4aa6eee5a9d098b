import type { Queryable } from '../../platform/db/database.ts';

/**
 * The brute-force throttle table of one realm: `login_throttles` (tenant users, keyed by tenant_id) or
 * `operator_login_throttles` (operators, keyed by realm 'platform'). Names come from these constants only.
 */
export interface ThrottleTable {
  table: 'login_throttles' | 'operator_login_throttles';
  scope: 'tenant_id' | 'realm';
}

export const userThrottles: ThrottleTable = { table: 'login_throttles', scope: 'tenant_id' };
export const operatorThrottles: ThrottleTable = { table: 'operator_login_throttles', scope: 'realm' };

/**
 * Reserves one password check for a throttled subject, in its own short transaction before the check
 * runs, so parallel guesses each need an increment first. Returns the count including this one, or
 * `blockedUntil` when the subject is in a delay or lockout (nothing is counted then). A window older
 * than `windowMs` starts again at 1.
 */
export async function reserveLoginAttempt(
  tx: Queryable,
  t: ThrottleTable,
  scope: string,
  subject: string,
  now: Date,
  windowMs: number,
): Promise<{ attempts: number } | { blockedUntil: Date }> {
  const { rows } = await tx.query<{ failures: number }>(
    `INSERT INTO ${t.table} (${t.scope}, subject, failures, window_started_at) VALUES ($1, $2, 1, $3)
     ON CONFLICT (${t.scope}, subject) DO UPDATE SET
       failures = CASE WHEN ${t.table}.window_started_at <= $3::timestamptz - make_interval(secs => $4::double precision / 1000)
                       THEN 1 ELSE ${t.table}.failures + 1 END,
       window_started_at = CASE WHEN ${t.table}.window_started_at <= $3::timestamptz - make_interval(secs => $4::double precision / 1000)
                       THEN $3 ELSE ${t.table}.window_started_at END,
       blocked_until = NULL
     WHERE ${t.table}.blocked_until IS NULL OR ${t.table}.blocked_until <= $3
     RETURNING failures`,
    [scope, subject, now, windowMs],
  );
  if (rows[0] !== undefined) return { attempts: rows[0].failures };
  const blocked = await tx.query<{ blocked_until: Date }>(`SELECT blocked_until FROM ${t.table} WHERE ${t.scope} = $1 AND subject = $2`, [scope, subject]);
  return { blockedUntil: blocked.rows[0]?.blocked_until ?? now };
}

export async function blockLoginSubject(tx: Queryable, t: ThrottleTable, scope: string, subject: string, until: Date): Promise<void> {
  await tx.query(`UPDATE ${t.table} SET blocked_until = $3 WHERE ${t.scope} = $1 AND subject = $2`, [scope, subject, until]);
}

/** After a correct password: the account starts clean, the source gives back the check it reserved. */
export async function clearLoginSubject(tx: Queryable, t: ThrottleTable, scope: string, subject: string): Promise<void> {
  await tx.query(`DELETE FROM ${t.table} WHERE ${t.scope} = $1 AND subject = $2`, [scope, subject]);
}

export async function releaseLoginAttempt(tx: Queryable, t: ThrottleTable, scope: string, subject: string): Promise<void> {
  await tx.query(`UPDATE ${t.table} SET failures = greatest(failures - 1, 0) WHERE ${t.scope} = $1 AND subject = $2`, [scope, subject]);
}
