import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import type { AccessDecision, Authorizer, Principal } from '../../platform/http/auth.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { withFreshId } from '../../platform/ids.ts';
import { CacheInvalidations } from '../../platform/invalidation.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import {
  builtInRoles,
  isBuiltInRole,
  isTenantPermission,
  platformRoleGrants,
  type TenantPermission,
  ungrantablePermissions,
} from './permissions.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { CreateGrantBody, CreateRoleBody, Role, SupportGrant, UpdateRoleBody } from './schemas.ts';
import {
  deleteRole,
  countRoleHolders,
  holdsRole,
  findRole,
  type GrantRow,
  insertGrant,
  insertRole,
  listGrantsSql,
  listRoles,
  replaceUserRoles,
  revokeGrant,
  type RoleRow,
  rolesOfUser,
  updateRole,
  useGrant,
  userExists,
} from './store.ts';

export interface AccessOptions {
  /** How long a user's resolved permissions are reused; role changes on other instances show within it. */
  cacheTtlMs: number;
  /** The longest support grant a tenant admin may give. */
  grantMaxHours: number;
  /** Tells the other instances about role changes, at once (without it: this instance only). */
  invalidations?: CacheInvalidations;
}

interface ResolvedUser {
  tenantId: string;
  roles: string[];
  permissions: ReadonlySet<TenantPermission>;
}

const tenantAdmin = 'tenant-admin';

function builtInRole(name: keyof typeof builtInRoles): Role {
  const { description, permissions } = builtInRoles[name];
  return { name, description, builtIn: true, permissions: [...permissions], createdAt: null, updatedAt: null };
}

