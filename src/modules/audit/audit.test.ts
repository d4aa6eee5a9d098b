import assert from 'node:assert/strict';
import { createHmac, createPublicKey, randomBytes, verify } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { newId } from '../../platform/ids.ts';
import { storedDataContains } from '../../testing/at-rest.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { movableClock } from '../../testing/clock.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import { canonicalJson, checkpointPayload } from './chain.ts';
import { toCsvRow } from './export-format.ts';
import { AuditDelivery, BusSink, WebhookSink } from './delivery.ts';
import { InProcessBus } from '../bus/bus.ts';
import type { AuditRecord, VerifyReport } from './service.ts';

describe('audit chain pieces', () => {
  it('canonical JSON sorts keys at every level and refuses what JSON cannot hold', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { z: null, y: 'x' }], c: true } }), '{"a":{"c":true,"d":[1,{"y":"x","z":null}]},"b":1}');
    assert.throws(() => canonicalJson({ a: undefined }), TypeError);
  });

  it('CSV quotes what needs it and defuses spreadsheet formulas', () => {
    assert.equal(toCsvRow(['plain', 'a,b', 'say "hi"', 'two\nlines', null, 7]), 'plain,"a,b","say ""hi""","two\nlines",,7\r\n');
    assert.equal(toCsvRow(['=HYPERLINK("x")', '+1', '-1', '@SUM(A1)']), `"'=HYPERLINK(""x"")",'+1,'-1,'@SUM(A1)\r\n`);
  });
});

interface Page {
  items: AuditRecord[];
  nextCursor: string | null;
}

