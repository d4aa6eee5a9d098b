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
});
