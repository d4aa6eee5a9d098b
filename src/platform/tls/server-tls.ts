import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import { createSecureContext, type Server as TlsServer } from 'node:tls';
import { type Clock, systemClock } from '../clock.ts';
import { readPrivateFile } from '../private-file.ts';
import type { Config } from '../config/config.ts';
import type { Database } from '../db/database.ts';
import type { RootKeyProvider } from '../../modules/keys/root/provider.ts';
import { type CertificateAuthority, fingerprintOf, issueServerCertificate, type ServingCertificate } from './issuance.ts';
import { openLocalCa } from './local-ca.ts';
import { tlsPolicy } from './policy.ts';

/** Where the TLS listener reports renewals and refused replacements (the app's logger). */
export interface TlsLog {
  info(details: object, message: string): void;
  error(details: object, message: string): void;
}

export interface ServerTlsOptions {
  clock?: Clock;
  /** Lifetime of self-managed certificates; default BULWARK_TLS_CERT_DAYS (tests pass seconds). */
  lifetimeMs?: number;
  /** How often renewal is due-checked and the certificate files re-read; default a minute (self-managed: at most a thirtieth of the lifetime). */
  checkIntervalMs?: number;
}

/**
 * The API listener's TLS (BULWARK_TLS=on): the policy, the certificate served now, and the job that
 * replaces it (a self-managed renewal, or the operator's files when they change) with `setSecureContext`:
 * handshakes from then on get the new certificate, connections already open keep theirs.
 */
export interface ServerTls {
  /** Fastify's `https` options: the policy, the first certificate and the client-certificate request. */
  readonly httpsOptions: HttpsServerOptions;
  /** The self-managed CA's certificate (PEM) for clients to trust; undefined with the operator's files. */
  readonly caPem: string | undefined;
  /** The certificate new handshakes get. */
  current(): X509Certificate;
  /** Starts the replacement job on the listening server. */
  start(server: TlsServer): void;
  /** Ends it, once a round under way is done. */
  stop(): Promise<void>;
}

const defaultCheckIntervalMs = 60_000;

/** Opens the configured TLS: the operator's files, or the shared CA and a first certificate issued from it. */
export async function openServerTls(
  { config, db, rootKeys, log }: { config: Config; db: Database; rootKeys: RootKeyProvider; log: TlsLog },
  options: ServerTlsOptions = {},
): Promise<ServerTls> {
  const clock = options.clock ?? systemClock;
  if (config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined) {
    const source = new FileSource(config.tlsCertFile, config.tlsKeyFile, clock);
    const first = await source.first().catch((error: unknown) => {
      throw new Error(`BULWARK_TLS_CERT_FILE / BULWARK_TLS_KEY_FILE cannot be served: ${(error as Error).message}`, { cause: error });
    });
    log.info({ ...describe(first.certificate), certFile: config.tlsCertFile }, 'TLS: serving the certificate files; they are re-read when they change');
    return new ManagedTls(source, first, config, log, options.checkIntervalMs ?? defaultCheckIntervalMs);
  }
  const lifetimeMs = options.lifetimeMs ?? config.tlsCertDays * 86_400_000;
  const ca = await openLocalCa(db, rootKeys, clock);
  const source = new SelfManagedSource(ca, serverNamesOf(config), lifetimeMs, clock);
  const first = await source.issue();
  log.info(
    { ...describe(first.certificate), caFingerprint: fingerprintOf(ca.pem), caCreated: ca.created },
    'TLS: serving a self-managed certificate; clients trust the CA from GET /v1/tls/ca.pem (compare its SHA-256 fingerprint)',
  );
  return new ManagedTls(source, first, config, log, options.checkIntervalMs ?? Math.min(defaultCheckIntervalMs, Math.max(10, Math.floor(lifetimeMs / 30))));
}

/** BULWARK_TLS_HOSTNAMES, or the public URL's host and the loopback names. */
function serverNamesOf(config: Config): readonly string[] {
  if (config.tlsHostnames !== undefined) return config.tlsHostnames;
  const publicHost = config.publicUrl === undefined ? [] : [new URL(config.publicUrl).hostname.replace(/^\[(.*)\]$/, '$1')];
  return [...new Set([...publicHost, 'localhost', '127.0.0.1', '::1'])];
}

/** Where certificates come from: `next` answers the replacement when one is due, and throws when it cannot make a due one. */
interface CertificateSource {
  readonly mode: 'self-managed' | 'files';
  readonly caPem: string | undefined;
  next(current: X509Certificate): Promise<ServingCertificate | undefined>;
}

/** Issues from the shared CA; a new certificate once two thirds of the current one's validity have passed. */
class SelfManagedSource implements CertificateSource {
  readonly mode = 'self-managed';
  readonly #ca: CertificateAuthority;
  readonly #names: readonly string[];
  readonly #lifetimeMs: number;
  readonly #clock: Clock;

  constructor(ca: CertificateAuthority, names: readonly string[], lifetimeMs: number, clock: Clock) {
    this.#ca = ca;
    this.#names = names;
    this.#lifetimeMs = lifetimeMs;
    this.#clock = clock;
  }

