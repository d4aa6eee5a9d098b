import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import FindMyWay, { type HTTPMethod } from 'find-my-way';
import type { Logger } from 'pino';
import { Type } from 'typebox';
import { type Clock, systemClock } from '../platform/clock.ts';
import type { Config } from '../platform/config/config.ts';
import type { Database } from '../platform/db/database.ts';
import { type LeaderJob, Leadership } from '../platform/db/leader.ts';
import { CacheInvalidations } from '../platform/invalidation.ts';
import { BulwarkError } from '../platform/errors/bulwark-error.ts';
import { registerAuth } from '../platform/http/auth.ts';
import { problemContentType, sendClientErrorProblem, sendProblem, toBulwarkError } from '../platform/http/problem.ts';
import { isId, newId } from '../platform/ids.ts';
import { createLogger } from '../platform/logger.ts';
import { healthRoutes } from '../modules/health/routes.ts';
import type { RootKeyProvider } from '../modules/keys/root/provider.ts';
import { keysRoutes } from '../modules/keys/routes.ts';
import { KeyringService } from '../modules/keys/service.ts';
import { TransitService } from '../modules/keys/transit.ts';
import { defaultThrottlePolicy, LoginService, PasswordLogin } from '../modules/identity/login.ts';
import { identityRoutes } from '../modules/identity/routes.ts';
import { mfaRoutes } from '../modules/identity/mfa/routes.ts';
import { MfaService } from '../modules/identity/mfa/service.ts';
import { tokenAnswerer } from '../modules/sessions/token-answer.ts';
import { LdapAdapter } from '../modules/identity/sso/ldap.ts';
import { OidcAdapter } from '../modules/identity/sso/oidc.ts';
import { ssoRoutes } from '../modules/identity/sso/routes.ts';
import { SamlAdapter } from '../modules/identity/sso/saml.ts';
import { SsoService } from '../modules/identity/sso/service.ts';
import { AccessTokenAuthenticator } from '../modules/sessions/access-authenticator.ts';
import { authRoutes } from '../modules/sessions/auth-routes.ts';
import { TokenService } from '../modules/sessions/tokens.ts';
import { LoginSessionService, platformSessionRealm, tenantSessionRealm } from '../modules/sessions/login-sessions.ts';
import { PlatformKeys } from '../modules/keys/platform-keys.ts';
import { AuditDelivery, type AuditSink, BusSink, WebhookSink } from '../modules/audit/delivery.ts';
import { auditRoutes } from '../modules/audit/routes.ts';
import { type AuditRecorder, AuditService } from '../modules/audit/service.ts';
import { type Bus, InProcessBus } from '../modules/bus/bus.ts';
import { NatsBus, natsBusOf } from '../modules/bus/nats.ts';
import { type NatsAgentAccess, natsAgentAccessOf } from '../modules/bus/nats-credentials.ts';
import { operatorRoutes } from '../modules/operators/routes.ts';
import { OperatorsService } from '../modules/operators/service.ts';
import { UsersService } from '../modules/identity/service.ts';
import { accessRoutes } from '../modules/access/routes.ts';
import { assertRouteAccess } from '../modules/access/permissions.ts';
import { currentRequest } from '../platform/http/request-context.ts';
import { AccessService } from '../modules/access/service.ts';
import { recordsRoutes } from '../modules/records/routes.ts';
import { RecordsService } from '../modules/records/service.ts';
import { apiKeyRoutes } from '../modules/sessions/routes.ts';
import { ApiKeyService } from '../modules/sessions/service.ts';
import { type TenantOnboarding, tenancyRoutes } from '../modules/tenancy/routes.ts';
import { createUserBody } from '../modules/identity/schemas.ts';
import { TenancyService } from '../modules/tenancy/service.ts';
import { OffboardingService } from '../modules/tenancy/offboarding.ts';
import type { DatabaseMaintenance } from '../platform/db/maintenance.ts';
import { LimitsAdmission } from '../modules/limits/admission.ts';
import { openRateLimiter } from '../modules/limits/open.ts';
import { platformLimitsOf } from '../modules/limits/policy.ts';
import { limitsRoutes } from '../modules/limits/routes.ts';
import { LimitsService } from '../modules/limits/service.ts';
import { secretsRoutes } from '../modules/secrets/routes.ts';
import { SecretsService, ServiceRegistry } from '../modules/secrets/service.ts';
import { agentGatewayRoutes, InProcessAgentAccess } from '../modules/agents/gateway.ts';
import { agentRoutes } from '../modules/agents/routes.ts';
import { AgentsService } from '../modules/agents/service.ts';
import { privacyRoutes } from '../modules/privacy/routes.ts';
import { PrivacyService } from '../modules/privacy/service.ts';
import { backupRoutes } from '../modules/backup/routes.ts';
import { openRestoreTarget } from '../modules/backup/restore.ts';
import type { Argon2Params } from '../modules/identity/passwords.ts';
import { BackupService } from '../modules/backup/service.ts';
import { nextTickMs } from '../modules/backup/schedule.ts';
import { backupStoresOf } from '../modules/backup/storage.ts';
import { Metrics } from '../platform/metrics.ts';
import cors from '@fastify/cors';
import secureJson from 'secure-json-parse';
import { join, resolve } from 'node:path';
import type { ServerOptions } from 'node:http';
import type { Server as TlsServer } from 'node:tls';
import { openServerTls, type ServerTls } from '../platform/tls/server-tls.ts';
import { tlsRoutes } from '../platform/tls/routes.ts';

