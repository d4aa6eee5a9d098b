import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Clock } from '../../platform/clock.ts';
import { BulwarkError, type BulwarkErrorOptions } from '../../platform/errors/bulwark-error.ts';
import { type AccessAudit, type Admission, actorOf, type Principal } from '../../platform/http/auth.ts';
import type { Limit, PlatformLimits, TenantBucket, TenantLimits } from './policy.ts';
import type { RateLimiter } from './rate-limiter.ts';
import type { Rate, RateDecision } from './rate-store.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** An expensive route's own bucket, charged on top of `requests`; `exempt` for probes. */
    rateLimit?: RouteRateLimit | 'exempt';
  }
  interface FastifyRequest {
    /** The buckets this request was charged to, for its RateLimit headers. */
    rateLimits: { policy: string; rate: Rate; decision: RateDecision }[] | null;
  }
}

export interface RouteRateLimit {
  bucket: Exclude<TenantBucket, 'requests'>;
  /** Units the request costs once its body is parsed (a batch: its items); default 1. */
  cost?: (request: FastifyRequest) => number;
  /** The tenant, for a route whose caller has none yet (a login names its tenant in the body). */
  tenantOf?: (request: FastifyRequest) => string | undefined;
}

/** What the limits report, counted by the app's metrics (labels are routes and buckets, never tenant ids). */
export interface LimitsMetrics {
  refused(route: string, policy: string): void;
  tenantRequest(tenantId: string): void;
  tenantRefused(tenantId: string): void;
}

type Partition = { kind: 'tenant'; tenantId: string } | { kind: 'operator'; id: string } | { kind: 'source'; address: string };

/** How often a throttled tenant's refusals are written to its audit trail: once per bucket per minute. */
const auditSampleMs = 60_000;

/**
 * Admission control, on every request before it reaches authorization or the database: the rate buckets
 * (per tenant, per operator, per client address for anonymous calls and failed authentications), the
 * route's own bucket once the body is parsed, and the per-tenant cap on requests in flight.
 */
export class LimitsAdmission implements Admission {
  readonly #limiter: RateLimiter;
  readonly #platform: PlatformLimits;
  readonly #tenantLimits: (tenantId: string) => Promise<TenantLimits>;
  readonly #audit: AccessAudit;
  readonly #metrics: LimitsMetrics;
  readonly #clock: Clock;
  readonly #inFlight = new Map<string, number>();
  readonly #sampled = new Map<string, { lastMs: number; refusedSince: number }>();
  readonly #onAuditError: (error: unknown) => void;

  constructor(options: {
    limiter: RateLimiter;
    platform: PlatformLimits;
    tenantLimits: (tenantId: string) => Promise<TenantLimits>;
    audit: AccessAudit;
    metrics: LimitsMetrics;
    clock: Clock;
    onAuditError: (error: unknown) => void;
  }) {
    this.#limiter = options.limiter;
    this.#platform = options.platform;
    this.#tenantLimits = options.tenantLimits;
    this.#audit = options.audit;
    this.#metrics = options.metrics;
    this.#clock = options.clock;
    this.#onAuditError = options.onAuditError;
  }

  /**
   * Anonymous calls (public routes) spend the client address's bucket. A non-public call is refused here
   * only while its address is over that bucket through failed authentications: it then costs no token check.
   */
  async beforeAuthentication(request: FastifyRequest, reply: FastifyReply, isPublic: boolean): Promise<void> {
    if (request.routeOptions.config.rateLimit === 'exempt') return;
    const source: Partition = { kind: 'source', address: request.ip };
    if (isPublic) await this.#charge(request, reply, source, 'anonymous', this.#platform.anonymous, 1);
    else this.#refuseIfKnownOver(request, reply, source, 'anonymous');
  }

