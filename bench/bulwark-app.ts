/**
 * The real Bulwark app as the benches run it: production settings, the bench's database (a throwaway
 * PostgreSQL database or an in-memory PGlite) and a throwaway root key, since the benches measure the
 * request path, not the key provider. In-process (bench/auth.ts) and in the Bulwark server processes.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { EnvRootKey } from '../src/modules/keys/root/env.ts';
import { type Config, loadConfig } from '../src/platform/config/config.ts';
import type { Database } from '../src/platform/db/database.ts';
import { openDatabase } from '../src/platform/db/open.ts';
import { buildApp } from '../src/server/app.ts';
import { runChild, specArgument } from './child.ts';
import type { BulwarkSpec } from './protocol.ts';

export interface BenchApp {
  config: Config;
  db: Database;
  rootKeys: EnvRootKey;
  app: FastifyInstance;
}

/**
 * The benches push one tenant (and one address) far past the production rate limits, so the buckets are set
 * out of reach: still charged on every request (their cost is measured), never refusing. The noisy-neighbour
 * bench keeps the production limits (`productionLimits`).
 */
const outOfReach = '100000000/1s';
const benchRates = Object.fromEntries(
  (['rateLimitRequests', 'rateLimitLogin', 'rateLimitCrypto', 'rateLimitExport', 'rateLimitAnonymous', 'rateLimitOperator'] as const).map((key) => [key, outOfReach]),
);

/** Opens (and migrates) the database and builds the app on it; the caller closes the app, then the database. */
export async function openBenchApp(spec: BulwarkSpec): Promise<BenchApp> {
  const config = loadConfig(
    {},
    {
      env: 'production',
      logLevel: 'silent',
      databasePoolMax: String(spec.poolMax),
      ...(spec.productionLimits === true ? {} : benchRates),
      ...(spec.database === undefined ? {} : { databaseUrl: spec.database.login, databaseAdminUrl: spec.database.owner }),
    },
  );
  const { db } = await openDatabase(config, { pgliteDataDir: 'memory://' });
  try {
    const rootKeys = new EnvRootKey(randomBytes(32).toString('base64'));
    const app = await buildApp({ config, db, rootKeys });
    return { config, db, rootKeys, app };
  } catch (error) {
    await db.close();
    throw error;
  }
}

/** A Bulwark server process (spec: BulwarkSpec): `seed` prepares what the load needs and returns the `ready` report. */
export function runBulwarkChild<Report extends object>(seed: (app: FastifyInstance) => Promise<Report>): void {
  runChild(async () => {
    const { app, db } = await openBenchApp(specArgument() as BulwarkSpec);
    try {
      return { app, report: await seed(app), close: () => db.close() };
    } catch (error) {
      await db.close();
      throw error;
    }
  });
}