for (const engine of engines) {
  describe(`audit trail [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof movableClock>;
    let tenantId: string;
    let apiKey: string;
    let pgliteDir: string;

    before(async () => {
      clock = movableClock();
      pgliteDir = join(mkdtempSync(join(tmpdir(), 'bulwark-audit-')), 'pglite');
      test = await createTestApp(engine, { clock, pgliteDir, config: { loginSourceMaxFailures: '10000', auditCheckpointIntervalSeconds: '0', auditPruneIntervalSeconds: '0' } });
      ({ tenantId, apiKey } = await test.tenantWithKey('Audited'));
    });
    after(() => test.close());

    const audit = (query = '', token = apiKey) => test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit${query}`, token });
    const verifyChain = async (scopeUrl = `/v1/tenants/${tenantId}/audit`, token = apiKey) => {
      const response = await test.call({ method: 'POST', url: `${scopeUrl}/verify`, token });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<VerifyReport>();
    };
    const putRecord = (body: unknown, headers: Record<string, string> = {}) =>
      test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/collections/notes/records/${newId()}`, token: apiKey, body, headers });
    const chain = async (scope = tenantId) =>
      (await test.storage.asOwner('SELECT seq::int AS seq, id, action FROM audit_events WHERE tenant_id = $1 ORDER BY seq', [scope])) as {
        seq: number;
        id: string;
        action: string;
      }[];

    it('records who did what, where from, and how it ended; the trail verifies', async () => {
      const response = await putRecord({ data: { n: 1 } }, { 'user-agent': 'audit-test/1.0' });
      assert.equal(response.statusCode, 201);
      const requestId = response.headers['x-request-id'];
      const page = (await audit(`?requestId=${String(requestId)}`)).json<Page>();
      assert.equal(page.items.length, 1);
      const [event] = page.items;
      assert.ok(event);
      assert.equal(event.action, 'record.create');
      assert.deepEqual(event.actor, { kind: 'api-key', id: apiKey.slice(16, 28) });
      assert.equal(event.outcome, 'success');
      assert.equal(event.target?.type, 'record');
      assert.equal(event.personalData, 'present');
      assert.equal(event.userAgent, 'audit-test/1.0');
      assert.equal(event.source, '127.0.0.1');
      assert.ok(!JSON.stringify(event).includes('"data"'), 'no record content in the event');

      const report = await verifyChain();
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.ok(report.eventsChecked >= 3);

      // A refusal is recorded too, as denied.
      const readOnly = (await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/api-keys`, token: apiKey, body: { name: 'ro', scopes: ['records:read'] } })).json<{ key: string; id: string }>();
      assertProblem(await putRecord({ data: {} }, { authorization: `Bearer ${readOnly.key}` }), 403, 'forbidden');
      const denied = (await audit('?outcome=denied&action=access.denied')).json<Page>().items[0];
      assert.deepEqual([denied?.actor.id, denied?.detail['permission']], [readOnly.id, 'records:write']);
    });

    it('queries filter and page: by action prefix, actor, target, time; cursors walk every event once', async () => {
      for (let index = 0; index < 5; index += 1) assert.equal((await putRecord({ data: { index } })).statusCode, 201);
      const records = (await audit('?action=record.*&limit=200')).json<Page>().items;
      assert.ok(records.length >= 6 && records.every((event) => event.action.startsWith('record.')));
      const seen: number[] = [];
      let cursor: string | null = null;
      do {
        const page: Page = (await audit(`?action=record.create&limit=2${cursor === null ? '' : `&cursor=${cursor}`}`)).json<Page>();
        seen.push(...page.items.map((event) => event.seq));
        cursor = page.nextCursor;
      } while (cursor !== null);
      assert.deepEqual(seen, [...seen].sort((a, b) => b - a), 'newest first');
      assert.equal(new Set(seen).size, seen.length);
      assert.equal(seen.length, records.filter((event) => event.action === 'record.create').length);
      const future = new Date(Date.now() + 86_400_000).toISOString();
      assert.equal((await audit(`?from=${future}`)).json<Page>().items.length, 0);
      const summary = (await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit/summary`, token: apiKey })).json<{ total: number; byAction: { name: string; count: number }[] }>();
      assert.ok(summary.total >= 8);
      assert.ok((summary.byAction.find((entry) => entry.name === 'record.create')?.count ?? 0) >= 6);
      for (const bad of ['?limit=0', '?action=DROP TABLE', '?actorId=nope', '?cursor=bad', '?from=yesterday', '?outcome=maybe', '?unknown=1']) {
        const response = await audit(bad);
        assert.equal(response.statusCode, 400, `${bad}: ${response.body}`);
      }
    });

    it('concurrent writers of one tenant neither fork the chain nor leave a gap', async () => {
      const before = (await chain()).length;
      const results = await Promise.all(Array.from({ length: 40 }, (_, index) => putRecord({ data: { index } })));
      assert.ok(results.every((response) => response.statusCode === 201));
      const events = await chain();
      assert.equal(events.length, before + 40);
      assert.deepEqual(events.map((event) => event.seq), Array.from({ length: events.length }, (_, index) => index + 1));
      assert.equal((await verifyChain()).ok, true);
    });

    it('a verification that runs while the chain grows reports it intact', async () => {
      const writes = Promise.all(Array.from({ length: 30 }, (_, index) => putRecord({ data: { index } })));
      const reports = await Promise.all(Array.from({ length: 10 }, () => test.app.services.audit.verify({ tenantId })));
      await writes;
      assert.deepEqual(reports.map((report) => report.firstBreak), Array.from({ length: 10 }, () => null));
    });

    it('checkpoints are signed with the published key and verify outside Bulwark', async () => {
      await test.app.services.audit.checkpoint({ tenantId });
      const published = (await test.call({ method: 'GET', url: '/v1/audit/checkpoint-key' })).json<{ keyId: string; publicKey: string }>();
      const [checkpoint] = (await test.storage.asOwner(
        "SELECT seq::int AS seq, hash, kind, key_id, signature, signed_at FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
        [tenantId],
      )) as { seq: number; hash: Uint8Array; kind: string; key_id: string; signature: Uint8Array; signed_at: Date }[];
      assert.ok(checkpoint);
      assert.equal(checkpoint.key_id, published.keyId);
      const payload = checkpointPayload(tenantId, checkpoint.seq, Buffer.from(checkpoint.hash), checkpoint.kind, new Date(checkpoint.signed_at));
      assert.ok(verify(null, payload, createPublicKey(published.publicKey), Buffer.from(checkpoint.signature)));
      const report = await verifyChain();
      assert.ok(report.ok && report.checkpointsChecked >= 1);
      // The same checkpoints through the API, and the key may be cached (it is public).
      const listed = (await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit/checkpoints`, token: apiKey })).json<{ items: { seq: number; hash: string; kind: string; signature: string; signedAt: string }[] }>().items;
      const last = listed.at(-1);
      assert.ok(last !== undefined && last.seq === checkpoint.seq);
      assert.ok(verify(null, checkpointPayload(tenantId, last.seq, Buffer.from(last.hash, 'hex'), last.kind, new Date(last.signedAt)), createPublicKey(published.publicKey), Buffer.from(last.signature, 'base64')));
      assert.equal((await test.call({ method: 'GET', url: '/v1/audit/checkpoint-key' })).headers['cache-control'], 'public, max-age=300');
    });

    it('tampering is found, at the first broken sequence number: an edited detail, a deleted event, two swapped, a cut tail', async () => {
      // Each case works on a tenant of its own, so the others start from an intact chain.
      const seqs: Record<string, number> = {};
      const tampered = async (tamper: (tenant: string, events: { seq: number }[]) => Promise<void>, checkpointFirst = false) => {
        const tenant = await test.tenantWithKey('Tampered');
        for (let index = 0; index < 6; index += 1) {
          await test.call({ method: 'PUT', url: `/v1/tenants/${tenant.tenantId}/collections/c/records/${newId()}`, token: tenant.apiKey, body: { data: { index } } });
        }
        if (checkpointFirst) await test.app.services.audit.checkpoint({ tenantId: tenant.tenantId });
        assert.equal((await verifyChain(`/v1/tenants/${tenant.tenantId}/audit`, tenant.apiKey)).ok, true, 'intact before');
        await tamper(tenant.tenantId, await chain(tenant.tenantId));
        return test.app.services.audit.verify({ tenantId: tenant.tenantId });
      };
      const edited = await tampered(async (tenant, events) => {
        seqs['edited'] = events[4]?.seq ?? 0;
        await test.storage.asOwner(`UPDATE audit_events SET detail = '{"collection":"c","version":9}' WHERE tenant_id = $1 AND seq = $2`, [tenant, events[4]?.seq]);
      });
      assert.deepEqual(edited.firstBreak?.reason, 'hash_mismatch');
      const deleted = await tampered(async (tenant, events) => {
        seqs['deleted'] = events[3]?.seq ?? 0;
        await test.storage.asOwner('DELETE FROM audit_events WHERE tenant_id = $1 AND seq = $2', [tenant, events[3]?.seq]);
      });
      assert.deepEqual(deleted.firstBreak?.reason, 'missing_event');
      const swapped = await tampered(async (tenant, events) => {
        const [a, b] = [events[2]?.seq, events[3]?.seq];
        seqs['swapped'] = a ?? 0;
        await test.storage.asOwner('UPDATE audit_events SET seq = seq + 1000000 WHERE tenant_id = $1 AND seq IN ($2, $3)', [tenant, a, b]);
        await test.storage.asOwner(
          'UPDATE audit_events SET seq = CASE WHEN seq = $2::bigint + 1000000 THEN $3::bigint ELSE $2::bigint END WHERE tenant_id = $1 AND seq > 1000000',
          [tenant, a, b],
        );
      });
      assert.deepEqual(swapped.firstBreak?.reason, 'broken_link');
      const cut = await tampered(async (tenant, events) => {
        const last = events.at(-1)?.seq ?? 0;
        seqs['cut'] = last - 1;
        // The tail goes, and the head is rewound to the event before it: only the checkpoint remembers.
        await test.storage.asOwner('DELETE FROM audit_events WHERE tenant_id = $1 AND seq > $2', [tenant, last - 2]);
        await test.storage.asOwner(
          'UPDATE audit_heads h SET seq = e.seq, hash = e.hash, prev_hash = e.prev_hash FROM audit_events e WHERE h.tenant_id = $1 AND e.tenant_id = $1 AND e.seq = $2',
          [tenant, last - 2],
        );
      }, true);
      assert.deepEqual(cut.firstBreak?.reason, 'missing_event');
      // Each report names the first broken sequence number.
      assert.deepEqual(
        [edited.firstBreak.seq, deleted.firstBreak.seq, swapped.firstBreak.seq, cut.firstBreak.seq],
        [seqs['edited'], seqs['deleted'], seqs['swapped'], seqs['cut']],
      );
      for (const report of [edited, deleted, swapped, cut]) assert.equal(report.ok, false);
      const forged = await tampered(async (tenant) => {
        await test.storage.asOwner('UPDATE audit_checkpoints SET signature = $2 WHERE tenant_id = $1', [tenant, randomBytes(64)]);
      }, true);
      assert.equal(forged.firstBreak?.reason, 'bad_checkpoint');
    });

    it('an action whose event cannot be written is rolled back and refused', async () => {
      // The events' table refuses this tenant's inserts for a moment (a CHECK the app role cannot see coming).
      await test.storage.asOwner(`ALTER TABLE audit_events ADD CONSTRAINT audit_blocked CHECK (tenant_id <> '${tenantId}') NOT VALID`);
      try {
        const id = newId();
        const response = await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/collections/notes/records/${id}`, token: apiKey, body: { data: { lost: true } } });
        assertProblem(response, 500, 'internal_error');
        await test.storage.asOwner('ALTER TABLE audit_events DROP CONSTRAINT audit_blocked');
        assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/collections/notes/records/${id}`, token: apiKey }), 404, 'not_found');
      } finally {
        await test.storage.asOwner('ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_blocked');
      }
      assert.equal((await verifyChain()).ok, true);
    });

    it('logins, failures, lockouts, refreshes, reuse and logouts are recorded; the tried e-mail is sealed', async () => {
      const email = `login-${newId()}@example.org`;
      const password = 'a long and unusual passphrase 9!';
      await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/users`, token: apiKey, body: { email, password } });
      const login = (secret: string) => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email, password: secret } });
      assert.equal((await login('wrong one, not it')).statusCode, 401);
      const tokens = (await login(password)).json<{ refreshToken: string; sessionId: string }>();
      const refreshed = (await test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } })).json<{ refreshToken: string }>();
      assert.equal((await test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } })).statusCode, 401);
      const again = (await login(password)).json<{ refreshToken: string }>();
      assert.equal((await test.call({ method: 'POST', url: '/v1/auth/logout', body: { refreshToken: again.refreshToken } })).statusCode, 204);
      // Past the progressive delays (1 s, 2 s, ...): each guess gets its check, the fifth locks the account.
      for (let index = 0; index < 6; index += 1) {
        clock.advance(10_000);
        await login(`guess ${index} is wrong`);
      }
      clock.advance(20 * 60_000);
      await test.relogOperator();
      const auth = (await audit('?action=auth.*&limit=100')).json<Page>().items.reverse();
      const seen = auth.map((event) => `${event.action}:${event.outcome}`);
      for (const expected of ['auth.login:failure', 'auth.login:success', 'auth.refresh:success', 'auth.refresh.reuse:denied', 'auth.logout:success', 'auth.lockout:denied']) {
        assert.ok(seen.includes(expected), `${expected} in ${seen.join(' ')}`);
      }
      const failure = auth.find((event) => event.action === 'auth.login' && event.outcome === 'failure' && event.email === email);
      assert.ok(failure, 'the failed attempt names the e-mail it tried');
      assert.deepEqual(failure.actor, { kind: 'anonymous', id: null });
      const success = auth.find((event) => event.action === 'auth.login' && event.outcome === 'success' && event.sessionId === tokens.sessionId);
      assert.ok(success, 'the login names the session it started');
      assert.equal(success.actor.kind, 'user');
      assert.ok(refreshed.refreshToken.startsWith('bwr_'));
      assert.ok(!JSON.stringify(auth).includes(password) && !JSON.stringify(auth).includes(tokens.refreshToken), 'no secret in any event');

      // A password change names the user who proved their password, and where from.
      const changed = await test.call({
        method: 'POST',
        url: '/v1/auth/password',
        body: { tenantId, email, currentPassword: password, newPassword: 'another long passphrase 77!' },
        headers: { 'user-agent': 'changer/1' },
      });
      assert.equal(changed.statusCode, 204, changed.body);
      const [change] = (await audit(`?requestId=${String(changed.headers['x-request-id'])}`)).json<Page>().items;
      assert.deepEqual([change?.action, change?.actor.kind, change?.target?.id === change?.actor.id, change?.userAgent], ['auth.password.change', 'user', true, 'changer/1']);
    });

    it("forgetting a subject erases its personal data from every event; the chain still verifies", async () => {
      const marker = `agent-${randomBytes(6).toString('hex')}`;
      await putRecord({ data: { n: 'forget' } }, { 'user-agent': marker });
      const subject = `api-key:${apiKey.slice(16, 28)}`;
      assert.ok((await audit('?limit=200')).json<Page>().items.some((event) => event.userAgent === marker));
      assert.equal(await test.app.services.audit.forgetSubject({ tenantId }, subject), true);
      const after = (await audit(`?actorId=${apiKey.slice(16, 28)}&limit=500`)).json<Page>().items;
      assert.ok(after.length > 0);
      assert.ok(after.every((event) => event.personalData !== 'present' && event.userAgent === null && event.source === null));
      assert.ok(after.some((event) => event.personalData === 'erased'));
      assert.equal((await verifyChain()).ok, true);
    });

    it('retention prunes old events behind a signed boundary; the rest still verifies', async () => {
      const tenant = await test.tenantWithKey('Retained');
      const url = `/v1/tenants/${tenant.tenantId}/audit`;
      clock.advance(-40 * 86_400_000);
      for (let index = 0; index < 3; index += 1) {
        await test.call({ method: 'PUT', url: `/v1/tenants/${tenant.tenantId}/collections/c/records/${newId()}`, token: tenant.apiKey, body: { data: { index } } });
      }
      clock.advance(40 * 86_400_000);
      await test.call({ method: 'PUT', url: `/v1/tenants/${tenant.tenantId}/collections/c/records/${newId()}`, token: tenant.apiKey, body: { data: { recent: true } } });
      assertProblem(await test.call({ method: 'PUT', url: `${url}/settings`, token: tenant.apiKey, body: { retentionDays: 0 } }), 400, 'validation_failed');
      assert.equal((await test.call({ method: 'PUT', url: `${url}/settings`, token: tenant.apiKey, body: { retentionDays: 30 } })).statusCode, 200);
      const pruned = await test.app.services.audit.prune({ tenantId: tenant.tenantId });
      assert.ok(pruned.deleted >= 3, JSON.stringify(pruned));
      const settings = (await test.call({ method: 'GET', url: `${url}/settings`, token: tenant.apiKey })).json<{ prunedThrough: number; retentionDays: number }>();
      assert.deepEqual([settings.prunedThrough, settings.retentionDays], [pruned.prunedThrough, 30]);
      const report = await verifyChain(url, tenant.apiKey);
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.equal(report.prunedThrough, pruned.prunedThrough);
      const actions = (await test.call({ method: 'GET', url: `${url}?limit=50`, token: tenant.apiKey })).json<Page>().items.map((event) => event.action);
      assert.ok(actions.includes('audit.prune'));
      // Recent events cannot be deleted even by moving the boundary: the database refuses (retention_only).
      await test.storage.db.withTenant(tenant.tenantId, async (tx) => {
        await tx.query('UPDATE audit_heads SET pruned_through = seq WHERE tenant_id = $1', [tenant.tenantId]);
        const { rowCount } = await tx.query('DELETE FROM audit_events WHERE tenant_id = $1', [tenant.tenantId]);
        assert.equal(rowCount, 0);
        throw new Error('roll back');
      }).catch((error: unknown) => assert.match(String(error), /roll back/));
      // And the app role cannot rewrite an event at all.
      await assert.rejects(
        test.storage.db.withTenant(tenant.tenantId, (tx) => tx.query("UPDATE audit_events SET action = 'x.y' WHERE tenant_id = $1", [tenant.tenantId])),
        /permission denied/,
      );
      // A boundary checkpoint removed behind Bulwark's back: the verification says so.
      await test.storage.asOwner("DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND kind = 'retention'", [tenant.tenantId]);
      assert.equal((await test.app.services.audit.verify({ tenantId: tenant.tenantId })).firstBreak?.reason, 'missing_boundary');
    });

    it('exports NDJSON and CSV of exactly the filtered events, and audits the export', async () => {
      const ndjson = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit/export?action=record.create`, token: apiKey });
      assert.equal(ndjson.statusCode, 200);
      assert.match(ndjson.headers['content-type'] ?? '', /application\/x-ndjson/);
      const lines = ndjson.body.trim().split('\n').map((line) => JSON.parse(line) as AuditRecord);
      assert.ok(lines.length >= 6 && lines.every((event) => event.action === 'record.create'));
      assert.deepEqual(lines.map((event) => event.seq), [...lines.map((event) => event.seq)].sort((a, b) => a - b), 'oldest first');
      const csv = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit/export?format=csv&action=record.create`, token: apiKey });
      assert.match(csv.headers['content-type'] ?? '', /text\/csv/);
      const rows = csv.body.trim().split('\r\n');
      assert.equal(rows[0]?.split(',')[0], 'seq');
      assert.equal(rows.length, lines.length + 1);
      const exports = (await audit('?action=audit.export')).json<Page>().items;
      assert.ok(exports.length >= 2 && exports[0]?.detail['format'] === 'csv');
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit/export?format=xml`, token: apiKey }), 400, 'validation_failed');
    });

    it('operators act in the platform chain; a tenant key cannot read it', async () => {
      const created = await test.call({ method: 'POST', url: '/v1/tenants', token: test.operatorToken, body: { name: 'Platform event' } });
      const requestId = String(created.headers['x-request-id']);
      const page = (await test.call({ method: 'GET', url: `/v1/audit?requestId=${requestId}`, token: test.operatorToken })).json<Page>();
      assert.deepEqual(page.items.map((event) => [event.action, event.actor.kind, event.actor.id]), [['tenant.create', 'operator', test.operator.id]]);
      assert.equal((await verifyChain('/v1/audit', test.operatorToken)).ok, true);
      assertProblem(await test.call({ method: 'GET', url: '/v1/audit', token: apiKey }), 403, 'forbidden');
      assertProblem(await audit('', test.operatorToken), 403, 'support_grant_required');

      // With its first admin: the tenant in the platform's chain, the admin (and its role) in the tenant's.
      const admin = { email: `first-${newId()}@example.org`, password: 'a long and unusual passphrase 9!' };
      const withAdmin = await test.call({ method: 'POST', url: '/v1/tenants', token: test.operatorToken, body: { name: 'With admin', admin } });
      assert.equal(withAdmin.statusCode, 201, withAdmin.body);
      const id = String(withAdmin.headers['x-request-id']);
      const tenantEvents = (await test.storage.asOwner('SELECT tenant_id, action, detail FROM audit_events WHERE request_id = $1', [id])) as { tenant_id: string; action: string; detail: { roles: string[] } }[];
      const platformEvents = await test.storage.asOwner('SELECT action FROM platform_audit_events WHERE request_id = $1', [id]);
      assert.deepEqual(platformEvents.map((row) => row['action']), ['tenant.create']);
      assert.deepEqual(tenantEvents.map((row) => [row.tenant_id, row.action, row.detail.roles]), [[withAdmin.json<{ id: string }>().id, 'user.create', ['tenant-admin']]]);
    });

    it('delivers committed events in order to a signed webhook, retrying a failure, and on the bus', async () => {
      const secret = randomBytes(32).toString('hex');
      const received: { signature: string; body: string }[] = [];
      let failNext = true;
      const server = createServer((request: IncomingMessage, response) => {
        let body = '';
        request.on('data', (chunk: Buffer) => (body += chunk.toString()));
        request.on('end', () => {
          if (failNext) {
            failNext = false;
            response.writeHead(503).end();
            return;
          }
          received.push({ signature: String(request.headers['x-bulwark-signature']), body });
          response.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const bus = new InProcessBus();
      const published: unknown[] = [];
      bus.subscribe(`bulwark.t.${tenantId}.audit`, (_subject, payload) => published.push(payload));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const delivery = new AuditDelivery(test.storage.db, test.app.services.audit, [new WebhookSink(url, secret, clock), new BusSink(bus)], clock, {
        pollMs: 60_000,
        batchSize: 50,
        baseBackoffMs: 0,
        maxBackoffMs: 0,
        onError: () => undefined,
      });
      try {
        await delivery.deliverAll();
        assert.equal(failNext, false, 'one delivery was refused (503) and is retried');
        await delivery.deliverAll();
        const batches = received.map((entry) => JSON.parse(entry.body) as { scope: string; events: AuditRecord[] });
        const tenantEvents = batches.filter((batch) => batch.scope === tenantId).flatMap((batch) => batch.events.map((event) => event.seq));
        const stored = (await chain()).map((event) => event.seq);
        assert.deepEqual(tenantEvents, stored, 'every event of the chain, once, in order');
        for (const { signature, body } of received) {
          const [t, v1] = signature.split(',').map((part) => part.split('=')[1]);
          assert.equal(v1, createHmac('sha256', secret).update(`${String(t)}.${body}`).digest('hex'));
        }
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(published.length, tenantEvents.length);
        // Caught up: nothing goes out twice.
        const before = received.length;
        assert.equal(await delivery.deliverAll(), 0);
        assert.equal(received.length, before);
      } finally {
        await delivery.stop();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('personal data in events never reaches the database files in plaintext', async () => {
      const marker = `ua-${randomBytes(8).toString('hex')}`;
      await putRecord({ data: { n: 'at rest' } }, { 'user-agent': marker });
      const control = `control${randomBytes(6).toString('hex')}`;
      await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}`, token: test.operatorToken, body: { name: control } });
      const [controlFound, markerFound] = await storedDataContains(test.storage, pgliteDir, [control, marker]);
      assert.ok(controlFound && !markerFound);
      if (engine === 'pglite') {
        const { operator, rootKeys } = test;
        await test.close();
        test = await createTestApp(engine, { clock, pgliteDir, operator, rootKeys, config: { auditCheckpointIntervalSeconds: '0', auditPruneIntervalSeconds: '0' } });
      }
    });
    it('exports 100,000 events as a stream in bounded memory', { timeout: 240_000 }, async (t) => {
      const tenant = await test.tenantWithKey('Big export');
      const count = 100_000;
      // Synthetic events straight into the table (the export reads, it does not verify): about 1 KB a line.
      await test.storage.asOwner(
        `INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_kind, action, target_type, target_id, outcome, detail, prev_hash, hash)
         SELECT $1, 1000 + g, lpad(to_hex(g), 12, '0'), now(), 'system', 'record.create', 'record', 'notes/' || g, 'success',
                jsonb_build_object('filler', repeat('x', 900), 'n', g), sha256(int8send(g)), sha256(int8send(g + 1))
           FROM generate_series(1, $2::int) AS g`,
        [tenant.tenantId, count],
      );
      const address = await test.app.listen({ host: '127.0.0.1', port: 0 });
      // What the export keeps alive, not the garbage it leaves for the collector: the heap after a full GC.
      v8.setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as () => void;
      gc();
      const baseline = process.memoryUsage().heapUsed;
      let peak = baseline;
      const sampler = setInterval(() => {
        gc();
        peak = Math.max(peak, process.memoryUsage().heapUsed);
      }, 100);
      let lines = 0;
      let bytes = 0;
      try {
        const response = await fetch(`${address}/v1/tenants/${tenant.tenantId}/audit/export?action=record.create&format=ndjson`, {
          headers: { authorization: `Bearer ${tenant.apiKey}` },
        });
        assert.equal(response.status, 200);
        assert.ok(response.body);
        const decoder = new TextDecoder();
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          bytes += chunk.byteLength;
          lines += decoder.decode(chunk, { stream: true }).split('\n').length - 1;
        }
      } finally {
        clearInterval(sampler);
      }
      assert.equal(lines, count);
      const growth = peak - baseline;
      t.diagnostic(`exported ${Math.round(bytes / 1024 / 1024)} MiB; live heap grew by at most ${(growth / 1024 / 1024).toFixed(1)} MiB`);
      // The whole export is held nowhere: the heap grows by a fraction of what went over the wire.
      assert.ok(bytes > 100 * 1024 * 1024, `${bytes} bytes exported`);
      assert.ok(growth < 32 * 1024 * 1024, `heap grew by ${Math.round(growth / 1024 / 1024)} MiB for ${Math.round(bytes / 1024 / 1024)} MiB exported`);
    });

  });
}
