import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { movableClock } from '../../testing/clock.ts';
import { redisSkip, testRedisUrl } from '../../testing/redis.ts';
import { RateLimiter } from './rate-limiter.ts';
import { gcra, MemoryRateStore, RedisRateStore } from './rate-store.ts';

const second = 1_000_000;

describe('GCRA token bucket', () => {
  const rate = { limit: 10, windowSeconds: 10 };

  it('allows a full bucket at once, then one unit per emission interval', () => {
    let tat: number | undefined;
    const now = 1_000 * second;
    for (let index = 0; index < 10; index += 1) {
      const step = gcra(tat, now, rate, 1);
      assert.equal(step.decision.allowed, true, `request ${index + 1} of a full bucket`);
      assert.equal(step.decision.remaining, 9 - index);
      tat = step.tatMicros;
    }
    const refused = gcra(tat, now, rate, 1);
    assert.equal(refused.decision.allowed, false);
    assert.equal(refused.decision.remaining, 0);
    assert.equal(refused.decision.retryAfterSeconds, 1, 'one unit refills in window / limit = 1 s');
    assert.equal(refused.decision.resetSeconds, 10, 'the bucket is full again after a whole window');
    assert.equal(refused.tatMicros, undefined, 'a refusal takes nothing');
    assert.equal(gcra(tat, now + second - 1, rate, 1).decision.allowed, false, 'not before the interval');
    assert.equal(gcra(tat, now + second, rate, 1).decision.allowed, true, 'exactly one interval later');
  });

  it('never allows twice the limit across a window boundary (a fixed window would)', () => {
    let tat: number | undefined;
    let allowed = 0;
    // 20 requests in the last 100 ms of one window and the first 100 ms of the next.
    for (let index = 0; index < 20; index += 1) {
      const step = gcra(tat, 9_900_000 + index * 10_000, rate, 1);
      if (step.decision.allowed) allowed += 1;
      tat = step.tatMicros ?? tat;
    }
    assert.equal(allowed, 10);
  });

  it('charges a batch its cost and refuses it whole when the bucket is short', () => {
    const first = gcra(undefined, 0, rate, 7);
    assert.equal(first.decision.remaining, 3);
    const second_ = gcra(first.tatMicros, 0, rate, 4);
    assert.equal(second_.decision.allowed, false);
    assert.equal(second_.decision.retryAfterSeconds, 1);
    assert.equal(gcra(first.tatMicros, 0, rate, 3).decision.allowed, true);
  });
});

describe('memory rate store', () => {
  it('keeps buckets per key and forgets the least recently used first when full', async () => {
    const clock = movableClock();
    const store = new MemoryRateStore(clock, { maxKeys: 3 });
    const rate = { limit: 1, windowSeconds: 60 };
    for (const key of ['a', 'b', 'c']) assert.equal((await store.take(key, rate, 1)).allowed, true);
    assert.equal((await store.take('a', rate, 1)).allowed, false, 'a is empty');
    assert.equal((await store.take('d', rate, 1)).allowed, true);
    assert.equal(store.size, 3);
    assert.equal((await store.take('a', rate, 1)).allowed, true, 'a was the least recently charged and was dropped for d');
    clock.advance(61_000);
    assert.equal((await store.take('b', rate, 1)).allowed, true, 'a refilled bucket allows again');
  });
});

describe('rate limiter failure modes', () => {
  const failing = { kind: 'redis' as const, take: () => Promise.reject(new Error('ECONNREFUSED')), close: () => Promise.resolve() };
  const rate = { limit: 2, windowSeconds: 60 };

  const limiterIn = (failureMode: 'local' | 'open' | 'closed') => {
    const clock = movableClock();
    const counts = { errors: 0, degraded: 0 };
    const limiter = new RateLimiter(failing, new MemoryRateStore(clock, { maxKeys: 10 }), clock, {
      failureMode,
      retryStoreAfterMs: 1_000,
      onStoreError: () => void (counts.errors += 1),
      onDegradedDecision: () => void (counts.degraded += 1),
    });
    return { limiter, counts, clock };
  };

  it('local: limits with this process’s buckets and asks the store again only after the retry delay', async () => {
    const { limiter, counts, clock } = limiterIn('local');
    const decisions = [];
    for (let index = 0; index < 3; index += 1) decisions.push((await limiter.take('t', rate, 1)).allowed);
    assert.deepEqual(decisions, [true, true, false]);
    assert.equal(counts.errors, 1, 'the store was tried once, then skipped');
    assert.equal(counts.degraded, 3);
    assert.equal((await limiter.take('t', rate, 1)).allowed, false);
    assert.equal(counts.degraded, 3, 'the refusal was remembered: no new decision');
    clock.advance(1_000);
    await limiter.take('other', rate, 1);
    assert.equal(counts.errors, 2, 'tried again after the delay');
  });

  it('open: allows everything, and counts each decision', async () => {
    const { limiter, counts } = limiterIn('open');
    for (let index = 0; index < 5; index += 1) assert.equal((await limiter.take('t', rate, 1)).allowed, true);
    assert.equal(counts.degraded, 5);
  });

  it('closed: refuses with 503 rate_limiter_unavailable', async () => {
    const { limiter } = limiterIn('closed');
    await assert.rejects(limiter.take('t', rate, 1), (error: Error & { code?: string; status?: number }) => {
      assert.equal(error.code, 'rate_limiter_unavailable');
      assert.equal(error.status, 503);
      return true;
    });
  });
});

describe('Redis rate store (real Redis)', { skip: redisSkip() }, () => {
  let redis: Redis;
  let store: RedisRateStore;
  const prefix = `bulwark:test:${randomBytes(4).toString('hex')}:`;

  before(() => {
    redis = new Redis(testRedisUrl, { maxRetriesPerRequest: 1 });
    store = new RedisRateStore(redis, { prefix });
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await store.close();
  });

  it('decides like the in-memory GCRA: a full bucket, then refusals with Retry-After', async () => {
    const rate = { limit: 5, windowSeconds: 30 };
    const decisions = [];
    for (let index = 0; index < 6; index += 1) decisions.push(await store.take('burst', rate, 1));
    assert.deepEqual(
      decisions.map((decision) => [decision.allowed, decision.remaining]),
      [
        [true, 4],
        [true, 3],
        [true, 2],
        [true, 1],
        [true, 0],
        [false, 0],
      ],
    );
    assert.equal(decisions[5]?.retryAfterSeconds, 6, 'one unit refills in 30 s / 5');
    assert.equal(decisions[4]?.resetSeconds, 30);
  });

  it('is atomic: 200 concurrent takes from two clients allow exactly the bucket', async () => {
    const other = new RedisRateStore(new Redis(testRedisUrl), { prefix });
    try {
      const rate = { limit: 50, windowSeconds: 3600 };
      const results = await Promise.all(Array.from({ length: 200 }, (_, index) => (index % 2 === 0 ? store : other).take('race', rate, 1)));
      assert.equal(results.filter((decision) => decision.allowed).length, 50);
    } finally {
      await other.close();
    }
  });

  it('lets the key expire once the bucket would be full again', async () => {
    await store.take('expiring', { limit: 2, windowSeconds: 4 }, 1);
    const ttl = await redis.pttl(`${prefix}expiring`);
    assert.ok(ttl > 0 && ttl <= 2_000, `expires when the one unit is refilled (${ttl} ms)`);
  });
});
