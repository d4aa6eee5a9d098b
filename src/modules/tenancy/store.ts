import type { Queryable } from '../../platform/db/database.ts';
import { retryWithNewId } from '../../platform/ids.ts';
import type { TenantStatus } from '../../platform/http/auth.ts';
import type { Tenant, UpdateTenant } from './schemas.ts';

interface TenantRow {
  id: string;
  name: string;
  region: string;
  status: TenantStatus;
  created_at: Date;
  updated_at: Date;
}

const columns = 'id, name, region, status, created_at, updated_at';

function toTenant(row: TenantRow): Tenant {
  return {
    id: row.id,
    name: row.name,
    region: row.region,
    status: row.status,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/**
 * Inserts a tenant, or answers retryWithNewId when the id is taken. ON CONFLICT rather than catching the
 * unique violation: on PostgreSQL that error would abort the surrounding transaction.
 */
export async function insertTenant(
  tx: Queryable,
  tenant: { id: string; name: string; region: string; now: Date },
): Promise<Tenant | typeof retryWithNewId> {
  const { rows } = await tx.query<TenantRow>(
    `INSERT INTO tenants (id, name, region, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
     ON CONFLICT (id) DO NOTHING RETURNING ${columns}`,
    [tenant.id, tenant.name, tenant.region, tenant.now],
  );
  return rows[0] ? toTenant(rows[0]) : retryWithNewId;
}

/** Platform scope: every tenant, keyset-paged by id. */
export async function listTenants(tx: Queryable, afterId: string, limit: number): Promise<Tenant[]> {
  const { rows } = await tx.query<TenantRow>(`SELECT ${columns} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2`, [afterId, limit]);
  return rows.map(toTenant);
}

export async function findTenant(tx: Queryable, id: string, options: { forUpdate?: boolean } = {}): Promise<Tenant | undefined> {
  const { rows } = await tx.query<TenantRow>(
    `SELECT ${columns} FROM tenants WHERE id = $1${options.forUpdate ? ' FOR UPDATE' : ''}`,
    [id],
  );
  return rows[0] ? toTenant(rows[0]) : undefined;
}

export async function updateTenant(tx: Queryable, id: string, patch: UpdateTenant, now: Date): Promise<Tenant | undefined> {
  const { rows } = await tx.query<TenantRow>(
    `UPDATE tenants SET name = coalesce($2, name), status = coalesce($3, status), updated_at = $4
      WHERE id = $1 RETURNING ${columns}`,
    [id, patch.name ?? null, patch.status ?? null, now],
  );
  return rows[0] ? toTenant(rows[0]) : undefined;
}

/** Read under the tenant's own RLS context: a tenant can see its own row, nothing else. */
export const tenantStatusSql = 'SELECT status FROM tenants WHERE id = $1';
