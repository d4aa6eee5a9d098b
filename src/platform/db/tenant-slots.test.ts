import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BulwarkError } from '../errors/bulwark-error.ts';
import { createTestApp } from '../../testing/app.ts';
import { TenantSlots } from './tenant-slots.ts';

describe("a tenant's share of the pool", () => {
  it("makes a tenant over its share wait for its own slots, in order, while other tenants go ahead", async () => {
    const slots = new TenantSlots({ max: 2, waitMs: 5_000 });
    await slots.acquire('a');
    await slots.acquire('a');
    const order: string[] = [];
    const third = slots.acquire('a').then(() => order.push('a3'));
    const fourth = slots.acquire('a').then(() => order.push('a4'));
    await slots.acquire('b');
    order.push('b1');
    slots.release('a');
    await third;
    slots.release('a');
    await fourth;
    assert.deepEqual(order, ['b1', 'a3', 'a4']);
  });

  it('gives up after the wait with 503 service_unavailable, and the slot count stays right', async () => {
    const slots = new TenantSlots({ max: 1, waitMs: 50 });
    await slots.acquire('a');
    await assert.rejects(slots.acquire('a'), (error) => error instanceof BulwarkError && error.code === 'service_unavailable');
    slots.release('a');
    await slots.acquire('a');
    slots.release('a');
    let ran = false;
    await slots.around('a', async () => {
      ran = true;
    });
    assert.equal(ran, true);
  });
});

describe('the embedded engine shares its one connection fairly', () => {
  it("serves another tenant's read between a flooding tenant's queries, not after all of them", async () => {
    const test = await createTestApp('pglite');
    try {
      const [a, b] = [await test.tenantWithKey('A'), await test.tenantWithKey('B')];
      const finished: string[] = [];
      const read = (tenantId: string, label: string) =>
        test.storage.db.tenantQuery(tenantId, 'SELECT pg_sleep(0.002), current_setting($1, true) AS tenant', ['app.tenant_id']).then((result) => {
          assert.equal(result.rows[0]?.['tenant'], tenantId);
          finished.push(label);
        });
      const flood = Array.from({ length: 40 }, (_, index) => read(a.tenantId, `a${index}`));
      // B asks once A's 40 are queued: it waits for at most the one A query in the engine.
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all([...flood, read(b.tenantId, 'b')]);
      assert.ok(finished.indexOf('b') <= 2, `B finished ${finished.indexOf('b') + 1}th of 41`);
    } finally {
      await test.close();
    }
  });
});
