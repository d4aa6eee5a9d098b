import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { errorCodes, type ErrorCode } from '../platform/errors/codes.ts';
import { engineSkip, engines } from '../testing/engines.ts';
import {
  arbitraryHostileValue,
  arbitraryPathSegment,
  encodeSegment,
  hostileHeaderValues,
  hostileJsonTexts,
  hostileStrings,
  hostileValues,
  invalidUtf8Bodies,
  wrongContentTypes,
} from '../testing/hostile-input.ts';
import { RouteFixture, routeSamples, type SuiteTenant, type Targets } from '../testing/route-samples.ts';
import { assertNoLeak, fillPath, type Operation } from '../testing/security-suite.ts';

/**
 * The malicious-input corpus against every route of the OpenAPI document, on both engines: hostile path
 * parameters, query strings, bodies, content types, encodings and headers. Every answer is a 2xx or a
 * problem+json 4xx with a registered code, never a 5xx; a refused request changes nothing in the database;
 * accepted data reads back exactly as sent; the server is healthy afterwards. The fast-check part prints
 * its seed; rerun one with BULWARK_FUZZ_SEED=<seed>.
 */

/** What refusals legitimately write: failed logins count toward lockout and are audited (as failures). */
const refusalTables = new Set([
  'audit_events',
  'audit_heads',
  'audit_checkpoints',
  'audit_subject_keys',
  'audit_deliveries',
  'platform_audit_events',
  'platform_audit_heads',
  'platform_audit_checkpoints',
  'platform_audit_subject_keys',
  'platform_audit_deliveries',
  'login_throttles',
  'operator_login_throttles',
  'agent_pairing_throttles',
]);
/** Columns that move on use rather than on change (key use stamps, encryption counters flushed in the background). */
const volatileColumns = ['last_used_at', 'encryptions'];

/** The request parts a route documents, read from its OpenAPI operation. */
interface RouteShape {
  operation: Operation;
  pathParameters: string[];
  queryParameters: string[];
  hasBody: boolean;
}

interface OpenApiOperation {
  parameters?: { in: string; name: string }[];
  requestBody?: unknown;
}

