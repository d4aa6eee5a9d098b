import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { ErrorCode } from '../../platform/errors/codes.ts';
import { newId } from '../../platform/ids.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem, rawCall, recordCount } from '../../testing/security-suite.ts';

/** Bad input to the records routes: a stable 4xx problem, never a 5xx, and nothing written. */

type Case = [label: string, payload: string, status: number, code: ErrorCode];

const json = (value: unknown) => JSON.stringify(value);

for (const engine of engines) {
  describe(`records bad input [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let tenantId: string;
    let apiKey: string;
    let adminToken: string;
    let secrets: string[];

    const recordUrl = () => `/v1/tenants/${tenantId}/collections/notes/records/${newId()}`;
    const collectionUrl = () => `/v1/tenants/${tenantId}/collections/notes/records`;

    /** Sends each payload to PUT and POST as application/json and checks the exact problem. */
    async function expectRejected(cases: readonly Case[], headers: Record<string, string> = { 'content-type': 'application/json' }) {
      for (const [label, payload, status, code] of cases) {
        for (const [method, url] of [['PUT', recordUrl()], ['POST', collectionUrl()]] as const) {
          const response = await rawCall(test, { method, url, token: apiKey, payload, headers });
          labelled(`${method} ${label}`, () => assertProblem(response, status, code, secrets));
        }
      }
    }

    // Prefixes the failing case's label to the assertion message.
    function labelled(label: string, check: () => unknown): void {
      try {
        check();
      } catch (error) {
        if (error instanceof assert.AssertionError) error.message = `${label}: ${error.message}`;
        throw error;
      }
    }

    before(async () => {
      test = await createTestApp(engine);
      ({ tenantId, apiKey, adminToken } = await test.tenantWithKey('Bad input'));
      secrets = [test.operatorToken, apiKey];
    });
    afterEach(async () => {
      assert.equal(await recordCount(test, tenantId), 0, 'the tenant has no records');
      assert.equal(await recordCount(test), 0, 'no tenant has records');
    });
    after(() => test.close());

    it('malformed JSON is 400 malformed_json', async () => {
      await expectRejected([
        ['truncated', '{"data":{', 400, 'malformed_json'],
        ['unquoted keys', '{data:{}}', 400, 'malformed_json'],
        ['single quotes', "{'data':{}}", 400, 'malformed_json'],
        ['trailing garbage', '{"data":{}}x', 400, 'malformed_json'],
        ['trailing comma', '{"data":{},}', 400, 'malformed_json'],
        ['NaN', '{"data":{"n":NaN}}', 400, 'malformed_json'],
        ['empty body', '', 400, 'malformed_json'],
        ['undefined', 'undefined', 400, 'malformed_json'],
        ['binary', '\u0000\u0001\u0002', 400, 'malformed_json'],
      ]);
    });

    it('wrong types are 400 validation_failed', async () => {
      await expectRejected([
        ['data as string', json({ data: 'text' }), 400, 'validation_failed'],
        ['data as array', json({ data: [1, 2] }), 400, 'validation_failed'],
        ['data as number', json({ data: 42 }), 400, 'validation_failed'],
        ['data as boolean', json({ data: true }), 400, 'validation_failed'],
        ['data as null', json({ data: null }), 400, 'validation_failed'],
        ['null body', 'null', 400, 'validation_failed'],
        ['array body', '[]', 400, 'validation_failed'],
        ['string body', '"data"', 400, 'validation_failed'],
        ['number body', '1', 400, 'validation_failed'],
      ]);
      const response = await rawCall(test, { method: 'PUT', url: recordUrl(), token: apiKey, payload: json({ data: 'text' }), headers: { 'content-type': 'application/json' } });
      assert.deepEqual(assertProblem(response, 400, 'validation_failed').errors?.map((error) => [error.in, error.path]), [['body', '/data']]);
    });

    it('unknown top-level fields and a missing data are 400 validation_failed', async () => {
      await expectRejected([
        ['unknown field', json({ data: {}, extra: 1 }), 400, 'validation_failed'],
        ['tenantId in body', json({ data: {}, tenantId: newId() }), 400, 'validation_failed'],
        ['id in body', json({ data: {}, id: newId(), version: 9 }), 400, 'validation_failed'],
        ['missing data', json({}), 400, 'validation_failed'],
        ['data misspelled', json({ Data: {} }), 400, 'validation_failed'],
      ]);
      const response = await rawCall(test, { method: 'PUT', url: recordUrl(), token: apiKey, payload: json({ data: {}, tenantId: 'x' }), headers: { 'content-type': 'application/json' } });
      assert.match(assertProblem(response, 400, 'validation_failed').errors?.[0]?.message ?? '', /\(tenantId\)/);
    });

    it('__proto__ and constructor.prototype keys are refused (400 validation_failed), at any depth', async () => {
      await expectRejected([
        ['top-level __proto__', '{"data":{},"__proto__":{"polluted":true}}', 400, 'validation_failed'],
        ['__proto__ in data', '{"data":{"__proto__":{"polluted":true}}}', 400, 'validation_failed'],
        ['nested __proto__', '{"data":{"a":[{"__proto__":{"polluted":true}}]}}', 400, 'validation_failed'],
        ['escaped __proto__', '{"data":{"\\u005f_proto__":{"polluted":true}}}', 400, 'validation_failed'],
        ['constructor.prototype', '{"data":{"constructor":{"prototype":{"polluted":true}}}}', 400, 'validation_failed'],
        ['top-level constructor.prototype', '{"data":{},"constructor":{"prototype":{"polluted":true}}}', 400, 'validation_failed'],
      ]);
      assert.equal(Object.getOwnPropertyNames(Object.prototype).includes('polluted'), false);
    });

    it('text is kept exactly: lone surrogates are refused, not stored as U+FFFD; member names with line breaks come back', async () => {
      await expectRejected([
        ['a lone high surrogate', '{"data":{"a":"\\ud800"}}', 400, 'validation_failed'],
        ['a lone low surrogate in a name', '{"data":{"\\udfff":1}}', 400, 'validation_failed'],
      ]);
      const data = { 'line\r\nbreak': 'x\r\nSet-Cookie: a=1', 'pair \ud83d\ude00': 'nul\u0000', '': 'empty name' };
      const url = recordUrl();
      const written = await rawCall(test, { method: 'PUT', url, token: apiKey, payload: json({ data }), headers: { 'content-type': 'application/json' } });
      assert.equal(written.statusCode, 201, written.body);
      assert.deepEqual(written.json<{ data: unknown }>().data, data);
      const read = await rawCall(test, { method: 'GET', url, token: apiKey });
      assert.deepEqual(read.json<{ data: unknown }>().data, data);
      // This suite leaves the tenant without records.
      assert.equal((await rawCall(test, { method: 'DELETE', url, token: apiKey })).statusCode, 204);
    });

    it('bodies over the route body limit are 413 payload_too_large', async () => {
      const limit = test.storage.config.recordMaxBytes + 1024;
      await expectRejected([
        ['just over the route limit', json({ data: { x: 'a'.repeat(limit) } }), 413, 'payload_too_large'],
        ['over the server limit', json({ data: { x: 'a'.repeat(test.storage.config.bodyLimitBytes + 1) } }), 413, 'payload_too_large'],
        ['record over the record limit', json({ data: { x: 'a'.repeat(test.storage.config.recordMaxBytes) } }), 413, 'payload_too_large'],
      ]);
    });

    it('wrong content types are 415 unsupported_media_type', async () => {
      const body = json({ data: { a: 1 } });
      for (const contentType of [
        'text/plain',
        'text/plain; charset=utf-8',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/xml',
        'text/json',
        'application/jsonx',
      ]) {
        await expectRejected([[contentType, body, 415, 'unsupported_media_type']], { 'content-type': contentType });
      }
      await expectRejected([['no content type', body, 415, 'unsupported_media_type']], {});
      await expectRejected([['form fields', 'data=%7B%7D', 415, 'unsupported_media_type']], { 'content-type': 'application/x-www-form-urlencoded' });
    });

    it('malformed ids and collection names in the path are 400 validation_failed on every records route', async () => {
      const good = { tenantId, collection: 'notes', recordId: newId() };
      const bad = {
        tenantId: ['ABCDEFABCDEF', 'abcdefabcde', 'abcdefabcdef0', 'zzzzzzzzzzzz', 'a'.repeat(100), 'a'.repeat(500), `${tenantId}%00`, "'%20OR%201=1--", '%zz'],
        recordId: ['ABCDEFABCDEF', 'abcdefabcde', 'abcdefabcdef0', 'zzzzzzzzzzzz', 'a'.repeat(100), 'a'.repeat(500), '..%2F..%2Fx', '%zz'],
        collection: ['Notes', 'NOTES', '1notes', '_notes', '-notes', `n${'a'.repeat(63)}`, 'a'.repeat(500), '..%2F..%2Fetc', 'a%2Fb', 'a%20b', 'n%C3%A4', 'a.b', '%zz'],
      };
      const routes = [
        ['GET', '/v1/tenants/{tenantId}/collections/{collection}/records'],
        ['POST', '/v1/tenants/{tenantId}/collections/{collection}/records'],
        ['GET', '/v1/tenants/{tenantId}/collections/{collection}/records/{recordId}'],
        ['PUT', '/v1/tenants/{tenantId}/collections/{collection}/records/{recordId}'],
        ['DELETE', '/v1/tenants/{tenantId}/collections/{collection}/records/{recordId}'],
      ] as const;
      for (const [parameter, values] of Object.entries(bad)) {
        for (const value of values) {
          for (const [method, path] of routes) {
            if (!path.includes(`{${parameter}}`)) continue;
            const url = path.replace(/\{(\w+)\}/g, (_, name: string) => (name === parameter ? value : (good as Record<string, string>)[name] ?? ''));
            for (const token of [apiKey, adminToken]) {
              const response = await test.call({ method, url, token, ...(method === 'POST' || method === 'PUT' ? { body: { data: { a: 1 } } } : {}) });
              labelled(`${method} ${parameter}=${value.slice(0, 20)}`, () => assertProblem(response, 400, 'validation_failed', secrets));
            }
          }
        }
      }
    });

    it('dot segments are resolved before routing and never reach another path', async () => {
      // inject() resolves `..` and `%2e%2e` like a browser or proxy would: what remains matches no route.
      for (const segment of ['..', '%2e%2e', '%2E%2E', '.%2e']) {
        for (const url of [
          `/v1/tenants/${tenantId}/collections/${segment}/records/${newId()}`,
          `/v1/tenants/${tenantId}/collections/notes/records/${segment}`,
          `/v1/tenants/${tenantId}/collections/notes/records/${segment}/${segment}/api-keys`,
        ]) {
          for (const method of ['GET', 'PUT', 'DELETE'] as const) {
            const response = await test.call({ method, url, token: apiKey, ...(method === 'PUT' ? { body: { data: {} } } : {}) });
            labelled(`${method} ${url}`, () => assertProblem(response, 404, 'route_not_found', secrets));
          }
        }
      }
    });

    it('malformed conditional headers and queries are 400 validation_failed', async () => {
      const body = { data: { a: 1 } };
      const badHeaders: Record<string, string>[] = [{ 'if-none-match': '"1"' }, { 'if-none-match': 'W/*' }, { 'if-match': `"${'1'.repeat(70)}"` }];
      for (const headers of badHeaders) {
        assertProblem(await test.call({ method: 'PUT', url: recordUrl(), token: apiKey, body, headers }), 400, 'validation_failed', secrets);
      }
      assertProblem(await test.call({ method: 'DELETE', url: recordUrl(), token: apiKey, headers: { 'if-match': 'x'.repeat(65) } }), 400, 'validation_failed', secrets);
      for (const query of ['limit=0', 'limit=1000', 'limit=x', 'unknown=1', `cursor=${'a'.repeat(65)}`, 'limit=1&limit=2']) {
        assertProblem(await test.call({ method: 'GET', url: `${collectionUrl()}?${query}`, token: apiKey }), 400, 'validation_failed', secrets);
      }
    });
  });
}