/** The base URL browsers and identity providers reach this deployment at. */
export function publicUrlOf(config: Config): string {
  return config.publicUrl ?? `http://localhost:${config.port}`;
}

export interface AppDependencies {
  config: Config;
  db: Database;
  rootKeys: RootKeyProvider;
  clock?: Clock;
  logger?: Logger;
  /** From openDatabase: the owner's table rewrite that confirming an offboarding needs (without it, confirm answers 503). */
  maintenance?: DatabaseMaintenance;
  /** Prepared TLS (tests pass short lifetimes); without it, BULWARK_TLS=on opens the configured one. */
  tls?: ServerTls;
  /** Argon2id cost of new password hashes: the OWASP defaults; suites that hash hundreds of passwords and test none pass less. */
  argon2?: Argon2Params;
}

/**
 * Every service, wired once: the app serves them over HTTP, the CLI uses them directly. Stores that seal
 * columns register with the keyring here, so re-encryption and key statistics reach all of them.
 */
export function buildServices({
  config,
  db,
  rootKeys,
  clock = systemClock,
  onBackgroundError,
  bus,
  maintenance,
  argon2,
}: Omit<AppDependencies, 'logger'> & {
  onBackgroundError?: (error: unknown, message: string) => void;
  /** The app passes the NATS bus when configured; the offline tools run on the in-process one. */
  bus?: Bus;
}): BulwarkServices {
  const platformKeys = new PlatformKeys(db, rootKeys, clock);
  // Every cache of a credential's standing or of keys drops its entries here when a change commits; the app
  // connects it to the bus, so the other instances drop them too.
  const invalidations = new CacheInvalidations(onBackgroundError === undefined ? {} : { onError: onBackgroundError });
  // The audit trail seals its subject keys with the tenant keyring, and the keyring audits its changes: the
  // keyring reaches the audit service through this forwarder, which exists before either.
  const audit: AuditRecorder = {
    record: (tx, scope, event) => auditTrail.record(tx, scope, event),
    recordAlone: (scope, event) => auditTrail.recordAlone(scope, event),
  };
  const keyring = new KeyringService(db, rootKeys, clock, {
    cacheTtlMs: config.keyCacheTtlMs,
    cacheMaxTenants: 10_000,
    customerKmsAllowedOrigins: config.customerKmsAllowedOrigins,
    platformKeys,
    audit,
    invalidations,
    ...(onBackgroundError === undefined ? {} : { onBackgroundError }),
  });
  const auditTrail = new AuditService(db, clock, keyring, platformKeys, {
    subjectKeyCacheTtlMs: 600_000,
    invalidations,
    ...(onBackgroundError === undefined ? {} : { onBackgroundError }),
  });
  const tenancy = new TenancyService(db, keyring, audit, clock, { regions: config.regions, statusCacheTtlMs: config.authCacheTtlMs, invalidations });
  const limits = new LimitsService(db, audit, clock, tenancy, { defaults: platformLimitsOf(config), cacheTtlMs: config.authCacheTtlMs, invalidations });
  const users = new UsersService(db, keyring, audit, limits, clock, { argon2 });
  const sessionOptions = { refreshTtlMs: 14 * 86_400_000, sessionMaxMs: 30 * 86_400_000, revocationCacheTtlMs: config.authCacheTtlMs, invalidations };
  const sessions = new LoginSessionService(tenantSessionRealm(db), audit, clock, sessionOptions);
  const operatorSessions = new LoginSessionService(platformSessionRealm(db), audit, clock, sessionOptions);
  const passwordLogin = new PasswordLogin(clock, auditTrail, {
    argon2,
    throttle: {
      ...defaultThrottlePolicy,
      accountMaxFailures: config.loginAccountMaxFailures,
      sourceMaxFailures: config.loginSourceMaxFailures,
      lockoutMs: config.loginLockoutSeconds * 1000,
    },
  });
  const operators = new OperatorsService(db, platformKeys, audit, clock, passwordLogin, operatorSessions, { cacheTtlMs: config.authCacheTtlMs, invalidations, argon2 });
  const access = new AccessService(db, audit, clock, { cacheTtlMs: config.authCacheTtlMs, grantMaxHours: config.supportGrantMaxHours, invalidations });
  const tokens = new TokenService(db, rootKeys, clock, {
    issuer: config.tokenIssuer,
    audience: config.tokenIssuer,
    accessTtlSeconds: config.accessTokenTtlSeconds,
    rotateAfterDays: 30,
  });
  const login = new LoginService(db, keyring, users, passwordLogin, { tenantStatus: (tenantId) => tenancy.status(tenantId), argon2 });
  const publicUrl = new URL(publicUrlOf(config));
  const mfa = new MfaService(db, keyring, audit, { access, users, login }, clock, {
    issuer: config.mfaIssuer,
    relyingParty: { rpId: config.webauthnRpId ?? publicUrl.hostname, rpName: config.mfaIssuer, origins: [...(config.webauthnOrigins ?? [publicUrl.origin])] },
    challengeTtlMs: 5 * 60_000,
    challengeMaxAttempts: 5,
  });
  const sso = new SsoService(
    db,
    keyring,
    auditTrail,
    { users, access, sessions, login, tenantStatus: (tenantId) => tenancy.status(tenantId) },
    { oidc: new OidcAdapter({ clock }), saml: new SamlAdapter({ clock }), ldap: new LdapAdapter() },
    clock,
    { publicUrl: publicUrl.origin, flowTtlMs: 10 * 60_000, production: config.env === 'production', dnsServers: config.dnsServers },
  );
  const serviceRegistry = new ServiceRegistry(db, audit, clock);
  const natsAgentAccess = natsAgentAccessOf(config);
  const agents = new AgentsService(db, platformKeys, auditTrail, { busAccess: natsAgentAccess ?? new InProcessAgentAccess(), keyring, tenantStatus: (tenantId) => tenancy.status(tenantId) }, clock, {
    pairingTtlSeconds: config.agentPairingTtlSeconds,
    pairingMaxLiveCodes: config.agentPairingMaxLiveCodes,
    pairingMaxFailures: config.agentPairingMaxFailures,
    pairingWindowSeconds: config.agentPairingWindowSeconds,
    staleSeconds: config.agentStaleSeconds,
    certificateDays: config.agentCertificateDays,
    ...(onBackgroundError === undefined ? {} : { onBackgroundError }),
  });
  const backups = new BackupService(db, rootKeys, audit, clock, {
    stores: backupStoresOf(config),
    regions: config.regions,
    retention: { keepDailyDays: config.backupKeepDailyDays, keepWeeklyWeeks: config.backupKeepWeeklyWeeks },
    schedule: config.backupSchedule,
  });
  const privacy = new PrivacyService(db, auditTrail, { users, access, sessions, mfa, sso }, clock);
  // Legal holds (the privacy module's) block offboarding; the backups are shredded of the tenant.
  const offboarding = new OffboardingService(db, { tenancy, keyring, audit: auditTrail, agents, storage: backups, holds: privacy, maintenance }, clock, {
    graceHours: config.offboardingGraceHours,
    archiveAudit: config.offboardingAuditArchive,
  });
  return {
    invalidations,
    keyring,
    backups,
    offboarding,
    audit: auditTrail,
    bus: bus ?? new InProcessBus(onBackgroundError === undefined ? {} : { onError: onBackgroundError }),
    natsAgentAccess,
    transit: new TransitService(keyring, audit),
    tenancy,
    limits,
    records: new RecordsService(db, keyring, audit, limits, clock, { recordMaxBytes: config.recordMaxBytes }),
    users,
    login,
    mfa,
    sso,
    sessions,
    operators,
    operatorSessions,
    tokens,
    accessTokens: new AccessTokenAuthenticator(tokens, { userSessions: sessions, operatorSessions, operators }),
    apiKeys: new ApiKeyService(db, audit, limits, clock, { cacheTtlMs: config.authCacheTtlMs, invalidations, ...(onBackgroundError === undefined ? {} : { onBackgroundError }) }),
    access,
    serviceRegistry,
    secrets: new SecretsService(db, keyring, auditTrail, { registry: serviceRegistry, tenants: tenancy }, clock),
    agents,
    privacy,
  };
}

