import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { newId } from '../../platform/ids.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem, recordCount } from '../../testing/security-suite.ts';

interface RecordBody {
  id: string;
  collection: string;
  version: number;
  data: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

const recordMaxBytes = 1024;

for (const engine of engines) {
  describe(`records routes [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let tenantId: string;
    let apiKey: string;
    let base: string;

    const call = (method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, options: { body?: unknown; headers?: Record<string, string> } = {}) =>
      test.call({ method, url: `${base}${path}`, token: apiKey, ...options });

    before(async () => {
      test = await createTestApp(engine, { config: { recordMaxBytes: String(recordMaxBytes) } });
      ({ tenantId, apiKey } = await test.tenantWithKey('Records'));
      base = `/v1/tenants/${tenantId}/collections`;
    });
    after(() => test.close());

    it('PUT creates (201, ETag "1") then replaces (200, version 2); GET returns the ETag', async () => {
      const id = newId();
      const created = await call('PUT', `/notes/records/${id}`, { body: { data: { title: 'first', tags: ['a'] } } });
      assert.equal(created.statusCode, 201);
      assert.equal(created.headers['etag'], '"1"');
      const first = created.json<RecordBody>();
      assert.deepEqual({ ...first, createdAt: '', updatedAt: '' }, { id, collection: 'notes', version: 1, data: { title: 'first', tags: ['a'] }, createdAt: '', updatedAt: '' });
      assert.equal(first.createdAt, first.updatedAt);

      const replaced = await call('PUT', `/notes/records/${id}`, { body: { data: { title: 'second' } } });
      assert.equal(replaced.statusCode, 200);
      assert.equal(replaced.headers['etag'], '"2"');
      const second = replaced.json<RecordBody>();
      assert.equal(second.version, 2);
      assert.deepEqual(second.data, { title: 'second' }, 'a replace does not merge');
      assert.equal(second.createdAt, first.createdAt);

      const read = await call('GET', `/notes/records/${id}`);
      assert.equal(read.statusCode, 200);
      assert.equal(read.headers['etag'], '"2"');
      assert.deepEqual(read.json(), second);
    });

    it('If-Match replaces only the matching version; a mismatch is 412 and changes nothing', async () => {
      const id = newId();
      assert.equal((await call('PUT', `/notes/records/${id}`, { body: { data: { v: 1 } } })).statusCode, 201);

      for (const ifMatch of ['"2"', '"0"', 'W/"1"', '1', '"1', 'garbage']) {
        const response = await call('PUT', `/notes/records/${id}`, { body: { data: { v: 'lost' } }, headers: { 'if-match': ifMatch } });
        assertProblem(response, 412, 'precondition_failed');
      }
      const matched = await call('PUT', `/notes/records/${id}`, { body: { data: { v: 2 } }, headers: { 'if-match': '"1"' } });
      assert.equal(matched.statusCode, 200);
      assert.equal(matched.headers['etag'], '"2"');
      const listed = await call('PUT', `/notes/records/${id}`, { body: { data: { v: 3 } }, headers: { 'if-match': '"7", "2"' } });
      assert.equal(listed.statusCode, 200, 'a list of ETags matches any member');
      const star = await call('PUT', `/notes/records/${id}`, { body: { data: { v: 4 } }, headers: { 'if-match': '*' } });
      assert.equal(star.statusCode, 200);

      const read = await call('GET', `/notes/records/${id}`);
      assert.deepEqual(read.json<RecordBody>().data, { v: 4 });
      assert.equal(read.json<RecordBody>().version, 4);

      // If-Match on a record that does not exist never creates it (RFC 9110 13.1.1).
      const missing = newId();
      assertProblem(await call('PUT', `/notes/records/${missing}`, { body: { data: {} }, headers: { 'if-match': '*' } }), 412, 'precondition_failed');
      assertProblem(await call('GET', `/notes/records/${missing}`), 404, 'not_found');
    });

    it('If-None-Match: * creates only; on an existing record it is 412 and changes nothing', async () => {
      const id = newId();
      const created = await call('PUT', `/notes/records/${id}`, { body: { data: { v: 1 } }, headers: { 'if-none-match': '*' } });
      assert.equal(created.statusCode, 201);
      const again = await call('PUT', `/notes/records/${id}`, { body: { data: { v: 2 } }, headers: { 'if-none-match': '*' } });
      assertProblem(again, 412, 'precondition_failed');
      const read = await call('GET', `/notes/records/${id}`);
      assert.equal(read.json<RecordBody>().version, 1);
      assert.deepEqual(read.json<RecordBody>().data, { v: 1 });
    });

    it('two concurrent create-only PUTs of one id: exactly one wins', async () => {
      const id = newId();
      const responses = await Promise.all(
        [1, 2].map((v) => call('PUT', `/notes/records/${id}`, { body: { data: { v } }, headers: { 'if-none-match': '*' } })),
      );
      const statuses = responses.map((response) => response.statusCode).sort();
      assert.equal(statuses[0], 201);
      assert.ok(statuses[1] === 409 || statuses[1] === 412, `loser: ${String(statuses[1])}`);
      const read = await call('GET', `/notes/records/${id}`);
      assert.equal(read.json<RecordBody>().version, 1);
    });

    it('DELETE with a mismatched If-Match is 412; with a match or unconditionally it deletes; then 404', async () => {
      const conditional = newId();
      await call('PUT', `/notes/records/${conditional}`, { body: { data: {} } });
      await call('PUT', `/notes/records/${conditional}`, { body: { data: { v: 2 } } });
      assertProblem(await call('DELETE', `/notes/records/${conditional}`, { headers: { 'if-match': '"1"' } }), 412, 'precondition_failed');
      assert.equal((await call('GET', `/notes/records/${conditional}`)).statusCode, 200);
      const deleted = await call('DELETE', `/notes/records/${conditional}`, { headers: { 'if-match': '"2"' } });
      assert.equal(deleted.statusCode, 204);
      assert.equal(deleted.body, '');
      assertProblem(await call('GET', `/notes/records/${conditional}`), 404, 'not_found');

      const plain = newId();
      await call('PUT', `/notes/records/${plain}`, { body: { data: {} } });
      assert.equal((await call('DELETE', `/notes/records/${plain}`)).statusCode, 204);
      assertProblem(await call('GET', `/notes/records/${plain}`), 404, 'not_found');
      assertProblem(await call('DELETE', `/notes/records/${plain}`), 404, 'not_found');
      assertProblem(await call('DELETE', `/notes/records/${plain}`, { headers: { 'if-match': '*' } }), 404, 'not_found');
      // Recreating after a delete starts again at version 1.
      const recreated = await call('PUT', `/notes/records/${plain}`, { body: { data: {} } });
      assert.equal(recreated.statusCode, 201);
      assert.equal(recreated.headers['etag'], '"1"');
    });

    it('a record lives in its collection only', async () => {
      const id = newId();
      await call('PUT', `/notes/records/${id}`, { body: { data: { where: 'notes' } } });
      assertProblem(await call('GET', `/other/records/${id}`), 404, 'not_found');
      assertProblem(await call('DELETE', `/other/records/${id}`), 404, 'not_found');
      const same = await call('PUT', `/other/records/${id}`, { body: { data: { where: 'other' } } });
      assert.equal(same.statusCode, 201, 'the same id in another collection is another record');
      assert.deepEqual((await call('GET', `/notes/records/${id}`)).json<RecordBody>().data, { where: 'notes' });
    });

    it('POST creates with a server-chosen 12-hex id and a Location', async () => {
      const ids = new Set<string>();
      for (let index = 0; index < 3; index += 1) {
        const response = await call('POST', '/posted/records', { body: { data: { index } } });
        assert.equal(response.statusCode, 201);
        assert.equal(response.headers['etag'], '"1"');
        const created = response.json<RecordBody>();
        assert.match(created.id, /^[0-9a-f]{12}$/);
        assert.equal(created.collection, 'posted');
        assert.equal(created.version, 1);
        assert.deepEqual(created.data, { index });
        assert.equal(response.headers['location'], `/v1/tenants/${tenantId}/collections/posted/records/${created.id}`);
        const followed = await test.call({ method: 'GET', url: response.headers['location'] ?? '', token: apiKey });
        assert.deepEqual(followed.json(), created);
        ids.add(created.id);
      }
      assert.equal(ids.size, 3);
    });

    it('cursor pagination returns every record exactly once, in id order, and ends with nextCursor null', async () => {
      const created: string[] = [];
      for (let index = 0; index < 7; index += 1) {
        created.push((await call('POST', '/paged/records', { body: { data: { index } } })).json<RecordBody>().id);
      }
      await call('POST', '/unrelated/records', { body: { data: {} } });

      const walk = async (limit: number) => {
        const seen: string[] = [];
        const pageSizes: number[] = [];
        let cursor: string | null = null;
        for (let page = 0; page < 10; page += 1) {
          const query: string = cursor === null ? `?limit=${limit}` : `?limit=${limit}&cursor=${cursor}`;
          const response = await call('GET', `/paged/records${query}`);
          assert.equal(response.statusCode, 200);
          const body = response.json<{ items: RecordBody[]; nextCursor: string | null }>();
          seen.push(...body.items.map((item) => item.id));
          pageSizes.push(body.items.length);
          cursor = body.nextCursor;
          if (cursor === null) break;
        }
        assert.equal(cursor, null);
        return { seen, pageSizes };
      };

      const byThree = await walk(3);
      assert.deepEqual(byThree.pageSizes, [3, 3, 1]);
      assert.deepEqual(byThree.seen, [...created].sort());
      assert.deepEqual((await walk(3)).seen, byThree.seen, 'the order is stable');
      assert.deepEqual((await walk(7)).pageSizes, [7], 'an exactly full page has no next page');
      assert.deepEqual((await walk(200)).seen, byThree.seen);

      // A cursor stays valid when records are added and removed during the walk.
      const first = (await call('GET', '/paged/records?limit=3')).json<{ items: RecordBody[]; nextCursor: string }>();
      const lastOfFirst = first.items.at(-1)?.id ?? '';
      const later = [...created].sort().filter((id) => id > lastOfFirst);
      await call('DELETE', `/paged/records/${later[0] ?? ''}`);
      const rest = (await call('GET', `/paged/records?limit=200&cursor=${first.nextCursor}`)).json<{ items: RecordBody[] }>();
      assert.deepEqual(rest.items.map((item) => item.id), later.slice(1));

      const empty = await call('GET', '/never-written/records');
      assert.deepEqual(empty.json(), { items: [], nextCursor: null });
    });

    it('an invalid cursor or limit is 400', async () => {
      const notV1 = Buffer.from('v2:abcdefabcdef').toString('base64url');
      const notId = Buffer.from('v1:ABCDEFABCDEF').toString('base64url');
      for (const cursor of ['zzz', notV1, notId, 'djE6', '%00']) {
        assertProblem(await call('GET', `/paged/records?cursor=${cursor}`), 400, 'invalid_cursor');
      }
      assertProblem(await call('GET', `/paged/records?cursor=${'a'.repeat(65)}`), 400, 'validation_failed');
      for (const limit of ['0', '201', '-1', 'abc', '1.5']) {
        assertProblem(await call('GET', `/paged/records?limit=${limit}`), 400, 'validation_failed');
      }
    });

    it('a record over BULWARK_RECORD_MAX_BYTES is 413 and nothing is written', async () => {
      const before = await recordCount(test, tenantId);
      // {"x":"..."} is 8 bytes of JSON around the string.
      const atLimit = { x: 'a'.repeat(recordMaxBytes - 8) };
      assert.equal(Buffer.byteLength(JSON.stringify(atLimit)), recordMaxBytes);
      const overByOne = { x: 'a'.repeat(recordMaxBytes - 7) };
      const overBodyLimit = { x: 'a'.repeat(recordMaxBytes * 3) };
      // Multi-byte characters count as bytes, not characters.
      const multibyte = { x: 'é'.repeat(recordMaxBytes / 2) };

      const id = newId();
      for (const data of [overByOne, overBodyLimit, multibyte]) {
        assertProblem(await call('PUT', `/big/records/${id}`, { body: { data } }), 413, 'payload_too_large');
        assertProblem(await call('POST', '/big/records', { body: { data } }), 413, 'payload_too_large');
      }
      assert.equal(await recordCount(test, tenantId), before);

      const fits = await call('PUT', `/big/records/${id}`, { body: { data: atLimit } });
      assert.equal(fits.statusCode, 201);
      // A replace that would grow past the limit leaves the stored version alone.
      assertProblem(await call('PUT', `/big/records/${id}`, { body: { data: overByOne } }), 413, 'payload_too_large');
      const read = await call('GET', `/big/records/${id}`);
      assert.equal(read.json<RecordBody>().version, 1);
      assert.deepEqual(read.json<RecordBody>().data, atLimit);
      assert.equal(await recordCount(test, tenantId), before + 1);
    });
  });
}
