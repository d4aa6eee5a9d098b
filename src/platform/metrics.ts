import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The app's Prometheus metrics, one registry per app (tests build many). Labels are bounded: a route is
 * its template (`/v1/tenants/:tenantId/...`), never the path; tenant ids appear only in the top-N gauges,
 * which hold at most `topTenants` series each.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'method' | 'route' | 'status'>;
  readonly #duration: Histogram<'method' | 'route'>;
  readonly #refused: Counter<'route' | 'policy'>;
  readonly #storeErrors: Counter;
  readonly #degraded: Counter<'mode'>;
  readonly #tenantRequests = new TopCounter(10_000);
  readonly #tenantRefusals = new TopCounter(10_000);

  constructor(options: { topTenants: number }) {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'bulwark_http_requests_total',
      help: 'HTTP requests answered, by method, route template and status code.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'bulwark_http_request_duration_seconds',
      help: 'Time from request to response, by method and route template.',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.#refused = new Counter({
      name: 'bulwark_rate_limited_total',
      help: 'Requests refused with 429, by route template and policy (a rate bucket, or concurrency).',
      labelNames: ['route', 'policy'],
      registers,
    });
    this.#storeErrors = new Counter({
      name: 'bulwark_rate_limit_store_errors_total',
      help: 'Failed calls to the shared rate-limit store (Redis).',
      registers,
    });
    this.#degraded = new Counter({
      name: 'bulwark_rate_limit_degraded_decisions_total',
      help: 'Rate-limit decisions made by the configured failure mode while the shared store was unreachable.',
      labelNames: ['mode'],
      registers,
    });
    const top = (name: string, help: string, counter: TopCounter) =>
      new Gauge({
        name,
        help,
        labelNames: ['tenant_id'],
        registers,
        collect() {
          this.reset();
          for (const [tenantId, count] of counter.top(options.topTenants)) this.set({ tenant_id: tenantId }, count);
        },
      });
    top('bulwark_tenant_requests_top', `Requests since start of the ${options.topTenants} busiest tenants.`, this.#tenantRequests);
    top('bulwark_tenant_rate_limited_top', `Refused requests since start of the ${options.topTenants} most throttled tenants.`, this.#tenantRefusals);
  }

  /** Process and runtime metrics (CPU, memory, event loop lag, GC): only for an app that exposes them. */
  collectProcessMetrics(): void {
    collectDefaultMetrics({ register: this.registry, prefix: 'bulwark_' });
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.#requests.inc({ method, route, status: String(status) });
    this.#duration.observe({ method, route }, seconds);
  }

  refused(route: string, policy: string): void {
    this.#refused.inc({ route, policy });
  }

  tenantRequest(tenantId: string): void {
    this.#tenantRequests.add(tenantId);
  }

  tenantRefused(tenantId: string): void {
    this.#tenantRefusals.add(tenantId);
  }

  storeError(): void {
    this.#storeErrors.inc();
  }

  degradedDecision(mode: string): void {
    this.#degraded.inc({ mode });
  }
}

/**
 * Counts per key for the top-N gauges, in bounded memory: when `maxKeys` are tracked, the smaller half is
 * dropped, so a key that is busy now soon shows again while a long tail of one-off keys cannot grow it.
 */
class TopCounter {
  readonly #counts = new Map<string, number>();
  readonly #maxKeys: number;

  constructor(maxKeys: number) {
    this.#maxKeys = maxKeys;
  }

  add(key: string): void {
    const count = this.#counts.get(key);
    if (count === undefined && this.#counts.size >= this.#maxKeys) this.#shrink();
    this.#counts.set(key, (count ?? 0) + 1);
  }

  #shrink(): void {
    const kept = this.top(Math.floor(this.#maxKeys / 2));
    this.#counts.clear();
    for (const [key, count] of kept) this.#counts.set(key, count);
  }

  top(n: number): [string, number][] {
    return [...this.#counts].sort((a, b) => b[1] - a[1]).slice(0, n);
  }
}
