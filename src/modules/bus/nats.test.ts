import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAccount, createOperator, createUser, encodeUser, fmtCreds, parseCreds } from '@nats-io/jwt';
import { type ConnectionOptions, connect, credsAuthenticator, ErrorCode, type NatsConnection, NatsError } from 'nats';
import { ConfigError } from '../../platform/config/config.ts';
import { newId } from '../../platform/ids.ts';
import { invalidationSubject } from '../../platform/invalidation.ts';
import { testConfig } from '../../testing/engines.ts';
import { createBareTestApp } from '../../testing/app.ts';
import { natsServerSkip, type PrivateNats, sharedNatsSkip, startPrivateNats, testNatsUrl } from '../../testing/nats.ts';
import { agentPermissions, agentSubjects } from './access.ts';
import { BusPermissionError, BusRequestError, BusUnavailableError, InProcessBus } from './bus.ts';
import { NatsBus, natsTls } from './nats.ts';
import { NatsAgentAccess, natsAgentAccessOf } from './nats-credentials.ts';

const encoder = new TextEncoder();
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const pingable = async (bus: NatsBus) =>
  bus.ping().then(
    () => true,
    () => false,
  );

interface Agent {
  connection: NatsConnection;
  /** `publish <subject>` / `subscription <subject>`: what the server refused, as the client reports it. */
  refusals: string[];
  events: string[];
}