function customRole(row: RoleRow): Role {
  return {
    name: row.name,
    description: row.description,
    builtIn: false,
    permissions: row.permissions,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/**
 * Role-based access control and support-access grants. Every tenant route names one permission; this
 * service decides whether the caller holds it:
 * - an API key holds its scopes (a subset of its creator's permissions, fixed at creation);
 * - a user holds the union of their roles' permissions (resolved from the database, cached briefly);
 * - a platform operator holds only the standing key-hygiene permissions, plus what a live support grant
 *   of the tenant gives; each use of a grant is counted on the grant.
 * Nobody gives away a permission they do not hold (roles, assignments, API keys, grants).
 */
export class AccessService implements Authorizer {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #users: TtlCache<ResolvedUser>;
  readonly #grantMaxHours: number;
  readonly #audit: AuditRecorder;
  readonly #invalidations: CacheInvalidations;

  constructor(db: Database, audit: AuditRecorder, clock: Clock, options: AccessOptions) {
    if (!Number.isInteger(options.grantMaxHours) || options.grantMaxHours < 1 || options.grantMaxHours > 720) {
      throw new RangeError('access: grantMaxHours must be an integer from 1 to 720');
    }
    this.#db = db;
    this.#audit = audit;
    this.#clock = clock;
    this.#users = new TtlCache(options.cacheTtlMs, 50_000, clock);
    this.#grantMaxHours = options.grantMaxHours;
    this.#invalidations = options.invalidations ?? new CacheInvalidations();
    this.#invalidations.on('access', ({ tenantId, userId }) => {
      if (userId === undefined) this.#forgetTenant(tenantId);
      else this.#users.delete(`${tenantId}:${userId}`);
    });
  }

  async authorize(principal: Principal, tenantId: string, permission: string): Promise<AccessDecision> {
    if (!isTenantPermission(permission)) throw new BulwarkError('forbidden', { detail: `unknown permission ${permission}` });
    switch (principal.kind) {
      case 'api-key': {
        const scopes = new Set(principal.scopes.filter(isTenantPermission));
        if (!scopes.has(permission)) throw new BulwarkError('forbidden', { message: `The API key lacks the permission ${permission}.` });
        return { permissions: scopes };
      }
      case 'user': {
        const { permissions } = await this.#resolveUser(tenantId, principal.id);
        if (!permissions.has(permission)) throw new BulwarkError('forbidden', { message: `Your roles do not give the permission ${permission}.` });
        return { permissions };
      }
      case 'operator': {
        const { standing } = platformRoleGrants(principal.role);
        if (standing.has(permission)) return { permissions: standing };
        // Each use is counted on the grant and audited in the same transaction.
        const grant = await this.#db.withTenant(tenantId, async (tx) => {
          const used = await useGrant(tx, tenantId, principal.id, permission, this.#clock.now());
          if (used !== undefined) {
            await this.#audit.record(tx, { tenantId }, { action: 'support-grant.use', target: { type: 'support-grant', id: used.id }, detail: { permission } });
          }
          return used;
        });
        if (grant === undefined) {
          throw new BulwarkError('support_grant_required', {
            message: `Operators need a live support-access grant of this tenant with ${permission}.`,
          });
        }
        const permissions = new Set([...standing, ...grant.permissions.filter(isTenantPermission)]);
        return { permissions, grantId: grant.id };
      }
    }
  }

  /** An operator route: the operator's platform role must hold the route's platform permission. */
  authorizePlatform(principal: Principal, permission: string): void {
    if (principal.kind !== 'operator') throw new BulwarkError('forbidden');
    if (!platformRoleGrants(principal.role).platform.has(permission)) {
      throw new BulwarkError('forbidden', { message: `Your platform role does not give the permission ${permission}.` });
    }
  }

  /** Role names for the access token's `roles` claim (informational: requests re-check the database). */
  async roleNamesOf(tenantId: string, userId: string): Promise<string[]> {
    return (await this.#resolveUser(tenantId, userId)).roles;
  }

  /**
   * Acting on another user (password, e-mail, status, deletion) needs every permission that user holds:
   * otherwise a `users:write` holder could take over an administrator's account.
   */
  async assertMayManage(tenantId: string, userId: string, caller: ReadonlySet<string>): Promise<void> {
    const { permissions } = await this.#resolveUser(tenantId, userId);
    const lacking = [...permissions].filter((permission) => !caller.has(permission));
    if (lacking.length > 0) {
      throw new BulwarkError('forbidden', { message: `This user holds permissions you do not: ${lacking.sort().join(', ')}.` });
    }
  }

  // --- roles ---

  async listRoles(tenantId: string): Promise<Role[]> {
    const custom = await this.#db.withTenant(tenantId, (tx) => listRoles(tx, tenantId));
    return [...Object.keys(builtInRoles).map((name) => builtInRole(name as keyof typeof builtInRoles)), ...custom.map(customRole)];
  }

  async getRole(tenantId: string, name: string): Promise<Role> {
    if (isBuiltInRole(name)) return builtInRole(name);
    const row = await this.#db.withTenant(tenantId, (tx) => findRole(tx, tenantId, name));
    if (row === undefined) throw notFound();
    return customRole(row);
  }

  async createRole(tenantId: string, input: CreateRoleBody, caller: ReadonlySet<string>): Promise<Role> {
    if (isBuiltInRole(input.name)) throw new BulwarkError('conflict', { message: `"${input.name}" is a built-in role.` });
    assertHeld(caller, input.permissions);
    const row = await this.#db.withTenant(tenantId, async (tx) => {
      const inserted = await insertRole(tx, { tenantId, name: input.name, description: input.description ?? '', permissions: input.permissions, now: this.#clock.now() });
      if (inserted === undefined) throw new BulwarkError('conflict', { message: `A role named "${input.name}" exists.` });
      await this.#audit.record(tx, { tenantId }, { action: 'role.create', target: { type: 'role', id: input.name }, detail: { permissions: [...input.permissions].sort() } });
      return inserted;
    });
    return customRole(row);
  }

  async updateRole(tenantId: string, name: string, input: UpdateRoleBody, caller: ReadonlySet<string>): Promise<Role> {
    if (isBuiltInRole(name)) throw new BulwarkError('conflict', { message: 'Built-in roles cannot be changed.' });
    const row = await this.#db.withTenant(tenantId, async (tx) => {
      const existing = await findRole(tx, tenantId, name);
      if (existing === undefined) throw notFound();
      // Changing a role changes what its holders may do: the caller must hold both the old and the new set.
      assertHeld(caller, [...existing.permissions, ...input.permissions]);
      const updated = await updateRole(tx, { tenantId, name, description: input.description ?? existing.description, permissions: input.permissions, now: this.#clock.now() });
      if (updated !== undefined) {
        await this.#audit.record(tx, { tenantId }, {
          action: 'role.update',
          target: { type: 'role', id: name },
          detail: { permissions: [...input.permissions].sort(), previousPermissions: [...existing.permissions].sort() },
        });
      }
      return updated;
    });
    if (row === undefined) throw notFound();
    this.#invalidations.invalidate({ kind: 'access', tenantId });
    return customRole(row);
  }

  async deleteRole(tenantId: string, name: string, caller: ReadonlySet<string>): Promise<void> {
    if (isBuiltInRole(name)) throw new BulwarkError('conflict', { message: 'Built-in roles cannot be deleted.' });
    await this.#db.withTenant(tenantId, async (tx) => {
      const existing = await findRole(tx, tenantId, name);
      if (existing === undefined) throw notFound();
      assertHeld(caller, existing.permissions);
      await deleteRole(tx, tenantId, name);
      await this.#audit.record(tx, { tenantId }, { action: 'role.delete', target: { type: 'role', id: name } });
    });
    this.#invalidations.invalidate({ kind: 'access', tenantId });
  }

  // --- assignments ---

  async userRoles(tenantId: string, userId: string): Promise<{ roles: string[] }> {
    const rows = await this.#db.withTenant(tenantId, async (tx) => {
      if (!(await userExists(tx, tenantId, userId))) throw notFound();
      return rolesOfUser(tx, tenantId, userId);
    });
    return { roles: rows.map((row) => row.role_name) };
  }

  /**
   * Replaces the user's roles. The caller must hold every permission of the roles taken away and of the
   * roles given; the tenant's last tenant-admin user cannot lose the role (nobody could administer it).
   */
  async setUserRoles(tenantId: string, userId: string, roles: readonly string[], caller: ReadonlySet<string>): Promise<{ roles: string[] }> {
    await this.#db.withTenant(tenantId, async (tx) => {
      if (!(await userExists(tx, tenantId, userId))) throw notFound();
      const current = await rolesOfUser(tx, tenantId, userId);
      const touched: string[] = [];
      for (const row of current) touched.push(...(row.permissions ?? rolePermissions(row.role_name)));
      for (const name of roles) {
        if (isBuiltInRole(name)) {
          touched.push(...builtInRoles[name].permissions);
          continue;
        }
        const custom = await findRole(tx, tenantId, name);
        if (custom === undefined) throw new BulwarkError('validation_failed', { message: `There is no role named "${name}".` });
        touched.push(...custom.permissions);
      }
      assertHeld(caller, touched);
      const losesAdmin = current.some((row) => row.role_name === tenantAdmin) && !roles.includes(tenantAdmin);
      if (losesAdmin) {
        if ((await countRoleHolders(tx, tenantId, tenantAdmin, userId)) === 0) throw new BulwarkError('conflict', { message: 'The tenant would have no active tenant-admin left.' });
      }
      await replaceUserRoles(tx, tenantId, userId, roles, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, {
        action: 'user.roles.set',
        target: { type: 'user', id: userId },
        detail: { roles: [...roles].sort(), previousRoles: current.map((row) => row.role_name).sort() },
      });
    });
    this.#invalidations.invalidate({ kind: 'access', tenantId, userId });
    return { roles: [...roles].sort() };
  }

  /**
   * In the transaction that deletes or disables a user: refuses (409) when the user is the tenant's last
   * active tenant-admin, under the same per-tenant lock as role changes.
   */
  async assertAdminRemains(tx: Queryable, tenantId: string, userId: string): Promise<void> {
    if (await this.isLastAdmin(tx, tenantId, userId)) throw new BulwarkError('conflict', { message: 'The tenant would have no active tenant-admin left.' });
  }

  /** Whether the user holds tenant-admin and no other active user does (under the lock of `assertAdminRemains`). */
  async isLastAdmin(tx: Queryable, tenantId: string, userId: string): Promise<boolean> {
    return (await holdsRole(tx, tenantId, userId, tenantAdmin)) && (await countRoleHolders(tx, tenantId, tenantAdmin, userId)) === 0;
  }

  /** The first roles of a user being created, in the creating transaction (the creation is audited there). */
  async grantInitialRoles(tx: Queryable, tenantId: string, userId: string, roles: readonly string[]): Promise<void> {
    await replaceUserRoles(tx, tenantId, userId, roles, this.#clock.now());
  }

  // --- support-access grants ---

  async createGrant(tenantId: string, input: CreateGrantBody, grantedBy: Principal, caller: ReadonlySet<string>): Promise<SupportGrant> {
    if (grantedBy.kind === 'operator') throw new BulwarkError('forbidden', { message: 'Operators cannot grant themselves access.' });
    const refused = input.permissions.filter((permission) => ungrantablePermissions.has(permission));
    if (refused.length > 0) {
      throw new BulwarkError('validation_failed', { message: `These permissions cannot be granted to support: ${refused.join(', ')}.` });
    }
    if (input.durationHours > this.#grantMaxHours) {
      throw new BulwarkError('validation_failed', { message: `durationHours is at most ${this.#grantMaxHours} (BULWARK_SUPPORT_GRANT_MAX_HOURS).` });
    }
    assertHeld(caller, input.permissions);
    const now = this.#clock.now();
    const row = await this.#db.withTenant(tenantId, async (tx) => {
      const inserted = await withFreshId((id) =>
        insertGrant(tx, {
          tenantId,
          id,
          operatorId: input.operatorId ?? null,
          permissions: input.permissions,
          reason: input.reason,
          grantedBy: `${grantedBy.kind}:${grantedBy.id}`,
          now,
          expiresAt: new Date(now.getTime() + input.durationHours * 3_600_000),
        }),
      );
      await this.#audit.record(tx, { tenantId }, {
        action: 'support-grant.create',
        target: { type: 'support-grant', id: inserted.id },
        detail: { permissions: [...input.permissions].sort(), operatorId: input.operatorId ?? null, durationHours: input.durationHours },
      });
      return inserted;
    });
    return this.#grant(row);
  }

  async listGrants(tenantId: string, limit: number, cursor: string | undefined) {
    const { rows } = await this.#db.tenantQuery<GrantRow>(tenantId, listGrantsSql, [tenantId, decodeCursor(cursor), limit + 1]);
    return toPage(rows, limit, (row) => this.#grant(row));
  }

  async revokeGrant(tenantId: string, grantId: string): Promise<SupportGrant> {
    const row = await this.#db.withTenant(tenantId, async (tx) => {
      const revoked = await revokeGrant(tx, tenantId, grantId, this.#clock.now());
      if (revoked !== undefined) await this.#audit.record(tx, { tenantId }, { action: 'support-grant.revoke', target: { type: 'support-grant', id: grantId } });
      return revoked;
    });
    if (row === undefined) throw notFound();
    return this.#grant(row);
  }

  #grant(row: GrantRow): SupportGrant {
    return {
      id: row.id,
      operatorId: row.operator_id,
      permissions: row.permissions,
      reason: row.reason,
      grantedBy: row.granted_by,
      createdAt: row.created_at.toISOString(),
      expiresAt: row.expires_at.toISOString(),
      revokedAt: row.revoked_at?.toISOString() ?? null,
      lastUsedAt: row.last_used_at?.toISOString() ?? null,
      useCount: Number(row.use_count),
      active: row.revoked_at === null && row.expires_at.getTime() > this.#clock.now().getTime(),
    };
  }

  /**
   * Whoever makes an identity provider give roles (an SSO group mapping) must hold every permission of
   * those roles, as for giving them by hand; unknown role names are refused.
   */
  async assertMayMapRoles(tenantId: string, roles: readonly string[], caller: ReadonlySet<string>): Promise<void> {
    const wanted: string[] = [];
    const custom = await this.#db.withTenant(tenantId, (tx) => listRoles(tx, tenantId));
    for (const name of new Set(roles)) {
      if (isBuiltInRole(name)) wanted.push(...builtInRoles[name].permissions);
      else {
        const role = custom.find((candidate) => candidate.name === name);
        if (role === undefined) throw new BulwarkError('validation_failed', { message: `There is no role named "${name}".` });
        wanted.push(...role.permissions);
      }
    }
    assertHeld(caller, wanted);
  }

  /** A user's permissions read in the caller's transaction (the login's: no second connection, no cache). */
  async permissionsIn(tx: Queryable, tenantId: string, userId: string): Promise<ReadonlySet<TenantPermission>> {
    return permissionsOfRows(await rolesOfUser(tx, tenantId, userId));
  }

  /**
   * An SSO login's group mapping, in its transaction: each role the connection maps is given when one of
   * its groups is among the user's groups and taken away when none is; roles no mapping names stay as they
   * are. Unknown role names (a custom role deleted since) are skipped. Audited when anything changes.
   */
  async syncMappedRoles(tx: Queryable, tenantId: string, userId: string, mapped: { managed: readonly string[]; granted: readonly string[] }, connectionId: string): Promise<void> {
    const current = (await rolesOfUser(tx, tenantId, userId)).map((row) => row.role_name);
    const known = new Set([...Object.keys(builtInRoles), ...(await listRoles(tx, tenantId)).map((role) => role.name)]);
    const granted = new Set(mapped.granted.filter((name) => known.has(name)));
    const managed = new Set(mapped.managed);
    const next = [...new Set([...current.filter((name) => !managed.has(name)), ...granted])];
    // The identity provider cannot leave the tenant without an administrator: the last one keeps the role.
    if (current.includes(tenantAdmin) && !next.includes(tenantAdmin) && (await countRoleHolders(tx, tenantId, tenantAdmin, userId)) === 0) next.push(tenantAdmin);
    next.sort();
    if (next.join('\n') === [...current].sort().join('\n')) return;
    await replaceUserRoles(tx, tenantId, userId, next, this.#clock.now());
    await this.#audit.record(tx, { tenantId }, {
      action: 'user.roles.set',
      target: { type: 'user', id: userId },
      detail: { roles: next, previousRoles: [...current].sort(), source: 'sso', connectionId },
    });
    this.#users.delete(`${tenantId}:${userId}`);
  }

  async #resolveUser(tenantId: string, userId: string): Promise<ResolvedUser> {
    return this.#users.getOrLoad(`${tenantId}:${userId}`, async () => {
      const rows = await this.#db.withTenant(tenantId, (tx) => rolesOfUser(tx, tenantId, userId));
      return { tenantId, roles: rows.map((row) => row.role_name), permissions: permissionsOfRows(rows) };
    });
  }

  #forgetTenant(tenantId: string): void {
    this.#users.deleteWhere((resolved) => resolved.tenantId === tenantId);
  }
}

function permissionsOfRows(rows: readonly { role_name: string; permissions: string[] | null }[]): Set<TenantPermission> {
  const permissions = new Set<TenantPermission>();
  for (const row of rows) for (const permission of row.permissions ?? rolePermissions(row.role_name)) if (isTenantPermission(permission)) permissions.add(permission);
  return permissions;
}

/** A built-in role's permissions; none for a custom role name whose role row has gone. */
function rolePermissions(name: string): readonly string[] {
  return isBuiltInRole(name) ? builtInRoles[name].permissions : [];
}

/** Nobody gives away what they do not hold. */
export function assertHeld(caller: ReadonlySet<string>, wanted: readonly string[]): void {
  const lacking = [...new Set(wanted.filter((permission) => !caller.has(permission)))];
  if (lacking.length > 0) {
    throw new BulwarkError('forbidden', { message: `You cannot give permissions you do not hold: ${lacking.sort().join(', ')}.` });
  }
}
