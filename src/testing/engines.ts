import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { type Config, loadConfig } from '../platform/config/config.ts';
import type { Database } from '../platform/db/database.ts';
import type { DatabaseMaintenance } from '../platform/db/maintenance.ts';
import { openDatabase, openPgliteDatabase } from '../platform/db/open.ts';

/**
 * Every storage and isolation test runs on both engines. PostgreSQL comes from
 * BULWARK_TEST_DATABASE_URL (default: the local server) and each test file gets a throwaway database.
 * With BULWARK_REQUIRE_SERVICES=1 (CI) an unreachable PostgreSQL fails the run instead of skipping.
 */
export type EngineName = 'pglite' | 'postgres';

export const postgresAdminUrl = process.env['BULWARK_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const servicesRequired = process.env['BULWARK_REQUIRE_SERVICES'] === '1';

// A long timeout: a service that is down refuses at once on loopback, while a busy 2-core CI machine can take
// seconds to answer a probe that runs while other test files start (a short one skipped or failed suites).
async function probePostgres(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: postgresAdminUrl, connectionTimeoutMillis: 15_000 });
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

/**
 * Tests call from one address at machine speed: the rate buckets are lifted unless a test sets them
 * (the limits tests do). Quotas and concurrency caps keep their defaults.
 */
const unlimitedRates = Object.fromEntries(
  (['rateLimitRequests', 'rateLimitLogin', 'rateLimitCrypto', 'rateLimitExport', 'rateLimitAnonymous', 'rateLimitOperator'] as const).map((key) => [key, 'unlimited']),
);

/** Backups, restores and archives of test apps go to a folder of this test process, removed at its exit. */
let testDataDir: string | undefined;
function processDataDir(): string {
  if (testDataDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-test-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    testDataDir = dir;
  }
  return testDataDir;
}

export function testConfig(overrides: Partial<Record<keyof Config, string>> = {}): Config {
  return loadConfig(
    {},
    { env: 'test', logLevel: process.env['BULWARK_TEST_LOG_LEVEL'] ?? 'silent', dataDir: processDataDir(), backupSchedule: 'off', offboardingGraceHours: '0', ...unlimitedRates, ...overrides },
  );
}

export interface TestDatabase {
  engine: EngineName;
  db: Database;
  config: Config;
  /** PostgreSQL only: the URL of the throwaway database (as its owner). */
  ownerUrl?: string;
  /**
   * Runs SQL as the schema owner, around the app role's privileges and RLS: what an attacker with the
   * database (or the disk) could do. Tamper tests use it; nothing in Bulwark can.
   */
  asOwner(sql: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /** What the server gets from openDatabase for offboarding's table rewrite. */
  maintenance: DatabaseMaintenance;
  close(): Promise<void>;
}

export async function openTestDatabase(
  engine: EngineName,
  overrides: Partial<Record<keyof Config, string>> = {},
  options: { pgliteDir?: string } = {},
): Promise<TestDatabase> {
  if (engine === 'pglite') {
    const config = testConfig(overrides);
    const pglite = await PGlite.create(options.pgliteDir);
    const { db, maintenance } = await openPgliteDatabase(pglite, config.databaseAppRole);
    const asOwner = async (sql: string, params: readonly unknown[] = []) =>
      pglite.transaction(async (tx) => {
        // The session serves as the app role; the owner is its bootstrap role, back after RESET ROLE.
        await tx.exec('RESET ROLE');
        try {
          return (await tx.query<Record<string, unknown>>(sql, params as unknown[])).rows;
        } finally {
          await tx.exec(`SET ROLE ${pg.escapeIdentifier(config.databaseAppRole)}`);
        }
      });
    return { engine, db, config, asOwner, maintenance, close: () => db.close() };
  }
  const name = `bulwark_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = new URL(postgresAdminUrl);
  url.pathname = `/${name}`;
  const config = testConfig({ databaseUrl: url.toString(), ...overrides });
  try {
    const { db, maintenance } = await openDatabase(config);
    // One owner connection for the database's life: suites that fingerprint it after every request would
    // otherwise pay a connection per look.
    const owner = new pg.Pool({ connectionString: url.toString(), max: 1 });
    owner.on('error', () => undefined); // an idle connection cut by the server: the next query opens another
    return {
      engine,
      db,
      config,
      ownerUrl: url.toString(),
      asOwner: async (sql, params = []) => (await owner.query(sql, params as unknown[])).rows as Record<string, unknown>[],
      maintenance,
      close: async () => {
        await owner.end();
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
export async function adminQuery(sql: string, url = postgresAdminUrl, params: readonly unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql, params as unknown[]);
  } finally {
    await client.end();
  }
}