const seed = Number(process.env['BULWARK_FUZZ_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const fuzzRuns = Number(process.env['BULWARK_FUZZ_RUNS'] ?? 150);

for (const engine of engines) {
  describe(`malicious-input corpus [${engine}]`, { skip: engineSkip(engine) }, () => {
    let fixture: RouteFixture;
    let tenant: SuiteTenant;
    let values: Targets;
    let shapes: RouteShape[];
    let fingerprintSql: string;
    let baseline: string;
    /** The transaction snapshot read just before the baseline, when no transaction was in flight then. */
    let baselineSnapshot: string | undefined;
    let probes = 0;
    /** Refusals settled by the snapshot alone, and those that needed the fingerprint (for the diagnostic). */
    const checks = { bySnapshot: 0, byFingerprint: 0 };

    const tokenFor = (operation: Operation): string | undefined => {
      const auth = fixture.authOf(operation);
      if (auth === 'tenant') return tenant.apiKey;
      if (auth === 'operator') return fixture.test.operatorToken;
      if (auth === 'self') return values['accessToken'];
      // A public route that checks a credential of its own (a service's) gets it: the checks behind it are probed too.
      return routeSamples[operation.key]?.credential?.(values);
    };

    const fingerprint = async (): Promise<string> => {
      const rows = await fixture.test.storage.asOwner(fingerprintSql);
      return JSON.stringify(rows);
    };
    /**
     * `xmin:xmax:in-flight ids`: xmax is the next transaction id, and every write takes one. Any connection sees
     * the same; the app's single-statement tenant query is the cheapest way to ask (one round trip on PGlite).
     */
    const transactionSnapshot = async () =>
      String((await fixture.test.storage.db.tenantQuery<{ s: string }>(tenant.tenantId, 'SELECT pg_current_snapshot()::text AS s')).rows[0]?.s);
    /**
     * Reading every table costs milliseconds, and most requests write nothing at all. While no transaction has
     * taken an id since a snapshot read just before the baseline, with none in flight then (a write still to
     * commit would not move it again), no row can differ from the baseline. Anything else (a refusal's failure
     * event, a write in another database of the same server) means reading the tables.
     */
    const untouched = (snapshot: string) => baselineSnapshot !== undefined && snapshot === baselineSnapshot;
    const settle = async (snapshot: string) => {
      baseline = await fingerprint();
      baselineSnapshot = /^(\d+):\1:$/.test(snapshot) ? snapshot : undefined;
    };
    /** After an accepted request: the database as it now is becomes the baseline. */
    const takeBaseline = async () => {
      const snapshot = await transactionSnapshot();
      if (!untouched(snapshot)) await settle(snapshot);
    };
    const assertUnchanged = async (message: string) => {
      const snapshot = await transactionSnapshot();
      if (untouched(snapshot)) {
        checks.bySnapshot += 1;
        return;
      }
      checks.byFingerprint += 1;
      const before = baseline;
      await settle(snapshot);
      assert.equal(baseline, before, message);
    };

    /**
     * Sends one hostile request and holds it to the contract. A refusal must leave the database as it was;
     * an acceptance becomes the new baseline (the route did its job with odd but valid input).
     */
    async function probe(label: string, request: InjectOptions): Promise<LightMyRequestResponse> {
      probes += 1;
      const response = await fixture.test.app.inject(request);
      const where = `${label} [${String(request.method)} ${typeof request.url === 'string' ? request.url.slice(0, 120) : ''}]`;
      assert.ok(response.statusCode < 500, `${where}: ${response.statusCode} ${response.body.slice(0, 300)}`);
      // Accepted input comes back as sent (a tenant named "' OR 1=1--" is one): the leak check looks past it.
      assertNoLeak(response.statusCode < 400 ? withoutEchoes(response.body) : response.body, fixture.secrets, where);
      for (const [name, value] of Object.entries(response.headers)) {
        assert.doesNotMatch(String(value), /[\r\n]/, `${where}: header ${name} carries CR/LF`);
        assert.ok(!['x-injected', 'set-cookie'].includes(name), `${where}: injected header ${name}`);
      }
      const contentType = response.headers['content-type'] ?? '';
      if (response.statusCode >= 400) {
        assert.match(contentType, /^application\/problem\+json/, `${where}: ${contentType}`);
        const problem = response.json<{ code: ErrorCode; status: number; detail: string }>();
        assert.ok(Object.hasOwn(errorCodes, problem.code), `${where}: unregistered code ${problem.code}`);
        assert.equal(errorCodes[problem.code].status, response.statusCode, `${where}: ${problem.code}`);
        // Input is never reflected unescaped: a problem document holds no raw markup characters.
        assert.doesNotMatch(response.body, /[<>]/, `${where}: raw markup in the problem`);
        await assertUnchanged(`${where}: a refused request changed the database (${problem.code})`);
      } else {
        if (response.body.length > 0 && request.method !== 'HEAD') assert.match(contentType, /^(application\/json|application\/x-ndjson|text\/csv)/, `${where}: ${contentType}`);
        // Accepted: the route did its job with odd but valid input (an export audits itself, even as a GET).
        await takeBaseline();
      }
      return response;
    }

    /** A form route (the SAML ACS) takes its fields form-encoded; everything else takes JSON. */
    const isForm = (shape: RouteShape) => routeSamples[shape.operation.key]?.form === true;
    const payloadOf = (shape: RouteShape, body: unknown): string => {
      if (!isForm(shape) || body === null || typeof body !== 'object' || Array.isArray(body)) return JSON.stringify(body);
      return new URLSearchParams(Object.entries(body).map(([key, value]): [string, string] => [key, typeof value === 'string' ? value : JSON.stringify(value)])).toString();
    };

    const baseRequest = (shape: RouteShape, overrides: { url?: string; payload?: string | Buffer; contentType?: string; headers?: Record<string, string> } = {}): InjectOptions => {
      const token = tokenFor(shape.operation);
      const body = fixture.sampleBody(shape.operation, values);
      const payload = overrides.payload ?? (body === undefined ? undefined : payloadOf(shape, body));
      // A JSON text sent to a form route is read as a form: refused as invalid, like any garbage form.
      const contentType = overrides.contentType ?? (isForm(shape) ? 'application/x-www-form-urlencoded' : 'application/json');
      return {
        method: shape.operation.method,
        // The corpus comes from its own address: its failed logins lock that source out, not the fixture's.
        remoteAddress: '198.51.100.66',
        url: overrides.url ?? fixture.url(shape.operation, values),
        headers: {
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          ...(payload === undefined ? {} : { 'content-type': contentType }),
          ...overrides.headers,
        },
        ...(payload === undefined ? {} : { payload }),
      };
    };

    before(async () => {
      fixture = await RouteFixture.start(engine);
      tenant = await fixture.tenant('Corpus tenant');
      values = await fixture.targets(tenant);
      const document = fixture.test.app.swagger() as unknown as { paths: Record<string, Record<string, OpenApiOperation>> };
      shapes = fixture.operations.map((operation) => {
        const documented = document.paths[operation.path]?.[operation.method.toLowerCase()] ?? {};
        const parameters = documented.parameters ?? [];
        return {
          operation,
          pathParameters: parameters.filter((parameter) => parameter.in === 'path').map((parameter) => parameter.name),
          queryParameters: parameters.filter((parameter) => parameter.in === 'query').map((parameter) => parameter.name),
          hasBody: documented.requestBody !== undefined,
        };
      });
      const tables = await fixture.test.storage.asOwner("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
      const volatile = `ARRAY[${volatileColumns.map((column) => `'${column}'`).join(', ')}]`;
      const parts = tables
        .map((row) => String(row['tablename']))
        .filter((table) => !refusalTables.has(table))
        .map((table) => `SELECT '${table}' AS t, count(*)::int AS n, md5(coalesce(string_agg((to_jsonb(x) - ${volatile})::text, '|' ORDER BY (to_jsonb(x) - ${volatile})::text), '')) AS h FROM ${table} x`);
      // A refusal may write failure events, never a success.
      parts.push("SELECT 'audit successes' AS t, count(*)::int AS n, '' AS h FROM audit_events WHERE outcome = 'success'");
      parts.push("SELECT 'platform audit successes' AS t, count(*)::int AS n, '' AS h FROM platform_audit_events WHERE outcome = 'success'");
      fingerprintSql = parts.join(' UNION ALL ');
      await takeBaseline();
    });
    after(() => fixture.close());

    it('reads the request shape of every documented route', () => {
      assert.ok(shapes.length >= 80, `${shapes.length} routes`);
      assert.ok(shapes.filter((shape) => shape.hasBody).length >= 30);
      for (const shape of shapes) {
        assert.deepEqual(shape.pathParameters.sort(), [...shape.operation.path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]).sort(), shape.operation.key);
        if (shape.hasBody) assert.notEqual(fixture.sampleBody(shape.operation, values), undefined, `${shape.operation.key} has a sample body`);
      }
    });

    it('hostile path parameters: refused with 400 or 404, nothing changes', async () => {
      const segments = hostileStrings.filter((value) => value.length > 0);
      for (const [index, shape] of shapes.entries()) {
        for (const parameter of shape.pathParameters) {
          for (const segment of slice(segments, index, perParameter)) {
            const url = fillPath(shape.operation.path, { ...values, [parameter]: encodeSegment(segment) });
            const response = await probe(`${shape.operation.key} {${parameter}}`, baseRequest(shape, { url }));
            // A plain word ("constructor") is a fine collection or role name; everything else is refused.
            const refused = [400, 404].includes(response.statusCode) || (/^[a-z]+$/.test(segment) && response.statusCode < 300);
            assert.ok(refused, `${shape.operation.key} {${parameter}}=${JSON.stringify(segment.slice(0, 40))}: ${response.statusCode}`);
            await restore(shape, response);
          }
        }
      }
    });

    it('hostile query strings: unknown parameters and hostile values of documented ones are refused', async () => {
      const queries = ['__proto__[polluted]=1', 'constructor[prototype][polluted]=1', 'unknownParameter=1', `x=${encodeURIComponent("' OR 1=1--")}`];
      for (const [index, shape] of shapes.entries()) {
        const path = fillPath(shape.operation.path, values);
        for (const query of queries) {
          const response = await probe(`${shape.operation.key} ?${query}`, baseRequest(shape, { url: `${path}?${query}` }));
          assert.equal(response.statusCode, 400, `${shape.operation.key} ?${query}: ${response.body.slice(0, 200)}`);
        }
        for (const parameter of shape.queryParameters) {
          for (const value of [...slice(hostileStrings, index, perParameter), '-1', '1e309', '99999999999999999999', '0x10']) {
            await probe(`${shape.operation.key} ?${parameter}`, baseRequest(shape, { url: `${path}?${parameter}=${encodeSegment(value)}` }));
          }
          // The parameter twice: an array where one value is expected.
          await probe(`${shape.operation.key} ?${parameter} twice`, baseRequest(shape, { url: `${path}?${parameter}=1&${parameter}=2` }));
        }
      }
    });

    it('hostile field values: refused, or accepted and echoed exactly as sent', async () => {
      const fieldValues = hostileValues.filter((value) => typeof value !== 'string' || value.length < 200);
      for (const [index, shape] of shapes.filter((candidate) => candidate.hasBody).entries()) {
        const sample = fixture.sampleBody(shape.operation, values);
        for (const [offset, path] of fieldPaths(sample).entries()) {
          for (const value of slice(fieldValues, index + offset, perParameter)) {
            const body = setAt(sample, path, value);
            const response = await probe(`${shape.operation.key} .${path.join('.')}`, baseRequest(shape, { payload: payloadOf(shape, body) }));
            if (response.statusCode < 300 && response.body.length > 0 && typeof value === 'string' && path.length === 1) {
              const echoed = response.json<Record<string, unknown> | null>()?.[String(path[0])];
              if (typeof echoed === 'string') assert.ok(echoed === value || echoed === asStored(value), `${shape.operation.key} .${path.join('.')} round-trips: ${JSON.stringify(echoed).slice(0, 80)}`);
            }
            await restore(shape, response);
          }
        }
      }
    });

    it('hostile JSON texts: pollution keys, duplicates, huge numbers, deep nesting, malformed JSON', async () => {
      for (const shape of shapes.filter((candidate) => candidate.hasBody)) {
        for (const text of hostileJsonTexts(fixture.sampleBody(shape.operation, values))) {
          const response = await probe(`${shape.operation.key} json ${text.slice(0, 30)}`, baseRequest(shape, { payload: text }));
          if (/__proto__|constructor|unknownField|"a":1,"a":2|NaN|Infinity|1e400|9{5000}|^\[|^\{"a":\{/.test(text) || !text.trim().startsWith('{')) {
            assert.ok(response.statusCode >= 400, `${shape.operation.key}: ${text.slice(0, 60)} accepted`);
          }
          await restore(shape, response);
        }
      }
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined, 'Object.prototype is untouched');
      assert.equal(({} as Record<string, unknown>)['isAdmin'], undefined);
    });

    it('wrong content types and invalid UTF-8 are refused with 415 or 400; a body on a route without one is refused', async () => {
      // Over every route's limit (each is at most the configured one).
      const oversized = JSON.stringify({ padding: 'x'.repeat(fixture.test.storage.config.bodyLimitBytes) });
      for (const [index, shape] of shapes.entries()) {
        const sample = fixture.sampleBody(shape.operation, values);
        const payload = JSON.stringify(sample ?? { unexpected: true });
        const wrongForRoute = wrongContentTypes.filter((type) => !(isForm(shape) && type === 'application/x-www-form-urlencoded'));
        for (const contentType of slice(wrongForRoute, index, 3)) {
          const response = await probe(`${shape.operation.key} as ${contentType}`, baseRequest(shape, { payload, contentType }));
          if (shape.hasBody || shape.operation.method !== 'GET') assert.ok([400, 415].includes(response.statusCode), `${shape.operation.key} as ${contentType}: ${response.statusCode}`);
        }
        if (!shape.hasBody) {
          // A GET's body has no meaning in HTTP and is not read; on every other method it is refused.
          const response = await probe(`${shape.operation.key} with a body`, baseRequest(shape, { payload: '{"unexpected":true}' }));
          if (shape.operation.method !== 'GET') assert.equal(response.statusCode, 400, `${shape.operation.key} takes no body: ${response.body.slice(0, 200)}`);
          continue;
        }
        for (const bytes of invalidUtf8Bodies) {
          const response = await probe(`${shape.operation.key} invalid UTF-8`, baseRequest(shape, { payload: bytes }));
          assert.ok([400, 415].includes(response.statusCode), `${shape.operation.key} invalid UTF-8: ${response.statusCode}`);
        }
        const response = await probe(`${shape.operation.key} oversized`, baseRequest(shape, { payload: oversized }));
        assert.equal(response.statusCode, 413, `${shape.operation.key} oversized`);
      }
    });

    it('hostile header values are never echoed into response headers', async () => {
      for (const shape of shapes) {
        for (const value of hostileHeaderValues) {
          const response = await probe(`${shape.operation.key} headers`, baseRequest(shape, { headers: { 'x-request-id': value, 'user-agent': value, 'x-forwarded-for': value } }));
          assert.notEqual(response.headers['x-request-id'], value);
        }
      }
    });

    it(`fast-check: random hostile requests against random routes (seed ${seed}, ${fuzzRuns} runs)`, async (t) => {
      t.diagnostic(`BULWARK_FUZZ_SEED=${seed}`);
      const arbitraryCase = fc.record({
        route: fc.nat({ max: shapes.length - 1 }),
        mutation: fc.oneof(
          fc.record({ kind: fc.constant('path' as const), segment: arbitraryPathSegment, which: fc.nat() }),
          fc.record({ kind: fc.constant('field' as const), value: arbitraryHostileValue, which: fc.nat() }),
          fc.record({ kind: fc.constant('extra' as const), key: fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', ''), fc.string({ maxLength: 20 })), value: arbitraryHostileValue }),
          fc.record({ kind: fc.constant('body' as const), value: arbitraryHostileValue }),
          fc.record({ kind: fc.constant('query' as const), key: fc.string({ minLength: 1, maxLength: 20 }), value: fc.string({ unit: 'binary', maxLength: 40 }) }),
        ),
      });
      await fc.assert(
        fc.asyncProperty(arbitraryCase, async ({ route, mutation }) => {
          const shape = shapes[route];
          if (shape === undefined) return;
          const label = `fuzz ${shape.operation.key} ${mutation.kind}`;
          const sample = fixture.sampleBody(shape.operation, values);
          let request: InjectOptions;
          if (mutation.kind === 'path') {
            const parameter = shape.pathParameters[mutation.which % Math.max(1, shape.pathParameters.length)];
            if (parameter === undefined) return;
            request = baseRequest(shape, { url: fillPath(shape.operation.path, { ...values, [parameter]: mutation.segment }) });
          } else if (mutation.kind === 'field') {
            const paths = fieldPaths(sample);
            const path = paths[mutation.which % Math.max(1, paths.length)];
            if (path === undefined) return;
            request = baseRequest(shape, { payload: payloadOf(shape, setAt(sample, path, mutation.value)) });
          } else if (mutation.kind === 'extra') {
            const base = sample !== null && typeof sample === 'object' && !Array.isArray(sample) ? JSON.stringify(sample).slice(1, -1) : '';
            const payload = `{${[base, `${JSON.stringify(mutation.key)}:${JSON.stringify(mutation.value)}`].filter((part) => part.length > 0).join(',')}}`;
            const response = await probe(label, baseRequest(shape, { payload }));
            if (shape.operation.method !== 'GET') assert.ok(response.statusCode >= 400, `${label}: an unknown member ${JSON.stringify(mutation.key)} was accepted`);
            return;
          } else if (mutation.kind === 'body') {
            request = baseRequest(shape, { payload: JSON.stringify(mutation.value) });
          } else {
            request = baseRequest(shape, { url: `${fillPath(shape.operation.path, values)}?${encodeSegment(mutation.key)}=${encodeSegment(mutation.value)}` });
          }
          await restore(shape, await probe(label, request));
        }),
        { seed, numRuns: fuzzRuns, endOnFailure: true },
      );
    });

    it('records store hostile data and read it back exactly', async () => {
      const record = shapes.find((shape) => shape.operation.key === 'PUT /v1/tenants/{tenantId}/collections/{collection}/records/{recordId}');
      assert.ok(record);
      for (const value of hostileValues) {
        const url = fillPath(record.operation.path, values);
        const key = String(value).slice(0, 30) || 'empty';
        const data = { value, [key]: value };
        const written = await probe('record write', baseRequest(record, { payload: JSON.stringify({ data }) }));
        if (key === '__proto__' || !key.isWellFormed() || (typeof value === 'string' && !value.isWellFormed())) {
          assert.equal(written.json<{ code: string }>().code, 'validation_failed', `${key}: refused, not stored as something else`);
          continue;
        }
        assert.ok([200, 201].includes(written.statusCode), `${JSON.stringify(value).slice(0, 60)}: ${written.statusCode} ${written.body.slice(0, 200)}`);
        const read = await fixture.test.call({ method: 'GET', url, token: tenant.apiKey });
        assert.deepEqual(read.json<{ data: unknown }>().data, JSON.parse(JSON.stringify(data)) as unknown);
      }
    });

    it('the server is healthy after the corpus: ready, and a tenant still reads and writes', async (t) => {
      t.diagnostic(`${probes} hostile requests; refusals settled by the transaction snapshot ${checks.bySnapshot}, by the fingerprint ${checks.byFingerprint}`);
      assert.equal((await fixture.test.call({ method: 'GET', url: '/readyz' })).statusCode, 200);
      const fresh = await fixture.tenant('After the corpus');
      const written = await fixture.test.call({ method: 'POST', url: `/v1/tenants/${fresh.tenantId}/collections/after/records`, token: fresh.apiKey, body: { data: { ok: true } } });
      assert.equal(written.statusCode, 201, written.body);
      const listed = await fixture.test.call({ method: 'GET', url: `/v1/tenants/${fresh.tenantId}/collections/after/records`, token: fresh.apiKey });
      assert.equal(listed.json<{ items: unknown[] }>().items.length, 1);
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined, 'Object.prototype is untouched');
    });

    /**
     * PGlite hands a text value back without a leading U+FEFF (its protocol decoder strips a BOM from each
     * field); PostgreSQL keeps it. Every other character must come back exactly.
     */
    const asStored = (value: string) => (engine === 'pglite' ? value.replace(/^\ufeff/, '') : value);

    /** Puts back what an accepted hostile request may have taken away that later probes need (limits, targets). */
    async function restore(shape: RouteShape, response: LightMyRequestResponse): Promise<void> {
      if (response.statusCode >= 300) return;
      if (shape.operation.key === 'PUT /v1/tenants/{tenantId}/limits') {
        const reset = await fixture.test.call({ method: 'PUT', url: `/v1/tenants/${tenant.tenantId}/limits`, token: fixture.test.operatorToken, body: {} });
        assert.equal(reset.statusCode, 200, reset.body);
      }
      if (shape.operation.method === 'DELETE' || /\/(password|logout|refresh|erase)$/.test(shape.operation.path)) values = await fixture.targets(tenant);
      await takeBaseline();
    }
  });
}

/** The corpus strings as they appear inside a JSON response, longest first so none leaves a fragment. */
const echoes = hostileStrings
  .filter((value) => value.length > 0)
  .map((value) => JSON.stringify(value).slice(1, -1))
  .sort((a, b) => b.length - a.length);

/** Also drops the one member that hands out a credential by design: a new API key, shown once. */
function withoutEchoes(body: string): string {
  return echoes.reduce((text, echo) => text.replaceAll(echo, ''), body).replace(/"key":"bwk_[^"]+"/g, '');
}

/** Each route meets this many corpus entries per parameter or field; the window moves on per route, so all are used. */
const perParameter = 14;

function slice<T>(corpus: readonly T[], start: number, count: number): T[] {
  return Array.from({ length: Math.min(count, corpus.length) }, (_, index) => corpus[(start * count + index) % corpus.length] as T);
}

type FieldPath = (string | number)[];

/** Every field of a sample body down to three levels (object members and the first array element). */
function fieldPaths(sample: unknown, prefix: FieldPath = []): FieldPath[] {
  if (prefix.length >= 3 || sample === null || typeof sample !== 'object') return [];
  const entries: [string | number, unknown][] = Array.isArray(sample) ? (sample.length > 0 ? [[0, sample[0]]] : []) : Object.entries(sample);
  return entries.flatMap(([key, child]) => [[...prefix, key], ...fieldPaths(child, [...prefix, key])]);
}

function setAt(sample: unknown, path: FieldPath, value: unknown): unknown {
  const copy = structuredClone(sample) as Record<string | number, unknown>;
  let cursor: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) cursor = cursor[key] as Record<string | number, unknown>;
  const last = path.at(-1);
  if (last !== undefined) cursor[last] = value;
  return copy;
}
