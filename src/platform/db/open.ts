import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import type { Config } from '../config/config.ts';
import type { Database } from './database.ts';
import { type DatabaseMaintenance, pgliteMaintenance, postgresMaintenance } from './maintenance.ts';
import { assertServingRoleIsolated, inspectServingRole, migrate, type MigrationReport } from './migrate.ts';
import { pgliteAdminSession, wrapPglite } from './pglite.ts';
import { lockPgliteFolder } from './pglite-lock.ts';
import { openPostgres } from './postgres.ts';
import { postgresClientConfig, type PostgresTlsFiles, unverifiedTransport } from './postgres-tls.ts';

export interface OpenedDatabase {
  db: Database;
  migrations: MigrationReport;
  /** Weaker-than-production settings the operator should hear about once. */
  warnings: string[];
  /** The owner's table rewrite, for offboarding only (see maintenance.ts). */
  maintenance: DatabaseMaintenance;
}

type DatabaseConfig = Pick<
  Config,
  | 'env'
  | 'databaseUrl'
  | 'databaseAdminUrl'
  | 'databaseAppRole'
  | 'databasePoolMax'
  | 'databaseTenantMaxConnections'
  | 'databaseStatementTimeoutMs'
  | 'dataDir'
  | 'databaseTlsCaFile'
  | 'databaseTlsCertFile'
  | 'databaseTlsKeyFile'
  | 'allowUnverifiedDatabaseTls'
>;

/** The TLS files of the configuration (read at start), for every connection to the configured PostgreSQL. */
export function postgresTlsOf(config: Pick<Config, 'databaseTlsCaFile' | 'databaseTlsCertFile' | 'databaseTlsKeyFile'>): PostgresTlsFiles {
  return { ca: config.databaseTlsCaFile?.pem, cert: config.databaseTlsCertFile?.pem, key: config.databaseTlsKeyFile?.pem };
}

/** Opens the configured engine, migrates it as the owner and returns a handle that serves as the app role. */
export async function openDatabase(config: DatabaseConfig, options: { pgliteDataDir?: string } = {}): Promise<OpenedDatabase> {
  if (config.databaseUrl !== undefined) return openPostgresDatabase(config, config.databaseUrl);
  const dataDir = options.pgliteDataDir ?? join(resolve(config.dataDir), 'pglite');
  if (dataDir.startsWith('memory://')) return openPgliteDatabase(await PGlite.create(dataDir), config.databaseAppRole);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const unlock = lockPgliteFolder(dataDir);
  try {
    const opened = await openPgliteDatabase(await PGlite.create(dataDir), config.databaseAppRole);
    const close = opened.db.close.bind(opened.db);
    opened.db.close = async () => {
      try {
        await close();
      } finally {
        unlock();
      }
    };
    return opened;
  } catch (error) {
    unlock();
    throw error;
  }
}

/**
 * PGlite is one in-process session: migrate as its bootstrap owner, then drop to the app role for
 * the life of the session. RESET ROLE could undo that, so no request path may run free-form SQL; every
 * statement in Bulwark is a constant string with bound parameters.
 */
export async function openPgliteDatabase(pglite: PGlite, appRole: string): Promise<OpenedDatabase> {
  const admin = pgliteAdminSession(pglite);
  try {
    const migrations = await migrate(admin, appRole);
    await pglite.exec(`SET ROLE ${pg.escapeIdentifier(appRole)}`);
    assertServingRoleIsolated(await inspectServingRole(async (sql) => (await pglite.query(sql)).rows as never));
    return { db: wrapPglite(pglite), migrations, warnings: [], maintenance: pgliteMaintenance(pglite, appRole) };
  } catch (error) {
    // A failed migration must not leave the engine running: the CLI would never exit.
    await pglite.close().catch(() => undefined);
    throw error;
  }
}

async function openPostgresDatabase(config: DatabaseConfig, url: string): Promise<OpenedDatabase> {
  const ownerUrl = config.databaseAdminUrl ?? url;
  // Checked before the first connection: its startup message carries the login, and the password follows.
  const warnings = databaseTransportWarnings(config, [url, ownerUrl]);
  const tls = postgresTlsOf(config);
  const migrations = await migratePostgres(ownerUrl, config.databaseAppRole, tls);
  const db = openPostgres({
    url,
    tls,
    appRole: config.databaseAppRole,
    poolMax: config.databasePoolMax,
    tenantMaxConnections: config.databaseTenantMaxConnections ?? Math.max(1, Math.ceil(config.databasePoolMax / 2)),
    statementTimeoutMs: config.databaseStatementTimeoutMs,
  });
  try {
    const role = await inspectServingRole(async (sql) => (await db.withPlatform((tx) => tx.query(sql))).rows as never);
    assertServingRoleIsolated(role);
    if (role.loginPrivileged) {
      // Every statement is parameterised, so reaching RESET ROLE takes a code-execution bug; still, in
      // production the login itself must not be able to bypass row-level security.
      const message = `database login ${role.loginUser} is a superuser or has BYPASSRLS; RESET ROLE would escape row-level security. Log in as a dedicated user that is a member of ${config.databaseAppRole}`;
      if (config.env === 'production') throw new Error(`${message}; refusing to serve in production`);
      warnings.push(message);
    }
  } catch (error) {
    await db.close();
    throw error;
  }
  return { db, migrations, warnings, maintenance: postgresMaintenance(ownerUrl, tls) };
}

/**
 * The transport check every connection to the configured PostgreSQL passes first (serving and `bulwark
 * migrate`): in production a database off loopback without verify-full is refused unless accepted by name;
 * elsewhere it is a warning.
 */
export function databaseTransportWarnings(config: DatabaseConfig, urls: readonly string[]): string[] {
  const warnings: string[] = [];
  for (const problem of new Set(urls.map(unverifiedTransport))) {
    if (problem === undefined) continue;
    const remedy = 'set sslmode=verify-full (with BULWARK_DATABASE_TLS_CA_FILE for a private CA)';
    if (config.env === 'production' && !config.allowUnverifiedDatabaseTls) {
      throw new Error(`${problem}; refusing to start in production: ${remedy}, or BULWARK_ALLOW_UNVERIFIED_DATABASE_TLS=true to accept it`);
    }
    warnings.push(`${problem}: anyone on the path can read the traffic or pose as the database; ${remedy}`);
  }
  return warnings;
}

export async function migratePostgres(adminUrl: string, appRole: string, tls: PostgresTlsFiles = {}): Promise<MigrationReport> {
  const client = new pg.Client({ ...postgresClientConfig(adminUrl, tls), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return await migrate(
      {
        exec: async (sql) => {
          await client.query(sql);
        },
        query: async <Row>(sql: string, params: readonly unknown[] = []) =>
          (await client.query(sql, params as unknown[])).rows as Row[],
      },
      appRole,
    );
  } finally {
    await client.end();
  }
}