export interface BulwarkServices {
  /** Connected to the bus by the app: the other instances' caches hear of each change. */
  invalidations: CacheInvalidations;
  keyring: KeyringService;
  backups: BackupService;
  offboarding: OffboardingService;
  audit: AuditService;
  bus: Bus;
  /** Agents' own NATS users (BULWARK_NATS_AGENT_*), or undefined: agents then use the HTTP gateway on the bus. */
  natsAgentAccess: NatsAgentAccess | undefined;
  transit: TransitService;
  tenancy: TenancyService;
  limits: LimitsService;
  records: RecordsService;
  users: UsersService;
  login: LoginService;
  mfa: MfaService;
  sso: SsoService;
  sessions: LoginSessionService;
  operators: OperatorsService;
  operatorSessions: LoginSessionService;
  tokens: TokenService;
  accessTokens: AccessTokenAuthenticator;
  apiKeys: ApiKeyService;
  access: AccessService;
  serviceRegistry: ServiceRegistry;
  secrets: SecretsService;
  agents: AgentsService;
  privacy: PrivacyService;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: BulwarkServices;
    metrics: Metrics;
  }
}

const problemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String({ description: 'Stable error code; see docs/errors.md.' }),
    detail: Type.String(),
    instance: Type.String(),
    requestId: Type.String(),
  },
  { additionalProperties: true },
);

