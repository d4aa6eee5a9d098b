import type { Redis } from 'ioredis';
import type { Clock } from '../../platform/clock.ts';

/**
 * A rate: `limit` units per `windowSeconds`, enforced as a token bucket that holds at most `limit` units
 * and refills continuously (so a client that waited a whole window may spend `limit` at once, and never
 * twice that across a window boundary, as a fixed window would allow).
 */
export interface Rate {
  limit: number;
  windowSeconds: number;
}

export interface RateDecision {
  allowed: boolean;
  /** Units left after this request. */
  remaining: number;
  /** Seconds until the bucket is full again (the `t` of the RateLimit header). */
  resetSeconds: number;
  /** When refused: seconds until this request would be allowed (Retry-After). */
  retryAfterSeconds: number;
}

/** Where buckets live: this process's memory, or Redis shared by every instance. */
export interface RateStore {
  readonly kind: 'memory' | 'redis';
  /** Takes `cost` units from the bucket `key` when they are there; otherwise takes nothing. */
  take(key: string, rate: Rate, cost: number): Promise<RateDecision>;
  close(): Promise<void>;
}

function intervalMicros(rate: Rate): number {
  return Math.max(1, Math.floor((rate.windowSeconds * 1_000_000) / rate.limit));
}

/** A bucket's answer in the RateLimit vocabulary, from how long the bucket is occupied and how long to wait. */
function decision(rate: Rate, allowed: boolean, occupiedMicros: number, waitMicros: number): RateDecision {
  const windowMicros = rate.windowSeconds * 1_000_000;
  return {
    allowed,
    remaining: Math.max(0, Math.floor((windowMicros - occupiedMicros) / intervalMicros(rate))),
    resetSeconds: Math.ceil(occupiedMicros / 1_000_000),
    retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil(waitMicros / 1_000_000)),
  };
}

/**
 * GCRA (the generic cell rate algorithm): a token bucket kept as one number per key, the theoretical
 * arrival time (TAT) at which the bucket would be full again. Each unit pushes it one emission interval
 * (window / limit) further; a request is allowed while the TAT stays within one window of now. Times are
 * integer microseconds, so the Redis script (Lua numbers are doubles) computes exactly the same.
 * Hand-written because no maintained Node library offers a token bucket on Redis: rate-limiter-flexible,
 * the established one, counts fixed windows there, which let a client spend twice its limit across a
 * window boundary.
 */
export function gcra(tatMicros: number | undefined, nowMicros: number, rate: Rate, cost: number): { decision: RateDecision; tatMicros: number | undefined } {
  const start = Math.max(tatMicros ?? nowMicros, nowMicros);
  const next = start + cost * intervalMicros(rate);
  const wait = next - rate.windowSeconds * 1_000_000 - nowMicros;
  if (wait > 0) return { decision: decision(rate, false, start - nowMicros, wait), tatMicros: undefined };
  return { decision: decision(rate, true, next - nowMicros, 0), tatMicros: next };
}

/** Buckets in this process: the default, and the fallback when Redis is unreachable. */
export class MemoryRateStore implements RateStore {
  readonly kind = 'memory';
  readonly #buckets = new Map<string, number>();
  readonly #clock: Clock;
  readonly #maxKeys: number;

  constructor(clock: Clock, options: { maxKeys: number }) {
    this.#clock = clock;
    this.#maxKeys = options.maxKeys;
  }

  take(key: string, rate: Rate, cost: number): Promise<RateDecision> {
    const now = this.#clock.now().getTime() * 1000;
    const { decision, tatMicros } = gcra(this.#buckets.get(key), now, rate, cost);
    if (tatMicros !== undefined) {
      // Re-inserted, so Map order is least recently used first: the first keys are the ones to drop.
      this.#buckets.delete(key);
      if (this.#buckets.size >= this.#maxKeys) this.#evict(now);
      this.#buckets.set(key, tatMicros);
    }
    return Promise.resolve(decision);
  }

  /** A full bucket holds no information: those go first; if none, the least recently used one. */
  #evict(now: number): void {
    for (const [key, tat] of this.#buckets) if (tat <= now) this.#buckets.delete(key);
    if (this.#buckets.size < this.#maxKeys) return;
    const oldest = this.#buckets.keys().next();
    if (oldest.done !== true) this.#buckets.delete(oldest.value);
  }

  get size(): number {
    return this.#buckets.size;
  }

  close(): Promise<void> {
    this.#buckets.clear();
    return Promise.resolve();
  }
}

/**
 * The same GCRA step as `gcra`, atomically in Redis, on the Redis server's clock (instances may disagree
 * about the time; the one Redis does not). The key expires when the bucket would be full anyway.
 */
const gcraScript = `
local window = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nextTat = tat + cost * interval
if nextTat - window > now then
  return {0, tat - now, nextTat - window - now}
end
redis.call('SET', KEYS[1], string.format('%d', nextTat), 'PX', math.ceil((nextTat - now) / 1000))
return {1, nextTat - now, 0}
`;

type GcraReply = [allowed: number, occupiedMicros: number, waitMicros: number];
/** ioredis adds a defined command as a method; its types cannot know it. */
type ScriptedRedis = Redis & { bulwarkGcra(key: string, window: number, interval: number, cost: number): Promise<GcraReply> };

/** Buckets in Redis, shared by every instance that points at it. */
export class RedisRateStore implements RateStore {
  readonly kind = 'redis';
  readonly #redis: ScriptedRedis;
  readonly #prefix: string;

  constructor(redis: Redis, options: { prefix: string }) {
    // defineCommand sends EVALSHA and falls back to EVAL when the server does not know the script yet.
    redis.defineCommand('bulwarkGcra', { numberOfKeys: 1, lua: gcraScript });
    this.#redis = redis as ScriptedRedis;
    this.#prefix = options.prefix;
  }

  async take(key: string, rate: Rate, cost: number): Promise<RateDecision> {
    const [allowed, occupied, wait] = await this.#redis.bulwarkGcra(`${this.#prefix}${key}`, rate.windowSeconds * 1_000_000, intervalMicros(rate), cost);
    return decision(rate, allowed === 1, occupied, wait);
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
