import type { Clock } from '../../platform/clock.ts';
import { type Database, enterTenantContext, type Queryable } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { TenantGate } from '../../platform/http/auth.ts';
import { CacheInvalidations } from '../../platform/invalidation.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import type { AuditRecorder } from '../audit/service.ts';
import { type Limit, type LimitOverrides, mergeLimits, parseOverrides, type QuotaName, quotaNames, type TenantBucket, tenantBuckets, type TenantLimits } from './policy.ts';
import type { Rate } from './rate-store.ts';
import { addRecordUsage, countLiveApiKeys, countRecordUsage, countUsers, findOverrides, findRecordUsage, initRecordUsage, lockQuota, saveOverrides } from './store.ts';

/**
 * What other modules' writes ask of the quotas, inside their own transaction: the check and the write
 * commit together, or neither does.
 */
export interface QuotaGuard {
  /**
   * Moves the tenant's record counters by `delta`, or refuses with `quota_exceeded` (403). Called after
   * the write, in its transaction (the refusal rolls it back).
   */
  reserveRecords(tx: Queryable, tenantId: string, delta: { records: number; bytes: number }): Promise<void>;
  /** Refuses when `adding` more users would pass the quota; holds the tenant's users quota lock until commit. */
  assertUserCapacity(tx: Queryable, tenantId: string, adding: number): Promise<void>;
  /** Refuses when one more live API key would pass the quota; holds the lock until commit. */
  assertApiKeyCapacity(tx: Queryable, tenantId: string): Promise<void>;
}

/** A tenant's limits as the API shows them: each effective value, where it comes from, and the usage. */
export interface LimitsDocument {
  tenantId: string;
  rates: Record<TenantBucket, { limit: number | null; windowSeconds: number | null; source: Source }>;
  quotas: Record<QuotaName, { limit: number | null; used: number; source: Source }>;
  maxConcurrentRequests: { limit: number | null; source: Source };
  overrides: LimitOverrides;
  updatedAt: string | null;
}

type Source = 'default' | 'override';

const unbounded = Number.MAX_SAFE_INTEGER;

function bound(limit: Limit<number>): number {
  return limit === 'unlimited' ? unbounded : limit;
}

function quotaExceeded(quota: QuotaName, limit: number, used: number): BulwarkError {
  return new BulwarkError('quota_exceeded', {
    message: `The tenant's ${quota} quota (${limit}) would be exceeded.`,
    extensions: { quota, limit, used },
  });
}

export class LimitsService implements QuotaGuard {
  readonly #db: Database;
  readonly #audit: AuditRecorder;
  readonly #clock: Clock;
  readonly #tenants: TenantGate;
  readonly #defaults: TenantLimits;
  /** Effective limits (defaults merged with the overrides), per tenant: read on every request. */
  readonly #limits: TtlCache<TenantLimits>;
  readonly #invalidations: CacheInvalidations;

  constructor(
    db: Database,
    audit: AuditRecorder,
    clock: Clock,
    tenants: TenantGate,
    options: { defaults: TenantLimits; cacheTtlMs: number; invalidations?: CacheInvalidations },
  ) {
    this.#db = db;
    this.#audit = audit;
    this.#clock = clock;
    this.#tenants = tenants;
    this.#defaults = options.defaults;
    this.#limits = new TtlCache(options.cacheTtlMs, 10_000, clock);
    this.#invalidations = options.invalidations ?? new CacheInvalidations();
    this.#invalidations.on('limits', ({ tenantId }) => this.#limits.delete(tenantId));
  }

  /** The tenant's effective limits, on every request's path: overrides cached (other instances see a change within the TTL). */
  async limitsOf(tenantId: string): Promise<TenantLimits> {
    return this.#limitsIn(undefined, tenantId);
  }

