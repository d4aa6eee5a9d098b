import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { escapeIdentifier, escapeLiteral } from 'pg';
import type { Clock } from '../../platform/clock.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { newId } from '../../platform/ids.ts';
import { createLogger } from '../../platform/logger.ts';
import { openDatabase } from '../../platform/db/open.ts';
import { buildServices } from '../../server/app.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { movableClock } from '../../testing/clock.ts';
import { adminQuery, engineSkip, engines, postgresAdminUrl, testConfig } from '../../testing/engines.ts';
import { EnvRootKey } from '../keys/root/env.ts';
import { assertProblem, storedState } from '../../testing/security-suite.ts';
import { bodyDigest, genesisHash, linkHash } from '../audit/chain.ts';
import type { StoredAuditEvent } from '../audit/service.ts';
import { generateServiceKeyPair } from '../secrets/sealing.ts';
import { openSegment } from '../backup/archive.ts';
import { backupStoresOf } from '../backup/storage.ts';
import { type LegalHold, type OffboardingDependencies, OffboardingService } from './offboarding.ts';
import type { Offboarding } from './schemas.ts';
import { offboardedTenantName } from './store.ts';

const hourMs = 3_600_000;

/** Rows of the tenant in every table with a `tenant_id` column, read as the owner (past RLS). */
async function tenantRows(test: TestApp, tenantId: string): Promise<Record<string, number>> {
  const tables = await test.storage.asOwner(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
        AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
      ORDER BY c.relname`,
  );
  const counts: Record<string, number> = {};
  for (const { name } of tables) {
    const [row] = await test.storage.asOwner(`SELECT count(*)::int AS n FROM ${escapeIdentifier(String(name))} WHERE tenant_id = $1`, [tenantId]);
    counts[String(name)] = Number(row?.['n']);
  }
  return counts;
}

const total = (counts: Record<string, number>) => Object.values(counts).reduce((sum, count) => sum + count, 0);

async function platformEvents(test: TestApp, tenantId: string): Promise<{ action: string; outcome: string; detail: Record<string, unknown> }[]> {
  const rows = await test.storage.asOwner("SELECT action, outcome, detail FROM platform_audit_events WHERE target_type = 'tenant' AND target_id = $1 ORDER BY seq", [tenantId]);
  return rows.map((row) => ({ action: String(row['action']), outcome: String(row['outcome']), detail: row['detail'] as Record<string, unknown> }));
}

async function liveKeyMaterial(test: TestApp, tenantId: string): Promise<number> {
  const [row] = await test.storage.asOwner('SELECT count(*)::int AS n FROM tenant_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL', [tenantId]);
  return Number(row?.['n']);
}

/** Pairs an agent into the tenant (a code made with the tenant's key, then the public pairing route). */
async function pairAgent(test: TestApp, tenantId: string, apiKey: string, name: string): Promise<{ agentId: string; token: string }> {
  const code = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/agents/pairing-codes`, token: apiKey, body: {} });
  assert.equal(code.statusCode, 201, code.body);
  const key = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x ?? '';
  const paired = await test.call({ method: 'POST', url: '/v1/agents/pair', body: { code: code.json<{ code: string }>().code, name, publicKey: { type: 'ed25519', key } } });
  assert.equal(paired.statusCode, 201, paired.body);
  const { agentId, credentials } = paired.json<{ agentId: string; credentials: { token: string } }>();
  return { agentId, token: credentials.token };
}

/** An offboarding service over the test app's own components, with some replaced (holds, storage). */
function offboardingWith(test: TestApp, clock: Clock, replaced: Partial<OffboardingDependencies>, options = { graceHours: 0, archiveAudit: false }): OffboardingService {
  const { tenancy, keyring, audit, agents, backups } = test.app.services;
  const deps: OffboardingDependencies = { tenancy, keyring, audit, agents, storage: backups, holds: { activeHolds: () => Promise.resolve([]) }, maintenance: test.storage.maintenance };
  return new OffboardingService(test.storage.db, { ...deps, ...replaced }, clock, options);
}

