import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg, { escapeIdentifier } from 'pg';
import { pgliteAdminSession } from '../../platform/db/pglite.ts';
import { lockPgliteFolder } from '../../platform/db/pglite-lock.ts';
import { postgresClientConfig, type PostgresTlsFiles } from '../../platform/db/postgres-tls.ts';
import { offboardedTenantName } from '../tenancy/store.ts';
import { type AdminSession, loadMigrations, migrate } from '../../platform/db/migrate.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { OpenedBackup } from './service.ts';
import { contextSql, tableLayout } from './snapshot.ts';

export interface RestoreReport {
  backupId: string;
  tables: number;
  rows: number;
  tenantsRestored: number;
  /** Tenants whose escrow key was destroyed (offboarded): each comes back as a bare `deleted` row, nothing else. */
  tenantsShredded: string[];
}

/**
 * Restores an opened backup into a database reached as its owner: a fresh one, or with `force` one whose
 * Bulwark tables are dropped first. The target is migrated to this code's schema, which must be the
 * backup's, then every row goes back in one transaction under its tenant's RLS context, parents first.
 */
export async function restoreInto(target: AdminSession, appRole: string, backup: OpenedBackup, options: { force: boolean }): Promise<RestoreReport> {
  const { manifest } = backup;
  if (manifest.schemaVersion !== currentSchemaVersion()) {
    throw new BulwarkError('backup_schema_mismatch', {
      message: `The backup has schema version ${manifest.schemaVersion}; this Bulwark restores version ${currentSchemaVersion()}. Restore with the release that took it.`,
    });
  }
  if (await holdsData(target)) {
    if (!options.force) {
      throw new BulwarkError('restore_target_not_empty', { message: 'The target already holds a Bulwark database; restore into a fresh one, or force to replace it.' });
    }
    await dropBulwarkSchema(target);
  }
  await migrate(target, appRole);
  const report: RestoreReport = { backupId: manifest.id, tables: 0, rows: 0, tenantsRestored: backup.tenants.size, tenantsShredded: backup.shredded.map((tenant) => tenant.tenantId).sort() };
  await target.exec('BEGIN');
  try {
    const layout = await tableLayout((sql) => target.query(sql));
    for (const table of layout.ordered) {
      report.tables += 1;
      await target.query(contextSql.platform);
      const platformRows = [...(backup.platform[table] ?? [])];
      // A shredded tenant keeps its id taken: the platform's own rows (its offboarding record) may name it.
      if (table === 'tenants') {
        for (const { tenantId, region } of backup.shredded) {
          const at = manifest.createdAt;
          platformRows.push({ id: tenantId, name: offboardedTenantName, region, status: 'deleted', created_at: at, updated_at: at });
        }
      }
      report.rows += await insertRows(target, table, platformRows);
      if (!layout.tenantTables.has(table)) continue;
      for (const [tenantId, { tables }] of backup.tenants) {
        await target.query(contextSql.tenant, [tenantId]);
        report.rows += await insertRows(target, table, tables[table] ?? []);
      }
    }
    await target.exec('COMMIT');
  } catch (error) {
    await target.exec('ROLLBACK');
    throw error;
  }
  return report;
}

async function insertRows(target: AdminSession, table: string, rows: readonly Record<string, unknown>[]): Promise<number> {
  if (rows.length === 0) return 0;
  const name = escapeIdentifier(table);
  // jsonb_populate_recordset turns each value back into its column's type with that type's own input
  // function (bytea from `\x..`, arrays, timestamps): the exact inverse of the backup's to_jsonb.
  await target.query(`INSERT INTO ${name} SELECT * FROM jsonb_populate_recordset(NULL::${name}, $1::jsonb)`, [JSON.stringify(rows)]);
  return rows.length;
}

/**
 * Whether the target holds a Bulwark database in use: migrated, with an operator, a tenant or a platform
 * event (read in the platform scope, which their policies admit). A migrated empty database is a fresh one.
 */