const noQuery = Type.Object({}, { additionalProperties: false });

const apiContentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** On every response, the docs and the parser's refusals included. */
const baseSecurityHeaders = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

function setCommonHeaders(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-request-id', request.id);
  reply.headers(baseSecurityHeaders);
  // Over HTTPS (ours, or a trusted proxy's per X-Forwarded-Proto) browsers are told to stay on it.
  if (request.protocol === 'https') reply.header('strict-transport-security', 'max-age=31536000; includeSubDomains');
  if (request.url.startsWith('/docs')) return;
  // The API answers data, never pages: nothing in a response may run, load or be framed if a browser renders it.
  reply.header('content-security-policy', apiContentSecurityPolicy);
  // No caching, unless the route chose otherwise (public keys: the JWKS, the audit checkpoint key).
  if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
}

/** Swagger UI's own CSP, stricter: no third-party validator badge, fonts and styles from here only. */
function docsContentSecurityPolicy(header: string): string {
  return header
    .replace(' validator.swagger.io', '')
    .replace(/ https:/g, '')
    .replace("frame-ancestors 'self'", "frame-ancestors 'none'")
    .replace(/\s*upgrade-insecure-requests;?/, '');
}

/** BULWARK_TRUST_PROXY as Fastify takes it: a hop count becomes "the nearest n hops". */
function trustProxyOption(trust: Config['trustProxy']): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (trust === false) return false;
  if (typeof trust === 'number') return (_address, hop) => hop < trust;
  return [...trust];
}

/** Routes that take no large body (most) read at most this much; records, transit and imports say their own. */
const smallBodyLimit = 64 * 1024;

/**
 * Leader election for the fleet's background jobs (platform/db/leader.ts): each instance tries every round,
 * one holds each job's lock and runs it. Leads are logged when taken and lost, and given up on close, so
 * another instance takes over on its next round.
 */
function startLeadership(app: FastifyInstance, db: Database): Leadership {
  const leadership = new Leadership(db, {
    onChange: (job, leading) => app.log.info({ job, leading }, leading ? 'leading background job' : 'no longer leading background job'),
  });
  app.addHook('onClose', async () => leadership.close());
  return leadership;
}

/** A leader job's round every `seconds` (0: never); its failure is logged and the next round tries again. */
function everyAsLeader(app: FastifyInstance, leadership: Leadership, job: LeaderJob, seconds: number, work: () => Promise<unknown>, what: string): NodeJS.Timeout | undefined {
  if (seconds === 0) return undefined;
  const timer = setInterval(() => {
    leadership.run(job, work).catch((error: unknown) => app.log.error({ err: error }, what));
  }, seconds * 1000);
  timer.unref();
  return timer;
}

/**
 * The audit trail's background work, while the app runs: signed checkpoints of every chain that moved and
 * pruning past retention (on the leader of each), and delivery to the configured sinks. Each failure is
 * logged and retried on the next round; none of it is on a request's path.
 */
function startAuditJobs(app: FastifyInstance, db: Database, config: Config, clock: Clock, leadership: Leadership): void {
  const { audit, bus } = app.services;
  const timers = [
    everyAsLeader(app, leadership, 'audit-checkpoints', config.auditCheckpointIntervalSeconds, () => audit.checkpointAll(), 'audit checkpoints failed'),
    everyAsLeader(app, leadership, 'audit-prune', config.auditPruneIntervalSeconds, () => audit.pruneAll(), 'audit pruning failed'),
  ];
  const sinks: AuditSink[] = [];
  if (config.auditWebhookUrl !== undefined && config.auditWebhookSecret !== undefined) sinks.push(new WebhookSink(config.auditWebhookUrl, config.auditWebhookSecret, clock));
  if (config.auditBus) sinks.push(new BusSink(bus));
  const delivery = new AuditDelivery(db, audit, sinks, clock, {
    pollMs: 5_000,
    batchSize: 100,
    baseBackoffMs: 1_000,
    maxBackoffMs: 300_000,
    onError: (error, message) => app.log.warn({ err: error }, message),
  });
  delivery.start();
  app.addHook('onClose', async () => {
    for (const timer of timers) clearInterval(timer);
    await delivery.stop();
  });
}

