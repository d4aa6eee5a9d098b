import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Clock } from './clock.ts';
import { TtlCache } from './ttl-cache.ts';

function manualClock(start = 0): Clock & { advance(ms: number): void } {
  let now = start;
  return { now: () => new Date(now), advance: (ms: number) => void (now += ms) };
}

describe('TtlCache', () => {
  it('evicts expired entries on lookup and on evictExpired, through onEvict', () => {
    const clock = manualClock();
    const evicted: string[] = [];
    const cache = new TtlCache<string>(1000, 10, clock, (value) => evicted.push(value));
    cache.set('a', 'A');
    clock.advance(500);
    cache.set('b', 'B');
    clock.advance(600);
    cache.evictExpired();
    assert.deepEqual(evicted, ['A'], 'only the expired entry leaves');
    assert.equal(cache.get('b'), 'B');
    clock.advance(500);
    assert.equal(cache.get('b'), undefined);
    assert.deepEqual(evicted, ['A', 'B']);
  });

  it('displaces the oldest entry when full, and caches nothing with a zero TTL', () => {
    const clock = manualClock();
    const evicted: number[] = [];
    const full = new TtlCache<number>(1000, 2, clock, (value) => evicted.push(value));
    full.set('1', 1);
    full.set('2', 2);
    full.set('3', 3);
    assert.deepEqual(evicted, [1]);
    assert.equal(full.get('1'), undefined);
    const none = new TtlCache<number>(0, 2, clock, (value) => evicted.push(value));
    none.set('x', 9);
    assert.equal(none.get('x'), undefined);
    assert.deepEqual(evicted, [1], 'a value never held is not evicted');
  });

  it('does not cache a load that raced an invalidation: the value may predate the change', async () => {
    const clock = manualClock();
    const cache = new TtlCache<string>(1000, 10, clock);
    let release: (value: string) => void = () => undefined;
    const loading = cache.getOrLoad('session', () => new Promise<string>((resolve) => (release = resolve)));
    // The change commits and its invalidation arrives while the read of the old state is in flight.
    cache.delete('session');
    release('live (read before the revocation)');
    assert.equal(await loading, 'live (read before the revocation)', 'the caller still gets what it read');
    assert.equal(cache.get('session'), undefined, 'but it is not kept');
    // Control: the same load without a removal in between is cached.
    assert.equal(await cache.getOrLoad('session', async () => 'revoked'), 'revoked');
    assert.equal(cache.get('session'), 'revoked');

    for (const remove of [() => cache.deleteWhere(() => false), () => cache.clear()]) {
      const since = cache.mark();
      remove();
      assert.equal(cache.set('other', 'x', since), false, 'any removal counts, also one that matched nothing');
    }
    const since = cache.mark();
    cache.get('expired-or-missing');
    clock.advance(2000);
    cache.get('session');
    cache.set('a', '1');
    assert.equal(cache.set('b', '2', since), true, 'expiry and plain sets are no invalidation');
  });
});
