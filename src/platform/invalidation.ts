import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { idPattern } from './ids.ts';

/**
 * Cache invalidation across instances. Each instance caches credentials' standing briefly (session
 * liveness, verified API keys, tenant status, limits, roles, operator standing, unwrapped data keys, audit
 * subject keys); a change made on one instance must reach the others' caches. The instance that made the
 * change drops its own entries at once and publishes the ids on `invalidationSubject` after the commit;
 * every instance subscribes and drops the same entries when the message arrives. Through the in-process
 * bus it is the same path (the only subscriber is this process).
 *
 * At most once, like the bus: while NATS is down the message is lost, and the other instances let go of
 * the entry when its TTL ends. The TTL stays the bound; the fan-out makes it immediate when the bus is up.
 * Payloads carry ids only (never a token, key or hash), and a forged message can only make an instance
 * read the database again: the worst it does is cost a lookup.
 */
export const invalidationSubject = 'bulwark.internal.invalidate';

const id = Type.String({ pattern: idPattern });
/** A tenant id, or `platform` for the operators' realm and the platform audit chain. */
const scope = Type.Union([id, Type.Literal('platform')]);
const strict = { additionalProperties: false } as const;

const invalidationSchema = Type.Union([
  /** Sessions revoked (logout, refresh-token reuse, a user's or operator's sessions ended). */
  Type.Object({ kind: Type.Literal('sessions'), realm: Type.Union([Type.Literal('user'), Type.Literal('operator')]), scope, ids: Type.Array(id, { minItems: 1, maxItems: 1000 }) }, strict),
  Type.Object({ kind: Type.Literal('api-key'), tenantId: id, keyId: id }, strict),
  /** The tenant's status changed (suspended, offboarding, deleted, back to active). */
  Type.Object({ kind: Type.Literal('tenant'), tenantId: id }, strict),
  /** The tenant's limit overrides changed. */
  Type.Object({ kind: Type.Literal('limits'), tenantId: id }, strict),
  /** The tenant's keyring changed: rotated, reconfigured, trimmed, shredded, customer key set or removed. */
  Type.Object({ kind: Type.Literal('tenant-keys'), tenantId: id }, strict),
  /** Roles changed: one user's assignments, or (without userId) a role every holder of which is affected. */
  Type.Object({ kind: Type.Literal('access'), tenantId: id, userId: Type.Optional(id) }, strict),
  Type.Object({ kind: Type.Literal('operator'), operatorId: id }, strict),
  /** An audit subject key was destroyed (erasure): no instance may open that subject's personal data again. */
  Type.Object({ kind: Type.Literal('audit-subject'), scope, subject: Type.String({ pattern: '^(anonymous|[a-z-]{1,32}:[0-9a-f]{12})$' }) }, strict),
]);

export type Invalidation = Static<typeof invalidationSchema>;
export type InvalidationKind = Invalidation['kind'];
type Handler<K extends InvalidationKind> = (message: Extract<Invalidation, { kind: K }>) => void;

const validInvalidation = Compile(invalidationSchema);

/** What the fan-out needs of the bus (the Bus interface satisfies it). */
export interface InvalidationBus {
  publish(subject: string, payload: unknown): Promise<void>;
  subscribe(pattern: string, handler: (subject: string, payload: unknown) => unknown): () => void;
}

/**
 * One per process: services register what they drop for each kind (`on`) and announce their changes
 * (`invalidate`). A service built without one gets its own, which only drops locally (tests, the CLI).
 */
export class CacheInvalidations {
  readonly #handlers = new Map<InvalidationKind, Set<(message: Invalidation) => void>>();
  readonly #onError: (error: unknown, message: string) => void;
  #bus: InvalidationBus | undefined;

  constructor(options: { onError?: (error: unknown, message: string) => void } = {}) {
    this.#onError = options.onError ?? (() => undefined);
  }

  on<K extends InvalidationKind>(kind: K, handler: Handler<K>): void {
    let handlers = this.#handlers.get(kind);
    if (handlers === undefined) {
      handlers = new Set();
      this.#handlers.set(kind, handlers);
    }
    handlers.add(handler as (message: Invalidation) => void);
  }

  /**
   * Call once the change committed: drops the entries on this instance now (before the caller answers, so
   * its next request sees the change) and publishes them for the others. A failed publish is reported,
   * not thrown: the change is made, and the TTL bounds how long the others keep the entry.
   */
  invalidate(message: Invalidation): void {
    this.#apply(message);
    this.#bus?.publish(invalidationSubject, message).catch((error: unknown) => this.#onError(error, 'cache invalidation not published; other instances drop the entries within their cache TTL'));
  }

  /** Publishes on `bus` from now on and applies what arrives on it; returns the unsubscribe function. */
  connect(bus: InvalidationBus): () => void {
    this.#bus = bus;
    const stop = bus.subscribe(invalidationSubject, (_subject, payload) => {
      if (!validInvalidation.Check(payload)) {
        this.#onError(new TypeError('not an invalidation'), 'cache invalidation message malformed; dropped');
        return;
      }
      this.#apply(payload);
    });
    return () => {
      this.#bus = undefined;
      stop();
    };
  }

  #apply(message: Invalidation): void {
    for (const handler of this.#handlers.get(message.kind) ?? []) handler(message);
  }
}