describe('the NATS bus and agents’ NATS users, against a private nats-server', { skip: natsServerSkip() }, () => {
  let nats: PrivateNats;
  let bus: NatsBus;
  let access: NatsAgentAccess;
  const busErrors: string[] = [];
  const agents: NatsConnection[] = [];
  const tenantA = newId();
  const tenantB = newId();
  const agentA1 = newId();
  const agentA2 = newId();
  const agentB1 = newId();

  const connectAgent = async (creds: string, options: Partial<ConnectionOptions> = {}): Promise<Agent> => {
    const connection = await connect({ servers: nats.url, authenticator: credsAuthenticator(encoder.encode(creds)), reconnectTimeWait: 100, maxReconnectAttempts: -1, ...options });
    agents.push(connection);
    const agent: Agent = { connection, refusals: [], events: [] };
    void (async () => {
      for await (const status of connection.status()) {
        agent.events.push(status.type);
        if (status.permissionContext !== undefined) agent.refusals.push(`${status.permissionContext.operation} ${status.permissionContext.subject}`);
      }
    })();
    return agent;
  };
  const pairedAgent = async (tenantId: string, agentId: string, options: Partial<ConnectionOptions> = {}) => {
    const credentials = await access.issue(tenantId, agentId);
    assert.equal(credentials.kind, 'nats');
    return { ...(await connectAgent(credentials.creds, { inboxPrefix: agentSubjects(tenantId, agentId).inbox, ...options })), credentials };
  };
  /** Collects what the server's bus hears on a pattern, once the server has the subscription (a ping is a round trip). */
  const listen = async (pattern: string) => {
    const heard: { subject: string; payload: unknown }[] = [];
    const stop = bus.subscribe(pattern, (subject, payload) => heard.push({ subject, payload }));
    await bus.ping();
    return { heard, stop };
  };

  before(async () => {
    nats = await startPrivateNats();
    bus = new NatsBus({ servers: [nats.url], creds: nats.serverCreds, reconnectDelayMs: { min: 50, max: 200 }, onError: (_error, message) => busErrors.push(message) });
    await until('the bus to connect', () => pingable(bus));
    access = new NatsAgentAccess({ servers: [nats.url], agentServers: ['nats://bus.example:4222'], signing: nats.signing });
  });
  after(async () => {
    await Promise.all(agents.map(async (connection) => connection.close().catch(() => undefined)));
    await bus.close();
    await nats.close();
  });

  it('issues a user whose JWT allows exactly the agent’s subjects, signed by the agents account', async () => {
    const credentials = await access.issue(tenantA, agentA1);
    assert.ok(credentials.kind === 'nats');
    assert.deepEqual(credentials.servers, ['nats://bus.example:4222']);
    const { uc, aid, key } = await parseCreds(encoder.encode(credentials.creds));
    assert.equal(aid, nats.signing.account);
    assert.equal(uc.sub, credentials.userKey);
    assert.match(key, /^SU/);
    const permissions = agentPermissions(tenantA, agentA1);
    assert.deepEqual(uc.nats.pub, { allow: permissions.publish });
    assert.deepEqual(uc.nats.sub, { allow: permissions.subscribe });
    assert.equal(uc.nats.resp?.max, 1);
    assert.equal(uc.nats.bearer_token, false);
    const again = await access.issue(tenantA, agentA1);
    assert.ok(again.kind === 'nats' && again.userKey !== credentials.userKey, 'every issue is a new user');
    await assert.rejects(access.issue('bulwark.>', agentA1), TypeError);
    await assert.rejects(access.issue(tenantA, '*'), TypeError);
  });

  it('delivers an agent’s heartbeat to the server’s bus', async () => {
    const { heard, stop } = await listen('bulwark.t.*.agents.*.heartbeat');
    const agent = await pairedAgent(tenantA, agentA1);
    agent.connection.publish(agentSubjects(tenantA, agentA1).heartbeat, encoder.encode(JSON.stringify({ uptime: 5 })));
    await until('the heartbeat', () => heard.length === 1);
    assert.deepEqual(heard, [{ subject: agentSubjects(tenantA, agentA1).heartbeat, payload: { uptime: 5 } }]);
    assert.deepEqual(agent.refusals, []);
    stop();
  });

  it('refuses an agent publishing on another tenant’s or another agent’s subjects: nothing reaches a subscriber', async () => {
    const { heard, stop } = await listen('bulwark.t.>');
    const agent = await pairedAgent(tenantA, agentA1);
    const foreign = [
      agentSubjects(tenantB, agentB1).heartbeat,
      agentSubjects(tenantB, agentB1).commands + '.restart',
      agentSubjects(tenantA, agentA2).heartbeat,
      `bulwark.t.${tenantB}.audit`,
      // The instances' cache invalidations: an agent must not make them drop (or hear) anything.
      invalidationSubject,
    ];
    for (const subject of foreign) agent.connection.publish(subject, encoder.encode('{"forged":true}'));
    // Messages of one connection arrive in order: once this one is heard, none of the above is coming.
    const own = agentSubjects(tenantA, agentA1).stats;
    agent.connection.publish(own, encoder.encode('{"cpu":1}'));
    await until('the agent’s own message', () => heard.length >= 1);
    await agent.connection.flush();
    await settle();
    assert.deepEqual(heard, [{ subject: own, payload: { cpu: 1 } }]);
    assert.deepEqual(agent.refusals, foreign.map((subject) => `publish ${subject}`), 'the server answered a permissions violation for each');
    stop();
  });

  it('refuses an agent subscribing to another tenant’s subjects: it receives nothing, the rightful agent does', async () => {
    const intruder = await pairedAgent(tenantA, agentA1);
    const rightful = await pairedAgent(tenantB, agentB1);
    const commands = `${agentSubjects(tenantB, agentB1).commands}.>`;
    const stolen: string[] = [];
    const refusedWith: unknown[] = [];
    intruder.connection.subscribe(commands, { callback: (error, message) => (error === null ? stolen.push(message.subject) : refusedWith.push(error)) });
    intruder.connection.subscribe('bulwark.t.*.agents.*.cmd.>', { callback: (error, message) => (error === null ? stolen.push(message.subject) : refusedWith.push(error)) });
    const delivered: string[] = [];
    rightful.connection.subscribe(commands, { callback: (error, message) => (error === null ? delivered.push(message.subject) : assert.fail(error)) });
    await intruder.connection.flush();
    await rightful.connection.flush();
    await bus.publish(`${agentSubjects(tenantB, agentB1).commands}.restart`, { now: true });
    await until('the rightful agent’s command', () => delivered.length === 1);
    await settle();
    assert.deepEqual(stolen, []);
    assert.equal(refusedWith.length, 2);
    assert.ok(refusedWith.every((error) => error instanceof NatsError && error.code === (ErrorCode.PermissionsViolation as string)));
    assert.deepEqual(intruder.refusals, [`subscription ${commands}`, 'subscription bulwark.t.*.agents.*.cmd.>']);
  });

  it('enforces what the in-process scoped bus enforces, subject for subject', async () => {
    const agent = await pairedAgent(tenantA, agentA1);
    const scoped = new InProcessBus().scoped(agentPermissions(tenantA, agentA1));
    const own = agentSubjects(tenantA, agentA1);
    const publishes = [
      own.heartbeat,
      own.health,
      `${own.root}.custom.deep`,
      own.root,
      agentSubjects(tenantB, agentB1).heartbeat,
      agentSubjects(tenantA, agentA2).stats,
      `bulwark.t.${tenantA}.audit`,
      `${own.inbox}.x`,
      '_INBOX.someone',
      'bulwark.platform.audit',
      invalidationSubject,
    ];
    const subscriptions = [
      `${own.commands}.>`,
      `${own.commands}.*`,
      `${own.commands}.restart`,
      `${own.inbox}.>`,
      `${own.root}.>`,
      own.heartbeat,
      `${agentSubjects(tenantB, agentB1).commands}.>`,
      `${agentSubjects(tenantA, agentA2).commands}.>`,
      `bulwark.t.*.agents.${agentA1}.cmd.>`,
      'bulwark.>',
      '>',
      '_INBOX.>',
      `_INBOX.${tenantA}.>`,
      invalidationSubject,
    ];
    const decisions = { nats: [] as string[], inProcess: [] as string[] };
    for (const subject of publishes) {
      agent.connection.publish(subject, encoder.encode('{}'));
      await agent.connection.flush();
      await settle();
      decisions.nats.push(`${subject}: ${agent.refusals.includes(`publish ${subject}`) ? 'denied' : 'allowed'}`);
      decisions.inProcess.push(`${subject}: ${await scoped.publish(subject, {}).then(() => 'allowed', (error: unknown) => (error instanceof BusPermissionError ? 'denied' : String(error)))}`);
    }
    for (const pattern of subscriptions) {
      const subscription = agent.connection.subscribe(pattern);
      await agent.connection.flush();
      await settle();
      decisions.nats.push(`sub ${pattern}: ${agent.refusals.includes(`subscription ${pattern}`) ? 'denied' : 'allowed'}`);
      subscription.unsubscribe();
      let inProcess = 'allowed';
      try {
        scoped.subscribe(pattern, () => undefined)();
      } catch (error) {
        inProcess = error instanceof BusPermissionError ? 'denied' : String(error);
      }
      decisions.inProcess.push(`sub ${pattern}: ${inProcess}`);
    }
    assert.deepEqual(decisions.inProcess, decisions.nats);
    assert.equal(decisions.nats.filter((decision) => decision.endsWith('allowed')).length, 7, 'the table holds allowed cases too');
  });

  it('lets an agent answer a command once, and make requests through its own inbox only', async () => {
    const own = agentSubjects(tenantA, agentA1);
    const agent = await pairedAgent(tenantA, agentA1);
    agent.connection.subscribe(`${own.commands}.>`, {
      callback: (error, message) => {
        if (error === null) message.respond(encoder.encode(JSON.stringify({ answered: message.subject })));
      },
    });
    await agent.connection.flush();
    assert.deepEqual(await bus.request(`${own.commands}.diagnose`, {}, { timeoutMs: 2_000 }), { answered: `${own.commands}.diagnose` });

    const stop = bus.subscribe('bulwark.t.*.agents.*.config', async (_subject, _payload, reply) => reply?.({ interval: 30 }), { queue: 'bulwark' });
    await bus.ping();
    const answer = await agent.connection.request(`${own.root}.config`, encoder.encode('{}'), { timeout: 2_000 });
    assert.deepEqual(JSON.parse(new TextDecoder().decode(answer.data)), { interval: 30 });
    // Without its own inbox prefix the reply subscription (`_INBOX.<random>.*`) is outside its permissions.
    const careless = await pairedAgent(tenantA, agentA1, { inboxPrefix: '_INBOX' });
    await assert.rejects(careless.connection.request(`${own.root}.config`, encoder.encode('{}'), { timeout: 1_000 }), (error: unknown) => error instanceof NatsError && error.isPermissionError());
    stop();
  });

  it('keeps the agents account’s messages inside it, and another account’s out of it', async () => {
    const outsider = await connect({ servers: nats.url, authenticator: credsAuthenticator(encoder.encode(nats.outsiderCreds)) });
    agents.push(outsider);
    const overheard: string[] = [];
    outsider.subscribe('bulwark.>', { callback: (_error, message) => overheard.push(message.subject) });
    await outsider.flush();
    const { heard, stop } = await listen('bulwark.t.>');
    const agent = await pairedAgent(tenantA, agentA1);
    const heartbeat = agentSubjects(tenantA, agentA1).heartbeat;
    agent.connection.publish(heartbeat, encoder.encode('{}'));
    await until('the heartbeat', () => heard.length === 1);
    // The outsider's subscription is live: it hears its own account's message on the same subject space.
    const forged = agentSubjects(tenantA, agentA2).heartbeat;
    outsider.publish(forged, encoder.encode('{"forged":true}'));
    await until('the outsider’s own message', () => overheard.length === 1);
    await settle();
    assert.deepEqual(overheard, [forged], 'the agent’s heartbeat did not cross over');
    assert.deepEqual(
      heard.map(({ subject }) => subject),
      [heartbeat],
      'nor did the outsider’s message',
    );
    stop();
  });

  it('revokes an agent: disconnected within a second, refused on reconnect, the others unaffected', async () => {
    const revoked = await pairedAgent(tenantA, agentA1);
    const neighbour = await pairedAgent(tenantA, agentA2);
    const closed = revoked.connection.closed();
    const started = performance.now();
    await access.revoke(tenantA, agentA1, revoked.credentials.userKey);
    await until('the revoked agent to be disconnected', () => revoked.events.includes('disconnect'), 1_000);
    assert.ok(performance.now() - started < 1_000, `disconnected after ${Math.round(performance.now() - started)} ms`);
    const reason = await closed;
    assert.ok(reason instanceof NatsError && reason.code === (ErrorCode.AuthorizationViolation as string), 'its reconnects are refused until the client gives up');
    await assert.rejects(
      connect({ servers: nats.url, authenticator: credsAuthenticator(encoder.encode(revoked.credentials.creds)), reconnect: false }),
      (error: unknown) => error instanceof NatsError && error.code === (ErrorCode.AuthorizationViolation as string),
    );

    const { heard, stop } = await listen('bulwark.t.*.agents.*.heartbeat');
    neighbour.connection.publish(agentSubjects(tenantA, agentA2).heartbeat, encoder.encode('{}'));
    await until('the neighbour’s heartbeat', () => heard.length === 1);
    stop();

    await access.revoke(tenantA, agentA1, revoked.credentials.userKey);
    await access.revoke(tenantA, agentA1, null);
    await assert.rejects(access.revoke(tenantA, agentA1, nats.signing.account), TypeError, 'an account key is no user key');
    await assert.rejects(access.revoke(tenantA, agentA1, 'UNOTAKEY'), TypeError);
  });

  it('revokes concurrently without losing one', async () => {
    const first = await pairedAgent(tenantB, agentB1);
    const second = await pairedAgent(tenantA, agentA2);
    await Promise.all([access.revoke(tenantB, agentB1, first.credentials.userKey), access.revoke(tenantA, agentA2, second.credentials.userKey)]);
    await until('both to be disconnected', () => first.events.includes('disconnect') && second.events.includes('disconnect'), 1_000);
  });

  it('answers no_responders and timeout on requests, and refuses to publish once closed', async () => {
    await assert.rejects(bus.request(`bulwark.t.${tenantA}.nobody`, {}, { timeoutMs: 2_000 }), (error: unknown) => error instanceof BusRequestError && error.reason === 'no_responders');
    const stop = bus.subscribe(`bulwark.t.${tenantA}.silent`, () => undefined);
    await bus.ping();
    await assert.rejects(bus.request(`bulwark.t.${tenantA}.silent`, {}, { timeoutMs: 100 }), (error: unknown) => error instanceof BusRequestError && error.reason === 'timeout');
    stop();
    await assert.rejects(bus.publish(`bulwark.t.${tenantA}.x`, undefined), TypeError);
    const closing = new NatsBus({ servers: [nats.url], creds: nats.serverCreds });
    await until('the second bus to connect', () => pingable(closing));
    await closing.close();
    await assert.rejects(closing.publish(`bulwark.t.${tenantA}.x`, {}), BusUnavailableError);
    await assert.rejects(closing.ping(), BusUnavailableError);
  });

  it('survives a nats-server restart while agents publish: down while it is down, then everyone reconnects', async () => {
    const agentId = newId();
    const agent = await pairedAgent(tenantB, agentId);
    const subject = agentSubjects(tenantB, agentId).heartbeat;
    const { heard, stop } = await listen('bulwark.t.*.agents.*.heartbeat');
    let sent = 0;
    const beat = setInterval(() => {
      sent += 1;
      try {
        agent.connection.publish(subject, encoder.encode(JSON.stringify({ sent })));
      } catch {
        // Closed: the test fails on the missing heartbeats below.
      }
    }, 25);
    try {
      await until('heartbeats before the restart', () => heard.length > 2);
      await nats.stop();
      await until('the bus to report down', async () => !(await pingable(bus)), 2_000);
      await assert.rejects(bus.publish(`bulwark.t.${tenantA}.x`, {}), BusUnavailableError, 'nothing is buffered while down');
      const before = heard.length;
      await nats.start();
      const reconnectMs = await until('heartbeats after the restart', () => heard.length > before + 2, 10_000);
      assert.ok(await pingable(bus));
      assert.ok(busErrors.includes('bus: NATS connection lost; reconnecting'));
      assert.ok(reconnectMs < 10_000);
    } finally {
      clearInterval(beat);
      stop();
    }
  });

  it('is the app’s bus when BULWARK_NATS_URL is set: /readyz reports it, down and back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-nats-config-'));
    const file = async (name: string, content: string) => {
      const path = join(dir, name);
      await writeFile(path, content, { mode: 0o600 });
      return path;
    };
    const test = await createBareTestApp('pglite', {
      config: {
        natsUrl: nats.url,
        natsCredsFile: await file('server.creds', nats.serverCreds),
        natsAgentAccount: nats.signing.account,
        natsAgentSigningKeyFile: await file('account.nk', nats.signing.accountSigningSeed),
        natsOperatorSigningKeyFile: await file('operator.nk', nats.signing.operatorSigningSeed),
        natsSystemCredsFile: await file('system.creds', nats.signing.systemCreds),
      },
    });
    try {
      assert.ok(test.app.services.bus instanceof NatsBus);
      const ready = async () => test.call({ method: 'GET', url: '/readyz' });
      await until('readiness', async () => (await ready()).statusCode === 200);
      assert.deepEqual((await ready()).json(), { status: 'ready', checks: { database: 'ok', rootKey: 'ok', bus: 'ok' } });

      const issued = await test.app.services.natsAgentAccess?.issue(tenantA, newId());
      assert.ok(issued?.kind === 'nats');
      assert.deepEqual(issued.servers, [nats.url], 'agents are told the server URL by default');

      await nats.stop();
      await until('readiness to fail', async () => (await ready()).statusCode === 503, 2_000);
      const down = (await ready()).json<{ code: string; checks: Record<string, string> }>();
      assert.equal(down.code, 'service_unavailable');
      assert.equal(down.checks['bus'], 'unavailable');
      await nats.start();
      await until('readiness after the restart', async () => (await ready()).statusCode === 200, 10_000);
    } finally {
      await test.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the NATS bus on the shared server (no auth)', { skip: await sharedNatsSkip() }, () => {
  it('publishes, subscribes and answers requests', async () => {
    const bus = new NatsBus({ servers: [testNatsUrl] });
    try {
      await until('the bus to connect', () => pingable(bus));
      const root = `bulwark.t.${newId()}.test`;
      const heard: unknown[] = [];
      bus.subscribe(`${root}.>`, (_subject, payload) => heard.push(payload));
      bus.subscribe(`${root}.echo`, async (_subject, payload, reply) => reply?.({ echo: payload }));
      await bus.ping();
      await bus.publish(`${root}.event`, { n: 1 });
      assert.deepEqual(await bus.request(`${root}.echo`, { n: 2 }, { timeoutMs: 2_000 }), { echo: { n: 2 } });
      await until('the event', () => heard.length === 2);
      assert.deepEqual(heard, [{ n: 1 }, { n: 2 }]);
    } finally {
      await bus.close();
    }
  });
});

