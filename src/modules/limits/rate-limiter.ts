import type { Clock } from '../../platform/clock.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { Rate, RateDecision, RateStore } from './rate-store.ts';

/**
 * What happens while the shared store (Redis) is unreachable: `local` keeps limiting with this instance's
 * own buckets (each instance then allows the full budget), `open` allows everything, `closed` refuses
 * everything with 503. Every failure counts in a metric and is logged (at most every few seconds).
 */
export type StoreFailureMode = 'local' | 'open' | 'closed';

export interface RateLimiterOptions {
  failureMode: StoreFailureMode;
  /** After a store failure, how long to answer by the failure mode before trying the store again. */
  retryStoreAfterMs: number;
  onStoreError(error: unknown): void;
  /** Each decision made by the failure mode instead of the store. */
  onDegradedDecision(mode: StoreFailureMode): void;
}

/**
 * The rate buckets' front: the store, a fallback for when it fails, and a local memory of refusals so a
 * flooding client that is already over its limit costs no store round trip until it may retry.
 */
export class RateLimiter {
  readonly #store: RateStore;
  readonly #fallback: RateStore;
  readonly #clock: Clock;
  readonly #options: RateLimiterOptions;
  readonly #refused = new Map<string, { untilMs: number; decision: RateDecision }>();
  #storeDownUntilMs = 0;

  constructor(store: RateStore, fallback: RateStore, clock: Clock, options: RateLimiterOptions) {
    this.#store = store;
    this.#fallback = fallback;
    this.#clock = clock;
    this.#options = options;
  }

  get storeKind(): RateStore['kind'] {
    return this.#store.kind;
  }

  /** The refusal of `key` that this instance saw and that still holds, without asking the store. */
  knownRefusal(key: string): RateDecision | undefined {
    const refused = this.#refused.get(key);
    if (refused === undefined) return undefined;
    const now = this.#clock.now().getTime();
    if (refused.untilMs <= now) {
      this.#refused.delete(key);
      return undefined;
    }
    return { ...refused.decision, retryAfterSeconds: Math.max(1, Math.ceil((refused.untilMs - now) / 1000)) };
  }

  async take(key: string, rate: Rate, cost: number): Promise<RateDecision> {
    const known = this.knownRefusal(key);
    if (known !== undefined) return known;
    const now = this.#clock.now().getTime();
    // A batch larger than the whole bucket may still pass once the bucket is full, rather than never.
    const units = Math.min(Math.max(cost, 1), rate.limit);
    const decision = await this.#takeFromStore(key, rate, units, now);
    // Only single units are remembered: a smaller request than a refused batch may well pass.
    if (!decision.allowed && units === 1) {
      if (this.#refused.size >= 100_000) this.#refused.clear();
      this.#refused.set(key, { untilMs: now + decision.retryAfterSeconds * 1000, decision });
    }
    return decision;
  }

  async #takeFromStore(key: string, rate: Rate, units: number, now: number): Promise<RateDecision> {
    if (this.#store === this.#fallback || now >= this.#storeDownUntilMs) {
      try {
        return await this.#store.take(key, rate, units);
      } catch (error) {
        this.#storeDownUntilMs = now + this.#options.retryStoreAfterMs;
        this.#options.onStoreError(error);
      }
    }
    this.#options.onDegradedDecision(this.#options.failureMode);
    switch (this.#options.failureMode) {
      case 'local':
        return this.#fallback.take(key, rate, units);
      case 'open':
        return { allowed: true, remaining: rate.limit, resetSeconds: 0, retryAfterSeconds: 0 };
      case 'closed':
        throw new BulwarkError('rate_limiter_unavailable', { headers: { 'retry-after': String(Math.ceil(this.#options.retryStoreAfterMs / 1000)) } });
    }
  }

  async close(): Promise<void> {
    await this.#store.close();
    if (this.#fallback !== this.#store) await this.#fallback.close();
  }
}
