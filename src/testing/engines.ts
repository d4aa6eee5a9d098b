import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { type Config, loadConfig } from '../platform/config/config.ts';
import type { Database } from '../platform/db/database.ts';
import { openDatabase, openPgliteDatabase } from '../platform/db/open.ts';

/**
 * Every storage and isolation test runs on both engines. PostgreSQL comes from
 * BULWARK_TEST_DATABASE_URL (default: the local server) and each test file gets a throwaway database.
 * With BULWARK_REQUIRE_SERVICES=1 (CI) an unreachable PostgreSQL fails the run instead of skipping.
 */
export type EngineName = 'pglite' | 'postgres';

export const postgresAdminUrl = process.env['BULWARK_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const servicesRequired = process.env['BULWARK_REQUIRE_SERVICES'] === '1';

async function probePostgres(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: postgresAdminUrl, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return `PostgreSQL unreachable at ${new URL(postgresAdminUrl).host}: ${(error as Error).message}`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const postgresProblem = await probePostgres();
if (postgresProblem !== undefined && servicesRequired) {
  throw new Error(`BULWARK_REQUIRE_SERVICES=1 but ${postgresProblem}`);
}

/** `skip` option for node:test: a reason when the engine cannot run here, else false. */
export function engineSkip(engine: EngineName): string | false {
  return engine === 'postgres' && postgresProblem !== undefined ? postgresProblem : false;
}

export const engines: readonly EngineName[] = ['pglite', 'postgres'];

export function testConfig(overrides: Partial<Record<keyof Config, string>> = {}): Config {
  return loadConfig({}, { env: 'test', logLevel: process.env['BULWARK_TEST_LOG_LEVEL'] ?? 'silent', ...overrides });
}

export interface TestDatabase {
  engine: EngineName;
  db: Database;
  config: Config;
  /** PostgreSQL only: the URL of the throwaway database (as its owner). */
  ownerUrl?: string;
  close(): Promise<void>;
}

export async function openTestDatabase(
  engine: EngineName,
  overrides: Partial<Record<keyof Config, string>> = {},
  options: { pgliteDir?: string } = {},
): Promise<TestDatabase> {
  if (engine === 'pglite') {
    const config = testConfig(overrides);
    const { db } = await openPgliteDatabase(await PGlite.create(options.pgliteDir), config.databaseAppRole);
    return { engine, db, config, close: () => db.close() };
  }
  const name = `bulwark_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = new URL(postgresAdminUrl);
  url.pathname = `/${name}`;
  const config = testConfig({ databaseUrl: url.toString(), ...overrides });
  try {
    const { db } = await openDatabase(config);
    return {
      engine,
      db,
      config,
      ownerUrl: url.toString(),
      close: async () => {
        await db.close();
        await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      },
    };
  } catch (error) {
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    throw error;
  }
}

/** A statement on the PostgreSQL server as the test superuser (database lifecycle only). */
export async function adminQuery(sql: string, url = postgresAdminUrl): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}
