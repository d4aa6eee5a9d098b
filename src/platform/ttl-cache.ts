import type { Clock } from './clock.ts';

/**
 * A small bounded cache with a time-to-live, for hot lookups (credentials, tenant status). When full,
 * the oldest entry goes first (Map keeps insertion order). Entries are replaced, never mutated.
 * `onEvict` sees every value that leaves the cache (expired, displaced, deleted), e.g. to zero key bytes.
 */
export class TtlCache<V> {
  readonly #entries = new Map<string, { value: V; expiresAt: number }>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #clock: Clock;
  readonly #onEvict: ((value: V) => void) | undefined;

  constructor(ttlMs: number, maxEntries: number, clock: Clock, onEvict?: (value: V) => void) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#clock = clock;
    this.#onEvict = onEvict;
  }

  #remove(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#onEvict?.(entry.value);
  }

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#clock.now().getTime()) {
      this.#remove(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: string, value: V): void {
    // A zero TTL caches nothing; the value was never held, so it stays the caller's (no onEvict).
    if (this.#ttlMs === 0) return;
    this.#remove(key);
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#remove(oldest.value);
    }
    this.#entries.set(key, { value, expiresAt: this.#clock.now().getTime() + this.#ttlMs });
  }

  async getOrLoad(key: string, load: () => Promise<V>): Promise<V> {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const value = await load();
    this.set(key, value);
    return value;
  }

  /** Drops every expired entry now (through onEvict), rather than when each is next looked up. */
  evictExpired(): void {
    const now = this.#clock.now().getTime();
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#remove(key);
  }

  delete(key: string): void {
    this.#remove(key);
  }

  deleteWhere(predicate: (value: V) => boolean): void {
    for (const [key, entry] of this.#entries) if (predicate(entry.value)) this.#remove(key);
  }

  clear(): void {
    for (const key of [...this.#entries.keys()]) this.#remove(key);
  }
}
