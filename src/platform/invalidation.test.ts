import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setImmediate as settle } from 'node:timers/promises';
import type { AuditRecorder } from '../modules/audit/service.ts';
import { InProcessBus } from '../modules/bus/bus.ts';
import { EnvRootKey } from '../modules/keys/root/env.ts';
import { KeyringService } from '../modules/keys/service.ts';
import { openTestDatabase, type TestDatabase } from '../testing/engines.ts';
import { systemClock } from './clock.ts';
import { enterTenantContext } from './db/database.ts';
import { BulwarkError } from './errors/bulwark-error.ts';
import { newId } from './ids.ts';
import { CacheInvalidations, type Invalidation, invalidationSubject } from './invalidation.ts';

/** Two instances' invalidations over one bus, as two processes over one NATS: each hears both. */
function twoInstances() {
  const bus = new InProcessBus();
  const errors: string[] = [];
  const make = () => new CacheInvalidations({ onError: (_error, message) => errors.push(message) });
  const a = make();
  const b = make();
  a.connect(bus);
  b.connect(bus);
  return { bus, a, b, errors };
}

describe('cache invalidation fan-out', () => {
  const tenantId = newId();

  it('drops on the changing instance at once, and on the others when the message arrives', async () => {
    const { a, b } = twoInstances();
    const heard: string[] = [];
    a.on('tenant', ({ tenantId: id }) => heard.push(`a ${id}`));
    b.on('tenant', ({ tenantId: id }) => heard.push(`b ${id}`));
    b.on('limits', () => heard.push('b limits (another kind)'));
    a.invalidate({ kind: 'tenant', tenantId });
    assert.deepEqual(heard, [`a ${tenantId}`], 'synchronously here, before the caller answers');
    await settle();
    // Each instance also hears its own message back (harmless: dropping twice is dropping once).
    assert.deepEqual(heard.sort(), [`a ${tenantId}`, `a ${tenantId}`, `b ${tenantId}`]);
  });

  it('drops malformed messages and anything beyond ids: a forged or careless publisher reaches no cache', async () => {
    const { bus, b, errors } = twoInstances();
    const heard: unknown[] = [];
    b.on('sessions', (message) => heard.push(message));
    b.on('api-key', (message) => heard.push(message));
    const forged = [
      { kind: 'sessions', realm: 'user', scope: tenantId, ids: [] },
      { kind: 'sessions', realm: 'admin', scope: tenantId, ids: [newId()] },
      { kind: 'api-key', tenantId, keyId: newId(), key: `bwk_${tenantId}${newId()}${'x'.repeat(43)}` },
      { kind: 'api-key', tenantId: 'ABC', keyId: newId() },
      { kind: 'everything' },
      'sessions',
    ];
    for (const payload of forged) await bus.publish(invalidationSubject, payload);
    const valid: Invalidation = { kind: 'sessions', realm: 'user', scope: tenantId, ids: [newId()] };
    await bus.publish(invalidationSubject, valid);
    await settle();
    assert.deepEqual(heard, [valid]);
    assert.equal(errors.length, 2 * forged.length, 'each instance reported each one');
  });

  it('a publish that fails is reported, and the local drop happened anyway', async () => {
    const errors: string[] = [];
    const invalidations = new CacheInvalidations({ onError: (_error, message) => errors.push(message) });
    const dropped: string[] = [];
    invalidations.on('operator', ({ operatorId }) => dropped.push(operatorId));
    const bus = new InProcessBus();
    invalidations.connect(bus);
    await bus.close();
    const operatorId = newId();
    invalidations.invalidate({ kind: 'operator', operatorId });
    await settle();
    assert.deepEqual(dropped, [operatorId]);
    assert.deepEqual(errors, ['cache invalidation not published; other instances drop the entries within their cache TTL']);
  });
});

describe('a tenant key rotated on one instance', () => {
  let storage: TestDatabase;
  const rootKeys = new EnvRootKey(randomBytes(32).toString('base64'));
  // The keyring audits its changes; this test is about its cache, so the events go nowhere.
  const audit: AuditRecorder = { record: async () => undefined, recordAlone: async () => undefined };
  const tenantId = newId();
  const keyrings: KeyringService[] = [];
  const keyring = (invalidations: CacheInvalidations) => {
    const service = new KeyringService(storage.db, rootKeys, systemClock, { cacheTtlMs: 60_000, cacheMaxTenants: 10, audit, invalidations });
    keyrings.push(service);
    return service;
  };
  const context = { tenantId, table: 'transit', column: 'transit', rowId: '' };

  before(async () => {
    storage = await openTestDatabase('pglite');
    await storage.db.withPlatform(async (tx) => {
      await tx.query("INSERT INTO tenants (id, name, region) VALUES ($1, 'Rotating', 'local')", [tenantId]);
      await enterTenantContext(tx, tenantId);
      await keyring(new CacheInvalidations()).createKeyring(tx, tenantId);
    });
  });
  after(async () => {
    for (const service of keyrings) await service.close();
    await storage.close();
  });

  it('is the version every instance seals with next; without the fan-out another keeps the old one for its cache TTL', async () => {
    const { a, b } = twoInstances();
    const rotating = keyring(a);
    const other = keyring(b);
    // Control: an instance whose cache hears nothing (the bus down, or before this fan-out existed).
    const deaf = keyring(new CacheInvalidations());
    for (const service of [rotating, other, deaf]) assert.equal((await service.seal(tenantId, Buffer.from('x'), context)).keyVersion, 1);
    await rotating.rotate(tenantId);
    await settle();
    assert.equal((await rotating.seal(tenantId, Buffer.from('x'), context)).keyVersion, 2);
    assert.equal((await other.seal(tenantId, Buffer.from('x'), context)).keyVersion, 2, 'the other instance dropped its cached keyring');
    assert.equal((await deaf.seal(tenantId, Buffer.from('x'), context)).keyVersion, 1, 'the cached keyring is what kept the old version');
  });

  it('missed (the bus down): a stored ciphertext of the newer version fails one read, which reloads the keys', async () => {
    const rotating = keyring(new CacheInvalidations());
    const deaf = keyring(new CacheInvalidations());
    const transitOnly = keyring(new CacheInvalidations());
    const before = (await deaf.seal(tenantId, Buffer.from('x'), context)).keyVersion;
    assert.equal((await transitOnly.seal(tenantId, Buffer.from('x'), context)).keyVersion, before);
    await rotating.rotate(tenantId);
    const { ciphertext, keyVersion } = await rotating.seal(tenantId, Buffer.from('newer'), context);
    assert.equal(keyVersion, before + 1);
    const integrity = (error: unknown) => error instanceof BulwarkError && error.code === 'data_integrity_failed';
    await assert.rejects(deaf.open(tenantId, ciphertext, context, 'data_integrity_failed'), integrity);
    assert.equal((await deaf.open(tenantId, ciphertext, context, 'data_integrity_failed')).toString(), 'newer');
    assert.equal((await deaf.seal(tenantId, Buffer.from('x'), context)).keyVersion, before + 1);
    // A caller's ciphertext (transit) naming a version beyond the keys does not make them reload: it could on every call.
    for (let attempt = 0; attempt < 2; attempt += 1) {
      await assert.rejects(transitOnly.open(tenantId, ciphertext, context, 'invalid_ciphertext'), (error: unknown) => error instanceof BulwarkError && error.code === 'invalid_ciphertext');
    }
    assert.equal((await transitOnly.seal(tenantId, Buffer.from('x'), context)).keyVersion, before);
  });
});
