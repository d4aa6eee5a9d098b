import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, credsAuthenticator, ErrorCode, Events, JSONCodec, NatsError, type Msg, type NatsConnection, type Subscription, type TlsOptions } from 'nats';
import type { Config } from '../../platform/config/config.ts';
import { exposedModeProblem } from '../../platform/private-file.ts';
import type { BusPermissions } from './access.ts';
import {
  assertPattern,
  assertSubject,
  type Bus,
  type BusHandler,
  type BusReply,
  BusRequestError,
  BusUnavailableError,
  encodePayload,
  type RequestOptions,
  ScopedBus,
  type SubscribeOptions,
} from './bus.ts';

export interface NatsBusOptions {
  servers: readonly string[];
  /** The creds file text (user JWT and nkey seed) of Bulwark's own user; none for a server without auth. */
  creds?: string;
  /** PEM texts for `tls://` servers: the CA to verify them with, and a client certificate. */
  tls?: NatsTlsFiles;
  /** The connection name the server shows in its monitoring. */
  name?: string;
  /** Reconnect backoff: the wait between attempts grows with the outage, from `min` to `max`. */
  reconnectDelayMs?: { min: number; max: number };
  connectTimeoutMs?: number;
  /** How long `close` lets in-flight messages drain before it cuts the connection. */
  drainTimeoutMs?: number;
  /** What goes wrong in the background: connection lost, server refusals, undecodable messages, failing subscribers. */
  onError?: (error: unknown, message: string) => void;
}

interface Registration {
  pattern: string;
  handler: BusHandler;
  queue: string | undefined;
  subscription: Subscription | undefined;
}

const codec = JSONCodec();

function isNatsError(error: unknown, code: ErrorCode): boolean {
  return error instanceof NatsError && error.code === (code as string);
}
const encoder = new TextEncoder();

/**
 * The bus over NATS, as Bulwark's server connects to it: JSON payloads, reconnecting forever with backoff
 * (its subscriptions come back with the connection), refusing to publish while disconnected rather than
 * buffering messages that may never leave (callers such as the audit delivery retry), and draining on
 * close. `ping` is the readiness probe: it fails while the connection is down.
 */
export class NatsBus implements Bus {
  readonly #options: Required<Omit<NatsBusOptions, 'creds'>> & { creds: string | undefined };
  readonly #subscriptions = new Set<Registration>();
  readonly #stop = new AbortController();
  readonly #supervisor: Promise<void>;
  #connection: NatsConnection | undefined;
  #up = false;
  #downSince = performance.now();
  #closing: Promise<void> | undefined;

