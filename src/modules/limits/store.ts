import type { Queryable } from '../../platform/db/database.ts';

export async function findOverrides(tx: Queryable, tenantId: string): Promise<{ overrides: unknown; updated_at: Date } | undefined> {
  const { rows } = await tx.query<{ overrides: unknown; updated_at: Date }>('SELECT overrides, updated_at FROM tenant_limits WHERE tenant_id = $1', [tenantId]);
  return rows[0];
}

export async function saveOverrides(tx: Queryable, tenantId: string, overrides: unknown, now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO tenant_limits (tenant_id, overrides, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (tenant_id) DO UPDATE SET overrides = EXCLUDED.overrides, updated_at = EXCLUDED.updated_at`,
    [tenantId, JSON.stringify(overrides), now],
  );
}

/**
 * The guarded increment: the counter moves only while the new totals stay within the quotas (a decrease
 * always passes). The row lock it takes orders concurrent writers of one tenant, so two writes cannot
 * both take the last unit. No row back: over quota, or no counter yet.
 */
export async function addRecordUsage(
  tx: Queryable,
  tenantId: string,
  delta: { records: number; bytes: number },
  max: { records: number; bytes: number },
): Promise<{ records: number; record_bytes: number } | undefined> {
  const { rows } = await tx.query<{ records: number; record_bytes: number }>(
    `UPDATE tenant_usage SET records = records + $2, record_bytes = record_bytes + $3
      WHERE tenant_id = $1 AND ($2 <= 0 OR records + $2 <= $4) AND ($3 <= 0 OR record_bytes + $3 <= $5)
      RETURNING records::float8 AS records, record_bytes::float8 AS record_bytes`,
    [tenantId, delta.records, delta.bytes, max.records, max.bytes],
  );
  return rows[0];
}

/**
 * Creates the counter from the records the tenant has, less `applied`: the change this transaction made
 * already and is about to count. A concurrent creator wins and this does nothing.
 */
export async function initRecordUsage(tx: Queryable, tenantId: string, applied: { records: number; bytes: number }): Promise<void> {
  await tx.query(
    `INSERT INTO tenant_usage (tenant_id, records, record_bytes)
     SELECT $1, count(*) - $2, coalesce(sum(body_bytes), 0) - $3 FROM records WHERE tenant_id = $1
     ON CONFLICT (tenant_id) DO NOTHING`,
    [tenantId, applied.records, applied.bytes],
  );
}

/** The record usage counted over the table: what the counter would start from, for a tenant without one. */
export async function countRecordUsage(tx: Queryable, tenantId: string): Promise<{ records: number; record_bytes: number }> {
  const { rows } = await tx.query<{ records: number; record_bytes: number }>(
    'SELECT count(*)::float8 AS records, coalesce(sum(body_bytes), 0)::float8 AS record_bytes FROM records WHERE tenant_id = $1',
    [tenantId],
  );
  return rows[0] ?? { records: 0, record_bytes: 0 };
}

export async function findRecordUsage(tx: Queryable, tenantId: string): Promise<{ records: number; record_bytes: number } | undefined> {
  const { rows } = await tx.query<{ records: number; record_bytes: number }>(
    'SELECT records::float8 AS records, record_bytes::float8 AS record_bytes FROM tenant_usage WHERE tenant_id = $1',
    [tenantId],
  );
  return rows[0];
}

/** Serialises the quota checks of users and API keys of one tenant (each its own lock) until commit. */
const quotaLockSpace = 724_518_301;

export async function lockQuota(tx: Queryable, tenantId: string, quota: 'users' | 'apiKeys'): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [quotaLockSpace, `${quota}:${tenantId}`]);
}

export async function countUsers(tx: Queryable, tenantId: string): Promise<number> {
  const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE tenant_id = $1', [tenantId]);
  return rows[0]?.n ?? 0;
}

/** Keys that still authenticate: neither revoked nor expired. */
export async function countLiveApiKeys(tx: Queryable, tenantId: string, now: Date): Promise<number> {
  const { rows } = await tx.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)',
    [tenantId, now],
  );
  return rows[0]?.n ?? 0;
}
