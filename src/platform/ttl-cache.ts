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
  // Counts explicit removals (delete, deleteWhere, clear): the invalidations of a change. A load that began
  // before one may have read the state from before that change, so it must not be cached (see `mark`).
  #removals = 0;

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

  /**
   * Taken before a load, passed to `set`: the value is cached only if no entry was removed meanwhile. Any
   * removal counts, not only this key's (deleteWhere has no key to compare): a load racing an unrelated
   * invalidation goes uncached once, which costs a lookup, never a stale answer.
   */
  mark(): number {
    return this.#removals;
  }

  /**
   * Caches `value`; answers whether it did. Not cached (a zero TTL, or a removal since `since`): the value
   * was never held, so it stays the caller's (no onEvict).
   */
  set(key: string, value: V, since?: number): boolean {
    if (this.#ttlMs === 0 || (since !== undefined && since !== this.#removals)) return false;
    this.#remove(key);
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#remove(oldest.value);
    }
    this.#entries.set(key, { value, expiresAt: this.#clock.now().getTime() + this.#ttlMs });
    return true;
  }

  async getOrLoad(key: string, load: () => Promise<V>): Promise<V> {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const since = this.mark();
    const value = await load();
    this.set(key, value, since);
    return value;
  }

  /** Drops every expired entry now (through onEvict), rather than when each is next looked up. */
  evictExpired(): void {
    const now = this.#clock.now().getTime();
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#remove(key);
  }

  delete(key: string): void {
    this.#removals += 1;
    this.#remove(key);
  }

  deleteWhere(predicate: (value: V) => boolean): void {
    this.#removals += 1;
    for (const [key, entry] of this.#entries) if (predicate(entry.value)) this.#remove(key);
  }

  clear(): void {
    this.#removals += 1;
    for (const key of [...this.#entries.keys()]) this.#remove(key);
  }
}
