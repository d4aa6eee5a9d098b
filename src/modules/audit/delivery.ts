import { createHmac, randomUUID } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import type { Bus } from '../bus/bus.ts';
import type { AuditRecord, AuditScope, AuditService } from './service.ts';
import { advanceDelivery, deliveryCursor, platformAuditTables, tenantAuditTables } from './store.ts';

/** Where committed audit events go, in chain order, at least once. */
export interface AuditSink {
  /** The sink's cursor name (`[a-z][a-z0-9-]*`): how far it got is kept per chain under it. */
  readonly name: string;
  /** Delivers one batch; throws to have it retried (the cursor does not move). */
  deliver(scope: AuditScope, events: readonly AuditRecord[]): Promise<void>;
}

export interface DeliveryOptions {
  /** How often chains are looked at without a wake-up. */
  pollMs: number;
  batchSize: number;
  /** First retry delay after a failed delivery, doubled per failure up to `maxBackoffMs`. */
  baseBackoffMs: number;
  maxBackoffMs: number;
  onError: (error: unknown, message: string) => void;
}

const scopeName = (scope: AuditScope) => (scope === 'platform' ? 'platform' : scope.tenantId);

/**
 * The outbox: each sink reads the chains past its cursor and delivers their events in order; the cursor
 * moves only after a delivery succeeded, so a crash, a restart or a sink outage loses nothing (events may
 * be delivered again: receivers drop repeats by `id`). An event is written in the transaction of its change,
 * so only committed events are ever read here. Each instance delivers on its own; with several instances a
 * batch can go out twice (leader election is the scale-out issue's).
 */
export class AuditDelivery {
  readonly #db: Database;
  readonly #audit: AuditService;
  readonly #sinks: readonly AuditSink[];
  readonly #clock: Clock;
  readonly #options: DeliveryOptions;
  readonly #failures = new Map<string, { count: number; retryAt: number }>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(db: Database, audit: AuditService, sinks: readonly AuditSink[], clock: Clock, options: DeliveryOptions) {
    this.#db = db;
    this.#audit = audit;
    this.#sinks = sinks;
    this.#clock = clock;
    this.#options = options;
  }

  start(): void {
    if (this.#sinks.length === 0) return;
    this.#audit.onRecorded(() => this.poke());
    this.#timer = setInterval(() => this.poke(), this.#options.pollMs);
    this.#timer.unref();
    this.poke();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#running;
  }

  /** Runs a delivery round soon (after the current one, if one is running). */
  poke(): void {
    if (this.#stopped) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    // After a short delay, so that the transaction whose event woke us has committed.
    this.#running = new Promise<void>((resolve) => setTimeout(resolve, 10))
      .then(async () => {
        await this.deliverAll();
      })
      .catch((error: unknown) => this.#options.onError(error, 'audit delivery round failed'))
      .finally(() => {
        this.#running = undefined;
        if (this.#again && !this.#stopped) {
          this.#again = false;
          this.poke();
        }
      });
  }

  /** One round: every sink, every chain with events past its cursor, until caught up or failing. */
  async deliverAll(): Promise<number> {
    let delivered = 0;
    for (const sink of this.#sinks) {
      for (const scope of await this.#pendingScopes(sink)) delivered += await this.#deliverScope(sink, scope);
    }
    return delivered;
  }

  async #pendingScopes(sink: AuditSink): Promise<AuditScope[]> {
    const pending = (tables: typeof tenantAuditTables) =>
      this.#db.withPlatform((tx) =>
        tx.query<{ scope: string }>(
          `SELECT h.${tables.scope} AS scope FROM ${tables.heads} h
             LEFT JOIN ${tables.deliveries} d ON d.${tables.scope} = h.${tables.scope} AND d.sink = $1
            WHERE h.seq > coalesce(d.seq, 0) ORDER BY 1 LIMIT 1000`,
          [sink.name],
        ),
      );
    const tenants = (await pending(tenantAuditTables)).rows.map((row): AuditScope => ({ tenantId: row.scope }));
    const platform = (await pending(platformAuditTables)).rows.length > 0 ? ['platform' as const] : [];
    return [...platform, ...tenants];
  }

  async #deliverScope(sink: AuditSink, scope: AuditScope): Promise<number> {
    const key = `${sink.name}/${scopeName(scope)}`;
    const failure = this.#failures.get(key);
    const now = this.#clock.now().getTime();
    if (failure !== undefined && failure.retryAt > now) return 0;
    const tables = scope === 'platform' ? platformAuditTables : tenantAuditTables;
    const transaction = <T>(work: (tx: Queryable) => Promise<T>) => (scope === 'platform' ? this.#db.withPlatform(work) : this.#db.withTenant(scope.tenantId, work));
    let delivered = 0;
    for (;;) {
      const cursor = (await transaction((tx) => deliveryCursor(tx, tables, scopeName(scope), sink.name))) ?? 0;
      const events = await this.#audit.eventsAfter(scope, cursor, this.#options.batchSize);
      if (events.length === 0) break;
      try {
        await sink.deliver(scope, events);
      } catch (error) {
        const count = (failure?.count ?? 0) + 1;
        this.#failures.set(key, { count, retryAt: now + Math.min(this.#options.baseBackoffMs * 2 ** (count - 1), this.#options.maxBackoffMs) });
        this.#options.onError(error, `audit sink ${sink.name} failed; retrying with backoff`);
        return delivered;
      }
      this.#failures.delete(key);
      const last = events[events.length - 1]?.seq ?? cursor;
      await transaction((tx) => advanceDelivery(tx, tables, scopeName(scope), sink.name, last, this.#clock.now()));
      delivered += events.length;
      if (events.length < this.#options.batchSize) break;
    }
    return delivered;
  }
}

/**
 * POSTs each batch as JSON `{ scope, events }` with a Stripe-style signature: `x-bulwark-signature:
 * t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the shared secret (receivers check it in
 * constant time and refuse old timestamps), and `x-bulwark-delivery` (a fresh id per attempt). Redirects are
 * refused: the operator names the exact endpoint.
 */
export class WebhookSink implements AuditSink {
  readonly name = 'webhook';
  readonly #url: string;
  readonly #secret: string;
  readonly #clock: Clock;
  readonly #timeoutMs: number;

  constructor(url: string, secret: string, clock: Clock, timeoutMs = 10_000) {
    this.#url = url;
    this.#secret = secret;
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
  }

  async deliver(scope: AuditScope, events: readonly AuditRecord[]): Promise<void> {
    const body = JSON.stringify({ scope: scopeName(scope), events });
    const timestamp = Math.floor(this.#clock.now().getTime() / 1000);
    const signature = createHmac('sha256', this.#secret).update(`${timestamp}.${body}`).digest('hex');
    const response = await fetch(this.#url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-bulwark-signature': `t=${timestamp},v1=${signature}`, 'x-bulwark-delivery': randomUUID() },
      body,
      redirect: 'error',
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    await response.body?.cancel();
    if (!response.ok) throw new Error(`audit webhook answered ${response.status}`);
  }
}

/** Publishes every event on its chain's subject: `bulwark.t.<tenantId>.audit`, or `bulwark.platform.audit`. */
export class BusSink implements AuditSink {
  readonly name = 'bus';
  readonly #bus: Bus;

  constructor(bus: Bus) {
    this.#bus = bus;
  }

  async deliver(scope: AuditScope, events: readonly AuditRecord[]): Promise<void> {
    const subject = scope === 'platform' ? 'bulwark.platform.audit' : `bulwark.t.${scope.tenantId}.audit`;
    for (const event of events) await this.#bus.publish(subject, event);
  }
}
