import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { invalidationSubject } from '../../platform/invalidation.ts';
import { agentPermissions, agentSubjects } from './access.ts';
import { BusPermissionError, BusRequestError, BusUnavailableError, InProcessBus, patternCovers, subjectMatches } from './bus.ts';

const tenantA = 'aaaaaaaaaaaa';
const tenantB = 'bbbbbbbbbbbb';
const agentA1 = 'a1a1a1a1a1a1';
const agentA2 = 'a2a2a2a2a2a2';
const agentB1 = 'b1b1b1b1b1b1';

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('in-process bus', () => {
  it('matches subjects as NATS does: * one token, > the rest', () => {
    assert.ok(subjectMatches('bulwark.t.*.audit', 'bulwark.t.0123456789ab.audit'));
    assert.ok(subjectMatches('bulwark.t.0123456789ab.>', 'bulwark.t.0123456789ab.audit'));
    assert.ok(!subjectMatches('bulwark.t.0123456789ab.>', 'bulwark.t.0123456789ab'));
    assert.ok(!subjectMatches('bulwark.t.*.audit', 'bulwark.t.0123456789ab.audit.more'));
    assert.ok(!subjectMatches('bulwark.t.aaaaaaaaaaaa.>', 'bulwark.t.bbbbbbbbbbbb.audit'));
  });

  it('decides whether a permission covers a wildcard subscription as NATS does', () => {
    assert.ok(patternCovers('a.>', 'a.>'));
    assert.ok(patternCovers('a.>', 'a.b.*'));
    assert.ok(patternCovers('a.>', 'a.*.>'));
    assert.ok(patternCovers('a.*', 'a.*'));
    assert.ok(patternCovers('a.*.c', 'a.b.c'));
    assert.ok(!patternCovers('a.*', 'a.>'), '* is one token, > may be many');
    assert.ok(!patternCovers('a.b.>', 'a.>'), 'a wider subscription is not covered');
    assert.ok(!patternCovers('a.b.>', 'a.*.c'));
    assert.ok(!patternCovers('a.b', 'a.*'));
    assert.ok(!patternCovers('a.>', 'a'));
    assert.ok(!patternCovers('a.*', 'a.b.c'));
  });

  it('delivers to matching subscribers only, survives a failing one, and refuses malformed subjects', async () => {
    const failures: string[] = [];
    const bus = new InProcessBus({ onError: (_error, message) => failures.push(message) });
    const seen: string[] = [];
    bus.subscribe('bulwark.t.aaaaaaaaaaaa.>', () => {
      throw new Error('a broken subscriber');
    });
    bus.subscribe('bulwark.t.aaaaaaaaaaaa.>', async () => Promise.reject(new Error('a broken async subscriber')));
    const stop = bus.subscribe('bulwark.t.aaaaaaaaaaaa.>', (subject) => seen.push(subject));
    bus.subscribe('bulwark.t.bbbbbbbbbbbb.>', (subject) => seen.push(`wrong ${subject}`));
    await bus.publish('bulwark.t.aaaaaaaaaaaa.audit', { n: 1 });
    await settle();
    assert.deepEqual(seen, ['bulwark.t.aaaaaaaaaaaa.audit']);
    assert.deepEqual(failures, ['bus: a subscriber of bulwark.t.aaaaaaaaaaaa.audit failed', 'bus: a subscriber of bulwark.t.aaaaaaaaaaaa.audit failed']);
    stop();
    await bus.publish('bulwark.t.aaaaaaaaaaaa.audit', { n: 2 });
    await settle();
    assert.equal(seen.length, 1);
    await assert.rejects(bus.publish('bulwark.t.*.audit', {}), TypeError);
    await assert.rejects(bus.publish('bulwark..audit', {}), TypeError);
    assert.throws(() => bus.subscribe('bulwark.>.audit', () => undefined), TypeError);
    assert.throws(() => bus.subscribe('bulwark.t a', () => undefined), TypeError);
  });

  it('carries JSON values: each subscriber gets its own copy, and what is not JSON is refused', async () => {
    const bus = new InProcessBus();
    const copies: unknown[] = [];
    bus.subscribe('x.y', (_subject, payload) => {
      copies.push(payload);
      (payload as { list: number[] }).list.push(99);
    });
    bus.subscribe('x.y', (_subject, payload) => copies.push(payload));
    const sent = { list: [1], at: new Date(0) };
    await bus.publish('x.y', sent);
    await settle();
    assert.deepEqual(copies[1], { list: [1], at: '1970-01-01T00:00:00.000Z' }, 'a copy, as it would arrive over NATS');
    assert.deepEqual(sent.list, [1], "the publisher's value is untouched");
    await assert.rejects(bus.publish('x.y', undefined), TypeError);
    await assert.rejects(bus.publish('x.y', { big: 1n }), TypeError);
  });

  it('answers requests: the first reply wins; no subscriber answers at once; silence times out', async () => {
    const bus = new InProcessBus();
    bus.subscribe('svc.echo', async (_subject, payload, reply) => reply?.({ echo: payload }));
    bus.subscribe('svc.echo', async (_subject, _payload, reply) => {
      await settle();
      await reply?.('late');
    });
    assert.deepEqual(await bus.request('svc.echo', { n: 1 }, { timeoutMs: 1_000 }), { echo: { n: 1 } });
    const started = performance.now();
    await assert.rejects(bus.request('svc.none', {}, { timeoutMs: 5_000 }), (error: unknown) => error instanceof BusRequestError && error.reason === 'no_responders');
    assert.ok(performance.now() - started < 1_000);
    bus.subscribe('svc.silent', () => undefined);
    await assert.rejects(bus.request('svc.silent', {}, { timeoutMs: 50 }), (error: unknown) => error instanceof BusRequestError && error.reason === 'timeout');
    let plainReply: unknown = 'unset';
    bus.subscribe('svc.plain', (_subject, _payload, reply) => (plainReply = reply));
    await bus.publish('svc.plain', {});
    await settle();
    assert.equal(plainReply, undefined, 'a plain publish offers no reply');
  });

  it('shares the messages of a queue group: each goes to one member, plain subscribers get all', async () => {
    const bus = new InProcessBus();
    const counts = { first: 0, second: 0, plain: 0 };
    bus.subscribe('agents.report', () => (counts.first += 1), { queue: 'workers' });
    bus.subscribe('agents.report', () => (counts.second += 1), { queue: 'workers' });
    bus.subscribe('agents.report', () => (counts.plain += 1));
    for (let index = 0; index < 40; index += 1) await bus.publish('agents.report', index);
    await settle();
    assert.equal(counts.first + counts.second, 40);
    assert.ok(counts.first > 0 && counts.second > 0, 'both members take a share');
    assert.equal(counts.plain, 40);
  });

  it('refuses use once closed', async () => {
    const bus = new InProcessBus();
    await bus.close();
    await assert.rejects(bus.publish('x.y', {}), BusUnavailableError);
    assert.throws(() => bus.subscribe('x.y', () => undefined), BusUnavailableError);
  });
});