  constructor(options: NatsBusOptions) {
    this.#options = {
      name: 'bulwark',
      reconnectDelayMs: { min: 250, max: 5_000 },
      connectTimeoutMs: 5_000,
      drainTimeoutMs: 5_000,
      onError: () => undefined,
      tls: {},
      ...options,
      creds: options.creds,
    };
    this.#supervisor = this.#supervise();
  }

  async publish(subject: string, payload: unknown): Promise<void> {
    assertSubject(subject);
    const data = encoder.encode(encodePayload(payload));
    const connection = this.#usable();
    try {
      connection.publish(subject, data);
    } catch (error) {
      throw this.#failure(error);
    }
  }

  subscribe(pattern: string, handler: BusHandler, options: SubscribeOptions = {}): () => void {
    assertPattern(pattern);
    if (this.#stop.signal.aborted) throw new BusUnavailableError('bus: closed');
    const registration: Registration = { pattern, handler, queue: options.queue, subscription: undefined };
    this.#subscriptions.add(registration);
    // While reconnecting the client queues the subscription and sends it once back; a closed connection
    // is replaced by the supervisor, which subscribes every registration again.
    if (this.#connection !== undefined && !this.#connection.isClosed()) this.#attach(this.#connection, registration);
    return () => {
      this.#subscriptions.delete(registration);
      registration.subscription?.unsubscribe();
    };
  }

  async request(subject: string, payload: unknown, { timeoutMs }: RequestOptions): Promise<unknown> {
    assertSubject(subject);
    const data = encoder.encode(encodePayload(payload));
    const connection = this.#usable();
    let answer: Msg;
    try {
      answer = await connection.request(subject, data, { timeout: timeoutMs });
    } catch (error) {
      if (isNatsError(error, ErrorCode.NoResponders)) throw new BusRequestError('no_responders', subject, { cause: error });
      if (isNatsError(error, ErrorCode.Timeout)) throw new BusRequestError('timeout', subject, { cause: error });
      throw this.#failure(error);
    }
    try {
      return codec.decode(answer.data);
    } catch (error) {
      throw new BusRequestError('invalid_reply', subject, { cause: error });
    }
  }

  scoped(permissions: BusPermissions): ScopedBus {
    return new ScopedBus(this, permissions);
  }

  /** Resolves when the server answers a round trip; throws BusUnavailableError while disconnected. */
  async ping(): Promise<void> {
    const connection = this.#usable();
    try {
      await connection.flush();
    } catch (error) {
      throw this.#failure(error);
    }
  }

  async close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#stop.abort();
    const connection = this.#connection;
    if (connection !== undefined && !connection.isClosed()) {
      if (this.#up) {
        // Drain flushes what was published and lets subscriptions finish; a server that stops answering
        // meanwhile must not hold the shutdown.
        const drained = connection.drain().catch((error: unknown) => this.#options.onError(error, 'bus: draining the NATS connection failed'));
        await Promise.race([drained, sleep(this.#options.drainTimeoutMs, undefined, { ref: false })]);
      }
      if (!connection.isClosed()) await connection.close();
    }
    await this.#supervisor;
  }

  /** Connects, and connects again whenever the client gives the connection up (it retries by itself until then). */
  async #supervise(): Promise<void> {
    const { signal } = this.#stop;
    while (!signal.aborted) {
      let connection: NatsConnection;
      try {
        connection = await connect({
          servers: [...this.#options.servers],
          name: this.#options.name,
          timeout: this.#options.connectTimeoutMs,
          maxReconnectAttempts: -1,
          reconnectDelayHandler: () => this.#reconnectDelay(),
          // A dead peer that keeps the TCP connection open is noticed within about 30 s.
          pingInterval: 10_000,
          maxPingOut: 3,
          ...(this.#options.creds === undefined ? {} : { authenticator: credsAuthenticator(encoder.encode(this.#options.creds)) }),
          ...natsTls(this.#options.servers, this.#options.tls),
        });
      } catch (error) {
        this.#options.onError(error, 'bus: cannot connect to NATS');
        await sleep(this.#reconnectDelay(), undefined, { signal }).catch(() => undefined);
        continue;
      }
      if (this.#stopped()) {
        await connection.close();
        return;
      }
      this.#connection = connection;
      this.#up = true;
      for (const registration of this.#subscriptions) this.#attach(connection, registration);
      void this.#watch(connection);
      const reason = await connection.closed();
      this.#up = false;
      this.#downSince = performance.now();
      if (!this.#stopped()) this.#options.onError(reason ?? new Error('closed by the client'), 'bus: the NATS connection closed; connecting again');
    }
  }

  async #watch(connection: NatsConnection): Promise<void> {
    for await (const status of connection.status()) {
      if (status.type === Events.Disconnect) {
        this.#up = false;
        this.#downSince = performance.now();
        if (!this.#stopped()) this.#options.onError(new Error('disconnected'), 'bus: NATS connection lost; reconnecting');
      } else if (status.type === Events.Reconnect) {
        this.#up = true;
      } else if (status.type === Events.Error && status.permissionContext !== undefined) {
        const { operation, subject } = status.permissionContext;
        this.#options.onError(new Error('permissions violation'), `bus: NATS refused ${operation} on ${subject}`);
      }
    }
  }

  #attach(connection: NatsConnection, registration: Registration): void {
    const { pattern, handler, queue } = registration;
    registration.subscription = connection.subscribe(pattern, {
      ...(queue === undefined ? {} : { queue }),
      callback: (error, message) => {
        if (error !== null) {
          this.#options.onError(error, `bus: NATS refused the subscription to ${pattern}`);
          return;
        }
        let payload: unknown;
        try {
          payload = codec.decode(message.data);
        } catch (decodeError) {
          this.#options.onError(decodeError, `bus: a message on ${message.subject} is not JSON; dropped`);
          return;
        }
        const reply: BusReply | undefined =
          message.reply === undefined || message.reply === ''
            ? undefined
            : async (answer) => {
                const data = encoder.encode(encodePayload(answer));
                this.#usable();
                try {
                  message.respond(data);
                } catch (respondError) {
                  throw this.#failure(respondError);
                }
              };
        Promise.resolve()
          .then(() => handler(message.subject, payload, reply))
          .catch((handlerError: unknown) => this.#options.onError(handlerError, `bus: a subscriber of ${message.subject} failed`));
      },
    });
  }

  /** A method, not `signal.aborted` inline: the flag changes across awaits, which narrowing does not see. */
  #stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  #usable(): NatsConnection {
    if (this.#stopped()) throw new BusUnavailableError('bus: closed');
    const connection = this.#connection;
    if (connection === undefined || !this.#up || connection.isClosed()) throw new BusUnavailableError('bus: NATS is not connected');
    return connection;
  }

  #failure(error: unknown): Error {
    if (isNatsError(error, ErrorCode.MaxPayloadExceeded)) return new RangeError('bus: the payload exceeds the server\'s limit', { cause: error });
    return new BusUnavailableError('bus: NATS did not take the message', { cause: error });
  }

  /**
   * The client asks before each attempt (and while it waits): the wait is half the outage so far, within
   * the bounds, so a blip reconnects at once and a long outage costs a few attempts a minute. Jitter keeps
   * a fleet of instances from reconnecting in step.
   */
  #reconnectDelay(): number {
    const { min, max } = this.#options.reconnectDelayMs;
    const outage = performance.now() - this.#downSince;
    return Math.round(Math.min(max, Math.max(min, outage / 2)) * (0.9 + Math.random() * 0.2));
  }
}

/** The NATS bus the configuration asks for (BULWARK_NATS_URL, BULWARK_NATS_CREDS_FILE, BULWARK_NATS_TLS_*), or undefined for the in-process bus. */
export function natsBusOf(config: Config, onError: (error: unknown, message: string) => void): NatsBus | undefined {
  if (config.natsUrl === undefined) return undefined;
  return new NatsBus({
    servers: [config.natsUrl],
    ...(config.natsCredsFile === undefined ? {} : { creds: readKeyFile(config.natsCredsFile) }),
    tls: natsTlsOf(config),
    onError,
  });
}

/** PEM texts: the CA a `tls://` server's certificate must chain to, and an optional client certificate. */
export interface NatsTlsFiles {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

/** The TLS files of the configuration, read at start. */
export function natsTlsOf(config: Pick<Config, 'natsTlsCaFile' | 'natsTlsCertFile' | 'natsTlsKeyFile'>): NatsTlsFiles {
  return { ca: config.natsTlsCaFile?.pem, cert: config.natsTlsCertFile?.pem, key: config.natsTlsKeyFile?.pem };
}

/**
 * `tls://` in a server URL means TLS is required. The client reads only host and port from a URL and would
 * upgrade only when the server's plaintext greeting offers TLS, which anyone on the path can rewrite; with
 * the `tls` option set it refuses a server that does not speak TLS. The client verifies the certificate
 * and the URL's host name itself (`rejectUnauthorized` and Node's identity check); nats-server 2.9 has no
 * TLS-first handshake, so the greeting (server id and version, no secret) stays in clear.
 */
export function natsTls(servers: readonly string[], files: NatsTlsFiles = {}): { tls?: TlsOptions } {
  if (!servers.some((server) => /^tls:\/\//i.test(server))) return {};
  return {
    tls: {
      ...(files.ca === undefined ? {} : { ca: files.ca }),
      ...(files.cert === undefined || files.key === undefined ? {} : { cert: files.cert, key: files.key }),
    },
  };
}

/**
 * Reads a file of NATS key material (a seed, or creds with one), refusing one that group or others can
 * access, as the root key file is refused: these seeds mint agents and rewrite the account. The mode is
 * taken from the open file, so the file checked is the file read.
 */
export function readKeyFile(path: string): string {
  const descriptor = openSync(path, 'r');
  try {
    const exposed = exposedModeProblem(fstatSync(descriptor).mode);
    if (exposed !== undefined) throw new Error(`NATS key file ${path} ${exposed}; restrict it with \`chmod 600 ${path}\` and restart`);
    return readFileSync(descriptor, 'utf8');
  } finally {
    closeSync(descriptor);
  }
}
