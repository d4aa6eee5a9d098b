import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BulwarkError } from '../errors/bulwark-error.ts';
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