describe('scoped view of the in-process bus (an agent with agentPermissions)', () => {
  const setup = () => {
    const bus = new InProcessBus();
    const agent = bus.scoped(agentPermissions(tenantA, agentA1));
    const heard: string[] = [];
    bus.subscribe('bulwark.t.*.agents.*.>', (subject) => heard.push(subject));
    return { bus, agent, heard };
  };
  const refused = (operation: 'publish' | 'subscribe') => (error: unknown) => error instanceof BusPermissionError && error.operation === operation;

  it('publishes on its own subjects, and nowhere else: nothing is delivered', async () => {
    const { agent, heard } = setup();
    const own = agentSubjects(tenantA, agentA1);
    await agent.publish(own.heartbeat, { at: 1 });
    await agent.publish(own.health, { status: 'ok' });
    for (const subject of [
      agentSubjects(tenantB, agentB1).heartbeat,
      agentSubjects(tenantA, agentA2).heartbeat,
      `bulwark.t.${tenantA}.audit`,
      own.root,
      `${own.inbox}.x`,
      'bulwark.platform.audit',
      invalidationSubject,
    ]) {
      await assert.rejects(agent.publish(subject, {}), refused('publish'), subject);
    }
    await assert.rejects(agent.request(agentSubjects(tenantB, agentB1).stats, {}, { timeoutMs: 100 }), refused('publish'));
    await assert.rejects(agent.publish('bulwark.t.*.x', {}), TypeError, 'a malformed subject is refused as such');
    await settle();
    assert.deepEqual(heard, [own.heartbeat, own.health]);
  });

  it('subscribes within its commands and inbox only; a wider or foreign pattern is refused', async () => {
    const { bus, agent } = setup();
    const own = agentSubjects(tenantA, agentA1);
    const received: string[] = [];
    agent.subscribe(`${own.commands}.>`, (subject) => received.push(subject));
    agent.subscribe(`${own.commands}.*`, (subject) => received.push(`one ${subject}`));
    agent.subscribe(`${own.inbox}.>`, (subject) => received.push(subject));
    for (const pattern of [
      `${agentSubjects(tenantB, agentB1).commands}.>`,
      `${agentSubjects(tenantA, agentA2).commands}.>`,
      `${own.root}.>`,
      `bulwark.t.*.agents.${agentA1}.cmd.>`,
      `bulwark.t.${tenantA}.>`,
      '>',
      '_INBOX.>',
      invalidationSubject,
    ]) {
      assert.throws(() => agent.subscribe(pattern, () => undefined), refused('subscribe'), pattern);
    }
    await bus.publish(`${own.commands}.restart`, {});
    await bus.publish(`${agentSubjects(tenantB, agentB1).commands}.restart`, {});
    await settle();
    assert.deepEqual(received.sort(), [`${own.commands}.restart`, `one ${own.commands}.restart`]);
  });

  it('answers a command the server sends it, and makes requests of its own', async () => {
    const { bus, agent } = setup();
    const own = agentSubjects(tenantA, agentA1);
    agent.subscribe(`${own.commands}.>`, async (_subject, payload, reply) => reply?.({ done: payload }));
    assert.deepEqual(await bus.request(`${own.commands}.diagnose`, { depth: 1 }, { timeoutMs: 1_000 }), { done: { depth: 1 } });
    bus.subscribe(`bulwark.t.*.agents.*.config`, async (_subject, _payload, reply) => reply?.({ interval: 30 }));
    assert.deepEqual(await agent.request(`${own.root}.config`, {}, { timeoutMs: 1_000 }), { interval: 30 });
  });

  it('once closed (the agent was revoked), hears nothing and may not publish', async () => {
    const { bus, agent } = setup();
    const own = agentSubjects(tenantA, agentA1);
    const received: string[] = [];
    agent.subscribe(`${own.commands}.>`, (subject) => received.push(subject));
    agent.close();
    await bus.publish(`${own.commands}.restart`, {});
    await settle();
    assert.deepEqual(received, []);
    await assert.rejects(agent.publish(own.heartbeat, {}), BusUnavailableError);
  });
});