for (const engine of engines) {
  describe(`offboarding [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    const clock = movableClock();
    const operator = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) => test.call({ method, url, token: test.operatorToken, body });

    before(async () => {
      test = await createTestApp(engine, { clock, config: { offboardingGraceHours: '24' } });
    });
    after(() => test.close());

    it('a request suspends the tenant (its routes, logins and agents are refused); a cancel restores the status it had', async () => {
      const { tenantId, apiKey, adminToken } = await test.tenantWithKey('Flow');
      const password = `calm meadow ${newId()} lantern`;
      const email = `flow-${newId()}@example.org`;
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/users`, token: apiKey, body: { email, password } })).statusCode, 201);
      const agent = await pairAgent(test, tenantId, apiKey, 'Flow agent');
      const login = () => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email, password } });
      const records = `/v1/tenants/${tenantId}/collections/notes/records`;
      const heartbeat = () =>
        test.call({ method: 'POST', url: `/v1/agents/${agent.agentId}/messages`, token: agent.token, body: { subject: `bulwark.t.${tenantId}.agents.${agent.agentId}.heartbeat`, payload: {} } });
      assert.equal((await login()).statusCode, 200);
      assert.equal((await heartbeat()).statusCode, 204);

      const requestedAt = clock.now();
      const requested = await operator('DELETE', `/v1/tenants/${tenantId}`);
      assert.equal(requested.statusCode, 202, requested.body);
      const state = requested.json<Offboarding>();
      assert.equal(state.state, 'requested');
      assert.equal(state.previousStatus, 'active');
      assert.equal(state.requestedBy, `operator:${test.operator.id}`);
      assert.ok(Math.abs(Date.parse(state.confirmableAt) - (requestedAt.getTime() + 24 * hourMs)) < 5_000);
      assert.deepEqual({ confirmedAt: state.confirmedAt, completedAt: state.completedAt, proof: state.proof }, { confirmedAt: null, completedAt: null, proof: null });
      assert.equal((await operator('GET', `/v1/tenants/${tenantId}`)).json<{ status: string }>().status, 'offboarding');
      assert.deepEqual((await operator('GET', `/v1/tenants/${tenantId}/offboarding`)).json(), state);

      assertProblem(await test.call({ method: 'GET', url: records, token: apiKey }), 403, 'tenant_suspended');
      assertProblem(await test.call({ method: 'GET', url: '/v1/me', token: adminToken }), 403, 'tenant_suspended');
      assertProblem(await login(), 401, 'invalid_credentials');
      assertProblem(await heartbeat(), 403, 'tenant_suspended');
      assertProblem(await operator('PATCH', `/v1/tenants/${tenantId}`, { status: 'active' }), 409, 'conflict');
      // Asking again answers the standing request and records nothing more.
      const again = await operator('DELETE', `/v1/tenants/${tenantId}`);
      assert.equal(again.statusCode, 202);
      assert.deepEqual(again.json(), state);

      const cancelled = await operator('POST', `/v1/tenants/${tenantId}/offboarding/cancel`);
      assert.equal(cancelled.statusCode, 200, cancelled.body);
      assert.equal(cancelled.json<{ status: string }>().status, 'active');
      assert.equal((await test.call({ method: 'GET', url: records, token: apiKey })).statusCode, 200);
      assert.equal((await login()).statusCode, 200);
      assert.equal((await heartbeat()).statusCode, 204);
      assertProblem(await operator('GET', `/v1/tenants/${tenantId}/offboarding`), 404, 'not_found');
      assertProblem(await operator('POST', `/v1/tenants/${tenantId}/offboarding/cancel`), 409, 'conflict');
      assertProblem(await operator('POST', `/v1/tenants/${tenantId}/offboarding/confirm`), 409, 'conflict');
      assert.deepEqual(
        (await platformEvents(test, tenantId)).filter((event) => event.action.startsWith('tenant.offboarding')).map((event) => [event.action, event.outcome, event.detail['status'] ?? event.detail['previousStatus']]),
        [
          ['tenant.offboarding.request', 'success', 'active'],
          ['tenant.offboarding.cancel', 'success', 'active'],
        ],
      );

      // A suspended tenant goes back to suspended.
      assert.equal((await operator('PATCH', `/v1/tenants/${tenantId}`, { status: 'suspended' })).statusCode, 200);
      assert.equal((await operator('DELETE', `/v1/tenants/${tenantId}`)).json<Offboarding>().previousStatus, 'suspended');
      assert.equal((await operator('POST', `/v1/tenants/${tenantId}/offboarding/cancel`)).json<{ status: string }>().status, 'suspended');
    });

    it('unknown and malformed tenants: 404 and 400; a tenant API key or an auditor cannot offboard', async () => {
      const unknown = newId();
      assertProblem(await operator('DELETE', `/v1/tenants/${unknown}`), 404, 'not_found');
      for (const path of ['offboarding/cancel', 'offboarding/confirm']) assertProblem(await operator('POST', `/v1/tenants/${unknown}/${path}`), 404, 'not_found');
      assertProblem(await operator('GET', `/v1/tenants/${unknown}/offboarding`), 404, 'not_found');
      assertProblem(await operator('DELETE', '/v1/tenants/NOT-AN-ID'), 400, 'validation_failed');
      const { tenantId, apiKey } = await test.tenantWithKey('Own key');
      assertProblem(await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantId}`, token: apiKey }), 403, 'forbidden');
      const auditor = { email: `auditor-${newId()}@operator.example`, password: `plain harbour ${newId()} signal` };
      assert.equal((await operator('POST', '/v1/operators', { ...auditor, role: 'platform-auditor', mustChangePassword: false })).statusCode, 201);
      const token = (await test.call({ method: 'POST', url: '/v1/auth/operator/login', body: auditor })).json<{ accessToken: string }>().accessToken;
      assertProblem(await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantId}`, token }), 403, 'forbidden');
      assert.equal((await operator('GET', `/v1/tenants/${tenantId}`)).json<{ status: string }>().status, 'active');
    });

    it('confirming inside the grace period is refused and destroys nothing; after it the tenant is gone and the answer is its proof', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Grace');
      const requested = (await operator('DELETE', `/v1/tenants/${tenantId}`)).json<Offboarding>();
      const rows = await tenantRows(test, tenantId);
      const early = assertProblem(await operator('POST', `/v1/tenants/${tenantId}/offboarding/confirm`), 409, 'offboarding_grace_period');
      assert.equal(early['confirmableAt'], requested.confirmableAt);
      assert.deepEqual(await tenantRows(test, tenantId), rows);
      assert.equal(await liveKeyMaterial(test, tenantId), 1);
      assert.equal((await operator('GET', `/v1/tenants/${tenantId}/offboarding`)).json<Offboarding>().state, 'requested');

      clock.advance(24 * hourMs);
      await test.relogOperator();
      const confirmed = await operator('POST', `/v1/tenants/${tenantId}/offboarding/confirm`);
      assert.equal(confirmed.statusCode, 200, confirmed.body);
      const done = confirmed.json<Offboarding>();
      assert.equal(done.state, 'completed');
      assert.ok(done.vacuumedAt !== null && done.proof !== null);
      assert.equal(done.proof.requestedAt, requested.requestedAt);
      assert.equal(done.proof.confirmedBy, `operator:${test.operator.id}`);
      assert.deepEqual(done.proof.dataKeys.destroyedVersions, [1]);
      assert.equal(total(await tenantRows(test, tenantId)), 0);
      assertProblem(await operator('GET', `/v1/tenants/${tenantId}`), 404, 'not_found');
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/api-keys`, token: apiKey }), 401, 'invalid_credentials');
      assertProblem(await operator('DELETE', `/v1/tenants/${tenantId}`), 404, 'not_found');
      assertProblem(await operator('POST', `/v1/tenants/${tenantId}/offboarding/cancel`), 404, 'not_found');
      const [row] = await test.storage.asOwner('SELECT name, status FROM tenants WHERE id = $1', [tenantId]);
      assert.deepEqual(row, { name: offboardedTenantName, status: 'deleted' });
      // The proof stays readable, and confirming again answers it without doing anything twice.
      assert.deepEqual((await operator('GET', `/v1/tenants/${tenantId}/offboarding`)).json(), done);
      const events = (await platformEvents(test, tenantId)).length;
      assert.deepEqual((await operator('POST', `/v1/tenants/${tenantId}/offboarding/confirm`)).json(), done);
      assert.equal((await platformEvents(test, tenantId)).length, events);
      // Whatever path asks for its keys now, an offboarded tenant gets no keyring again.
      await assert.rejects(test.app.services.keyring.withKeys(tenantId, (keys) => keys.current));
      assert.equal(total(await tenantRows(test, tenantId)), 0);
    });

    it("the tenant's legal holds (privacy module) refuse the request with 409 naming them, until released", async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Held over HTTP');
      const placed = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/legal-holds`, token: apiKey, body: { name: 'Audit 2030', reason: 'Regulator request' } });
      assert.equal(placed.statusCode, 201, placed.body);
      const hold = placed.json<{ id: string; name: string }>();
      const refused = assertProblem(await operator('DELETE', `/v1/tenants/${tenantId}`), 409, 'legal_hold_active');
      assert.deepEqual(refused['holds'], [{ id: hold.id, name: 'Audit 2030' }]);
      assert.match(refused.detail, /Audit 2030/);
      assert.equal((await operator('GET', `/v1/tenants/${tenantId}`)).json<{ status: string }>().status, 'active');
      assertProblem(await operator('GET', `/v1/tenants/${tenantId}/offboarding`), 404, 'not_found');
      assert.equal((await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantId}/legal-holds/${hold.id}`, token: apiKey })).statusCode, 200);
      assert.equal((await operator('DELETE', `/v1/tenants/${tenantId}`)).statusCode, 202);
    });

    it('a legal hold refuses the request and the confirmation, naming the hold; the platform trail keeps its id only', async () => {
      // The privacy module's holds stand behind this interface; a list the test controls stands in for them.
      const holds: LegalHold[] = [];
      const offboarding = offboardingWith(test, clock, { holds: { activeHolds: () => Promise.resolve([...holds]) } });
      const { tenantId } = await test.tenantWithKey('Held');
      const hold = { id: newId(), name: 'Case 1207 (litigation)', userId: null };
      holds.push(hold);
      const refused = async (work: Promise<unknown>) => {
        const error = await work.then(
          () => assert.fail('not refused'),
          (reason: unknown) => reason,
        );
        assert.ok(error instanceof BulwarkError && error.code === 'legal_hold_active', String(error));
        assert.deepEqual(error.extensions?.['holds'], [{ id: hold.id, name: hold.name }]);
        assert.match(error.message, /Case 1207 \(litigation\)/);
      };
      await refused(offboarding.request(tenantId));
      assert.equal((await operator('GET', `/v1/tenants/${tenantId}`)).json<{ status: string }>().status, 'active');
      const [denial] = await platformEvents(test, tenantId).then((events) => events.filter((event) => event.action === 'tenant.offboarding.request'));
      assert.deepEqual(denial, { action: 'tenant.offboarding.request', outcome: 'failure', detail: { reason: 'legal_hold_active', holds: [hold.id] } });

      holds.length = 0;
      assert.equal((await offboarding.request(tenantId)).state, 'requested');
      holds.push(hold);
      const rows = await tenantRows(test, tenantId);
      await refused(offboarding.confirm(tenantId));
      assert.deepEqual(await tenantRows(test, tenantId), rows);
      assert.equal(await liveKeyMaterial(test, tenantId), 1);
      // Refused before it began: still cancellable.
      assert.equal((await offboarding.state(tenantId)).state, 'requested');
      holds.length = 0;
      assert.equal((await offboarding.confirm(tenantId)).state, 'completed');
      assert.equal(total(await tenantRows(test, tenantId)), 0);
      for (const event of await platformEvents(test, tenantId)) assert.doesNotMatch(JSON.stringify(event.detail), /litigation/);
    });

    it('a confirmation that stopped half way cannot be cancelled, and confirming again finishes it with the whole proof', async () => {
      const { tenantId, apiKey } = await test.tenantWithKey('Interrupted');
      const agents = [await pairAgent(test, tenantId, apiKey, 'First'), await pairAgent(test, tenantId, apiKey, 'Second')];
      assert.equal((await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/collections/notes/records/${newId()}`, token: apiKey, body: { data: { n: 1 } } })).statusCode, 201);
      // A backup holds the tenant (its segment, under its escrow key) until the shredding.
      await test.app.services.backups.create();
      const { backups } = test.app.services;
      const archived: Buffer[] = [];
      let shredFailures = 1;
      const offboarding = offboardingWith(
        test,
        clock,
        {
          storage: {
            async archiveAudit(id, region, content) {
              archived.push(content);
              return backups.archiveAudit(id, region, content);
            },
            async shredTenant(id, region) {
              if (shredFailures > 0) {
                shredFailures -= 1;
                throw new Error('object storage unreachable');
              }
              return backups.shredTenant(id, region);
            },
          },
        },
        { graceHours: 0, archiveAudit: true },
      );
      await offboarding.request(tenantId);
      await assert.rejects(offboarding.confirm(tenantId), /object storage unreachable/);
      assert.equal((await offboarding.state(tenantId)).state, 'confirming');
      assertProblem(await operator('POST', `/v1/tenants/${tenantId}/offboarding/cancel`), 409, 'conflict');
      for (const { token } of agents) assert.equal(await test.app.services.agents.authenticate(token), null, 'the agents were revoked');
      assert.equal(await liveKeyMaterial(test, tenantId), 1, 'the keys are not destroyed yet');

      // The purge is one transaction: when its audit event cannot be written, nothing of it happens.
      const rows = await tenantRows(test, tenantId);
      await test.storage.asOwner('ALTER TABLE platform_audit_events ADD CONSTRAINT offboarding_blocked CHECK (false) NOT VALID');
      try {
        await assert.rejects(offboarding.confirm(tenantId));
      } finally {
        await test.storage.asOwner('ALTER TABLE platform_audit_events DROP CONSTRAINT offboarding_blocked');
      }
      assert.deepEqual(await tenantRows(test, tenantId), rows);
      assert.equal(await liveKeyMaterial(test, tenantId), 1);

      const done = await offboarding.confirm(tenantId);
      assert.equal(done.state, 'completed');
      const proof = done.proof;
      assert.ok(proof !== null);
      assert.equal(proof.agentsRevoked, 2);
      assert.deepEqual(proof.backups, { escrowKeyDestroyed: true, objectsDeleted: 1 });
      assert.deepEqual(proof.rowsDeleted, rows);
      assert.equal(proof.rowsDeletedTotal, total(rows));
      // One archive (the second confirmation did not export again), named in the proof with its digest.
      assert.equal(archived.length, 1);
      const archive = archived[0] ?? Buffer.alloc(0);
      assert.ok(proof.auditArchive !== null);
      assert.equal(proof.auditArchive.sha256, createHash('sha256').update(archive).digest('hex'));
      // The archive verifies on its own: every link and hash from the genesis, as the chain was stored.
      const events = archive.toString('utf8').trim().split('\n').map((line) => JSON.parse(line) as StoredAuditEvent);
      assert.equal(events.length, proof.auditArchive.events);
      // Exported first, before the agents' revocation.
      assert.ok(events.some((event) => event.action === 'agent.pair') && !events.some((event) => event.action === 'agent.revoke'));
      let previous = genesisHash(tenantId);
      for (const [index, event] of events.entries()) {
        assert.equal(event.seq, index + 1);
        assert.equal(event.prevHash, previous.toString('hex'));
        const digest = bodyDigest({ ...event, occurredAt: new Date(event.occurredAt), pii: event.pii === null ? null : Buffer.from(event.pii, 'base64') });
        previous = linkHash(event.seq, previous, event.id, digest);
        assert.equal(event.hash, previous.toString('hex'), `event ${event.seq}`);
      }
      assert.equal(total(await tenantRows(test, tenantId)), 0);
      const [event] = (await platformEvents(test, tenantId)).filter((candidate) => candidate.action === 'tenant.offboard' && candidate.outcome === 'success');
      assert.deepEqual(event?.detail, proof);
    });

    it('the purge function refuses a tenant that is not offboarding or whose keys exist; audit events stay append-only for the app role', async () => {
      const { tenantId } = await test.tenantWithKey('Guarded');
      const purge = () => test.storage.db.withPlatform((tx) => tx.query('SELECT bulwark_purge_tenant($1)', [tenantId]));
      await assert.rejects(purge(), /is not being offboarded/);
      assert.equal((await operator('DELETE', `/v1/tenants/${tenantId}`)).statusCode, 202);
      await assert.rejects(purge(), /keyring of tenant \w+ is not destroyed/);
      const rows = await tenantRows(test, tenantId);
      assert.ok((rows['audit_events'] ?? 0) > 0);
      // Offboarding or not, the app role deletes no audit event (only retention may) and no head.
      const deleted = await test.storage.db.withTenant(tenantId, (tx) => tx.query('DELETE FROM audit_events WHERE tenant_id = $1', [tenantId]));
      assert.equal(deleted.rowCount, 0);
      await assert.rejects(
        test.storage.db.withTenant(tenantId, (tx) => tx.query('DELETE FROM audit_heads WHERE tenant_id = $1', [tenantId])),
        /permission denied/,
      );
      assert.deepEqual(await tenantRows(test, tenantId), rows);
      const [fn] = await test.storage.asOwner(
        `SELECT p.prosecdef AS definer, p.proconfig AS config, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
           FROM pg_proc p WHERE p.proname = 'bulwark_purge_tenant'`,
      );
      assert.deepEqual(fn, { definer: true, config: ['search_path=pg_catalog, pg_temp'], public_execute: false });
    });
  });
}

