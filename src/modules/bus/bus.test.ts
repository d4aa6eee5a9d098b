import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InProcessBus, subjectMatches } from './bus.ts';

describe('in-process bus', () => {
  it('matches subjects as NATS does: * one token, > the rest', () => {
    assert.ok(subjectMatches('bulwark.t.*.audit', 'bulwark.t.0123456789ab.audit'));
    assert.ok(subjectMatches('bulwark.t.0123456789ab.>', 'bulwark.t.0123456789ab.audit'));
    assert.ok(!subjectMatches('bulwark.t.0123456789ab.>', 'bulwark.t.0123456789ab'));
    assert.ok(!subjectMatches('bulwark.t.*.audit', 'bulwark.t.0123456789ab.audit.more'));
    assert.ok(!subjectMatches('bulwark.t.aaaaaaaaaaaa.>', 'bulwark.t.bbbbbbbbbbbb.audit'));
  });

  it('delivers to matching subscribers only, survives a throwing one, and refuses malformed subjects', async () => {
    const bus = new InProcessBus();
    const seen: string[] = [];
    bus.subscribe('bulwark.t.aaaaaaaaaaaa.>', () => {
      throw new Error('a broken subscriber');
    });
    const stop = bus.subscribe('bulwark.t.aaaaaaaaaaaa.>', (subject) => seen.push(subject));
    bus.subscribe('bulwark.t.bbbbbbbbbbbb.>', (subject) => seen.push(`wrong ${subject}`));
    await bus.publish('bulwark.t.aaaaaaaaaaaa.audit', { n: 1 });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(seen, ['bulwark.t.aaaaaaaaaaaa.audit']);
    stop();
    await bus.publish('bulwark.t.aaaaaaaaaaaa.audit', { n: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(seen.length, 1);
    await assert.rejects(bus.publish('bulwark.t.*.audit', {}), TypeError);
    await assert.rejects(bus.publish('bulwark..audit', {}), TypeError);
  });
});