  get caPem(): string {
    return this.#ca.pem;
  }

  issue(): Promise<ServingCertificate> {
    return issueServerCertificate(this.#ca, this.#names, this.#clock.now(), this.#lifetimeMs);
  }

  async next(current: X509Certificate): Promise<ServingCertificate | undefined> {
    const from = current.validFromDate.getTime();
    const renewAt = from + ((current.validToDate.getTime() - from) * 2) / 3;
    return this.#clock.now().getTime() >= renewAt ? this.issue() : undefined;
  }
}

/**
 * The operator's files, re-read on every round and taken when their content changed (a rename, a Kubernetes
 * secret's symlink swap and an in-place write all count). A replacement must pass the same checks as the
 * first load, or it is refused once (logged) and the old certificate stays until the files change again.
 */
class FileSource implements CertificateSource {
  readonly mode = 'files';
  readonly caPem = undefined;
  readonly #certFile: string;
  readonly #keyFile: string;
  readonly #clock: Clock;
  #seen: string | undefined;

  constructor(certFile: string, keyFile: string, clock: Clock) {
    this.#certFile = certFile;
    this.#keyFile = keyFile;
    this.#clock = clock;
  }

  async first(): Promise<ServingCertificate> {
    const files = await this.#read();
    this.#seen = files.digest;
    return this.#validate(files.cert, files.key);
  }

  async next(): Promise<ServingCertificate | undefined> {
    const files = await this.#read();
    if (files.digest === this.#seen) return undefined;
    this.#seen = files.digest;
    return this.#validate(files.cert, files.key);
  }

  async #read(): Promise<{ cert: string; key: string; digest: string }> {
    const [cert, key] = await Promise.all([readFile(this.#certFile, 'utf8'), readPrivateFile(this.#keyFile)]);
    return { cert, key, digest: createHash('sha256').update(cert).update('\0').update(key).digest('hex') };
  }

  #validate(cert: string, key: string): ServingCertificate {
    // Messages name the problem, never key material. OpenSSL alone would take a key of another type than the
    // certificate's (it files them in different slots) and fail every handshake later: the pair is compared.
    const certificate = new X509Certificate(cert);
    if (!certificate.checkPrivateKey(createPrivateKey(key))) throw new Error('the private key does not belong to the certificate');
    // The context Node will build: a key too weak for the policy (RSA under 2048 bits) throws here.
    createSecureContext({ ...tlsPolicy, cert, key });
    if (certificate.validToDate.getTime() <= this.#clock.now().getTime()) throw new Error(`the certificate expired at ${certificate.validToDate.toISOString()}`);
    return { cert, key, certificate };
  }
}

class ManagedTls implements ServerTls {
  readonly #source: CertificateSource;
  readonly #config: Config;
  readonly #log: TlsLog;
  readonly #intervalMs: number;
  #current: ServingCertificate;
  #server: TlsServer | undefined;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;

  constructor(source: CertificateSource, first: ServingCertificate, config: Config, log: TlsLog, intervalMs: number) {
    this.#source = source;
    this.#current = first;
    this.#config = config;
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  get caPem(): string | undefined {
    return this.#source.caPem;
  }

  get httpsOptions(): HttpsServerOptions {
    // Asked for, never required: the handshake goes on without one, and what a presented certificate proves
    // is for the route to decide (`request.raw.socket.getPeerX509Certificate()`).
    const clientCertificates = this.#config.tlsClientCerts === 'request' ? { requestCert: true, rejectUnauthorized: false } : {};
    return { ...contextOptions(this.#current), ...clientCertificates };
  }

  current(): X509Certificate {
    return this.#current.certificate;
  }

  start(server: TlsServer): void {
    this.#server = server;
    this.#timer = setInterval(() => void this.#check(), this.#intervalMs);
    this.#timer.unref();
  }

  /** One round at a time: a slow one (an issuance, a file read) is never overlapped by the next. */
  #check(): Promise<void> {
    this.#checking ??= this.#replace().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#checking;
  }

  async #replace(): Promise<void> {
    let next: ServingCertificate | undefined;
    try {
      next = await this.#source.next(this.#current.certificate);
      if (next === undefined) return;
      this.#server?.setSecureContext(contextOptions(next));
    } catch (error) {
      this.#log.error({ err: error, mode: this.#source.mode }, 'TLS: the certificate could not be replaced; the current one is still served');
      return;
    }
    this.#current = next;
    this.#log.info({ ...describe(next.certificate), mode: this.#source.mode }, 'TLS: certificate replaced; new connections get it, open ones keep theirs');
  }
}

/** The whole context each time: `setSecureContext` rebuilds from what it is given, so the policy goes with every certificate. */
function contextOptions(serving: ServingCertificate) {
  return { ...tlsPolicy, cert: serving.cert, key: serving.key };
}

function describe(certificate: X509Certificate) {
  return { serialNumber: certificate.serialNumber, notAfter: certificate.validToDate.toISOString(), names: certificate.subjectAltName };
}
