import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { newId } from '../../platform/ids.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem, rawCall } from '../../testing/security-suite.ts';

interface TenantBody {
  id: string;
  name: string;
  region: string;
  status: string;
  createdAt: string;
  updatedAt: string;
}

for (const engine of engines) {
  describe(`tenancy routes [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let now = new Date('2030-01-01T00:00:00.000Z');
    const clock = { now: () => new Date(now.getTime()) };

    const operator = (method: 'GET' | 'POST' | 'PATCH', url: string, body?: unknown) => test.call({ method, url, token: test.operatorToken, body });
    const tenantCount = async () => {
      const { rows } = await test.storage.db.withPlatform((tx) => tx.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants'));
      return rows[0]?.n ?? -1;
    };
    const create = async (body: unknown) => {
      const response = await operator('POST', '/v1/tenants', body);
      assert.equal(response.statusCode, 201, response.body);
      return response.json<TenantBody>();
    };

    before(async () => {
      test = await createTestApp(engine, { config: { regions: 'local,eu-west' }, clock });
    });
    after(() => test.close());

    it('creates an active tenant in the default region, readable by id', async () => {
      const created = await create({ name: 'Acme' });
      assert.match(created.id, /^[0-9a-f]{12}$/);
      assert.deepEqual({ ...created, id: '' }, {
        id: '',
        name: 'Acme',
        region: 'local',
        status: 'active',
        createdAt: now.toISOString(),
        updatedAt: now.toISOString(),
      });
      const read = await operator('GET', `/v1/tenants/${created.id}`);
      assert.equal(read.statusCode, 200);
      assert.deepEqual(read.json(), created);
    });

    it('creates in an explicitly allowed region; a region not configured is 422 region_not_allowed', async () => {
      assert.equal((await create({ name: 'Euro', region: 'eu-west' })).region, 'eu-west');
      const before = await tenantCount();
      const refused = await operator('POST', '/v1/tenants', { name: 'Far', region: 'us-east' });
      assert.deepEqual(assertProblem(refused, 422, 'region_not_allowed').allowedRegions, ['local', 'eu-west']);
      // Not even a region name: schema validation.
      assertProblem(await operator('POST', '/v1/tenants', { name: 'Far', region: 'EU_WEST' }), 400, 'validation_failed');
      assertProblem(await operator('POST', '/v1/tenants', { name: 'Far', region: '' }), 400, 'validation_failed');
      assert.equal(await tenantCount(), before);
    });

    it('bad input is 400 and creates nothing', async () => {
      const before = await tenantCount();
      const invalid: unknown[] = [
        {},
        { name: '' },
        { name: '   ' },
        { name: '\t\n' },
        { name: 'x'.repeat(201) },
        { name: 42 },
        { name: null },
        { name: ['Acme'] },
        { name: { first: 'Acme' } },
        { name: true },
        { name: 'Acme', region: 7 },
        { name: 'Acme', id: newId() },
        { name: 'Acme', status: 'suspended' },
        { name: 'Acme', extra: 1 },
        // PostgreSQL text cannot hold NUL: refused as input, not a 500.
        { name: 'Ac\u0000me' },
        [],
        'Acme',
        null,
      ];
      for (const body of invalid) {
        const response = await rawCall(test, { method: 'POST', url: '/v1/tenants', token: test.operatorToken, payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
        assert.equal(response.statusCode, 400, `${JSON.stringify(body)}: ${response.body}`);
        assertProblem(response, 400, 'validation_failed');
      }
      assertProblem(
        await rawCall(test, { method: 'POST', url: '/v1/tenants', token: test.operatorToken, payload: '{"name":', headers: { 'content-type': 'application/json' } }),
        400,
        'malformed_json',
      );
      assertProblem(
        await rawCall(test, { method: 'POST', url: '/v1/tenants', token: test.operatorToken, payload: 'name=Acme', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
        415,
        'unsupported_media_type',
      );
      assert.equal(await tenantCount(), before);
      // The boundary itself is accepted.
      assert.equal((await create({ name: 'x'.repeat(200) })).name.length, 200);
      assert.equal((await create({ name: 'Ünïcødé 名前 🚀' })).name, 'Ünïcødé 名前 🚀');
      assert.equal(await tenantCount(), before + 2);
    });

    it('lists every tenant exactly once with keyset pagination', async () => {
      for (let index = 0; index < 5; index += 1) await create({ name: `Paged ${index}` });
      const expected = (await test.storage.db.withPlatform((tx) => tx.query<{ id: string }>('SELECT id FROM tenants'))).rows.map((row) => row.id).sort();
      assert.ok(expected.length >= 7);

      const seen: string[] = [];
      const sizes: number[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 50; page += 1) {
        const url: string = `/v1/tenants?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`;
        const response = await operator('GET', url);
        assert.equal(response.statusCode, 200);
        const body = response.json<{ items: TenantBody[]; nextCursor: string | null }>();
        seen.push(...body.items.map((item) => item.id));
        sizes.push(body.items.length);
        cursor = body.nextCursor;
        if (cursor === null) break;
      }
      assert.equal(cursor, null);
      assert.deepEqual(seen, expected);
      assert.ok(sizes.slice(0, -1).every((size) => size === 2));

      const all = (await operator('GET', '/v1/tenants')).json<{ items: TenantBody[]; nextCursor: string | null }>();
      assert.deepEqual(all.items.map((item) => item.id), expected);
      assert.equal(all.nextCursor, null);
      assertProblem(await operator('GET', '/v1/tenants?cursor=bm9wZQ'), 400, 'invalid_cursor');
      assertProblem(await operator('GET', '/v1/tenants?limit=0'), 400, 'validation_failed');
      assertProblem(await operator('GET', '/v1/tenants?limit=201'), 400, 'validation_failed');
    });

    it('renames, suspends and reactivates; updatedAt follows the clock', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Lifecycle');
      const created = (await operator('GET', `/v1/tenants/${tenantId}`)).json<TenantBody>();
      const records = `/v1/tenants/${created.id}/collections/c/records`;

      now = new Date(now.getTime() + 60_000);
      const renamed = await operator('PATCH', `/v1/tenants/${created.id}`, { name: 'Renamed' });
      assert.equal(renamed.statusCode, 200);
      assert.deepEqual(renamed.json(), { ...created, name: 'Renamed', updatedAt: now.toISOString() });

      now = new Date(now.getTime() + 60_000);
      const suspended = await operator('PATCH', `/v1/tenants/${created.id}`, { status: 'suspended' });
      assert.deepEqual(suspended.json(), { ...created, name: 'Renamed', status: 'suspended', updatedAt: now.toISOString() });
      assert.equal((await operator('GET', `/v1/tenants/${created.id}`)).json<TenantBody>().status, 'suspended');
      assertProblem(await test.call({ method: 'GET', url: records, token: apiKey }), 403, 'tenant_suspended');
      // Suspending twice is harmless.
      assert.equal((await operator('PATCH', `/v1/tenants/${created.id}`, { status: 'suspended' })).statusCode, 200);

      const reactivated = await operator('PATCH', `/v1/tenants/${created.id}`, { status: 'active', name: 'Back' });
      assert.equal(reactivated.statusCode, 200);
      assert.equal(reactivated.json<TenantBody>().status, 'active');
      assert.equal(reactivated.json<TenantBody>().name, 'Back');
      assert.equal((await test.call({ method: 'GET', url: records, token: apiKey })).statusCode, 200);
    });

    it('a bad patch is 400 and changes nothing', async () => {
      const created = await create({ name: 'Unpatched' });
      for (const body of [{}, { name: '' }, { name: ' ' }, { name: 'x'.repeat(201) }, { status: 'deleted' }, { status: 'offboarding' }, { status: 'SUSPENDED' }, { status: null }, { region: 'eu-west' }, { id: newId() }, { name: 'ok', extra: true }, null, []]) {
        const response = await rawCall(test, { method: 'PATCH', url: `/v1/tenants/${created.id}`, token: test.operatorToken, payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
        assert.equal(response.statusCode, 400, `${JSON.stringify(body)}: ${response.body}`);
        assertProblem(response, 400, 'validation_failed');
      }
      assert.deepEqual((await operator('GET', `/v1/tenants/${created.id}`)).json(), created);
    });

    it('an unknown tenant id is 404 not_found; a malformed one is 400', async () => {
      const unknown = newId();
      assertProblem(await operator('GET', `/v1/tenants/${unknown}`), 404, 'not_found');
      assertProblem(await operator('PATCH', `/v1/tenants/${unknown}`, { name: 'Ghost' }), 404, 'not_found');
      assertProblem(await operator('GET', `/v1/tenants/${unknown}/api-keys`), 404, 'not_found');
      for (const malformed of ['ABCDEFABCDEF', 'abcdefabcde', 'abcdefabcdef0', 'ghijklmnopqr', '0', 'a'.repeat(129)]) {
        for (const [method, body] of [['GET', undefined], ['PATCH', { name: 'X' }]] as const) {
          const problem = assertProblem(await operator(method, `/v1/tenants/${malformed}`, body), 400, 'validation_failed');
          if (malformed.length <= 128) assert.deepEqual(problem.errors?.map((error) => [error.in, error.path]), [['params', '/tenantId']]);
        }
      }
    });
  });
}
