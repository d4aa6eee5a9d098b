import type { Queryable } from '../../platform/db/database.ts';
import { retryWithNewId } from '../../platform/ids.ts';
import type { TenantStatus } from '../../platform/http/auth.ts';
import type { AuditArchive, Offboarding, OffboardingProof, Tenant, UpdateTenant } from './schemas.ts';

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

/** Tenant status changes of the offboarding flow (`PATCH` never sets these). */
export async function setTenantStatus(tx: Queryable, id: string, status: TenantStatus, now: Date): Promise<void> {
  await tx.query('UPDATE tenants SET status = $2, updated_at = $3 WHERE id = $1', [id, status, now]);
}

/** What stays of an offboarded tenant: its id (never reused), region and dates, and a fixed name. */
export const offboardedTenantName = 'offboarded tenant';

export async function scrubTenant(tx: Queryable, id: string, now: Date): Promise<void> {
  await tx.query("UPDATE tenants SET name = $2, status = 'deleted', updated_at = $3 WHERE id = $1", [id, offboardedTenantName, now]);
}

// --- offboarding (platform table `tenant_offboardings`) ---

export interface OffboardingRow {
  tenant: string;
  previous_status: 'active' | 'suspended';
  requested_at: Date;
  requested_by: string;
  confirmable_at: Date;
  confirmed_at: Date | null;
  confirmed_by: string | null;
  audit_archive: AuditArchive | null;
  agents_revoked: number;
  backup_objects_deleted: number;
  backup_escrow_destroyed: boolean;
  completed_at: Date | null;
  proof: OffboardingProof | null;
  vacuumed_at: Date | null;
}

export function toOffboarding(row: OffboardingRow): Offboarding {
  return {
    tenantId: row.tenant,
    state: row.completed_at !== null ? 'completed' : row.confirmed_at !== null ? 'confirming' : 'requested',
    previousStatus: row.previous_status,
    requestedAt: row.requested_at.toISOString(),
    requestedBy: row.requested_by,
    confirmableAt: row.confirmable_at.toISOString(),
    confirmedAt: row.confirmed_at?.toISOString() ?? null,
    completedAt: row.completed_at?.toISOString() ?? null,
    vacuumedAt: row.vacuumed_at?.toISOString() ?? null,
    proof: row.proof,
  };
}

const offboardingColumns =
  'tenant, previous_status, requested_at, requested_by, confirmable_at, confirmed_at, confirmed_by, audit_archive, agents_revoked, backup_objects_deleted, backup_escrow_destroyed, completed_at, proof, vacuumed_at';

export async function findOffboarding(tx: Queryable, tenantId: string, options: { forUpdate?: boolean } = {}): Promise<OffboardingRow | undefined> {
  const { rows } = await tx.query<OffboardingRow>(
    `SELECT ${offboardingColumns} FROM tenant_offboardings WHERE tenant = $1${options.forUpdate === true ? ' FOR UPDATE' : ''}`,
    [tenantId],
  );
  return rows[0];
}

export async function insertOffboarding(
  tx: Queryable,
  request: { tenantId: string; previousStatus: 'active' | 'suspended'; requestedBy: string; now: Date; confirmableAt: Date },
): Promise<OffboardingRow> {
  const { rows } = await tx.query<OffboardingRow>(
    `INSERT INTO tenant_offboardings (tenant, previous_status, requested_at, requested_by, confirmable_at) VALUES ($1, $2, $3, $4, $5)
     RETURNING ${offboardingColumns}`,
    [request.tenantId, request.previousStatus, request.now, request.requestedBy, request.confirmableAt],
  );
  const row = rows[0];
  if (row === undefined) throw new Error('offboarding insert returned no row');
  return row;
}

export async function deleteOffboarding(tx: Queryable, tenantId: string): Promise<void> {
  await tx.query('DELETE FROM tenant_offboardings WHERE tenant = $1', [tenantId]);
}

export async function markOffboardingConfirmed(tx: Queryable, tenantId: string, by: string, now: Date): Promise<void> {
  await tx.query('UPDATE tenant_offboardings SET confirmed_at = $3, confirmed_by = $2 WHERE tenant = $1 AND confirmed_at IS NULL', [tenantId, by, now]);
}

/** Progress of a confirmation, each step's result as soon as it is known. */
export async function recordOffboardingProgress(
  tx: Queryable,
  tenantId: string,
  progress: { auditArchive?: AuditArchive; agentsRevoked?: number; backups?: { objectsDeleted: number; escrowKeyDestroyed: boolean } },
): Promise<void> {
  await tx.query(
    `UPDATE tenant_offboardings SET audit_archive = coalesce($2::jsonb, audit_archive), agents_revoked = agents_revoked + $3,
            backup_objects_deleted = backup_objects_deleted + $4, backup_escrow_destroyed = backup_escrow_destroyed OR $5
      WHERE tenant = $1`,
    [
      tenantId,
      progress.auditArchive === undefined ? null : JSON.stringify(progress.auditArchive),
      progress.agentsRevoked ?? 0,
      progress.backups?.objectsDeleted ?? 0,
      progress.backups?.escrowKeyDestroyed ?? false,
    ],
  );
}

export async function completeOffboarding(tx: Queryable, tenantId: string, proof: OffboardingProof, now: Date): Promise<void> {
  await tx.query('UPDATE tenant_offboardings SET completed_at = $3, proof = $2::jsonb WHERE tenant = $1', [tenantId, JSON.stringify(proof), now]);
}

export async function markOffboardingVacuumed(tx: Queryable, tenantId: string, now: Date): Promise<void> {
  await tx.query('UPDATE tenant_offboardings SET vacuumed_at = $2 WHERE tenant = $1', [tenantId, now]);
}

/**
 * Deletes every row of the tenant from every tenant table (the SECURITY DEFINER function of 0015, which
 * refuses unless the tenant is offboarding with its keyring destroyed); answers the rows deleted per table.
 */
export async function purgeTenant(tx: Queryable, tenantId: string): Promise<Record<string, number>> {
  const { rows } = await tx.query<{ counts: Record<string, number> }>('SELECT bulwark_purge_tenant($1) AS counts', [tenantId]);
  return rows[0]?.counts ?? {};
}