/**
 * Agents' background work while the app runs: their reports from the bus (every instance subscribes in one
 * queue group, so each report is handled once) and the stale sweep (on its leader). Reports still in hand
 * finish before the app closes.
 */
function startAgentJobs(app: FastifyInstance, config: Config, leadership: Leadership): void {
  const { agents, bus } = app.services;
  const stopListening = agents.listen(bus);
  const sweep = everyAsLeader(app, leadership, 'agent-stale-sweep', config.agentStaleSweepSeconds, () => agents.sweepStale(), 'agent stale sweep failed');
  app.addHook('onClose', async () => {
    clearInterval(sweep);
    stopListening();
    await agents.settled();
  });
}

/**
 * Scheduled backups while the app runs, on the leader of the `backups` job: at each slot (or after a minute,
 * whichever comes first) the most recent due slot is claimed (once across every instance, whoever leads),
 * backed up and followed by retention. At start, and when an instance takes the lead, a slot missed in the
 * last day is caught up: `since` moves only on the rounds this instance led.
 */
function startBackupJobs(app: FastifyInstance, config: Config, clock: Clock, leadership: Leadership): void {
  const schedule = config.backupSchedule;
  if (schedule === 'off') return;
  const { backups } = app.services;
  let since = new Date(clock.now().getTime() - 86_400_000);
  let running: Promise<unknown> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const tick = () => {
    const now = clock.now();
    running = leadership
      .run('backups', async () => {
        await backups.runDue(since);
        since = now;
      })
      .catch((error: unknown) => app.log.error({ err: error }, 'scheduled backup failed'))
      .finally(() => {
        running = undefined;
        if (closed) return;
        // The next look is timed from the end of this one: a backup longer than the slots collapses the missed ones.
        timer = setTimeout(tick, nextTickMs(schedule, clock.now()));
        timer.unref();
      });
  };
  timer = setTimeout(tick, 0);
  timer.unref();
  app.addHook('onClose', async () => {
    closed = true;
    clearTimeout(timer);
    await running;
  });
}

