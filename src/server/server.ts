import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../platform/config/config.ts';
import type { Database } from '../platform/db/database.ts';
import { openDatabase } from '../platform/db/open.ts';
import { isLocalHost } from '../platform/db/postgres-tls.ts';
import { createLogger } from '../platform/logger.ts';
import { systemClock } from '../platform/clock.ts';
import { openRootKeyProvider } from '../modules/keys/root-providers.ts';
import { buildApp } from './app.ts';

export interface RunningServer {
  app: FastifyInstance;
  db: Database;
  address: string;
  /** `http://host:port/metrics` when BULWARK_METRICS_PORT is set. */
  metricsAddress: string | undefined;
  stop(): Promise<void>;
}

/** Opens storage, migrates, builds the app and listens. The caller owns shutdown through `stop`. */
export async function startServer(config: Config, output: { banner: (text: string) => void }): Promise<RunningServer> {
  const logger = createLogger(config.logLevel);
  refuseInsecureProductionDefaults(config);
  warnAboutInsecureDefaults(config, logger);
  const rootKeys = await openRootKeyProvider(config, systemClock);
  for (const warning of rootKeys.warnings) logger.warn(warning);
  const { db, migrations, warnings, maintenance } = await openDatabase(config);
  for (const warning of warnings) logger.warn(warning);
  logger.info({ engine: db.engine, applied: migrations.applied, alreadyApplied: migrations.alreadyApplied }, 'database ready');
  let app: FastifyInstance | undefined;
  try {
    app = await buildApp({ config, db, rootKeys: rootKeys.provider, logger, maintenance });
    const { generated, setupDone } = await app.services.operators.ensureSetupToken(config.setupToken);
    if (setupDone && config.setupToken !== undefined) logger.info('BULWARK_SETUP_TOKEN is set but setup is done (an operator exists); it is ignored');
    const address = await app.listen({ host: config.host, port: config.port });
    if (generated !== undefined) output.banner(setupBanner(generated));
    const listening = app;
    const metrics = config.metricsPort === undefined ? undefined : await listenForMetrics(app, config.metricsHost, config.metricsPort);
    return {
      app: listening,
      db,
      address,
      metricsAddress: metrics?.address,
      stop: async () => {
        await metrics?.close();
        await closeWithin(listening, config.shutdownTimeoutMs);
        await db.close();
      },
    };
  } catch (error) {
    await app?.close();
    await db.close();
    throw error;
  }
}

async function closeWithin(app: FastifyInstance, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    app.close(),
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        app.log.warn({ timeoutMs }, 'shutdown timeout reached; closing remaining connections');
        app.server.closeAllConnections();
        resolve();
      }, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/**
 * The Prometheus endpoint, on a listener of its own: scrapers reach it on an internal address while the API
 * listener may face the internet, and it carries no credentials of its own.
 */
async function listenForMetrics(app: FastifyInstance, host: string, port: number): Promise<{ address: string; close(): Promise<void> }> {
  app.metrics.collectProcessMetrics();
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    app.metrics.registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': app.metrics.registry.contentType, 'cache-control': 'no-store' }).end(text),
      (error: unknown) => {
        app.log.error({ err: error }, 'collecting metrics failed');
        response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  const address = `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics`;
  app.log.info({ address }, 'metrics listening');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Production refuses what would quietly weaken it, unless the operator accepts it by name (STYLE.md rule 6). */
function refuseInsecureProductionDefaults(config: Config): void {
  if (config.env !== 'production') return;
  if (config.redisUrl === undefined && !config.allowMemoryRateLimits) {
    throw new Error(
      'rate limits in process memory: with several instances each allows the whole budget. Refusing to start in production; set BULWARK_REDIS_URL, or BULWARK_ALLOW_MEMORY_RATE_LIMITS=true to accept it.',
    );
  }
}

function warnAboutInsecureDefaults(config: Config, logger: ReturnType<typeof createLogger>): void {
  if (config.databaseUrl === undefined) {
    const message = 'embedded PGlite database in the data folder: fine for one machine, use BULWARK_DATABASE_URL (PostgreSQL) in production';
    if (config.env === 'production') logger.warn(message);
    else logger.info(message);
  }
  if (config.redisUrl === undefined && config.env !== 'production') {
    logger.info('rate-limit buckets in process memory: fine for one instance, set BULWARK_REDIS_URL when running several');
  }
  // (PostgreSQL's transport is checked where it is opened, before the first connection: see db/open.ts.)
  for (const [store, url, secure] of [['Redis', config.redisUrl, 'rediss'], ['NATS', config.natsUrl, 'tls']] as const) {
    if (config.env !== 'production' || url === undefined) continue;
    const parsed = new URL(url);
    const host = parsed.hostname.replace(/^\[(.+)\]$/, '$1');
    if (parsed.protocol !== `${secure}:` && !isLocalHost(host)) {
      logger.warn({ host }, `${store} is reached in plain text off this machine: use a ${secure}:// URL (see docs/data-store-tls.md)`);
    }
  }
  if (config.tls === 'off' && config.trustProxy === false && config.env === 'production') {
    logger.warn('serving plain HTTP with no trusted proxy: terminate TLS in front (and set BULWARK_TRUST_PROXY) or set BULWARK_TLS=on');
  }
  if (config.env === 'production' && !(config.publicUrl ?? '').startsWith('https:')) {
    logger.warn(
      'BULWARK_PUBLIC_URL is not an https URL: SSO redirect URIs and SAML entity ids name it, SAML logins are not bound to the browser, and passkeys bind to its host; set it to the public https address',
    );
  }
  const origins = config.customerKmsAllowedOrigins;
  if (origins.includes('*')) {
    logger.warn('BULWARK_CUSTOMER_KMS_ALLOWED_ORIGINS=*: tenants can make this server send requests to any address (their KMS); list the origins instead');
  }
  const plainHttp = origins.filter((origin) => origin.startsWith('http:'));
  if (config.env === 'production' && plainHttp.length > 0) {
    logger.warn({ origins: plainHttp }, 'customer KMS origins over plain http: KMS tokens and key shares would cross the network unencrypted');
  }
}

/**
 * The generated setup token goes to the terminal once, deliberately outside the JSON log stream
 * (logs are shipped and retained; this secret must not be).
 */
function setupBanner(token: string): string {
  return [
    '',
    '  ============================================================================',
    '  Bulwark first start: one-time setup token (shown once, only its hash is kept)',
    '',
    `    ${token}`,
    '',
    '  Create the first operator with it: POST /v1/setup',
    '    {"setupToken": "<token>", "email": "...", "password": "..."}',
    '  then log in with POST /v1/auth/operator/login. The token is spent by setup.',
    '  Set BULWARK_SETUP_TOKEN to choose it yourself (automation).',
    '  ============================================================================',
    '',
  ].join('\n');
}
