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
 * Reserves one password check for each throttled subject (the account and the source), in one statement of
 * its own short transaction before the check runs, so parallel guesses each need an increment first.
 * Returns each subject's count including this one, or `blockedUntil` when the subject is in a delay or
 * lockout (nothing is counted for it then). A window older than `windowMs` starts again at 1. Rows are
 * taken in the order given, so concurrent logins lock them in the same order.
 */
export async function reserveLoginAttempts(
  tx: Queryable,
  t: ThrottleTable,
  scope: string,
  subjects: readonly [string, string],
  now: Date,
  windowMs: number,
): Promise<({ attempts: number } | { blockedUntil: Date })[]> {
  const { rows } = await tx.query<{ subject: string; failures: number }>(
    `INSERT INTO ${t.table} (${t.scope}, subject, failures, window_started_at) VALUES ($1, $2, 1, $4), ($1, $3, 1, $4)
     ON CONFLICT (${t.scope}, subject) DO UPDATE SET
       failures = CASE WHEN ${t.table}.window_started_at <= $4::timestamptz - make_interval(secs => $5::double precision / 1000)
                       THEN 1 ELSE ${t.table}.failures + 1 END,
       window_started_at = CASE WHEN ${t.table}.window_started_at <= $4::timestamptz - make_interval(secs => $5::double precision / 1000)
                       THEN $4 ELSE ${t.table}.window_started_at END,
       blocked_until = NULL
     WHERE ${t.table}.blocked_until IS NULL OR ${t.table}.blocked_until <= $4
     RETURNING subject, failures`,
    [scope, subjects[0], subjects[1], now, windowMs],
  );
  const counted = new Map(rows.map((row) => [row.subject, row.failures]));
  const blocked = subjects.filter((subject) => !counted.has(subject));
  const until = new Map<string, Date>();
  if (blocked.length > 0) {
    const found = await tx.query<{ subject: string; blocked_until: Date }>(`SELECT subject, blocked_until FROM ${t.table} WHERE ${t.scope} = $1 AND subject = ANY($2)`, [scope, blocked]);
    for (const row of found.rows) until.set(row.subject, row.blocked_until);
  }
  return subjects.map((subject) => {
    const attempts = counted.get(subject);
    return attempts === undefined ? { blockedUntil: until.get(subject) ?? now } : { attempts };
  });
}

export async function blockLoginSubject(tx: Queryable, t: ThrottleTable, scope: string, subject: string, until: Date): Promise<void> {
  await tx.query(`UPDATE ${t.table} SET blocked_until = $3 WHERE ${t.scope} = $1 AND subject = $2`, [scope, subject, until]);
}

/** An admin's unlock: the account starts clean. */
export async function clearLoginSubject(tx: Queryable, t: ThrottleTable, scope: string, subject: string): Promise<void> {
  await tx.query(`DELETE FROM ${t.table} WHERE ${t.scope} = $1 AND subject = $2`, [scope, subject]);
}

/** After a correct password: the account starts clean, the source gives back the check it reserved. */
export async function settleLoginAttempt(tx: Queryable, t: ThrottleTable, scope: string, subjects: { account: string; source: string }): Promise<void> {
  // Two statements, account row first: the order the reservation locks them in. (As one statement with a
  // data-modifying CTE, PostgreSQL may touch the two rows in either order, and concurrent logins of one
  // account from one address deadlocked.)
  await tx.query(`DELETE FROM ${t.table} WHERE ${t.scope} = $1 AND subject = $2`, [scope, subjects.account]);
  await tx.query(`UPDATE ${t.table} SET failures = greatest(failures - 1, 0) WHERE ${t.scope} = $1 AND subject = $2`, [scope, subjects.source]);
}

/** A reserved check that was never made (the directory was unreachable): both subjects give it back. */
export async function releaseLoginAttempt(tx: Queryable, t: ThrottleTable, scope: string, subjects: { account: string; source: string }): Promise<void> {
  // Account row first, as everywhere (see settleLoginAttempt).
  for (const subject of [subjects.account, subjects.source]) {
    await tx.query(`UPDATE ${t.table} SET failures = greatest(failures - 1, 0) WHERE ${t.scope} = $1 AND subject = $2`, [scope, subject]);
  }
}
