import type { FastifyInstance } from 'fastify';
import type { Config } from '../platform/config/config.ts';
import type { Database } from '../platform/db/database.ts';
import { openDatabase } from '../platform/db/open.ts';
import { createLogger } from '../platform/logger.ts';
import { systemClock } from '../platform/clock.ts';
import { openRootKeyProvider } from '../modules/keys/root-providers.ts';
import { buildApp } from './app.ts';

export interface RunningServer {
  app: FastifyInstance;
  db: Database;
  address: string;
  stop(): Promise<void>;
}

/** Opens storage, migrates, builds the app and listens. The caller owns shutdown through `stop`. */
export async function startServer(config: Config, output: { banner: (text: string) => void }): Promise<RunningServer> {
  const logger = createLogger(config.logLevel);
  warnAboutInsecureDefaults(config, logger);
  const rootKeys = await openRootKeyProvider(config, systemClock);
  for (const warning of rootKeys.warnings) logger.warn(warning);
  const { db, migrations, warnings } = await openDatabase(config);
  for (const warning of warnings) logger.warn(warning);
  logger.info({ engine: db.engine, applied: migrations.applied, alreadyApplied: migrations.alreadyApplied }, 'database ready');
  let app: FastifyInstance | undefined;
  try {
    app = await buildApp({ config, db, rootKeys: rootKeys.provider, logger });
    const { generated, setupDone } = await app.services.operators.ensureSetupToken(config.setupToken);
    if (setupDone && config.setupToken !== undefined) logger.info('BULWARK_SETUP_TOKEN is set but setup is done (an operator exists); it is ignored');
    const address = await app.listen({ host: config.host, port: config.port });
    if (generated !== undefined) output.banner(setupBanner(generated));
    const listening = app;
    return {
      app: listening,
      db,
      address,
      stop: async () => {
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

function warnAboutInsecureDefaults(config: Config, logger: ReturnType<typeof createLogger>): void {
  if (config.databaseUrl === undefined) {
    const message = 'embedded PGlite database in the data folder: fine for one machine, use BULWARK_DATABASE_URL (PostgreSQL) in production';
    if (config.env === 'production') logger.warn(message);
    else logger.info(message);
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
