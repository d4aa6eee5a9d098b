import type { Queryable } from '../../platform/db/database.ts';
import { retryWithNewId } from '../../platform/ids.ts';

// --- custom roles ---

export interface RoleRow {
  name: string;
  description: string;
  permissions: string[];
  created_at: Date;
  updated_at: Date;
}

const roleColumns = 'name, description, permissions, created_at, updated_at';

export async function listRoles(tx: Queryable, tenantId: string): Promise<RoleRow[]> {
  const { rows } = await tx.query<RoleRow>(`SELECT ${roleColumns} FROM roles WHERE tenant_id = $1 ORDER BY name`, [tenantId]);
  return rows;
}

export async function findRole(tx: Queryable, tenantId: string, name: string): Promise<RoleRow | undefined> {
  const { rows } = await tx.query<RoleRow>(`SELECT ${roleColumns} FROM roles WHERE tenant_id = $1 AND name = $2`, [tenantId, name]);
  return rows[0];
}

/** Inserts a role; undefined when the name is taken. */
export async function insertRole(
  tx: Queryable,
  role: { tenantId: string; name: string; description: string; permissions: string[]; now: Date },
): Promise<RoleRow | undefined> {
  const { rows } = await tx.query<RoleRow>(
    `INSERT INTO roles (tenant_id, name, description, permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
     ON CONFLICT (tenant_id, name) DO NOTHING RETURNING ${roleColumns}`,
    [role.tenantId, role.name, role.description, role.permissions, role.now],
  );
  return rows[0];
}

export async function updateRole(
  tx: Queryable,
  role: { tenantId: string; name: string; description: string; permissions: string[]; now: Date },
): Promise<RoleRow | undefined> {
  const { rows } = await tx.query<RoleRow>(
    `UPDATE roles SET description = $3, permissions = $4, updated_at = $5 WHERE tenant_id = $1 AND name = $2 RETURNING ${roleColumns}`,
    [role.tenantId, role.name, role.description, role.permissions, role.now],
  );
  return rows[0];
}

/** Deletes the role and takes it from every user; false when there was no such role. */
export async function deleteRole(tx: Queryable, tenantId: string, name: string): Promise<boolean> {
  await tx.query('DELETE FROM user_roles WHERE tenant_id = $1 AND role_name = $2', [tenantId, name]);
  const { rowCount } = await tx.query('DELETE FROM roles WHERE tenant_id = $1 AND name = $2', [tenantId, name]);
  return rowCount > 0;
}

// --- role assignments ---

/** The user's role names with a custom role's permissions (null for a built-in role). */
export async function rolesOfUser(tx: Queryable, tenantId: string, userId: string): Promise<{ role_name: string; permissions: string[] | null }[]> {
  const { rows } = await tx.query<{ role_name: string; permissions: string[] | null }>(
    `SELECT ur.role_name, r.permissions FROM user_roles ur
       LEFT JOIN roles r ON r.tenant_id = ur.tenant_id AND r.name = ur.role_name
      WHERE ur.tenant_id = $1 AND ur.user_id = $2 ORDER BY ur.role_name`,
    [tenantId, userId],
  );
  return rows;
}

export async function replaceUserRoles(tx: Queryable, tenantId: string, userId: string, roleNames: readonly string[], now: Date): Promise<void> {
  await tx.query('DELETE FROM user_roles WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
  for (const roleName of roleNames) {
    await tx.query('INSERT INTO user_roles (tenant_id, user_id, role_name, created_at) VALUES ($1, $2, $3, $4)', [tenantId, userId, roleName, now]);
  }
}

/** Users holding the role, not counting `exceptUserId`. */
// Changes that could leave a tenant without an active tenant-admin take this lock, per tenant, for the rest of
// their transaction: two admins demoting (or deleting, or disabling) each other at once cannot both pass.
const adminChangeLockSpace = 724_518_300;

/** Active users other than `exceptUserId` holding the role, counted under the tenant's admin-change lock. */
export async function countRoleHolders(tx: Queryable, tenantId: string, roleName: string, exceptUserId: string): Promise<number> {
  await tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [adminChangeLockSpace, tenantId]);
  const { rows } = await tx.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM user_roles r JOIN users u ON u.tenant_id = r.tenant_id AND u.id = r.user_id
      WHERE r.tenant_id = $1 AND r.role_name = $2 AND r.user_id <> $3 AND u.status = 'active'`,
    [tenantId, roleName, exceptUserId],
  );
  return rows[0]?.n ?? 0;
}

export async function holdsRole(tx: Queryable, tenantId: string, userId: string, roleName: string): Promise<boolean> {
  const { rows } = await tx.query('SELECT 1 FROM user_roles WHERE tenant_id = $1 AND user_id = $2 AND role_name = $3', [tenantId, userId, roleName]);
  return rows.length > 0;
}

export async function userExists(tx: Queryable, tenantId: string, userId: string): Promise<boolean> {
  const { rows } = await tx.query('SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, userId]);
  return rows.length > 0;
}

// --- support-access grants ---

export interface GrantRow {
  id: string;
  operator_id: string | null;
  permissions: string[];
  reason: string;
  granted_by: string;
  created_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
  last_used_at: Date | null;
  use_count: string | number;
}

const grantColumns = 'id, operator_id, permissions, reason, granted_by, created_at, expires_at, revoked_at, last_used_at, use_count';

export async function insertGrant(
  tx: Queryable,
  grant: { tenantId: string; id: string; operatorId: string | null; permissions: string[]; reason: string; grantedBy: string; now: Date; expiresAt: Date },
): Promise<GrantRow | typeof retryWithNewId> {
  const { rows } = await tx.query<GrantRow>(
    `INSERT INTO support_grants (tenant_id, id, operator_id, permissions, reason, granted_by, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id, id) DO NOTHING RETURNING ${grantColumns}`,
    [grant.tenantId, grant.id, grant.operatorId, grant.permissions, grant.reason, grant.grantedBy, grant.now, grant.expiresAt],
  );
  return rows[0] ?? retryWithNewId;
}

export const listGrantsSql = `SELECT ${grantColumns} FROM support_grants WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`;

export async function revokeGrant(tx: Queryable, tenantId: string, id: string, now: Date): Promise<GrantRow | undefined> {
  const { rows } = await tx.query<GrantRow>(
    `UPDATE support_grants SET revoked_at = coalesce(revoked_at, $3) WHERE tenant_id = $1 AND id = $2 RETURNING ${grantColumns}`,
    [tenantId, id, now],
  );
  return rows[0];
}

/**
 * The live grant for this operator that holds the permission, counted as used in the same statement.
 * Expiry is checked against the app's clock (`now`), like every other expiry.
 */
export async function useGrant(tx: Queryable, tenantId: string, operatorId: string, permission: string, now: Date): Promise<GrantRow | undefined> {
  const { rows } = await tx.query<GrantRow>(
    `UPDATE support_grants SET use_count = use_count + 1, last_used_at = $4
      WHERE (tenant_id, id) = (
        SELECT tenant_id, id FROM support_grants
         WHERE tenant_id = $1 AND revoked_at IS NULL AND expires_at > $4 AND (operator_id IS NULL OR operator_id = $2) AND $3 = ANY (permissions)
         ORDER BY expires_at DESC LIMIT 1)
      RETURNING ${grantColumns}`,
    [tenantId, operatorId, permission, now],
  );
  return rows[0];
}
