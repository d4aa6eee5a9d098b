import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../server/app.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { startPrivateRedis, type PrivateRedis, redisSkip, testRedisUrl } from '../../testing/redis.ts';
import { assertProblem } from '../../testing/security-suite.ts';

/**
 * Limits across instances: two app instances over one database, sharing (or not) one real Redis. The
 * database engine does not matter here (the isolation and storage suites cover both); the rate store does.
 */
interface Cluster {
  first: TestApp;
  second: FastifyInstance;
  tenantId: string;
  apiKey: string;
  close(): Promise<void>;
}

async function cluster(config: Record<string, string>): Promise<Cluster> {
  const first = await createTestApp('pglite', { config });
  const second = await buildApp({ config: first.storage.config, db: first.storage.db, rootKeys: first.rootKeys });
  const { tenantId, apiKey } = await first.tenantWithKey('Shared budget');
  return {
    first,
    second,
    tenantId,
    apiKey,
    async close() {
      await second.close();
      await first.close();
    },
  };
}

function listOn(app: FastifyInstance, { tenantId, apiKey }: Pick<Cluster, 'tenantId' | 'apiKey'>) {
  return app.inject({ method: 'GET', url: `/v1/tenants/${tenantId}/collections/notes/records`, headers: { authorization: `Bearer ${apiKey}` } });
}

async function setRequests(target: Cluster, limit: number): Promise<void> {
  const response = await target.first.call({
    method: 'PUT',
    url: `/v1/tenants/${target.tenantId}/limits`,
    token: target.first.operatorToken,
    body: { rates: { requests: { limit, windowSeconds: 3600 } } },
  });
  assert.equal(response.statusCode, 200, response.body);
}

/** Sends `count` requests alternating between the two instances; the statuses, in order. */
async function alternate(target: Cluster, count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let index = 0; index < count; index += 1) statuses.push((await listOn(index % 2 === 0 ? target.first.app : target.second, target)).statusCode);
  return statuses;
}

describe('limits across instances', () => {
  it('in memory, each instance keeps its own buckets: two instances allow twice the budget', async () => {
    const target = await cluster({});
    try {
      await setRequests(target, 10);
      const statuses = await alternate(target, 22);
      assert.equal(statuses.filter((status) => status === 200).length, 20);
    } finally {
      await target.close();
    }
  });

  it('with Redis, two instances enforce one budget per tenant', { skip: redisSkip() }, async () => {
    const target = await cluster({ redisUrl: testRedisUrl });
    try {
      await setRequests(target, 10);
      const statuses = await alternate(target, 22);
      assert.deepEqual(statuses.slice(0, 10), Array(10).fill(200));
      assert.deepEqual(statuses.slice(10), Array(12).fill(429));
      const refused = await listOn(target.second, target);
      assertProblem(refused, 429, 'rate_limited');
      assert.equal(refused.headers['ratelimit-policy'], '"requests";q=10;w=3600');
      const ready = await target.first.call({ method: 'GET', url: '/readyz' });
      assert.equal(ready.json<{ checks: { rateLimitStore: string } }>().checks.rateLimitStore, 'ok');
    } finally {
      await target.close();
    }
  });
});

describe('when Redis goes down', { skip: redisSkip() }, () => {
  let redis: PrivateRedis;

  before(async () => {
    redis = await startPrivateRedis();
  });
  after(async () => {
    await redis.kill();
  });

  const whileDown = async (mode: 'local' | 'open' | 'closed', check: (target: Cluster) => Promise<void>) => {
    const target = await cluster({ redisUrl: redis.url, rateLimitRedisFailure: mode, redisTimeoutMs: '100' });
    try {
      await setRequests(target, 3);
      assert.equal((await listOn(target.first.app, target)).statusCode, 200, 'served through Redis while it is up');
      await redis.kill();
      await check(target);
      assert.equal((await target.first.call({ method: 'GET', url: '/healthz' })).statusCode, 200, 'the server stays up');
    } finally {
      await target.close();
      await redis.start();
    }
  };

  it('local (the default): each instance limits with its own buckets, and the decisions are counted', async () => {
    await whileDown('local', async (target) => {
      const statuses = [];
      for (let index = 0; index < 5; index += 1) statuses.push((await listOn(target.first.app, target)).statusCode);
      assert.deepEqual(statuses, [200, 200, 200, 429, 429], 'this instance allows the whole budget of its own');
      assert.equal((await listOn(target.second, target)).statusCode, 200, 'and so does the other');
      const metrics = await target.first.app.metrics.registry.metrics();
      assert.match(metrics, /bulwark_rate_limit_degraded_decisions_total\{mode="local"\} [1-9]/);
      assert.match(metrics, /bulwark_rate_limit_store_errors_total [1-9]/);
      const ready = await target.first.call({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 200, 'not required for readiness when limits do not fail closed');
      assert.equal(ready.json<{ checks: { rateLimitStore: string } }>().checks.rateLimitStore, 'unavailable');
    });
  });

  it('open: every request is allowed, each decision counted', async () => {
    await whileDown('open', async (target) => {
      for (let index = 0; index < 6; index += 1) assert.equal((await listOn(target.first.app, target)).statusCode, 200);
      assert.match(await target.first.app.metrics.registry.metrics(), /bulwark_rate_limit_degraded_decisions_total\{mode="open"\} 6/);
    });
  });

  it('closed: limited requests answer 503 rate_limiter_unavailable, readiness fails; Redis back, service is back', async () => {
    const target = await cluster({ redisUrl: redis.url, rateLimitRedisFailure: 'closed', redisTimeoutMs: '100' });
    try {
      await setRequests(target, 100);
      await redis.kill();
      const refused = await listOn(target.first.app, target);
      assertProblem(refused, 503, 'rate_limiter_unavailable');
      assert.equal(refused.headers['retry-after'], '1');
      assertProblem(await target.first.call({ method: 'GET', url: '/readyz' }), 503, 'service_unavailable');
      assert.equal((await target.first.call({ method: 'GET', url: '/healthz' })).statusCode, 200, 'alive, only not ready');
      await redis.start();
      let status = 0;
      for (let attempt = 0; attempt < 50 && status !== 200; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        status = (await listOn(target.first.app, target)).statusCode;
      }
      assert.equal(status, 200, 'served again once Redis answers');
    } finally {
      await target.close();
    }
  });
});
