import type { Config } from '../../platform/config/config.ts';
import type { Rate } from './rate-store.ts';

/**
 * The limits a tenant lives under. Rate buckets: `requests` (every authenticated request of the tenant),
 * and the expensive routes on top of it: `login` (password logins into the tenant), `crypto` (transit
 * items), `export` (audit exports). Quotas bound what a tenant stores; `maxConcurrentRequests` how many
 * of its requests one instance serves at once.
 */
export const tenantBuckets = ['requests', 'login', 'crypto', 'export'] as const;
export type TenantBucket = (typeof tenantBuckets)[number];

export const quotaNames = ['records', 'recordBytes', 'apiKeys', 'users'] as const;
export type QuotaName = (typeof quotaNames)[number];

/** `unlimited` lifts a limit; a number (or a rate) sets it. */
export type Limit<T> = T | 'unlimited';

export interface TenantLimits {
  rates: Record<TenantBucket, Limit<Rate>>;
  quotas: Record<QuotaName, Limit<number>>;
  maxConcurrentRequests: Limit<number>;
}

/** An operator's overrides for one tenant; whatever is absent follows the platform default. */
export interface LimitOverrides {
  rates?: Partial<Record<TenantBucket, Limit<Rate>>>;
  quotas?: Partial<Record<QuotaName, Limit<number>>>;
  maxConcurrentRequests?: Limit<number>;
}

/** The platform's defaults, from the configuration; plus the per-source bucket of anonymous callers. */
export interface PlatformLimits extends TenantLimits {
  /** Public routes and failed authentications, per client address. */
  anonymous: Limit<Rate>;
  /** Every request of one operator. */
  operator: Limit<Rate>;
}

export function mergeLimits(defaults: TenantLimits, overrides: LimitOverrides): TenantLimits {
  return {
    rates: { ...defaults.rates, ...overrides.rates },
    quotas: { ...defaults.quotas, ...overrides.quotas },
    maxConcurrentRequests: overrides.maxConcurrentRequests ?? defaults.maxConcurrentRequests,
  };
}

/**
 * Overrides as stored (JSON): kept only where they have the expected shape, so a row written by an older
 * or newer version can never widen a limit by accident of parsing.
 */
export function parseOverrides(stored: unknown): LimitOverrides {
  if (!isObject(stored)) return {};
  const overrides: LimitOverrides = {};
  if (isObject(stored['rates'])) {
    const rates: Partial<Record<TenantBucket, Limit<Rate>>> = {};
    for (const bucket of tenantBuckets) {
      const value = stored['rates'][bucket];
      if (value === 'unlimited' || isRate(value)) rates[bucket] = value;
    }
    overrides.rates = rates;
  }
  if (isObject(stored['quotas'])) {
    const quotas: Partial<Record<QuotaName, Limit<number>>> = {};
    for (const name of quotaNames) {
      const value = stored['quotas'][name];
      if (value === 'unlimited' || isCount(value)) quotas[name] = value;
    }
    overrides.quotas = quotas;
  }
  const concurrency = stored['maxConcurrentRequests'];
  if (concurrency === 'unlimited' || (isCount(concurrency) && concurrency > 0)) overrides.maxConcurrentRequests = concurrency;
  return overrides;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isRate(value: unknown): value is Rate {
  return isObject(value) && isCount(value['limit']) && value['limit'] > 0 && isCount(value['windowSeconds']) && value['windowSeconds'] > 0;
}

const durationUnits: Record<string, number> = { s: 1, m: 60, h: 3600 };

/** `2000/10s`, `30/1m`, `1000/1h` or `unlimited`: the configuration's way to write a rate. */
export function parseRate(raw: string): { value: Limit<Rate> } | { error: string } {
  if (raw === 'unlimited') return { value: 'unlimited' };
  const match = /^(\d{1,9})\/(\d{1,5})([smh])$/.exec(raw);
  const error = { error: 'must be <limit>/<window> with the window in s, m or h (e.g. 2000/10s), or unlimited' };
  if (match === null) return error;
  const limit = Number(match[1]);
  const windowSeconds = Number(match[2]) * (durationUnits[match[3] ?? 's'] ?? 1);
  if (limit < 1 || windowSeconds < 1 || windowSeconds > 86_400) return error;
  return { value: { limit, windowSeconds } };
}


/** The platform's defaults, as configured. */
export function platformLimitsOf(
  config: Pick<
    Config,
    | 'rateLimitRequests'
    | 'rateLimitLogin'
    | 'rateLimitCrypto'
    | 'rateLimitExport'
    | 'rateLimitAnonymous'
    | 'rateLimitOperator'
    | 'quotaRecords'
    | 'quotaRecordBytes'
    | 'quotaApiKeys'
    | 'quotaUsers'
    | 'tenantMaxConcurrentRequests'
  >,
): PlatformLimits {
  return {
    rates: { requests: config.rateLimitRequests, login: config.rateLimitLogin, crypto: config.rateLimitCrypto, export: config.rateLimitExport },
    quotas: { records: config.quotaRecords, recordBytes: config.quotaRecordBytes, apiKeys: config.quotaApiKeys, users: config.quotaUsers },
    maxConcurrentRequests: config.tenantMaxConcurrentRequests,
    anonymous: config.rateLimitAnonymous,
    operator: config.rateLimitOperator,
  };
}
