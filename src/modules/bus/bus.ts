import type { BusPermissions } from './access.ts';

/**
 * The message bus: subjects are dot-separated tokens, tenant-scoped as `bulwark.t.<tenantId>.>`. A
 * subscription pattern may use `*` (one token) and `>` (one or more trailing tokens), as NATS does.
 * Payloads are JSON values: each subscriber gets its own decoded copy, in process as over NATS.
 * Delivery is at most once (core NATS semantics): a message nobody is subscribed to is gone.
 */
export interface Bus {
  /** Throws BusUnavailableError when the bus cannot take the message now (NATS down, bus closed). */
  publish(subject: string, payload: unknown): Promise<void>;
  /**
   * Subscribers of the same `queue` share the messages: each goes to one of them (scale-out: one
   * instance handles each agent report). Returns the unsubscribe function.
   */
  subscribe(pattern: string, handler: BusHandler, options?: SubscribeOptions): () => void;
  /**
   * Request/reply: the first reply wins. Throws BusRequestError (`no_responders`, `timeout`,
   * `invalid_reply`) or BusUnavailableError.
   */
  request(subject: string, payload: unknown, options: RequestOptions): Promise<unknown>;
  /** A view of this bus that allows only what `permissions` allow, as NATS enforces them on an agent's user. */
  scoped(permissions: BusPermissions): ScopedBus;
  /** Stops delivery; NATS drains what is in flight first. Publishing afterwards throws BusUnavailableError. */
  close(): Promise<void>;
}

/** Answers a request; a handler gets it as its third argument, undefined for plain publishes. */
export type BusReply = (payload: unknown) => Promise<void>;
/** What a handler returns is ignored; a returned promise that rejects is reported like a throw. */
export type BusHandler = (subject: string, payload: unknown, reply: BusReply | undefined) => unknown;

export interface SubscribeOptions {
  queue?: string;
}

export interface RequestOptions {
  timeoutMs: number;
}

/** The holder of a scoped view tried to publish or subscribe outside its permissions. */
export class BusPermissionError extends Error {
  readonly operation: 'publish' | 'subscribe';
  readonly subject: string;

  constructor(operation: 'publish' | 'subscribe', subject: string) {
    super(`bus: ${operation} to ${JSON.stringify(subject)} is not permitted`);
    this.name = 'BusPermissionError';
    this.operation = operation;
    this.subject = subject;
  }
}

/** The bus cannot carry messages now: NATS is unreachable or reconnecting, or the bus was closed. */
export class BusUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BusUnavailableError';
  }
}

export class BusRequestError extends Error {
  readonly reason: 'no_responders' | 'timeout' | 'invalid_reply';
  readonly subject: string;

  constructor(reason: BusRequestError['reason'], subject: string, options?: ErrorOptions) {
    super(`bus: request on ${JSON.stringify(subject)} failed: ${reason}`, options);
    this.name = 'BusRequestError';
    this.reason = reason;
    this.subject = subject;
  }
}

const token = /^[A-Za-z0-9_-]+$/;

export function assertSubject(subject: string): void {
  if (subject.length > 256 || !subject.split('.').every((part) => token.test(part))) throw new TypeError(`bus: invalid subject ${JSON.stringify(subject)}`);
}

/** A subscription pattern: tokens, `*` for one token, `>` as the last token only. */
export function assertPattern(pattern: string): void {
  const parts = pattern.split('.');
  const valid = pattern.length <= 256 && parts.every((part, index) => token.test(part) || part === '*' || (part === '>' && index === parts.length - 1));
  if (!valid) throw new TypeError(`bus: invalid subscription pattern ${JSON.stringify(pattern)}`);
}

export function subjectMatches(pattern: string, subject: string): boolean {
  return patternCovers(pattern, subject);
}

/**
 * Whether every subject `requested` can match is also matched by `allowed`: how NATS decides that a
 * subscription (which may hold wildcards itself) is within a subscribe permission. For a literal subject
 * this is plain matching.
 */
export function patternCovers(allowed: string, requested: string): boolean {
  const want = allowed.split('.');
  const have = requested.split('.');
  for (let index = 0; index < want.length; index += 1) {
    const part = want[index];
    if (part === '>') return have.length > index;
    const asked = have[index];
    if (asked === undefined) return false;
    // `*` stands for exactly one token, so it cannot cover `>` (one or more).
    if (part === '*' ? asked === '>' : asked !== part) return false;
  }
  return want.length === have.length;
}

/** JSON text of a payload; what cannot travel as JSON is refused before anything is sent. */
export function encodePayload(payload: unknown): string {
  const text = JSON.stringify(payload) as string | undefined;
  if (text === undefined) throw new TypeError('bus: the payload is not a JSON value');
  return text;
}

interface Registration {
  pattern: string;
  handler: BusHandler;
  queue: string | undefined;
}