  /** Inside a transaction the overrides are read through it: a second connection could wait on the first (PGlite has one). */
  async #limitsIn(tx: Queryable | undefined, tenantId: string): Promise<TenantLimits> {
    return this.#limits.getOrLoad(tenantId, async () => {
      const row = tx === undefined ? await this.#db.withTenant(tenantId, (own) => findOverrides(own, tenantId)) : await findOverrides(tx, tenantId);
      return mergeLimits(this.#defaults, parseOverrides(row?.overrides));
    });
  }

  async describe(tenantId: string): Promise<LimitsDocument> {
    const { row, usage } = await this.#db.withTenant(tenantId, async (tx) => {
      const [stored, records, users, apiKeys] = await Promise.all([
        findOverrides(tx, tenantId),
        findRecordUsage(tx, tenantId),
        countUsers(tx, tenantId),
        countLiveApiKeys(tx, tenantId, this.#clock.now()),
      ]);
      // Before its first write under quotas the tenant has no counter yet: counted, not created, by a read.
      const counted = records ?? (await countRecordUsage(tx, tenantId));
      return { row: stored, usage: { records: counted.records, recordBytes: counted.record_bytes, users, apiKeys } };
    });
    const overrides = parseOverrides(row?.overrides);
    const limits = mergeLimits(this.#defaults, overrides);
    const source = (overridden: boolean): Source => (overridden ? 'override' : 'default');
    const rates = Object.fromEntries(
      tenantBuckets.map((bucket) => {
        const rate: Limit<Rate> = limits.rates[bucket];
        const limited = rate === 'unlimited' ? { limit: null, windowSeconds: null } : rate;
        return [bucket, { ...limited, source: source(overrides.rates?.[bucket] !== undefined) }];
      }),
    ) as LimitsDocument['rates'];
    const quotas = Object.fromEntries(
      quotaNames.map((name) => {
        const limit = limits.quotas[name];
        return [name, { limit: limit === 'unlimited' ? null : limit, used: usage[name], source: source(overrides.quotas?.[name] !== undefined) }];
      }),
    ) as LimitsDocument['quotas'];
    const concurrency = limits.maxConcurrentRequests;
    return {
      tenantId,
      rates,
      quotas,
      maxConcurrentRequests: { limit: concurrency === 'unlimited' ? null : concurrency, source: source(overrides.maxConcurrentRequests !== undefined) },
      overrides,
      updatedAt: row?.updated_at.toISOString() ?? null,
    };
  }

  /**
   * Replaces the tenant's overrides (what is absent follows the defaults again). Lowering a quota below the
   * usage is allowed: nothing is deleted, new writes are refused until the tenant is back under it.
   */
  async setOverrides(tenantId: string, overrides: LimitOverrides): Promise<LimitsDocument> {
    const status = await this.#tenants.status(tenantId);
    if (status === null || status === 'deleted') throw new BulwarkError('not_found');
    await this.#db.withPlatform(async (tx) => {
      await enterTenantContext(tx, tenantId);
      await saveOverrides(tx, tenantId, overrides, this.#clock.now());
      await this.#audit.record(tx, 'platform', {
        action: 'limits.update',
        target: { type: 'tenant', id: tenantId },
        detail: { overrides },
      });
    });
    this.#invalidations.invalidate({ kind: 'limits', tenantId });
    return this.describe(tenantId);
  }

  async reserveRecords(tx: Queryable, tenantId: string, delta: { records: number; bytes: number }): Promise<void> {
    if (delta.records === 0 && delta.bytes === 0) return;
    const { quotas } = await this.#limitsIn(tx, tenantId);
    const max = { records: bound(quotas.records), bytes: bound(quotas.recordBytes) };
    if ((await addRecordUsage(tx, tenantId, delta, max)) !== undefined) return;
    let usage = await findRecordUsage(tx, tenantId);
    if (usage === undefined) {
      await initRecordUsage(tx, tenantId, delta);
      if ((await addRecordUsage(tx, tenantId, delta, max)) !== undefined) return;
      usage = (await findRecordUsage(tx, tenantId)) ?? { records: 0, record_bytes: 0 };
    }
    if (delta.records > 0 && usage.records + delta.records > max.records) throw quotaExceeded('records', max.records, usage.records);
    throw quotaExceeded('recordBytes', max.bytes, usage.record_bytes);
  }

  async assertUserCapacity(tx: Queryable, tenantId: string, adding: number): Promise<void> {
    const limit = (await this.#limitsIn(tx, tenantId)).quotas.users;
    if (limit === 'unlimited') return;
    await lockQuota(tx, tenantId, 'users');
    const used = await countUsers(tx, tenantId);
    if (used + adding > limit) throw quotaExceeded('users', limit, used);
  }

  async assertApiKeyCapacity(tx: Queryable, tenantId: string): Promise<void> {
    const limit = (await this.#limitsIn(tx, tenantId)).quotas.apiKeys;
    if (limit === 'unlimited') return;
    await lockQuota(tx, tenantId, 'apiKeys');
    const used = await countLiveApiKeys(tx, tenantId, this.#clock.now());
    if (used + 1 > limit) throw quotaExceeded('apiKeys', limit, used);
  }
}