/** Every file under a folder, recursively. */
function filesUnder(folder: string): string[] {
  return readdirSync(folder).flatMap((name) => {
    const path = join(folder, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

for (const engine of engines) {
  describe(`offboarding leaves no trace of the tenant [${engine}]`, { skip: engineSkip(engine) }, () => {
    // Every string the tenant writes carries its marker; the other tenant's carry theirs and must survive.
    const marker = `offbmark${randomBytes(5).toString('hex')}`;
    const keeper = `keepmark${randomBytes(5).toString('hex')}`;
    const logLines: string[] = [];
    let dataDir: string | undefined;
    let test: TestApp;

    before(async () => {
      dataDir = engine === 'pglite' ? mkdtempSync(join(tmpdir(), 'bulwark-offboarding-')) : undefined;
      test = await createTestApp(engine, {
        config: { offboardingAuditArchive: 'true' },
        logger: createLogger('trace', { write: (line: string) => void logLines.push(line) }),
        ...(dataDir === undefined ? {} : { pgliteDir: dataDir }),
      });
    });
    after(async () => {
      await test.close();
      if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
    });

    const operator = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown) => test.call({ method, url, token: test.operatorToken, body });

    /** A tenant with `mark` in everything it can write: names, e-mails, bodies, descriptions, reasons, reports. */
    async function fill(mark: string): Promise<{ tenantId: string; apiKey: string; recordUrl: string }> {
      const admin = { email: `${mark}-admin@example.org`, password: `still water ${newId()} compass`, firstName: `${mark} Ada`, lastName: `${mark} Admin` };
      const created = await operator('POST', '/v1/tenants', { name: `${mark} Corporation`, admin });
      assert.equal(created.statusCode, 201, created.body);
      const tenantId = created.json<{ id: string }>().id;
      const adminToken = (await test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email: admin.email, password: admin.password } })).json<{ accessToken: string }>().accessToken;
      const key = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/api-keys`, token: adminToken, body: { name: `${mark} deploy key` } });
      assert.equal(key.statusCode, 201, key.body);
      const apiKey = key.json<{ key: string }>().key;
      const as = async (method: 'POST' | 'PUT', path: string, body: unknown, token = apiKey) => {
        const response = await test.call({ method, url: `/v1/tenants/${tenantId}${path}`, token, body });
        assert.ok(response.statusCode < 300, `${method} ${path}: ${response.statusCode} ${response.body}`);
        return response;
      };
      const recordUrl = `/v1/tenants/${tenantId}/collections/${mark}-notes/records/${newId()}`;
      assert.equal((await test.call({ method: 'PUT', url: recordUrl, token: apiKey, body: { data: { text: `${mark} record body` } } })).statusCode, 201);
      const user = { email: `${mark}-user@example.org`, password: `green valley ${newId()} beacon`, firstName: `${mark} Una`, lastName: `${mark} User` };
      await as('POST', '/users', user);
      await as('POST', '/roles', { name: `${mark}-role`, description: `${mark} role description`, permissions: ['records:read'] });
      await as('POST', '/support-grants', { permissions: ['records:read'], reason: `${mark} support ticket`, durationHours: 1 });
      const service = await operator('POST', '/v1/services', { name: `reader-${newId()}`, publicKey: generateServiceKeyPair().publicKey });
      assert.equal(service.statusCode, 201, service.body);
      await as('PUT', `/secrets/${mark}-secret`, { value: `${mark} secret value`, readers: [service.json<{ id: string }>().id] });
      await as('POST', '/sso-connections', {
        protocol: 'ldap',
        name: `${mark} directory`,
        enabled: false,
        config: { url: 'ldap://127.0.0.1:9', security: 'starttls', userBaseDn: `ou=${mark},dc=example` },
        secret: `${mark} bind password`,
      });
      await as('POST', '/domains', { domain: `${mark}.example` });
      await as('POST', '/agents/pairing-codes', { name: `${mark} spare agent` });
      // A legal hold, released (a hold in force would refuse the offboarding): its row stays until the purge.
      const hold = (await as('POST', '/legal-holds', { name: `${mark} case`, reason: `${mark} hold reason` })).json<{ id: string }>();
      assert.equal((await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantId}/legal-holds/${hold.id}`, token: apiKey })).statusCode, 200);
      await as('POST', '/crypto/encrypt', { items: [{ plaintext: Buffer.from(`${mark} transit`).toString('base64') }] });
      // The user's own: a login (a session), a failed one (throttle), a second factor with a name.
      const userToken = (await test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email: user.email, password: user.password } })).json<{ accessToken: string }>().accessToken;
      await test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email: user.email, password: 'wrong' } });
      const factor = await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token: userToken, body: { name: `${mark} phone` } });
      assert.equal(factor.statusCode, 201, factor.body);
      // An agent, and its reports (health message, stats names).
      const agent = await pairAgent(test, tenantId, apiKey, `${mark} host`);
      const report = async (kind: string, payload: unknown) => {
        const sent = await test.call({ method: 'POST', url: `/v1/agents/${agent.agentId}/messages`, token: agent.token, body: { subject: `bulwark.t.${tenantId}.agents.${agent.agentId}.${kind}`, payload } });
        assert.equal(sent.statusCode, 204, sent.body);
      };
      await report('health', { status: 'degraded', message: `${mark} disk almost full` });
      await report('stats', { [`${mark}_queue`]: 7 });
      await test.app.services.agents.settled();
      assert.equal((await operator('PUT', `/v1/tenants/${tenantId}/limits`, { quotas: { users: 50 } })).statusCode, 200);
      return { tenantId, apiKey, recordUrl };
    }

    it('every row, key and trace of the tenant is gone from the database, its files and the logs; the other tenant is untouched', async () => {
      const gone = await fill(marker);
      const kept = await fill(keeper);
      const keptState = await storedState(test, kept.tenantId);
      const before = await tenantRows(test, gone.tenantId);
      for (const table of ['records', 'users', 'roles', 'api_keys', 'support_grants', 'secrets', 'secret_copies', 'sso_connections', 'tenant_domains', 'mfa_factors', 'agents', 'agent_pairing_codes', 'legal_holds', 'audit_events', 'tenant_keys']) {
        assert.ok((before[table] ?? 0) > 0, `the tenant has rows in ${table}`);
      }
      // The markers really are stored in clear somewhere (so the checks below can fail).
      const [plain] = await test.storage.asOwner('SELECT description FROM roles WHERE tenant_id = $1', [gone.tenantId]);
      assert.equal(plain?.['description'], `${marker} role description`);
      // A backup of both tenants taken before, and an off-site copy of the leaving tenant's segment made from it.
      const { backups } = test.app.services;
      const old = await backups.create();
      const opened = await backups.openForRestore(old.id);
      assert.ok(JSON.stringify(opened.tenants.get(gone.tenantId)).includes(marker), 'the backup holds the tenant (the search below works)');
      const store = backupStoresOf(test.storage.config).get(test.storage.config.regions[0] ?? '');
      assert.ok(store !== undefined);
      const segment = opened.manifest.segments.find((entry) => entry.tenantId === gone.tenantId);
      assert.ok(segment !== undefined);
      const offsiteCopy = await store.get(segment.object);
      assert.ok(offsiteCopy !== undefined);

      assert.equal((await operator('DELETE', `/v1/tenants/${gone.tenantId}`)).statusCode, 202);
      const confirmed = await operator('POST', `/v1/tenants/${gone.tenantId}/offboarding/confirm`);
      assert.equal(confirmed.statusCode, 200, confirmed.body);
      const { proof } = confirmed.json<Offboarding>();
      assert.ok(proof !== null);

      // Every tenant table is empty of it, and the proof counted exactly what was there (plus the agent's revocation event).
      assert.equal(total(await tenantRows(test, gone.tenantId)), 0);
      assert.equal(proof.agentsRevoked, 1);
      assert.deepEqual(proof.rowsDeleted, { ...before, audit_events: (before['audit_events'] ?? 0) + 1 });
      assert.deepEqual(proof.dataKeys.destroyedVersions, [1]);
      assert.deepEqual(proof.backups, { escrowKeyDestroyed: true, objectsDeleted: 1 });
      const [event] = (await platformEvents(test, gone.tenantId)).filter((candidate) => candidate.action === 'tenant.offboard');
      assert.deepEqual(event?.detail, proof);
      const verified = await operator('POST', '/v1/audit/verify');
      assert.equal(verified.json<{ ok: boolean }>().ok, true, verified.body);
      await assert.rejects(test.app.services.keyring.withKeys(gone.tenantId, (keys) => keys.current));

      // The other tenant: as it was, readable, and its chain verifies.
      assert.deepEqual(await storedState(test, kept.tenantId), keptState);
      const read = await test.call({ method: 'GET', url: kept.recordUrl, token: kept.apiKey });
      assert.equal(read.json<{ data: { text: string } }>().data.text, `${keeper} record body`);
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${kept.tenantId}/audit/verify`, token: kept.apiKey })).json<{ ok: boolean }>().ok, true);

      // The old backup: its segment of the tenant is gone and reported shredded; what still opens holds no trace.
      const report = await backups.verify(old.id);
      assert.equal(report.ok, true);
      assert.equal(report.segments.find((entry) => entry.name === segment.name)?.status, 'shredded');
      const reopened = await backups.openForRestore(old.id);
      assert.equal(reopened.tenants.has(gone.tenantId), false);
      const remaining = JSON.stringify({ platform: reopened.platform, tenants: [...reopened.tenants.values()] });
      assert.ok(remaining.includes(keeper), 'the other tenant is still in the backup');
      assert.ok(!remaining.includes(marker), 'nothing of the offboarded tenant opens from the old backup');
      // Objects: no backup segment or escrow key of the tenant, and no marker in any backup. Its audit chain,
      // archived under archive/ because this test configures it, is kept on purpose (ids and names included).
      for (const object of (await store.list('')).filter((name) => !name.startsWith('archive/'))) {
        assert.ok(!object.includes(gone.tenantId), `no object of the tenant is left: ${object}`);
        assert.ok(!(await store.get(object))?.includes(Buffer.from(marker, 'utf8')), object);
      }
      // The off-site copy opens with none of the keys that remain: every other escrow key, and the backup's own.
      const remainingKeys: Buffer[] = [await test.rootKeys.unwrap(reopened.manifest.wrappedKey, { tenantId: `backup/${old.id}`, keyVersion: 1, purpose: 'backup-key' })];
      // (The store is this test process's: other apps, under other root keys, left escrow keys of their tenants in it.)
      const backedUp = new Set(reopened.manifest.segments.map((entry) => entry.tenantId));
      for (const object of (await store.list('escrow/')).filter((name) => name.endsWith('.key') && backedUp.has(name.split('/')[1] ?? null))) {
        const { tenantId: owner, wrapped } = JSON.parse((await store.get(object))?.toString('utf8') ?? '{}') as { tenantId: string; wrapped: string };
        remainingKeys.push(await test.rootKeys.unwrap(wrapped, { tenantId: owner, keyVersion: 1, purpose: 'backup-escrow' }));
      }
      assert.ok(remainingKeys.length >= 2);
      for (const key of remainingKeys) assert.throws(() => openSegment(key, old.id, segment.name, gone.tenantId, offsiteCopy));

      if (engine === 'postgres') {
        const dump = execFileSync('/usr/bin/pg_dump', ['--no-owner', '--dbname', test.storage.ownerUrl ?? ''], { maxBuffer: 256 * 1024 * 1024 }).toString('utf8');
        assert.ok(dump.includes(keeper), 'the dump holds the other tenant (the search works)');
        assert.ok(!dump.includes(marker), 'no trace of the offboarded tenant in pg_dump');
      }
      const logs = logLines.join('');
      assert.ok(logs.includes(gone.tenantId), 'the logs were captured');
      assert.deepEqual(
        logLines.filter((line) => line.includes(marker)).map((line) => line.slice(0, 300)),
        [],
        'no trace of the offboarded tenant in the logs',
      );

      if (dataDir !== undefined) {
        await test.close();
        const utf8 = Buffer.from(marker, 'utf8');
        const utf16 = Buffer.from(marker, 'utf16le');
        const files = filesUnder(dataDir);
        assert.ok(files.some((file) => readFileSync(file).includes(Buffer.from(keeper, 'utf8'))), 'the files hold the other tenant (the search works)');
        const traces = files.filter((file) => {
          const bytes = readFileSync(file);
          return bytes.includes(utf8) || bytes.includes(utf16);
        });
        assert.deepEqual(traces.map((file) => file.slice(dataDir?.length ?? 0)), [], 'no file of the database holds a trace of the offboarded tenant');
      }
    });
  });
}

describe('offboarding with a schema owner that is not a superuser [postgres]', { skip: engineSkip('postgres') }, () => {
  const owner = `bulwark_owner_${randomBytes(4).toString('hex')}`;
  const database = `bulwark_test_${randomBytes(6).toString('hex')}`;
  const ownerUrl = new URL(postgresAdminUrl);
  ownerUrl.username = owner;
  ownerUrl.pathname = `/${database}`;
  const inDatabase = async (sql: string, params: readonly unknown[] = []): Promise<Record<string, unknown>[]> =>
    (await adminQuery(sql, new URL(`/${database}`, postgresAdminUrl).toString(), params)).rows as Record<string, unknown>[];

  before(async () => {
    // FORCE RLS filters a table owner that is not a superuser: the purge must still reach every row.
    await adminQuery(`CREATE ROLE ${owner} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB CREATEROLE`);
    await adminQuery(`GRANT pg_checkpoint TO ${owner}`);
    await adminQuery(`CREATE DATABASE ${database} OWNER ${owner}`);
  });
  after(async () => {
    await adminQuery(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await adminQuery(`DROP ROLE IF EXISTS ${owner}`);
  });

  it('the purge removes every row under FORCE RLS, audit events included; VACUUM FULL and CHECKPOINT run as the owner', async () => {
    const config = testConfig({ databaseUrl: ownerUrl.toString() });
    // The owner logs in and serves as the app role, so it must be a member of it (an operator's grant).
    await adminQuery(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${escapeLiteral(config.databaseAppRole)}) THEN CREATE ROLE ${escapeIdentifier(config.databaseAppRole)} NOLOGIN; END IF; END $$`);
    await adminQuery(`GRANT ${escapeIdentifier(config.databaseAppRole)} TO ${owner}`);
    const opened = await openDatabase(config);
    try {
      const [role] = await inDatabase('SELECT rolsuper FROM pg_roles WHERE rolname = $1', [owner]);
      assert.equal(role?.['rolsuper'], false);
      const services = buildServices({ config, db: opened.db, rootKeys: new EnvRootKey(randomBytes(32).toString('base64')), maintenance: opened.maintenance });
      const tenant = await services.tenancy.create({ name: 'Owned by a plain role' });
      await services.users.create(tenant.id, { email: `owner-test-${newId()}@example.org`, firstName: 'Plain' });
      await services.records.create(tenant.id, 'notes', { text: 'a record' });
      const tenantTables = async () =>
        (
          await inDatabase(
            `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')`,
          )
        ).map((row) => String(row['name']));
      const rowsOf = async () => {
        let rows = 0;
        for (const table of await tenantTables()) rows += Number((await inDatabase(`SELECT count(*)::int AS n FROM ${escapeIdentifier(table)} WHERE tenant_id = $1`, [tenant.id]))[0]?.['n']);
        return rows;
      };
      const before = await rowsOf();
      assert.ok(before >= 8, `${before} rows`);
      await services.offboarding.request(tenant.id);
      const done = await services.offboarding.confirm(tenant.id);
      assert.equal(done.state, 'completed');
      assert.ok(done.vacuumedAt !== null);
      assert.ok((done.proof?.rowsDeleted['audit_events'] ?? 0) > 0);
      assert.equal(done.proof?.rowsDeletedTotal, before);
      assert.equal(await rowsOf(), 0);
      await services.keyring.close();
      await services.bus.close();
    } finally {
      await opened.db.close();
    }
  });
});
