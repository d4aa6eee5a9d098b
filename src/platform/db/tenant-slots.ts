import { BulwarkError } from '../errors/bulwark-error.ts';

/**
 * Each tenant's share of the connection pool: at most `max` of its transactions hold a connection at
 * once, and the next ones wait in order for one of the tenant's own slots, not in the pool's shared queue.
 * A slow or flooding tenant then queues behind itself while other tenants still find free connections.
 */
export class TenantSlots {
  readonly #max: number;
  readonly #waitMs: number;
  readonly #tenants = new Map<string, { held: number; waiting: (() => void)[] }>();

  constructor(options: { max: number; waitMs: number }) {
    this.#max = options.max;
    this.#waitMs = options.waitMs;
  }

  async acquire(tenantId: string): Promise<void> {
    const tenant = this.#tenants.get(tenantId) ?? { held: 0, waiting: [] };
    this.#tenants.set(tenantId, tenant);
    if (tenant.held < this.#max) {
      tenant.held += 1;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        tenant.waiting.splice(tenant.waiting.indexOf(grant), 1);
        reject(new BulwarkError('service_unavailable', { detail: `tenant connection share: no slot within ${this.#waitMs} ms` }));
      }, this.#waitMs);
      // A released slot passes straight to the next waiter: `held` stays, so nobody can overtake the queue.
      const grant = () => {
        clearTimeout(timer);
        resolve();
      };
      tenant.waiting.push(grant);
    });
  }

  release(tenantId: string): void {
    const tenant = this.#tenants.get(tenantId);
    if (tenant === undefined) return;
    const next = tenant.waiting.shift();
    if (next !== undefined) {
      next();
      return;
    }
    tenant.held -= 1;
    if (tenant.held === 0) this.#tenants.delete(tenantId);
  }

  async around<T>(tenantId: string, work: () => Promise<T>): Promise<T> {
    await this.acquire(tenantId);
    try {
      return await work();
    } finally {
      this.release(tenantId);
    }
  }
}