export interface InProcessBusOptions {
  /** A subscriber that throws or rejects: reported here, and the others still get the message. */
  onError?: (error: unknown, message: string) => void;
}

/** The default bus: in this process only. Handlers run after the publish returns; one that fails does not stop the others. */
export class InProcessBus implements Bus {
  readonly #subscriptions = new Set<Registration>();
  readonly #onError: (error: unknown, message: string) => void;
  #closed = false;

  constructor(options: InProcessBusOptions = {}) {
    this.#onError = options.onError ?? (() => undefined);
  }

  async publish(subject: string, payload: unknown): Promise<void> {
    assertSubject(subject);
    this.#deliver(subject, encodePayload(payload), undefined);
  }

  subscribe(pattern: string, handler: BusHandler, options: SubscribeOptions = {}): () => void {
    assertPattern(pattern);
    this.#assertOpen();
    const registration = { pattern, handler, queue: options.queue };
    this.#subscriptions.add(registration);
    return () => this.#subscriptions.delete(registration);
  }

  async request(subject: string, payload: unknown, { timeoutMs }: RequestOptions): Promise<unknown> {
    assertSubject(subject);
    const text = encodePayload(payload);
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new BusRequestError('timeout', subject));
      }, timeoutMs);
      const reply: BusReply = async (answer) => {
        const copy = JSON.parse(encodePayload(answer)) as unknown;
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(copy);
      };
      if (this.#deliver(subject, text, reply) === 0) {
        // As NATS answers at once when no subscription matches, rather than letting the request time out.
        settled = true;
        clearTimeout(timer);
        reject(new BusRequestError('no_responders', subject));
      }
    });
  }

  scoped(permissions: BusPermissions): ScopedBus {
    return new ScopedBus(this, permissions);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#subscriptions.clear();
  }

  /** Queues the message for every matching subscriber (one per queue group); returns how many. */
  #deliver(subject: string, text: string, reply: BusReply | undefined): number {
    this.#assertOpen();
    const targets: Registration[] = [];
    const groups = new Map<string, Registration[]>();
    for (const registration of this.#subscriptions) {
      if (!subjectMatches(registration.pattern, subject)) continue;
      if (registration.queue === undefined) targets.push(registration);
      else groups.set(registration.queue, [...(groups.get(registration.queue) ?? []), registration]);
    }
    for (const members of groups.values()) {
      const chosen = members[Math.floor(Math.random() * members.length)];
      if (chosen !== undefined) targets.push(chosen);
    }
    for (const { handler } of targets) {
      const payload = JSON.parse(text) as unknown;
      queueMicrotask(() => {
        Promise.resolve()
          .then(() => handler(subject, payload, reply))
          .catch((error: unknown) => this.#onError(error, `bus: a subscriber of ${subject} failed`));
      });
    }
    return targets.length;
  }

  #assertOpen(): void {
    if (this.#closed) throw new BusUnavailableError('bus: closed');
  }
}

/**
 * A bus as one holder of `BusPermissions` may use it: the same allow lists NATS enforces on an agent's
 * user, so the in-process gateway refuses what the NATS server would. Publishing (and requesting) needs
 * a publish pattern that matches the subject; subscribing needs a subscribe pattern that covers the whole
 * pattern asked for. Replying to a request the holder received is allowed, as NATS's response permission
 * allows it. `close` ends the view's subscriptions (the holder was revoked), not the bus.
 */
export class ScopedBus {
  readonly #bus: Bus;
  readonly #permissions: BusPermissions;
  readonly #subscriptions = new Set<() => void>();
  #closed = false;

  constructor(bus: Bus, permissions: BusPermissions) {
    this.#bus = bus;
    this.#permissions = { publish: [...permissions.publish], subscribe: [...permissions.subscribe] };
  }

  async publish(subject: string, payload: unknown): Promise<void> {
    this.#allow('publish', subject);
    await this.#bus.publish(subject, payload);
  }

  async request(subject: string, payload: unknown, options: RequestOptions): Promise<unknown> {
    this.#allow('publish', subject);
    return this.#bus.request(subject, payload, options);
  }

  subscribe(pattern: string, handler: BusHandler, options: SubscribeOptions = {}): () => void {
    this.#allow('subscribe', pattern);
    const stop = this.#bus.subscribe(pattern, handler, options);
    const unsubscribe = () => {
      this.#subscriptions.delete(unsubscribe);
      stop();
    };
    this.#subscriptions.add(unsubscribe);
    return unsubscribe;
  }

  close(): void {
    this.#closed = true;
    for (const unsubscribe of [...this.#subscriptions]) unsubscribe();
  }

  #allow(operation: 'publish' | 'subscribe', subject: string): void {
    if (operation === 'publish') assertSubject(subject);
    else assertPattern(subject);
    if (this.#closed) throw new BusUnavailableError('bus: this view was closed');
    if (!this.#permissions[operation].some((allowed) => patternCovers(allowed, subject))) throw new BusPermissionError(operation, subject);
  }
}