/** Builds the Bulwark HTTP app without listening; tests call inject(), `server.ts` listens. */
export async function buildApp({ config, db, rootKeys, clock = systemClock, logger, maintenance, tls: preparedTls, argon2 }: AppDependencies): Promise<FastifyInstance> {
  // Typed as Fastify's logger interface so the instance type stays the plain FastifyInstance.
  const loggerInstance: FastifyBaseLogger = logger ?? createLogger(config.logLevel);
  // Fastify takes the https options at construction: the certificate is ready before it (see docs/tls.md).
  const tls = preparedTls ?? (config.tls === 'on' ? await openServerTls({ config, db, rootKeys, log: loggerInstance }, { clock }) : undefined);
  // Node checks the header and request deadlines on this interval (default 30 s, which would let a slow client far past them).
  const socketDeadlines = { headersTimeout: config.headersTimeoutSeconds * 1000, connectionsCheckingInterval: Math.min(5_000, config.headersTimeoutSeconds * 500) };
  const app = Fastify({
    loggerInstance,
    // Typed as the plain HTTP server either way: the app uses only what https.Server shares with it.
    ...((tls === undefined ? { http: socketDeadlines } : { https: { ...tls.httpsOptions, ...socketDeadlines } }) as { http: ServerOptions }),
    trustProxy: trustProxyOption(config.trustProxy),
    genReqId: (request) => {
      const inbound = request.headers['x-request-id'];
      return typeof inbound === 'string' && isId(inbound) ? inbound : newId();
    },
    logController: new LogController({ requestIdLogLabel: 'requestId' }),
    bodyLimit: config.bodyLimitBytes,
    // Draining is answered by our own hook below, as problem+json with a request id.
    return503OnClosing: false,
    // Slow clients cannot hold a connection: headers and the whole request have deadlines, idle sockets close.
    connectionTimeout: 60_000,
    requestTimeout: config.requestTimeoutSeconds * 1000,
    keepAliveTimeout: 5_000,
    routerOptions: { maxParamLength: 128 },
    clientErrorHandler: (error, socket) =>
      sendClientErrorProblem(error, socket, newId, { ...baseSecurityHeaders, 'content-security-policy': apiContentSecurityPolicy }),
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // The router rejects a malformed URL or an over-long path parameter before any hook runs; without this
    // the client gets Fastify's own JSON (no problem document, no request id).
    frameworkErrors: (error, request, reply) => {
      const bulwarkError = toBulwarkError(error);
      request.log.info({ err: error, code: bulwarkError.code }, 'request rejected by the router');
      setCommonHeaders(request, reply);
      void sendProblem(request, reply, bulwarkError);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are validated without coercion (a number is not a string); path, query and headers arrive as
  // text and are coerced. Unknown fields are rejected by `additionalProperties: false`, never stripped.
  const bodyAjv = addFormats.default(new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: true, strict: false }));
  const textAjv = addFormats.default(new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: false, allErrors: true, strict: false }));
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema));

  // Only JSON bodies; Fastify's text/plain parser would let a string reach a handler. JSON is read as
  // UTF-8 (RFC 8259), so a body declared in another charset is refused rather than misread.
  app.removeContentTypeParser('text/plain');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    const charset = /;\s*charset="?([^";]+)/i.exec(request.headers['content-type'] ?? '')?.[1]?.trim().toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      done(new BulwarkError('unsupported_media_type', { message: 'JSON bodies must be UTF-8.' }), undefined);
      return;
    }
    try {
      done(null, parseJsonBody(body));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  let draining = false;
  app.addHook('preClose', async () => {
    draining = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!draining) return;
    reply.header('connection', 'close');
    throw new BulwarkError('service_unavailable', { message: 'The server is shutting down; retry on another instance.' });
  });

  const bus = natsBusOf(config, (error, message) => app.log.warn({ err: error }, message));
  const services = buildServices({
    config,
    db,
    rootKeys,
    clock,
    onBackgroundError: (error, message) => app.log.error({ err: error }, message),
    ...(bus === undefined ? {} : { bus }),
    ...(maintenance === undefined ? {} : { maintenance }),
    argon2,
  });
  const { keyring, tenancy } = services;
  app.decorate('services', services);
  await services.tokens.init();
  const metrics = new Metrics({ topTenants: 10 });
  app.decorate('metrics', metrics);
  const rateLimits = await openRateLimiter(config, clock, {
    warn: (message, error) => app.log.warn({ err: error }, message),
    storeError: () => metrics.storeError(),
    degradedDecision: (mode) => metrics.degradedDecision(mode),
  });
  app.addHook('onClose', async () => rateLimits.limiter.close());
  const admission = new LimitsAdmission({
    limiter: rateLimits.limiter,
    platform: platformLimitsOf(config),
    tenantLimits: (tenantId) => services.limits.limitsOf(tenantId),
    audit: services.audit,
    metrics,
    clock,
    onAuditError: (error) => app.log.error({ err: error }, 'recording a rate-limit refusal failed'),
  });
  app.decorateRequest('rateLimits', null);
  registerAuth(app, [services.apiKeys, services.accessTokens], tenancy, services.access, services.audit, admission);
  // A route without a body schema takes no body: what it would silently ignore is refused like an unknown
  // field. `{}` passes, as many HTTP clients send it on every POST.
  app.addHook('preValidation', async (request) => {
    if (request.is404 || request.routeOptions.schema?.body !== undefined || request.body === undefined || isEmptyObject(request.body)) return;
    throw new BulwarkError('validation_failed', {
      message: 'This route takes no request body.',
      extensions: { errors: [{ in: 'body', path: '', message: 'must be absent' }] },
    });
  });
  // A route's own bucket (login, transit, export) is charged once the body is parsed and valid.
  app.addHook('preHandler', async (request, reply) => admission.chargeRoute(request, reply));
  app.addHook('onResponse', async (request, reply) => {
    metrics.observeRequest(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  const methodRouter = FindMyWay();
  const routedMethods = new Set<string>();
  app.addHook('onRoute', (route) => {
    // Swagger UI's own routes and the CORS preflight are the only ones registered without an explicit auth level.
    if (route.url.startsWith('/docs')) route.config = { auth: 'public', ...route.config };
    const preflight = route.method === 'OPTIONS';
    if (preflight) route.config = { auth: 'public', rateLimit: 'exempt', ...route.config };
    route.bodyLimit ??= Math.min(smallBodyLimit, config.bodyLimitBytes);
    assertRouteAccess(`${[route.method].flat().join(',')} ${route.url}`, route.config ?? {});
    const { permission } = route.config ?? {};
    if (permission !== undefined && route.schema) {
      const requires = `Requires the permission \`${permission}\`.`;
      // `x-bulwark-permission` carries it into the OpenAPI operation for clients and the security suite.
      route.schema = {
        ...route.schema,
        description: route.schema.description === undefined ? requires : `${route.schema.description} ${requires}`,
        'x-bulwark-permission': permission,
      } as typeof route.schema;
    }
    // Unknown query parameters are rejected like unknown body fields, also on routes that take none.
    // (A preflight carries the query of the request it asks about.)
    if (!route.url.startsWith('/docs') && !preflight && route.schema?.querystring === undefined) {
      route.schema = { ...route.schema, querystring: noQuery };
    }
    if (route.config?.auth !== 'public' && route.schema) {
      route.schema = { security: [{ bearer: [] }], ...route.schema };
    }
    if (route.schema && !route.schema.hide) {
      const problem = { description: 'RFC 9457 problem document with a stable `code`.', content: { [problemContentType]: { schema: problemSchema } } };
      route.schema = { ...route.schema, response: { ...(route.schema.response as object), default: problem } };
    }
    for (const method of [route.method].flat()) {
      routedMethods.add(method);
      try {
        methodRouter.on(method.toUpperCase() as HTTPMethod, route.url, () => undefined);
      } catch {
        // Already known (e.g. HEAD added for a GET route).
      }
    }
  });

  app.addHook('onSend', async (request, reply) => {
    setCommonHeaders(request, reply);
  });

  app.setErrorHandler((error, request, reply) => {
    const bulwarkError = toBulwarkError(error);
    if (bulwarkError.status >= 500) request.log.error({ err: error, code: bulwarkError.code, detail: bulwarkError.detail }, 'request failed');
    // A flood's refusals would flood the logs: they are counted in the metrics and sampled in the audit trail.
    else if (bulwarkError.status === 429) request.log.debug({ code: bulwarkError.code }, 'request throttled');
    else request.log.info({ code: bulwarkError.code, detail: bulwarkError.detail }, 'request refused');
    return sendProblem(request, reply, bulwarkError);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = [...routedMethods].filter((method) => method !== request.method && methodRouter.find(method as HTTPMethod, path) !== null);
    if (allowed.length > 0) {
      return sendProblem(request, reply, new BulwarkError('method_not_allowed', { headers: { allow: allowed.sort().join(', ') } }));
    }
    return sendProblem(request, reply, new BulwarkError('route_not_found'));
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Bulwark API',
        version: 'v1',
        description: `Secure multi-tenant core. Errors are RFC 9457 problem documents (\`${problemContentType}\`) with a stable \`code\`.`,
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An access token (JWT of a user or an operator) or a tenant API key (`bwk_...`).' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { validatorUrl: null }, staticCSP: true, transformStaticCSP: docsContentSecurityPolicy });
  // CORS is off unless origins are listed: then exactly those may call with a bearer token (no cookies, so no credentials mode).
  if (config.corsOrigins !== undefined) {
    await app.register(cors, {
      origin: [...config.corsOrigins],
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'if-match', 'if-none-match', 'x-request-id'],
      exposedHeaders: ['x-request-id', 'etag', 'location', 'retry-after', 'ratelimit', 'ratelimit-policy'],
      maxAge: 600,
      strictPreflight: true,
    });
  }

  app.get('/openapi.json', { config: { auth: 'public' }, schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes, { db, rootKeys, rateLimitStore: rateLimits.probe, bus: services.bus instanceof NatsBus ? services.bus : undefined });
  const onboarding: TenantOnboarding = {
    adminSchema: createUserBody,
    check: (admin) => services.users.assertAcceptableForNewTenant(admin),
    async create(tenantId, admin) {
      // The operator acts in the new tenant's chain: its key there is made ready first.
      const actor = currentRequest()?.actor;
      if (actor != null) await services.audit.prepareSubject({ tenantId }, actor);
      const roles = ['tenant-admin'];
      const user = await services.users.create(tenantId, admin, { roles: { names: roles, grant: (tx, userId) => services.access.grantInitialRoles(tx, tenantId, userId, roles) } });
      return { id: user.id, email: user.email };
    },
  };
  await app.register(tenancyRoutes, { tenancy, onboarding, offboarding: services.offboarding });
  await app.register(recordsRoutes, { records: services.records, recordMaxBytes: config.recordMaxBytes });
  await app.register(identityRoutes, {
    users: services.users,
    login: services.login,
    sessions: services.sessions,
    access: services.access,
    importBodyLimit: config.bodyLimitBytes,
    holds: services.privacy,
  });
  await app.register(authRoutes, {
    login: services.login,
    users: services.users,
    sessions: services.sessions,
    operators: services.operators,
    operatorSessions: services.operatorSessions,
    tokens: services.tokens,
    access: services.access,
    mfa: services.mfa,
  });
  const tokensFor = tokenAnswerer({ tokens: services.tokens, access: services.access, operators: services.operators });
  await app.register(mfaRoutes, { mfa: services.mfa, sessions: services.sessions, access: services.access, tokensFor: (issued) => tokensFor(issued, 'user'), recentLoginMs: 10 * 60_000 });
  await app.register(ssoRoutes, { sso: services.sso, tokensFor: (issued) => tokensFor(issued, 'user') });
  await app.register(operatorRoutes, { operators: services.operators });
  await app.register(accessRoutes, { access: services.access });
  await app.register(apiKeyRoutes, { apiKeys: services.apiKeys });
  await app.register(keysRoutes, { keyring, transit: services.transit, transitBodyLimit: config.bodyLimitBytes });
  await app.register(limitsRoutes, { limits: services.limits });
  await app.register(secretsRoutes, { registry: services.serviceRegistry, secrets: services.secrets, bodyLimitBytes: config.bodyLimitBytes });
  await app.register(auditRoutes, { audit: services.audit });
  await app.register(agentRoutes, { agents: services.agents });
  await app.register(agentGatewayRoutes, { agents: services.agents, bus: services.bus });
  await app.register(privacyRoutes, {
    privacy: services.privacy,
    access: services.access,
    tenantExport: { tenancy, users: services.users, access: services.access, records: services.records, audit: services.audit, clock },
  });
  await app.register(backupRoutes, {
    backups: services.backups,
    async restoreToFolder(backupId, target, force) {
      // Laid out as a data folder: `BULWARK_DATA_DIR=<dataDir>/restores/<target>` serves it (with the same root key).
      const folder = join(resolve(config.dataDir), 'restores', target, 'pglite');
      const connect = async () => ({ ...(await openRestoreTarget(folder, { appRole: config.databaseAppRole })), description: `restores/${target}/pglite` });
      return { ...(await services.backups.restore(backupId, connect, { appRole: config.databaseAppRole, force })), target };
    },
  });
  await app.register(tlsRoutes, { caPem: tls?.caPem });
  if (tls !== undefined) {
    // Renewals and file reloads swap the listener's context: they run while it listens and stop with it.
    app.addHook('onListen', async () => tls.start(app.server as unknown as TlsServer));
    app.addHook('onClose', async () => tls.stop());
  }
  const leadership = startLeadership(app, db);
  startAuditJobs(app, db, config, clock, leadership);
  startBackupJobs(app, config, clock, leadership);
  startAgentJobs(app, config, leadership);
  // Invalidations from the other instances (and this one's own, through the in-process bus) reach the caches.
  const stopInvalidations = services.invalidations.connect(services.bus);
  app.addHook('onClose', async () => stopInvalidations());
  // Unwrapped data keys leave memory with the app.
  app.addHook('onClose', async () => keyring.close());
  app.addHook('onClose', async () => services.bus.close());
  return app;
}

function isEmptyObject(value: unknown): boolean {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * A JSON body as the routes may trust it: UTF-8 without invalid bytes (decoding leniently would store
 * U+FFFD the client never sent), no lone surrogate escape (no UTF-8 store keeps one), and no member
 * that pollutes prototypes in JavaScript consumers (`__proto__`, `constructor.prototype`).
 */
function parseJsonBody(body: Buffer): unknown {
  let text: string;
  try {
    text = strictUtf8.decode(body);
  } catch {
    throw new BulwarkError('malformed_json', { message: 'The request body is not valid UTF-8.' });
  }
  if (text.trim().length === 0) throw new BulwarkError('malformed_json', { message: 'The request body is empty.' });
  let parsed: unknown;
  try {
    parsed = secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch (error) {
    if (error instanceof SyntaxError && /forbidden prototype property/.test(error.message)) {
      throw new BulwarkError('validation_failed', { message: 'The body uses a reserved member name (`__proto__`, or `constructor` holding `prototype`).' });
    }
    throw new BulwarkError('malformed_json', { cause: error });
  }
  if (surrogateEscape.test(text) && !isWellFormedJson(parsed)) {
    throw new BulwarkError('validation_failed', { message: 'The request contains text that is not valid Unicode (a lone surrogate).' });
  }
  return parsed;
}
const surrogateEscape = /\\u[dD][89a-fA-F][0-9a-fA-F]{2}/;

/** Every string and member name of a parsed JSON value is well-formed Unicode (no lone surrogate). */
function isWellFormedJson(value: unknown): boolean {
  if (typeof value === 'string') return value.isWellFormed();
  if (Array.isArray(value)) return value.every(isWellFormedJson);
  if (value !== null && typeof value === 'object') return Object.entries(value).every(([key, member]) => key.isWellFormed() && isWellFormedJson(member));
  return true;
}
