import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { newId } from '../../platform/ids.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { movableClock } from '../../testing/clock.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import type { AuditRecord } from '../audit/service.ts';
import type { LimitsDocument } from './service.ts';

interface Tenant {
  tenantId: string;
  apiKey: string;
  adminToken: string;
}

for (const engine of engines) {
  describe(`limits [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof movableClock>;

    before(async () => {
      clock = movableClock();
      // The anonymous bucket is on (the rest are lifted by the test config until a tenant's override).
      test = await createTestApp(engine, { clock, config: { rateLimitAnonymous: '40/1m', loginSourceMaxFailures: '10000' } });
    });
    after(() => test.close());

    const setLimits = (tenantId: string, body: unknown, token = test.operatorToken) =>
      test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/limits`, token, body });
    const getLimits = async (tenantId: string, token = test.operatorToken) => {
      const response = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/limits`, token });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<LimitsDocument>();
    };
    const newTenant = async (name: string, limits?: unknown): Promise<Tenant> => {
      const tenant = await test.tenantWithKey(name);
      if (limits !== undefined) assert.equal((await setLimits(tenant.tenantId, limits)).statusCode, 200);
      return tenant;
    };
    const putRecord = (tenant: Tenant, data: unknown, id = newId()) =>
      test.call({ method: 'PUT', url: `/v1/tenants/${tenant.tenantId}/collections/notes/records/${id}`, token: tenant.apiKey, body: { data } });
    /** The platform trail through the API; a tenant's as stored (its own key may be the one throttled). */
    const platformEvents = async (action: string) => {
      const response = await test.call({ method: 'GET', url: `/v1/audit?action=${action}`, token: test.operatorToken });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<{ items: AuditRecord[] }>().items;
    };
    const tenantEvents = async (tenantId: string, action: string) =>
      (await test.storage.asOwner(
        'SELECT outcome, detail, actor_kind, actor_id, pii IS NOT NULL AS personal_data FROM audit_events WHERE tenant_id = $1 AND action = $2 ORDER BY seq DESC',
        [tenantId, action],
      )) as { outcome: string; detail: Record<string, unknown>; actor_kind: string; actor_id: string; personal_data: boolean }[];

    describe('rate limits', () => {
      it("throttles a tenant past its requests bucket with 429, Retry-After and RateLimit headers; another tenant is untouched", async () => {
        const noisy = await newTenant('Noisy', { rates: { requests: { limit: 5, windowSeconds: 60 } } });
        const quiet = await newTenant('Quiet');
        const list = (tenant: Tenant) => test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/collections/notes/records`, token: tenant.apiKey });
        for (let index = 0; index < 5; index += 1) {
          const allowed = await list(noisy);
          assert.equal(allowed.statusCode, 200);
          assert.equal(allowed.headers['ratelimit-policy'], '"requests";q=5;w=60');
          assert.equal(allowed.headers['ratelimit'], `"requests";r=${4 - index};t=${12 * (index + 1)}`);
        }
        const refused = await list(noisy);
        const problem = assertProblem(refused, 429, 'rate_limited');
        assert.equal(refused.headers['retry-after'], '12', 'one unit refills in 60 s / 5');
        assert.equal(refused.headers['ratelimit'], '"requests";r=0;t=60');
        assert.deepEqual({ policy: problem['policy'], limit: problem['limit'], windowSeconds: problem['windowSeconds'] }, { policy: 'requests', limit: 5, windowSeconds: 60 });
        // An unlimited tenant's responses name no policy.
        const other = await list(quiet);
        assert.equal(other.statusCode, 200);
        assert.equal(other.headers['ratelimit-policy'], undefined);
        clock.advance(12_000);
        assert.equal((await list(noisy)).statusCode, 200, 'one unit back after Retry-After');
        assert.equal((await list(noisy)).statusCode, 429);
      });

      it('records a throttled tenant in its audit trail, sampled: once, then at most once a minute with the count', async () => {
        const tenant = await newTenant('Sampled', { rates: { requests: { limit: 1, windowSeconds: 3600 } } });
        const call = () => test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/keys`, token: tenant.apiKey });
        assert.equal((await call()).statusCode, 200);
        for (let index = 0; index < 20; index += 1) assert.equal((await call()).statusCode, 429);
        // The event is written off the request's path.
        await waitFor(async () => (await tenantEvents(tenant.tenantId, 'limit.exceeded')).length === 1);
        clock.advance(61_000);
        // The bucket (one unit an hour) is still empty a minute later.
        assert.equal((await call()).statusCode, 429);
        await waitFor(async () => (await tenantEvents(tenant.tenantId, 'limit.exceeded')).length === 2);
        const [latest, first] = await tenantEvents(tenant.tenantId, 'limit.exceeded');
        assert.ok(latest !== undefined && first !== undefined);
        assert.equal(first.outcome, 'denied');
        assert.deepEqual(first.detail, { policy: 'requests', limit: 1, windowSeconds: 3600, refusedSinceLastEvent: 0 });
        assert.equal(first.personal_data, true, "the caller's address and user agent are kept, sealed");
        assert.equal(latest.detail['refusedSinceLastEvent'], 19);
        assert.equal(latest.actor_kind, 'api-key');
      });

      it('charges transit batches by their items against the crypto bucket', async () => {
        const tenant = await newTenant('Crypto', { rates: { crypto: { limit: 10, windowSeconds: 60 } } });
        const encrypt = (items: number) =>
          test.call({
            method: 'POST',
            url: `/v1/tenants/${tenant.tenantId}/crypto/encrypt`,
            token: tenant.apiKey,
            body: { items: Array.from({ length: items }, () => ({ plaintext: 'aGVsbG8=' })) },
          });
        const first = await encrypt(8);
        assert.equal(first.statusCode, 200);
        assert.equal(first.headers['ratelimit'], '"crypto";r=2;t=48');
        const refused = await encrypt(3);
        assertProblem(refused, 429, 'rate_limited');
        assert.equal(refused.headers['retry-after'], '6');
        assert.equal((await encrypt(2)).statusCode, 200, 'a smaller batch still fits');
        // Invalid batches are refused by validation before they cost anything.
        assertProblem(await test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/crypto/encrypt`, token: tenant.apiKey, body: { items: [] } }), 400, 'validation_failed');
      });

      it("limits password logins into a tenant with its login bucket, whoever's accounts they are", async () => {
        const tenant = await newTenant('Logins', { rates: { login: { limit: 2, windowSeconds: 600 } } });
        const login = (email: string) => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId: tenant.tenantId, email, password: 'not the password at all' } });
        assertProblem(await login('a@example.org'), 401, 'invalid_credentials');
        assertProblem(await login('b@example.org'), 401, 'invalid_credentials');
        const refused = await login('c@example.org');
        assertProblem(refused, 429, 'rate_limited');
        assert.match(String(refused.headers['ratelimit-policy']), /"login";q=2;w=600/);
      });

      it("limits a tenant's audit exports with the export bucket", async () => {
        const tenant = await newTenant('Exports', { rates: { export: { limit: 1, windowSeconds: 600 } } });
        const exportTrail = () => test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/audit/export`, token: tenant.apiKey });
        assert.equal((await exportTrail()).statusCode, 200);
        assertProblem(await exportTrail(), 429, 'rate_limited');
      });

      it('limits anonymous calls and failed authentications per client address, and only that address', async () => {
        const from = (remoteAddress: string, headers: Record<string, string> = {}) =>
          test.app.inject({ method: 'GET', url: '/v1/me', remoteAddress, headers });
        const { adminToken } = await newTenant('Addresses');
        for (let index = 0; index < 40; index += 1) assert.equal((await from('192.0.2.10', { authorization: 'Bearer not-a-token' })).statusCode, 401);
        const refused = await from('192.0.2.10', { authorization: 'Bearer not-a-token' });
        assert.equal(refused.statusCode, 401, 'the 41st failure is charged but the answer is still 401');
        // Now the address is over its bucket: even a valid token is refused, before it is checked.
        const blocked = await from('192.0.2.10', { authorization: `Bearer ${adminToken}` });
        assertProblem(blocked, 429, 'rate_limited');
        assert.ok(Number(blocked.headers['retry-after']) >= 1);
        assert.equal((await from('192.0.2.11', { authorization: `Bearer ${adminToken}` })).statusCode, 200, 'another address is not affected');
        for (let index = 0; index < 40; index += 1) await test.app.inject({ method: 'GET', url: '/.well-known/jwks.json', remoteAddress: '192.0.2.12' });
        assertProblem(await test.app.inject({ method: 'GET', url: '/.well-known/jwks.json', remoteAddress: '192.0.2.12' }), 429, 'rate_limited');
        assert.equal((await test.app.inject({ method: 'GET', url: '/healthz', remoteAddress: '192.0.2.12' })).statusCode, 200, 'probes are never limited');
      });

      it('counts refusals in the metrics by route and policy, and the busiest tenants in a bounded gauge', async () => {
        const text = await test.app.metrics.registry.metrics();
        assert.match(text, /bulwark_rate_limited_total\{route="\/v1\/tenants\/:tenantId\/collections\/:collection\/records",policy="requests"\} \d+/);
        assert.match(text, /bulwark_rate_limited_total\{route="\/v1\/me",policy="anonymous"\} 1/);
        assert.match(text, /bulwark_http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/v1\/tenants\/:tenantId\/keys"\} \d+/);
        assert.match(text, /bulwark_tenant_requests_top\{tenant_id="[0-9a-f]{12}"\} \d+/);
        const tenantSeries = text.split('\n').filter((line) => line.startsWith('bulwark_tenant_requests_top{'));
        assert.ok(tenantSeries.length > 0 && tenantSeries.length <= 10);
        const requestSeries = text.split('\n').filter((line) => line.startsWith('bulwark_http_request'));
        assert.ok(requestSeries.every((line) => !/tenant_id|"[^"]*[0-9a-f]{12}[^"]*"/.test(line)), 'request series never carry tenant ids');
      });
    });

    describe('quotas', () => {
      it('refuses records past the count and bytes quotas with 403 quota_exceeded, writing nothing; deleting frees room', async () => {
        const tenant = await newTenant('Quota', { quotas: { records: 2, recordBytes: 40 } });
        const first = newId();
        assert.equal((await putRecord(tenant, { n: 1 }, first)).statusCode, 201);
        assert.equal((await putRecord(tenant, { n: 2 })).statusCode, 201);
        const refused = await putRecord(tenant, { n: 3 });
        const problem = assertProblem(refused, 403, 'quota_exceeded');
        assert.deepEqual({ quota: problem['quota'], limit: problem['limit'], used: problem['used'] }, { quota: 'records', limit: 2, used: 2 });
        const created = await test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/collections/notes/records`, token: tenant.apiKey, body: { data: { n: 4 } } });
        assertProblem(created, 403, 'quota_exceeded');
        const usage = await getLimits(tenant.tenantId);
        assert.deepEqual(usage.quotas.records, { limit: 2, used: 2, source: 'override' });
        assert.equal(usage.quotas.recordBytes.used, 14, 'two records of {"n":1}');
        // Growing a record counts its new size.
        assertProblem(await putRecord(tenant, { n: 'x'.repeat(40) }, first), 403, 'quota_exceeded');
        assert.equal((await putRecord(tenant, { n: 'x'.repeat(20) }, first)).statusCode, 200);
        assert.equal((await getLimits(tenant.tenantId)).quotas.recordBytes.used, 7 + 28);
        assert.equal((await test.call({ method: 'DELETE', url: `/v1/tenants/${tenant.tenantId}/collections/notes/records/${first}`, token: tenant.apiKey })).statusCode, 204);
        assert.deepEqual((await getLimits(tenant.tenantId)).quotas.records.used, 1);
        assert.equal((await putRecord(tenant, { n: 5 })).statusCode, 201, 'room again');
        assert.equal((await tenantEvents(tenant.tenantId, 'record.create')).length, 3, 'refused writes left no audit event');
      });

      it('holds under concurrent writers: exactly the quota gets in', async () => {
        const tenant = await newTenant('Racing', { quotas: { records: 5 } });
        const results = await Promise.all(Array.from({ length: 12 }, (_, index) => putRecord(tenant, { index })));
        assert.equal(results.filter((response) => response.statusCode === 201).length, 5);
        assert.ok(results.every((response) => response.statusCode === 201 || response.statusCode === 403));
        assert.equal((await getLimits(tenant.tenantId)).quotas.records.used, 5);
      });

      it("counts a tenant's records from before the counter on its first write", async () => {
        const tenant = await newTenant('Earlier');
        for (let index = 0; index < 3; index += 1) assert.equal((await putRecord(tenant, { index })).statusCode, 201);
        // As if the records predated the counter (written before this version): the row is gone.
        await test.storage.asOwner('DELETE FROM tenant_usage WHERE tenant_id = $1', [tenant.tenantId]);
        assert.equal((await getLimits(tenant.tenantId)).quotas.records.used, 3, 'counted by a read without creating the row');
        assert.equal((await setLimits(tenant.tenantId, { quotas: { records: 4 } })).statusCode, 200);
        assert.equal((await putRecord(tenant, { index: 3 })).statusCode, 201);
        assertProblem(await putRecord(tenant, { index: 4 }), 403, 'quota_exceeded');
        const rows = await test.storage.asOwner('SELECT records::int AS records FROM tenant_usage WHERE tenant_id = $1', [tenant.tenantId]);
        assert.deepEqual(rows, [{ records: 4 }]);
      });

      it('refuses users past the users quota, a whole import batch included', async () => {
        const tenant = await newTenant('Users', { quotas: { users: 3 } });
        const create = () => test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/users`, token: tenant.apiKey, body: { email: `u-${newId()}@example.org` } });
        assert.equal((await create()).statusCode, 201);
        const batch = Array.from({ length: 2 }, () => ({ email: `i-${newId()}@example.org`, credential: { algorithm: 'md5', hash: 'f'.repeat(32) } }));
        const imported = await test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/user-imports`, token: tenant.apiKey, body: { users: batch } });
        assertProblem(imported, 403, 'quota_exceeded');
        assert.equal((await getLimits(tenant.tenantId)).quotas.users.used, 2, 'the admin and one user; the batch wrote nothing');
        assert.equal((await create()).statusCode, 201);
        assertProblem(await create(), 403, 'quota_exceeded');
      });

      it('refuses API keys past the quota of live keys; revoking one frees room', async () => {
        const tenant = await newTenant('Keys', { quotas: { apiKeys: 2 } });
        const create = () => test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/api-keys`, token: tenant.adminToken, body: { name: 'extra' } });
        const second = await create();
        assert.equal(second.statusCode, 201, 'the test key and this one');
        assertProblem(await create(), 403, 'quota_exceeded');
        const revoke = await test.call({ method: 'DELETE', url: `/v1/tenants/${tenant.tenantId}/api-keys/${second.json<{ id: string }>().id}`, token: tenant.adminToken });
        assert.equal(revoke.statusCode, 204);
        assert.equal((await create()).statusCode, 201);
      });
    });

    it("keeps tenant_limits and tenant_usage apart by RLS: under tenant A's context, B's rows are neither seen nor written", async () => {
      const [a, b] = [await newTenant('Isolated A'), await newTenant('Isolated B')];
      assert.equal((await setLimits(b.tenantId, { maxConcurrentRequests: 5 })).statusCode, 200);
      assert.equal((await putRecord(b, { owner: 'b' })).statusCode, 201);
      const db = test.storage.db;
      const seen = await db.withTenant(a.tenantId, async (tx) => ({
        limits: (await tx.query('SELECT tenant_id FROM tenant_limits')).rows,
        usage: (await tx.query('SELECT tenant_id FROM tenant_usage')).rows,
        updated: [
          (await tx.query("UPDATE tenant_limits SET overrides = '{}'::jsonb WHERE tenant_id = $1", [b.tenantId])).rowCount,
          (await tx.query('UPDATE tenant_usage SET records = 0 WHERE tenant_id = $1', [b.tenantId])).rowCount,
        ],
      }));
      assert.deepEqual(seen, { limits: [], usage: [], updated: [0, 0] });
      for (const insert of ["INSERT INTO tenant_limits (tenant_id, overrides) VALUES ($1, '{}'::jsonb)", 'INSERT INTO tenant_usage (tenant_id, records, record_bytes) VALUES ($1, 0, 0)']) {
        await assert.rejects(db.withTenant(a.tenantId, (tx) => tx.query(insert, [b.tenantId])), /row-level security/);
      }
      // B's rows are intact, as B sees them.
      const own = await getLimits(b.tenantId);
      assert.deepEqual(own.overrides, { maxConcurrentRequests: 5 });
      assert.equal(own.quotas.records.used, 1);
    });

    describe('the limits routes', () => {
      it('show effective limits with their source; overrides replace each other and are audited in the platform trail', async () => {
        const tenant = await newTenant('Described');
        const before = await getLimits(tenant.tenantId);
        assert.equal(before.rates.requests.source, 'default');
        assert.deepEqual(before.rates.requests, { limit: null, windowSeconds: null, source: 'default' }, 'the test config lifts the default rates');
        assert.deepEqual(before.quotas.users, { limit: 10000, used: 1, source: 'default' });
        assert.deepEqual(before.overrides, {});
        assert.equal(before.updatedAt, null);
        const set = await setLimits(tenant.tenantId, { rates: { login: { limit: 10, windowSeconds: 60 } }, quotas: { apiKeys: 'unlimited' }, maxConcurrentRequests: 4 });
        assert.equal(set.statusCode, 200, set.body);
        const after = set.json<LimitsDocument>();
        assert.deepEqual(after.rates.login, { limit: 10, windowSeconds: 60, source: 'override' });
        assert.deepEqual(after.quotas.apiKeys, { limit: null, used: 1, source: 'override' });
        assert.deepEqual(after.maxConcurrentRequests, { limit: 4, source: 'override' });
        assert.ok(after.updatedAt !== null);
        // A tenant admin reads its own limits; the PUT replaced, so this one clears the rest.
        assert.equal((await setLimits(tenant.tenantId, { maxConcurrentRequests: 8 })).statusCode, 200);
        const own = await getLimits(tenant.tenantId, tenant.adminToken);
        assert.deepEqual(own.overrides, { maxConcurrentRequests: 8 });
        assert.equal(own.rates.login.source, 'default');
        const events = await platformEvents('limits.update');
        const mine = events.filter((event) => event.target?.id === tenant.tenantId);
        assert.equal(mine.length, 2);
        assert.deepEqual(mine[0]?.detail, { overrides: { maxConcurrentRequests: 8 } });
      });

      it('refuses bad overrides with 400 and changes nothing; unknown tenants answer 404; tenants cannot set their own', async () => {
        const tenant = await newTenant('Refusing', { quotas: { records: 7 } });
        const before = await test.storage.asOwner('SELECT overrides, updated_at FROM tenant_limits WHERE tenant_id = $1', [tenant.tenantId]);
        const bad = [
          { rates: { requests: { limit: 0, windowSeconds: 1 } } },
          { rates: { requests: { limit: 5 } } },
          { rates: { requests: { limit: 5, windowSeconds: 86_401 } } },
          { rates: { bogus: { limit: 5, windowSeconds: 1 } } },
          { rates: { requests: 'none' } },
          { quotas: { records: -1 } },
          { quotas: { records: 1.5 } },
          { quotas: { records: '5' } },
          { maxConcurrentRequests: 0 },
          { extra: true },
          [],
          'unlimited',
          null,
        ];
        for (const body of bad) assertProblem(await setLimits(tenant.tenantId, JSON.stringify(body)), 400, 'validation_failed');
        const proto = await test.call({ method: 'PUT', url: `/v1/tenants/${tenant.tenantId}/limits`, token: test.operatorToken, body: '{"__proto__":{"x":1}}' });
        assert.equal(proto.statusCode, 400);
        assert.deepEqual(await test.storage.asOwner('SELECT overrides, updated_at FROM tenant_limits WHERE tenant_id = $1', [tenant.tenantId]), before);
        assertProblem(await setLimits('0123456789ab', {}), 404, 'not_found');
        assertProblem(await setLimits('not-an-id', {}), 400, 'validation_failed');
        assertProblem(await setLimits(tenant.tenantId, {}, tenant.adminToken), 403, 'forbidden');
        assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/limits`, token: (await newTenant('Other')).apiKey }), 404, 'not_found');
      });

      it('lets a platform auditor read limits but not set them', async () => {
        const tenant = await newTenant('Audited limits');
        const email = `auditor-${newId()}@operator.example`;
        const password = `patient river ${newId()} lamp`;
        const created = await test.call({ method: 'POST', url: '/v1/operators', token: test.operatorToken, body: { email, password, role: 'platform-auditor', mustChangePassword: false } });
        assert.equal(created.statusCode, 201, created.body);
        const login = await test.call({ method: 'POST', url: '/v1/auth/operator/login', body: { email, password } });
        const auditorToken = login.json<{ accessToken: string }>().accessToken;
        await getLimits(tenant.tenantId, auditorToken);
        assertProblem(await setLimits(tenant.tenantId, {}, auditorToken), 403, 'forbidden');
      });
    });

    it('caps requests in flight per tenant on PostgreSQL: a second request while one waits gets 429', { skip: engine === 'pglite' ? 'PGlite runs one transaction at a time; nothing can wait on a row lock' : false }, async () => {
      const tenant = await newTenant('Concurrent', { maxConcurrentRequests: 1 });
      const id = newId();
      assert.equal((await putRecord(tenant, { n: 1 }, id)).statusCode, 201);
      const blocker = new pg.Client({ connectionString: test.storage.ownerUrl });
      await blocker.connect();
      try {
        await blocker.query('BEGIN');
        await blocker.query('SELECT 1 FROM records WHERE tenant_id = $1 AND id = $2 FOR UPDATE', [tenant.tenantId, id]);
        const waiting = putRecord(tenant, { n: 2 }, id);
        await new Promise((resolve) => setTimeout(resolve, 200));
        const refused = await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/keys`, token: tenant.apiKey });
        assertProblem(refused, 429, 'concurrency_limit_exceeded');
        assert.equal(refused.headers['retry-after'], '1');
        await blocker.query('COMMIT');
        assert.equal((await waiting).statusCode, 200);
        assert.equal((await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/keys`, token: tenant.apiKey })).statusCode, 200, 'the slot is free again');
      } finally {
        await blocker.end();
      }
    });
  });
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail('condition not met within 2 s');
}