  async authenticationFailed(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const rate = this.#platform.anonymous;
    if (rate === 'unlimited') return;
    // The 401 goes out either way; the charge only decides when this address gets 429 instead.
    await this.#limiter.take(keyOf({ kind: 'source', address: request.ip }, 'anonymous'), rate, 1).then(
      (decision) => this.#note(request, reply, 'anonymous', rate, decision),
      () => undefined,
    );
  }

  async admit(request: FastifyRequest, reply: FastifyReply, principal: Principal): Promise<void> {
    if (principal.kind === 'operator') {
      await this.#charge(request, reply, { kind: 'operator', id: principal.id }, 'operator', this.#platform.operator, 1);
      return;
    }
    const partition: Partition = { kind: 'tenant', tenantId: principal.tenantId };
    const limits = await this.#tenantLimits(principal.tenantId);
    this.#metrics.tenantRequest(principal.tenantId);
    await this.#charge(request, reply, partition, 'requests', limits.rates.requests, 1);
    this.#enter(principal.tenantId, limits.maxConcurrentRequests, request, reply);
  }

  /** The route's own bucket, after validation (a batch's cost is its items). */
  async chargeRoute(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const routeLimit = request.routeOptions.config.rateLimit;
    if (routeLimit === undefined || routeLimit === 'exempt') return;
    const principal = request.principal;
    const tenantId = principal !== null && principal.kind !== 'operator' ? principal.tenantId : routeLimit.tenantOf?.(request);
    // Operators and calls that name no tenant are bounded by their own buckets already.
    if (tenantId === undefined) return;
    const limits = await this.#tenantLimits(tenantId);
    const cost = routeLimit.cost?.(request) ?? 1;
    await this.#charge(request, reply, { kind: 'tenant', tenantId }, routeLimit.bucket, limits.rates[routeLimit.bucket], cost);
  }

  async #charge(request: FastifyRequest, reply: FastifyReply, partition: Partition, policy: string, rate: Limit<Rate>, cost: number): Promise<void> {
    if (rate === 'unlimited') return;
    const decision = await this.#limiter.take(keyOf(partition, policy), rate, cost);
    this.#note(request, reply, policy, rate, decision);
    if (!decision.allowed) this.#refuse(request, partition, policy, rate, decision);
  }

  #refuseIfKnownOver(request: FastifyRequest, reply: FastifyReply, partition: Partition, policy: string): void {
    const rate = this.#platform.anonymous;
    if (rate === 'unlimited') return;
    const refused = this.#limiter.knownRefusal(keyOf(partition, policy));
    if (refused === undefined) return;
    this.#note(request, reply, policy, rate, refused);
    this.#refuse(request, partition, policy, rate, refused);
  }

  /** RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-10): every bucket this request was charged to. */
  #note(request: FastifyRequest, reply: FastifyReply, policy: string, rate: Rate, decision: RateDecision): void {
    request.rateLimits = [...(request.rateLimits ?? []).filter((entry) => entry.policy !== policy), { policy, rate, decision }];
    reply.header('ratelimit-policy', request.rateLimits.map((entry) => `"${entry.policy}";q=${entry.rate.limit};w=${entry.rate.windowSeconds}`).join(', '));
    reply.header('ratelimit', request.rateLimits.map((entry) => `"${entry.policy}";r=${entry.decision.remaining};t=${entry.decision.resetSeconds}`).join(', '));
  }

  #refuse(request: FastifyRequest, partition: Partition, policy: string, rate: Rate, decision: RateDecision): never {
    const route = request.routeOptions.url ?? 'unmatched';
    this.#metrics.refused(route, policy);
    if (partition.kind === 'tenant') this.#metrics.tenantRefused(partition.tenantId);
    this.#sampleAudit(request, partition, policy, rate);
    throw refusal('rate_limited', {
      message: `Rate limit "${policy}" exceeded: ${rate.limit} per ${rate.windowSeconds} s. Retry after ${decision.retryAfterSeconds} s.`,
      headers: { 'retry-after': String(decision.retryAfterSeconds) },
      extensions: { policy, limit: rate.limit, windowSeconds: rate.windowSeconds, retryAfterSeconds: decision.retryAfterSeconds },
    });
  }

  /**
   * A throttled tenant (or operator) is recorded in its audit trail, sampled: the first refusal of a
   * bucket, then at most one event a minute with the count of refusals since. A flood never becomes a
   * flood of audit writes; the event is written off the request's path.
   */
  #sampleAudit(request: FastifyRequest, partition: Partition, policy: string, rate: Rate): void {
    if (partition.kind === 'source') return;
    const key = keyOf(partition, policy);
    const now = this.#clock.now().getTime();
    const sample = this.#sampled.get(key);
    if (sample !== undefined && now - sample.lastMs < auditSampleMs) {
      sample.refusedSince += 1;
      return;
    }
    if (this.#sampled.size >= 10_000) this.#sampled.clear();
    this.#sampled.set(key, { lastMs: now, refusedSince: 0 });
    const scope = partition.kind === 'tenant' ? { tenantId: partition.tenantId } : 'platform';
    const event = {
      action: 'limit.exceeded' as const,
      outcome: 'denied' as const,
      detail: { policy, limit: rate.limit, windowSeconds: rate.windowSeconds, refusedSinceLastEvent: sample?.refusedSince ?? 0 },
    };
    // The caller's key is made ready first, so its address and user agent are kept (sealed) with the event.
    const principal = request.principal;
    const prepared = principal === null ? Promise.resolve() : this.#audit.prepareSubject(scope, actorOf(principal));
    prepared.then(() => this.#audit.recordAlone(scope, event)).catch(this.#onAuditError);
  }

  /** Counts the request in its tenant's in-flight requests until its response is done (sent or aborted). */
  #enter(tenantId: string, max: Limit<number>, request: FastifyRequest, reply: FastifyReply): void {
    const current = this.#inFlight.get(tenantId) ?? 0;
    if (max !== 'unlimited' && current >= max) {
      const route = request.routeOptions.url ?? 'unmatched';
      this.#metrics.refused(route, 'concurrency');
      this.#metrics.tenantRefused(tenantId);
      throw refusal('concurrency_limit_exceeded', {
        message: `The tenant has ${max} requests in progress on this server, its maximum. Retry shortly.`,
        headers: { 'retry-after': '1' },
        extensions: { limit: max },
      });
    }
    this.#inFlight.set(tenantId, current + 1);
    reply.raw.once('close', () => {
      const left = (this.#inFlight.get(tenantId) ?? 1) - 1;
      if (left <= 0) this.#inFlight.delete(tenantId);
      else this.#inFlight.set(tenantId, left);
    });
  }

  inFlight(tenantId: string): number {
    return this.#inFlight.get(tenantId) ?? 0;
  }
}

/**
 * A 429 without a stack trace: refusals are the hot path of a flood, capturing a stack was the most
 * expensive step of one (6% of its CPU, measured), and where it is thrown is always here.
 */
function refusal(code: 'rate_limited' | 'concurrency_limit_exceeded', options: BulwarkErrorOptions): BulwarkError {
  const { stackTraceLimit } = Error;
  Error.stackTraceLimit = 0;
  try {
    return new BulwarkError(code, options);
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
}

function keyOf(partition: Partition, policy: string): string {
  switch (partition.kind) {
    case 'tenant':
      return `t:${partition.tenantId}:${policy}`;
    case 'operator':
      return `o:${partition.id}:${policy}`;
    case 'source':
      return `s:${partition.address}:${policy}`;
  }
}