describe('tls:// NATS URLs', { skip: await sharedNatsSkip() }, () => {
  it('require TLS: a server that offers none (the shared plaintext one) is refused, not spoken to in clear', async () => {
    assert.deepEqual(natsTls(['nats://bus:4222']), {});
    assert.deepEqual(natsTls(['nats://a:4222', 'TLS://b:4222']), { tls: {} });
    const plain = new URL(testNatsUrl);
    await assert.rejects(connect({ servers: [`tls://${plain.host}`], reconnect: false, timeout: 2_000, ...natsTls([`tls://${plain.host}`]) }), (error: unknown) => error instanceof NatsError && error.code === (ErrorCode.ServerOptionNotAvailable as string));
    // Control: the same server in clear, without the option, connects.
    const connection = await connect({ servers: [testNatsUrl], reconnect: false, timeout: 2_000 });
    await connection.close();
  });
});

describe('NATS configuration', () => {
  const problemsOf = (overrides: Parameters<typeof testConfig>[0]) => {
    try {
      testConfig(overrides);
      return [];
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return [...error.problems];
    }
  };
  const account = createAccount().getPublicKey();

  it('takes the agent signing material all together, and only with BULWARK_NATS_URL', () => {
    assert.deepEqual(problemsOf({ natsUrl: 'nats://127.0.0.1:4222', natsAgentAccount: account }), [
      'BULWARK_NATS_AGENT_ACCOUNT, BULWARK_NATS_AGENT_SIGNING_KEY_FILE, BULWARK_NATS_OPERATOR_SIGNING_KEY_FILE, BULWARK_NATS_SYSTEM_CREDS_FILE go together: set all or none',
    ]);
    assert.deepEqual(problemsOf({ natsCredsFile: '/run/bulwark/nats.creds', natsAgentServers: 'nats://bus.example:4222' }), [
      'BULWARK_NATS_CREDS_FILE needs BULWARK_NATS_URL',
      'BULWARK_NATS_AGENT_SERVERS needs BULWARK_NATS_URL',
    ]);
    assert.deepEqual(problemsOf({ natsUrl: 'nats://127.0.0.1:4222', natsAgentAccount: 'UABC' }), [
      'BULWARK_NATS_AGENT_ACCOUNT must be a NATS account public key (A followed by 55 base32 characters) (got "UABC")',
    ]);
    assert.deepEqual(problemsOf({ natsUrl: 'nats://127.0.0.1:4222', natsAgentServers: 'nats://agent:secret@bus.example:4222' }), [
      'BULWARK_NATS_AGENT_SERVERS must be up to 16 comma-separated nats:// or tls:// URLs without credentials (got "nats://agent:secret@bus.example:4222")',
    ]);
    assert.deepEqual(problemsOf({ natsUrl: 'http://127.0.0.1:4222' }), ['BULWARK_NATS_URL must be a URL with scheme nats or tls'], 'a secret option is not echoed');
    assert.equal(testConfig({ natsUrl: 'nats://127.0.0.1:4222' }).natsAgentServers, undefined);
  });

  it('builds the agents’ access from the key files, telling agents the server without Bulwark’s own credentials', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-nats-keys-'));
    try {
      const write = async (name: string, content: string) => {
        await writeFile(join(dir, name), content, { mode: 0o600 });
        return join(dir, name);
      };
      const seed = (key: { getSeed(): Uint8Array }) => new TextDecoder().decode(key.getSeed());
      const system = createAccount();
      const systemUser = createUser();
      const operatorSeed = seed(createOperator());
      const files = {
        natsAgentAccount: account,
        natsAgentSigningKeyFile: await write('account.nk', `${seed(createAccount())}\n`),
        natsOperatorSigningKeyFile: await write('operator.nk', operatorSeed),
        natsSystemCredsFile: await write('system.creds', new TextDecoder().decode(fmtCreds(await encodeUser('sys', systemUser, system), systemUser))),
      };
      const access = natsAgentAccessOf(testConfig({ natsUrl: 'nats://bulwark:hunter2@127.0.0.1:4222', ...files }));
      const issued = await access?.issue(newId(), newId());
      assert.ok(issued?.kind === 'nats');
      assert.deepEqual(issued.servers, ['nats://127.0.0.1:4222']);
      assert.equal(natsAgentAccessOf(testConfig({ natsUrl: 'nats://127.0.0.1:4222' })), undefined, 'without the signing material agents use the gateway');
      const swapped = testConfig({ natsUrl: 'nats://127.0.0.1:4222', ...files, natsAgentSigningKeyFile: files.natsOperatorSigningKeyFile });
      assert.throws(() => natsAgentAccessOf(swapped), /the agents account signing key must be an account seed/);
      // A key file others can read is refused, naming the fix (never the content).
      await chmod(files.natsOperatorSigningKeyFile, 0o644);
      assert.throws(() => natsAgentAccessOf(testConfig({ natsUrl: 'nats://127.0.0.1:4222', ...files })), (error: unknown) => error instanceof Error && /accessible by group or others \(mode 0644\).*chmod 600/.test(error.message) && !error.message.includes(operatorSeed));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
