import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { movableClock } from '../../testing/clock.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import { agentSubjects, type AgentBusAccess } from '../bus/access.ts';
import { PlatformKeys } from '../keys/platform-keys.ts';
import { isValidAgentKey } from './public-key.ts';
import { pairingAlphabet } from './schemas.ts';
import { AgentsService, parseReportSubject } from './service.ts';

const agentKey = (type: 'ed25519' | 'x25519' = 'ed25519') => generateKeyPairSync(type as 'ed25519').publicKey.export({ format: 'jwk' }).x ?? '';

interface Paired {
  agentId: string;
  tenantId: string;
  name: string;
  credentials: { token: string; bus: { kind: string } };
}

interface AgentView {
  id: string;
  status: string;
  stale: boolean;
  lastSeenAt: string | null;
  health: { status: string; message: string | null } | null;
  stats: { values: Record<string, number> } | null;
}

describe('agent public keys', () => {
  it('accepts real Ed25519 and X25519 keys; refuses wrong lengths, points off the curve, non-canonical and small-order encodings', () => {
    for (let index = 0; index < 20; index += 1) {
      assert.ok(isValidAgentKey('ed25519', Buffer.from(agentKey('ed25519'), 'base64url')));
      assert.ok(isValidAgentKey('x25519', Buffer.from(agentKey('x25519'), 'base64url')));
    }
    // RFC 8032 section 7.1, test 1: a public key from the spec.
    assert.ok(isValidAgentKey('ed25519', Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex')));
    assert.ok(!isValidAgentKey('ed25519', Buffer.alloc(31, 7)));
    assert.ok(!isValidAgentKey('x25519', Buffer.alloc(33, 7)));
    // y = 2 has no x on the curve (x^2 would be a non-residue); y >= p is not canonical.
    assert.ok(!isValidAgentKey('ed25519', Buffer.from(`02${'00'.repeat(31)}`, 'hex')));
    assert.ok(!isValidAgentKey('ed25519', Buffer.from(`ee${'ff'.repeat(30)}7f`, 'hex')));
    // The eight points of small order (the neutral element, -1, the 4- and 8-torsion), as libsodium lists them.
    for (const hex of [
      '0100000000000000000000000000000000000000000000000000000000000000',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0000000000000000000000000000000000000000000000000000000000000080',
      'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
      'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
      '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
      '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
    ]) {
      assert.ok(!isValidAgentKey('ed25519', Buffer.from(hex, 'hex')), hex);
    }
    // X25519 points of small order: 0, 1 and the order-8 u-coordinate of RFC 7748's errata list.
    for (const hex of ['00'.repeat(32), `01${'00'.repeat(31)}`, 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800']) {
      assert.ok(!isValidAgentKey('x25519', Buffer.from(hex, 'hex')), hex);
    }
  });

  it('reads report subjects exactly: bulwark.t.<tenant>.agents.<agent>.<heartbeat|health|stats>', () => {
    assert.deepEqual(parseReportSubject('bulwark.t.0123456789ab.agents.ba9876543210.health'), { tenantId: '0123456789ab', agentId: 'ba9876543210', kind: 'health' });
    for (const subject of [
      'bulwark.t.0123456789ab.agents.ba9876543210.cmd',
      'bulwark.t.0123456789ab.agents.ba9876543210.health.more',
      'bulwark.t.0123456789AB.agents.ba9876543210.health',
      'bulwark.x.0123456789ab.agents.ba9876543210.health',
      'bulwark.t.0123456789ab.users.ba9876543210.health',
      'bulwark.t.0123456789ab.agents.health',
    ]) {
      assert.equal(parseReportSubject(subject), undefined, subject);
    }
  });
});

for (const engine of engines) {
  describe(`agents [${engine}]`, { skip: engineSkip(engine) }, () => {
    const clock = movableClock();
    let test: TestApp;
    let tenantA: { tenantId: string; apiKey: string };
    let tenantB: { tenantId: string; apiKey: string };
    let nextAddress = 10;
    /** Each test pairs from its own client address: the per-address budgets do not meet. */
    const freshAddress = () => `198.51.100.${nextAddress++}`;

    const as = (tenant: { tenantId: string; apiKey: string }, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) =>
      test.call({ method, url: `/v1/tenants/${tenant.tenantId}${path}`, token: tenant.apiKey, ...(body === undefined ? {} : { body }) });
    const newCode = async (tenant: { tenantId: string; apiKey: string }, body: Record<string, unknown> = {}) => {
      const created = await as(tenant, 'POST', '/agents/pairing-codes', body);
      assert.equal(created.statusCode, 201, created.body);
      return created.json<{ id: string; code: string; expiresAt: string; name: string | null }>();
    };
    const pairRaw = (body: Record<string, unknown>, remoteAddress: string): Promise<LightMyRequestResponse> =>
      test.app.inject({ method: 'POST', url: '/v1/agents/pair', remoteAddress, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });
    const pair = async (code: string, remoteAddress = freshAddress(), name = 'edge-01') => {
      const response = await pairRaw({ code, name, publicKey: { type: 'ed25519', key: agentKey() } }, remoteAddress);
      assert.equal(response.statusCode, 201, response.body);
      return response.json<Paired>();
    };
    const send = async (agent: Paired, subject: string, payload: unknown, token = agent.credentials.token, agentId = agent.agentId) => {
      const response = await test.call({ method: 'POST', url: `/v1/agents/${agentId}/messages`, token, body: { subject, payload } });
      await test.app.services.agents.settled();
      return response;
    };
    const view = async (tenant: { tenantId: string; apiKey: string }, agentId: string) => {
      const response = await as(tenant, 'GET', `/agents/${agentId}`);
      assert.equal(response.statusCode, 200, response.body);
      return response.json<AgentView>();
    };
    const events = async (tenantId: string, action: string) =>
      test.storage.asOwner('SELECT actor_kind, actor_id, target_id, outcome, detail FROM audit_events WHERE tenant_id = $1 AND action = $2 ORDER BY seq', [tenantId, action]);

    before(async () => {
      test = await createTestApp(engine, { clock, config: { agentPairingMaxFailures: '3', agentPairingWindowSeconds: '600', agentStaleSeconds: '90', agentStaleSweepSeconds: '0' } });
      tenantA = await test.tenantWithKey('Agents A');
      tenantB = await test.tenantWithKey('Agents B');
    });
    after(() => test.close());

    it('a pairing code is 8 characters of the unambiguous alphabet, shown once and stored only as a keyed hash; it pairs an agent with a working token', async () => {
      const created = await newCode(tenantA, { name: 'Hinted name', ttlSeconds: 300 });
      assert.match(created.code, new RegExp(`^[${pairingAlphabet}]{8}$`));
      assert.doesNotMatch(pairingAlphabet, /[0O1IL]/);
      assert.equal(Date.parse(created.expiresAt) - clock.now().getTime() <= 300_000, true);
      const stored = await test.storage.asOwner("SELECT encode(code_hmac, 'hex') AS hmac, name_hint FROM agent_pairing_codes WHERE id = $1", [created.id]);
      assert.equal(stored.length, 1);
      assert.ok(!JSON.stringify(stored).includes(created.code), 'the code is not stored');
      assert.equal(stored[0]?.['name_hint'], 'Hinted name');

      // Case and a hyphen do not matter; no name: the code's hint names the agent.
      const typed = `${created.code.slice(0, 4).toLowerCase()}-${created.code.slice(4)}`;
      const response = await pairRaw({ code: typed, publicKey: { type: 'x25519', key: agentKey('x25519') } }, freshAddress());
      assert.equal(response.statusCode, 201, response.body);
      const paired = response.json<Paired>();
      assert.equal(paired.tenantId, tenantA.tenantId);
      assert.equal(paired.name, 'Hinted name');
      assert.deepEqual(paired.credentials.bus, { kind: 'http' });
      assert.match(paired.credentials.token, new RegExp(`^bwag_${tenantA.tenantId}${paired.agentId}[A-Za-z0-9_-]{43}$`));
      const row = await test.storage.asOwner("SELECT encode(token_hash, 'hex') AS hash FROM agents WHERE id = $1", [paired.agentId]);
      assert.ok(!JSON.stringify(row).includes(paired.credentials.token.slice(-43)), 'only the hash of the token is stored');

      // The token works: a heartbeat through the gateway is recorded.
      assert.equal((await send(paired, agentSubjects(paired.tenantId, paired.agentId).heartbeat, { uptimeSeconds: 5 })).statusCode, 204);
      const seen = await view(tenantA, paired.agentId);
      assert.equal(seen.status, 'active');
      assert.notEqual(seen.lastSeenAt, null);
      assert.equal((await events(tenantA.tenantId, 'pairing-code.create')).length >= 1, true);
      const pairedEvents = await events(tenantA.tenantId, 'agent.pair');
      assert.deepEqual(pairedEvents.at(-1)?.['actor_kind'], 'agent');
      assert.deepEqual(pairedEvents.at(-1)?.['target_id'], paired.agentId);
      const listed = await as(tenantA, 'GET', '/agents');
      assert.ok(listed.json<{ items: { id: string }[] }>().items.some((item) => item.id === paired.agentId));
      assert.ok(!listed.body.includes(paired.credentials.token));
    });

    it('refuses a used, an expired and an unknown code with one answer; an expired one is audited in its tenant', async () => {
      const used = await newCode(tenantA);
      await pair(used.code);
      const address = freshAddress();
      const body = (code: string) => ({ code, name: 'late', publicKey: { type: 'ed25519', key: agentKey() } });
      const reused = assertProblem(await pairRaw(body(used.code), address), 401, 'invalid_pairing_code');
      const expiring = await newCode(tenantA, { ttlSeconds: 60 });
      clock.advance(61_000);
      const expired = assertProblem(await pairRaw(body(expiring.code), address), 401, 'invalid_pairing_code');
      const unknown = assertProblem(await pairRaw(body('ZZZZ-ZZZZ'), freshAddress()), 401, 'invalid_pairing_code');
      assert.equal(reused.detail, expired.detail);
      assert.equal(reused.detail, unknown.detail);
      const failures = await events(tenantA.tenantId, 'agent.pair');
      assert.ok(failures.some((event) => event['outcome'] === 'failure' && event['target_id'] === expiring.id && (event['detail'] as { reason?: string }).reason === 'expired'));
    });

    it("a tenant's code pairs into that tenant only, whoever presents it; another tenant never sees the agent", async () => {
      const code = await newCode(tenantB);
      const paired = await pair(code.code);
      assert.equal(paired.tenantId, tenantB.tenantId);
      assertProblem(await as(tenantA, 'GET', `/agents/${paired.agentId}`), 404, 'not_found');
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenantB.tenantId}/agents/${paired.agentId}`, token: tenantA.apiKey }), 404, 'not_found');
      assertProblem(await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantB.tenantId}/agents/${paired.agentId}`, token: tenantA.apiKey }), 404, 'not_found');
      const listedA = (await as(tenantA, 'GET', '/agents?limit=200')).json<{ items: { id: string }[] }>().items;
      assert.ok(!listedA.some((item) => item.id === paired.agentId));
      assert.equal((await view(tenantB, paired.agentId)).status, 'active');
    });

    it('after N wrong codes from one address even a right code is refused until the window passes; other addresses are not affected', async () => {
      const attacker = freshAddress();
      const guess = (code: string) => pairRaw({ code, publicKey: { type: 'ed25519', key: agentKey() } }, attacker);
      for (const wrong of ['AAAA-AAAA', 'BBBB-BBBB', 'CCCC-CCCC']) assertProblem(await guess(wrong), 401, 'invalid_pairing_code');
      const right = await newCode(tenantA);
      const refused = await guess(right.code);
      assertProblem(refused, 429, 'too_many_attempts');
      assert.ok(Number(refused.headers['retry-after']) > 0);
      assert.equal((await test.storage.asOwner('SELECT count(*)::int AS n FROM agent_pairing_codes WHERE id = $1', [right.id]))[0]?.['n'], 1, 'the refused attempt did not spend the code');
      // Another address pairs with the same code meanwhile; the attacker's right code needs a new window.
      await pair(right.code);
      const later = await newCode(tenantA, { ttlSeconds: 3600 });
      assertProblem(await guess(later.code), 429, 'too_many_attempts');
      clock.advance(601_000);
      assert.equal((await guess(later.code)).statusCode, 201);
    });

    it('right codes cost nothing: an address pairs many agents without reaching the budget', async () => {
      const installer = freshAddress();
      for (let index = 0; index < 5; index += 1) await pair((await newCode(tenantA)).code, installer, `fleet-${index}`);
    });

    it('parallel guesses from one address get exactly the budget of checks; one code pairs exactly one of several racing agents', async () => {
      const attacker = freshAddress();
      const guesses = await Promise.all(
        Array.from({ length: 10 }, (_, index) => pairRaw({ code: ('DEFGHJKM'[index % 8] ?? 'D').repeat(8), publicKey: { type: 'ed25519', key: agentKey() } }, attacker)),
      );
      const statuses = guesses.map((response) => response.statusCode).sort();
      assert.deepEqual(statuses, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);

      const code = await newCode(tenantA);
      const racing = await Promise.all(Array.from({ length: 5 }, () => pairRaw({ code: code.code, publicKey: { type: 'ed25519', key: agentKey() } }, freshAddress())));
      assert.deepEqual(racing.map((response) => response.statusCode).sort(), [201, 401, 401, 401, 401]);
    });

    it('bad input is refused and changes nothing: a key that is no point, a wrong code shape, unknown members; the code stays usable', async () => {
      const code = await newCode(tenantA);
      const address = freshAddress();
      const before = await test.storage.asOwner('SELECT count(*)::int AS n FROM agents');
      const smallOrder = Buffer.from('0100000000000000000000000000000000000000000000000000000000000000', 'hex').toString('base64url');
      for (const body of [
        { code: code.code, publicKey: { type: 'ed25519', key: smallOrder } },
        { code: code.code, publicKey: { type: 'ed25519', key: Buffer.from(`02${'00'.repeat(31)}`, 'hex').toString('base64url') } },
        { code: code.code, publicKey: { type: 'rsa', key: agentKey() } },
        { code: code.code, publicKey: { type: 'ed25519', key: agentKey().slice(1) } },
        { code: 'O0O0-I1L1', publicKey: { type: 'ed25519', key: agentKey() } },
        { code: code.code, name: '', publicKey: { type: 'ed25519', key: agentKey() } },
        { code: code.code, name: 'line\nbreak', publicKey: { type: 'ed25519', key: agentKey() } },
        { code: code.code, publicKey: { type: 'ed25519', key: agentKey() }, tenantId: tenantB.tenantId },
      ]) {
        assertProblem(await pairRaw(body, address), 400, 'validation_failed');
      }
      assertProblem(await as(tenantA, 'POST', '/agents/pairing-codes', { ttlSeconds: 10 }), 400, 'validation_failed');
      assertProblem(await as(tenantA, 'POST', '/agents/pairing-codes', { ttlSeconds: 100_000 }), 400, 'validation_failed');
      assert.deepEqual(await test.storage.asOwner('SELECT count(*)::int AS n FROM agents'), before);
      // None of it cost an attempt: the address still pairs.
      await pair(code.code, address);
    });

    it('heartbeat, health and stats over the gateway drive last seen, health (audited on change) and the latest stats; malformed reports are dropped', async () => {
      const agent = await pair((await newCode(tenantA)).code);
      const subjects = agentSubjects(agent.tenantId, agent.agentId);
      const fresh = await view(tenantA, agent.agentId);
      assert.equal(fresh.lastSeenAt, null);
      assert.equal(fresh.health, null);

      assert.equal((await send(agent, subjects.health, { status: 'degraded', message: 'disk 91% full' })).statusCode, 204);
      assert.equal((await send(agent, subjects.health, { status: 'degraded', message: 'disk 92% full' })).statusCode, 204);
      assert.equal((await send(agent, subjects.stats, { 'load.1m': 0.5, 'queue.depth': 12 })).statusCode, 204);
      let seen = await view(tenantA, agent.agentId);
      assert.equal(seen.health?.status, 'degraded');
      assert.equal(seen.health.message, 'disk 92% full');
      assert.deepEqual(seen.stats?.values, { 'load.1m': 0.5, 'queue.depth': 12 });
      assert.notEqual(seen.lastSeenAt, null);
      const changes = () => events(tenantA.tenantId, 'agent.health.change').then((rows) => rows.filter((row) => row['target_id'] === agent.agentId));
      assert.deepEqual((await changes()).map((row) => row['detail']), [{ from: null, to: 'degraded' }]);
      assert.equal((await send(agent, subjects.health, { status: 'ok' })).statusCode, 204);
      assert.deepEqual((await changes()).map((row) => row['detail']), [{ from: null, to: 'degraded' }, { from: 'degraded', to: 'ok' }]);
      assert.equal((await changes())[0]?.['actor_kind'], 'agent');

      // Dropped: unknown members, wrong types, too many stats, an oversized heartbeat. Nothing moves.
      clock.advance(5_000);
      const lastSeen = (await view(tenantA, agent.agentId)).lastSeenAt;
      for (const [subject, payload] of [
        [subjects.health, { status: 'fine' }],
        [subjects.health, { status: 'ok', message: 'x'.repeat(257) }],
        [subjects.heartbeat, { uptimeSeconds: -1 }],
        [subjects.heartbeat, { sentAt: 'yesterday' }],
        [subjects.heartbeat, { extra: true }],
        [subjects.stats, { 'bad name!': 1 }],
        [subjects.stats, { load: '1' }],
        [subjects.stats, Object.fromEntries(Array.from({ length: 65 }, (_, index) => [`m${index}`, index]))],
        [subjects.heartbeat, 'x'.repeat(9000)],
      ] as const) {
        assert.equal((await send(agent, subject, payload)).statusCode, 204, subject);
      }
      seen = await view(tenantA, agent.agentId);
      assert.equal(seen.lastSeenAt, lastSeen);
      assert.equal(seen.health?.status, 'ok');
      assert.deepEqual(seen.stats?.values, { 'load.1m': 0.5, 'queue.depth': 12 });
    });

    it('an agent silent past BULWARK_AGENT_STALE_SECONDS is marked stale by the sweep and audited once; a heartbeat clears it', async () => {
      const agent = await pair((await newCode(tenantA)).code);
      const subjects = agentSubjects(agent.tenantId, agent.agentId);
      await send(agent, subjects.heartbeat, {});
      const { agents } = test.app.services;
      clock.advance(60_000);
      await agents.sweepStale();
      assert.equal((await view(tenantA, agent.agentId)).stale, false);
      clock.advance(31_000);
      assert.equal((await view(tenantA, agent.agentId)).stale, true, 'the answer knows before the sweep');
      assert.ok((await agents.sweepStale()) >= 1);
      assert.equal(await agents.sweepStale(), 0, 'marked once');
      const staleEvents = () => events(tenantA.tenantId, 'agent.stale').then((rows) => rows.filter((row) => row['target_id'] === agent.agentId));
      assert.deepEqual((await staleEvents()).map((row) => [row['actor_kind'], (row['detail'] as { stale: boolean }).stale]), [['system', true]]);

      await send(agent, subjects.heartbeat, { uptimeSeconds: 100 });
      assert.equal((await view(tenantA, agent.agentId)).stale, false);
      assert.deepEqual((await staleEvents()).map((row) => [row['actor_kind'], (row['detail'] as { stale: boolean }).stale]), [['system', true], ['agent', false]]);
      assert.equal(await agents.sweepStale(), 0);
    });

    it("an agent publishing on another tenant's or another agent's subjects is refused (403) and nothing is delivered; its token opens only its own path", async () => {
      const agentA = await pair((await newCode(tenantA)).code);
      const agentB = await pair((await newCode(tenantB)).code);
      const siblingA = await pair((await newCode(tenantA)).code);
      const delivered: string[] = [];
      const stop = test.app.services.bus.subscribe('bulwark.t.*.agents.>', (subject) => {
        delivered.push(subject);
      });
      try {
        for (const subject of [
          agentSubjects(tenantB.tenantId, agentB.agentId).heartbeat,
          `bulwark.t.${tenantB.tenantId}.agents.${agentA.agentId}.heartbeat`,
          agentSubjects(tenantA.tenantId, siblingA.agentId).health,
          `bulwark.t.${tenantA.tenantId}.audit`,
        ]) {
          assertProblem(await send(agentA, subject, { status: 'down' }), 403, 'forbidden');
        }
        assertProblem(await send(agentA, agentSubjects(tenantB.tenantId, agentB.agentId).heartbeat, {}, agentA.credentials.token, agentB.agentId), 403, 'forbidden');
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(delivered, []);
        assert.equal((await view(tenantB, agentB.agentId)).lastSeenAt, null);
        assert.equal((await view(tenantA, siblingA.agentId)).health, null);
        // Its own subject goes through (control).
        assert.equal((await send(agentA, agentSubjects(tenantA.tenantId, agentA.agentId).heartbeat, {})).statusCode, 204);
        assert.deepEqual(delivered, [agentSubjects(tenantA.tenantId, agentA.agentId).heartbeat]);
      } finally {
        stop();
      }
      // Without, with a garbage, another kind of, or a tampered token: 401 before the body is read.
      const gateway = (authorization: string | undefined) =>
        test.app.inject({
          method: 'POST',
          url: `/v1/agents/${agentA.agentId}/messages`,
          headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
          payload: JSON.stringify({ subject: agentSubjects(tenantA.tenantId, agentA.agentId).heartbeat, payload: {} }),
        });
      assertProblem(await gateway(undefined), 401, 'unauthenticated');
      assertProblem(await gateway('Bearer garbage'), 401, 'invalid_credentials');
      assertProblem(await gateway(`Bearer ${tenantA.apiKey}`), 401, 'invalid_credentials');
      const token = agentA.credentials.token;
      assertProblem(await gateway(`Bearer ${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`), 401, 'invalid_credentials');
      assertProblem(await gateway(`Bearer ${agentA.credentials.token.replace(tenantA.tenantId, tenantB.tenantId)}`), 401, 'invalid_credentials');
    });

    it('a report whose subject names another tenant than the agent’s is dropped by the subscriber', async () => {
      const agent = await pair((await newCode(tenantA)).code);
      const { agents } = test.app.services;
      assert.equal(await agents.report(`bulwark.t.${tenantB.tenantId}.agents.${agent.agentId}.heartbeat`, {}), 'ignored');
      assert.equal(await agents.report(agentSubjects(tenantA.tenantId, agent.agentId).heartbeat, {}), 'recorded');
    });

    it('revocation stops the token at once and is audited once; the agent stays listed as revoked and its reports are dropped', async () => {
      const agent = await pair((await newCode(tenantA)).code);
      const subjects = agentSubjects(agent.tenantId, agent.agentId);
      assert.equal((await send(agent, subjects.heartbeat, {})).statusCode, 204);
      assert.equal((await as(tenantA, 'DELETE', `/agents/${agent.agentId}`)).statusCode, 204);
      assertProblem(await send(agent, subjects.heartbeat, {}), 401, 'invalid_credentials');
      const revoked = await view(tenantA, agent.agentId);
      assert.equal(revoked.status, 'revoked');
      assert.equal(revoked.stale, false);
      assert.equal(await test.app.services.agents.report(subjects.health, { status: 'down' }), 'ignored');
      assert.equal((await as(tenantA, 'DELETE', `/agents/${agent.agentId}`)).statusCode, 204);
      assert.equal((await events(tenantA.tenantId, 'agent.revoke')).filter((row) => row['target_id'] === agent.agentId).length, 1);
      assertProblem(await as(tenantA, 'DELETE', '/agents/0123456789ab'), 404, 'not_found');
    });

    it("a suspended tenant's agents are refused at the gateway and its codes pair nothing", async () => {
      // Earlier tests moved the clock past the operator's access token.
      await test.relogOperator();
      const tenant = await test.tenantWithKey('Agents S');
      const agent = await pair((await newCode(tenant)).code);
      const code = await newCode(tenant);
      const status = (value: string) => test.call({ method: 'PATCH', url: `/v1/tenants/${tenant.tenantId}`, token: test.operatorToken, body: { status: value } });
      assert.equal((await status('suspended')).statusCode, 200);
      try {
        assertProblem(await send(agent, agentSubjects(tenant.tenantId, agent.agentId).heartbeat, {}), 403, 'tenant_suspended');
        assertProblem(await pairRaw({ code: code.code, publicKey: { type: 'ed25519', key: agentKey() } }, freshAddress()), 403, 'tenant_suspended');
      } finally {
        assert.equal((await status('active')).statusCode, 200);
      }
      await pair(code.code);
    });

    it('live codes are listed without the code; withdrawing them all leaves none that pairs, and is audited', async () => {
      await test.relogOperator();
      const tenant = await test.tenantWithKey('Agents withdraw');
      const live = await newCode(tenant, { name: 'Listed' });
      const listed = await as(tenant, 'GET', '/agents/pairing-codes');
      assert.equal(listed.statusCode, 200, listed.body);
      assert.deepEqual(listed.json<{ items: { id: string; name: string | null }[] }>().items.map((item) => [item.id, item.name]), [[live.id, 'Listed']]);
      assert.ok(!listed.body.includes(live.code));
      assertProblem(await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/agents/pairing-codes`, token: tenantA.apiKey }), 404, 'not_found');
      const withdrawn = await as(tenant, 'DELETE', '/agents/pairing-codes');
      assert.deepEqual(withdrawn.json(), { withdrawn: 1 });
      assertProblem(await pairRaw({ code: live.code, publicKey: { type: 'ed25519', key: agentKey() } }, freshAddress()), 401, 'invalid_pairing_code');
      assert.deepEqual((await as(tenant, 'GET', '/agents/pairing-codes')).json<{ items: unknown[] }>().items, []);
      assert.deepEqual((await events(tenant.tenantId, 'pairing-code.delete')).map((row) => row['detail']), [{ withdrawn: 1 }]);
    });

    it('a tenant holds a bounded number of live codes', async () => {
      await test.relogOperator();
      const tenant = await test.tenantWithKey('Agents cap');
      for (let index = 0; index < 20; index += 1) await newCode(tenant);
      assertProblem(await as(tenant, 'POST', '/agents/pairing-codes', {}), 409, 'conflict');
      clock.advance(601_000);
      await newCode(tenant);
    });

    it("revocation cuts the agent's bus access in its transaction: a bus that cannot revoke changes nothing", async () => {
      const calls: string[] = [];
      let failRevoke = true;
      const busAccess: AgentBusAccess = {
        issue: (tenantId, agentId) => Promise.resolve({ kind: 'nats', servers: ['nats://127.0.0.1:4222'], creds: `creds of ${tenantId}/${agentId}`, userKey: `U${agentId.toUpperCase()}` }),
        revoke: (tenantId, agentId, userKey) => {
          calls.push(`${tenantId}/${agentId}/${String(userKey)}`);
          return failRevoke ? Promise.reject(new Error('nats down')) : Promise.resolve();
        },
      };
      const agents = new AgentsService(
        test.storage.db,
        new PlatformKeys(test.storage.db, test.rootKeys, clock),
        test.app.services.audit,
        // The app's service already re-encrypts the CAs: this second one only borrows the keys.
        { busAccess, keyring: { withKeys: (tenantId, use) => test.app.services.keyring.withKeys(tenantId, use), registerReencryptor: () => undefined }, tenantStatus: (tenantId) => test.app.services.tenancy.status(tenantId) },
        clock,
        { pairingTtlSeconds: 600, pairingMaxLiveCodes: 1000, pairingMaxFailures: 3, pairingWindowSeconds: 600, staleSeconds: 90, certificateDays: 30 },
      );
      const { code } = await agents.createPairingCode(tenantA.tenantId, {});
      const paired = await agents.pair({ code, publicKey: { type: 'ed25519', key: agentKey() } }, freshAddress());
      assert.equal(paired.credentials.bus.kind, 'nats');
      await assert.rejects(agents.revoke(tenantA.tenantId, paired.agentId), (error: Error & { code?: string }) => error.code === 'service_unavailable');
      assert.equal((await view(tenantA, paired.agentId)).status, 'active', 'nothing changed');
      assert.notEqual(await agents.authenticate(paired.credentials.token), null);
      failRevoke = false;
      await agents.revoke(tenantA.tenantId, paired.agentId);
      assert.equal(await agents.authenticate(paired.credentials.token), null);
      const userKey = `U${paired.agentId.toUpperCase()}`;
      assert.deepEqual(calls, [`${tenantA.tenantId}/${paired.agentId}/${userKey}`, `${tenantA.tenantId}/${paired.agentId}/${userKey}`]);
      assert.equal((await view(tenantA, paired.agentId)).status, 'revoked');
    });
  });
}