async function holdsData(target: AdminSession): Promise<boolean> {
  const [migrated] = await target.query<{ migrated: boolean }>("SELECT to_regclass('public.schema_migrations') IS NOT NULL AND to_regclass('public.tenants') IS NOT NULL AS migrated");
  if (migrated?.migrated !== true) return false;
  await target.exec('BEGIN');
  try {
    await target.query(contextSql.platform);
    const [row] = await target.query<{ used: boolean }>(
      'SELECT EXISTS (SELECT 1 FROM tenants) OR EXISTS (SELECT 1 FROM operators) OR EXISTS (SELECT 1 FROM platform_audit_events) AS used',
    );
    return row?.used === true;
  } finally {
    await target.exec('ROLLBACK');
  }
}

/** `force`: the target's Bulwark tables and functions go; nothing outside the public schema is touched. */
async function dropBulwarkSchema(target: AdminSession): Promise<void> {
  const tables = await target.query<{ name: string }>("SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')");
  const functions = await target.query<{ signature: string }>(
    "SELECT p.oid::regprocedure::text AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.proname LIKE 'bulwark\\_%'",
  );
  for (const { name } of tables) await target.exec(`DROP TABLE IF EXISTS ${escapeIdentifier(name)} CASCADE`);
  // regprocedure text is already a quoted, qualified signature.
  for (const { signature } of functions) await target.exec(`DROP FUNCTION IF EXISTS ${signature} CASCADE`);
}

/** The schema version this release migrates to: what a backup taken now records, and what a restore needs. */
export function currentSchemaVersion(): number {
  return Math.max(...loadMigrations().map((migration) => migration.version));
}

export interface RestoreTarget {
  session: AdminSession;
  /** Where it is, without credentials. */
  description: string;
  close(): Promise<void>;
}

/**
 * A restore target reached as its owner: a PostgreSQL URL (its login must own the schema, like the one that
 * migrates; TLS as for the serving database) or an embedded database folder, created when absent.
 */
export async function openRestoreTarget(to: string, options: { appRole?: string; tls?: PostgresTlsFiles } = {}): Promise<RestoreTarget> {
  if (/^postgres(ql)?:\/\//.test(to)) {
    // The serving database's TLS rules: sslmode with libpq's meanings, the BULWARK_DATABASE_TLS_* files.
    const client = new pg.Client({ ...postgresClientConfig(to, options.tls), connectionTimeoutMillis: 5_000 });
    await client.connect();
    const url = new URL(to);
    return {
      session: {
        exec: async (sql) => {
          await client.query(sql);
        },
        query: async <Row>(sql: string, params: readonly unknown[] = []) => (await client.query(sql, params as unknown[])).rows as Row[],
      },
      description: `postgres://${url.host}${url.pathname}`,
      close: () => client.end(),
    };
  }
  const folder = resolve(to);
  const fresh = !existsSync(folder) || readdirSync(folder).length === 0;
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  const unlock = lockPgliteFolder(folder);
  try {
    // A new folder starts from a migrated empty database made once per process: initdb and the migrations
    // are most of a small restore's time.
    const template = fresh && options.appRole !== undefined ? await migratedTemplate(options.appRole) : undefined;
    const pglite = await PGlite.create(folder, template === undefined ? {} : { loadDataDir: template });
    return {
      session: pgliteAdminSession(pglite),
      description: folder,
      async close() {
        try {
          await pglite.close();
        } finally {
          unlock();
        }
      },
    };
  } catch (error) {
    unlock();
    throw error;
  }
}

const templates = new Map<string, Promise<Blob>>();

/** An embedded database migrated to this release for `appRole`, with no rows, as a data folder tarball. */
function migratedTemplate(appRole: string): Promise<Blob> {
  let template = templates.get(appRole);
  if (template === undefined) {
    template = (async () => {
      const pglite = await PGlite.create();
      try {
        await migrate(pgliteAdminSession(pglite), appRole);
        return await pglite.dumpDataDir('gzip');
      } finally {
        await pglite.close();
      }
    })();
    templates.set(appRole, template);
    template.catch(() => templates.delete(appRole));
  }
  return template;
}
