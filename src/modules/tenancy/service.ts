import type { Clock } from '../../platform/clock.ts';
import { type Database, enterTenantContext, type Queryable } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import type { TenantGate, TenantStatus } from '../../platform/http/auth.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { withFreshId } from '../../platform/ids.ts';
import { CacheInvalidations } from '../../platform/invalidation.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { Tenant, UpdateTenant } from './schemas.ts';
import { findTenant, insertTenant, listTenants, tenantStatusSql, updateTenant } from './store.ts';

/** What tenancy needs from the keys module: a keyring created with the tenant, in its transaction. */
export interface TenantKeyringFactory {
  createKeyring(tx: Queryable, tenantId: string): Promise<void>;
}

export interface TenancyOptions {
  regions: readonly string[];
  statusCacheTtlMs: number;
  /** Tells the other instances about status changes, at once (without it: this instance only). */
  invalidations?: CacheInvalidations;
}

export class TenancyService implements TenantGate {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #options: TenancyOptions;
  readonly #keyrings: TenantKeyringFactory;
  readonly #audit: AuditRecorder;
  // Every tenant-scoped request asks for its tenant's status; a short cache keeps that off the database.
  readonly #statuses: TtlCache<TenantStatus | null>;
  readonly #invalidations: CacheInvalidations;

  constructor(db: Database, keyrings: TenantKeyringFactory, audit: AuditRecorder, clock: Clock, options: TenancyOptions) {
    this.#db = db;
    this.#keyrings = keyrings;
    this.#audit = audit;
    this.#clock = clock;
    this.#options = options;
    this.#statuses = new TtlCache(options.statusCacheTtlMs, 10_000, clock);
    this.#invalidations = options.invalidations ?? new CacheInvalidations();
    this.#invalidations.on('tenant', ({ tenantId }) => this.#statuses.delete(tenantId));
  }

  async create(input: { name: string; region?: string | undefined }): Promise<Tenant> {
    const region = input.region ?? this.#options.regions[0] ?? 'local';
    if (!this.#options.regions.includes(region)) {
      throw new BulwarkError('region_not_allowed', { extensions: { allowedRegions: this.#options.regions } });
    }
    const now = this.#clock.now();
    return this.#db.withPlatform(async (tx) => {
      const tenant = await withFreshId((id) => insertTenant(tx, { id, name: input.name, region, now }));
      // The tenant and its 256-bit data key exist together or not at all.
      await enterTenantContext(tx, tenant.id);
      await this.#keyrings.createKeyring(tx, tenant.id);
      // Last: the platform chain's head stays locked from here to the commit, not through the key wrap.
      await this.#audit.record(tx, 'platform', { action: 'tenant.create', target: { type: 'tenant', id: tenant.id }, detail: { region } });
      return tenant;
    });
  }

  async list(limit: number, cursor: string | undefined): Promise<{ items: Tenant[]; nextCursor: string | null }> {
    const after = decodeCursor(cursor);
    const rows = await this.#db.withPlatform((tx) => listTenants(tx, after, limit + 1));
    return toPage(rows, limit, (row) => row);
  }

  async get(id: string): Promise<Tenant> {
    const tenant = await this.#db.withPlatform((tx) => findTenant(tx, id));
    if (!tenant || tenant.status === 'deleted') throw notFound();
    return tenant;
  }

  async update(id: string, patch: UpdateTenant): Promise<Tenant> {
    const updated = await this.#db.withPlatform(async (tx) => {
      const current = await findTenant(tx, id, { forUpdate: true });
      if (!current || current.status === 'deleted') throw notFound();
      if (patch.status !== undefined && current.status === 'offboarding') {
        throw new BulwarkError('conflict', { message: 'The tenant is being offboarded; its status cannot change.' });
      }
      const updated = await updateTenant(tx, id, patch, this.#clock.now());
      await this.#audit.record(tx, 'platform', {
        action: 'tenant.update',
        target: { type: 'tenant', id },
        detail: { fields: Object.keys(patch).sort(), ...(patch.status === undefined ? {} : { status: patch.status, previousStatus: current.status }) },
      });
      return updated;
    });
    if (!updated) throw notFound();
    this.statusChanged(id);
    return updated;
  }

  /** Drops the cached status here and on every other instance, after a change of it committed (here, or in the offboarding flow). */
  statusChanged(tenantId: string): void {
    this.#invalidations.invalidate({ kind: 'tenant', tenantId });
  }

  async status(tenantId: string): Promise<TenantStatus | null> {
    return this.#statuses.getOrLoad(tenantId, async () => {
      const { rows } = await this.#db.tenantQuery<{ status: TenantStatus }>(tenantId, tenantStatusSql, [tenantId]);
      return rows[0]?.status ?? null;
    });
  }
}
