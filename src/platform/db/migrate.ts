import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { escapeIdentifier, escapeLiteral } from 'pg';
import { sqlState } from './database.ts';

/** A session as the schema owner: runs migrations, never serves requests. */
export interface AdminSession {
  /** Runs one or more statements without parameters. */
  exec(sql: string): Promise<void>;
  query<Row = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<Row[]>;
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

const migrationsDir = new URL('./migrations/', import.meta.url);
// One fleet-wide lock so two instances starting together do not migrate twice.
const migrationLockKey = 7_245_183_001;

export function loadMigrations(): Migration[] {
  return readdirSync(migrationsDir)
    .filter((file) => /^\d{4}_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => {
      const sql = readFileSync(new URL(file, migrationsDir), 'utf8');
      return {
        version: Number(file.slice(0, 4)),
        name: file.slice(5, -4),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    });
}

export interface MigrationReport {
  applied: string[];
  alreadyApplied: number;
}

/**
 * Brings the schema up to date and (re)asserts the app role: it exists, cannot log in by itself,
 * is neither superuser nor BYPASSRLS, and holds only the grants the migrations give it.
 * Re-running is a no-op; an applied migration whose file changed is refused.
 */
export async function migrate(session: AdminSession, appRole: string): Promise<MigrationReport> {
  await session.query('SELECT pg_advisory_lock($1)', [migrationLockKey]);
  try {
    await ensureAppRole(session, appRole);
    await session.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const applied = new Map(
      (await session.query<{ version: number; checksum: string }>('SELECT version, checksum FROM schema_migrations')).map(
        (row) => [row.version, row.checksum],
      ),
    );
    const report: MigrationReport = { applied: [], alreadyApplied: 0 };
    for (const migration of loadMigrations()) {
      const checksum = applied.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new Error(`migration ${migration.version}_${migration.name} was changed after it was applied`);
        }
        report.alreadyApplied += 1;
        continue;
      }
      await session.exec('BEGIN');
      try {
        await session.exec(migration.sql.replaceAll('{{app_role}}', escapeIdentifier(appRole)));
        await session.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
          migration.version,
          migration.name,
          migration.checksum,
        ]);
        await session.exec('COMMIT');
      } catch (error) {
        await session.exec('ROLLBACK');
        throw error;
      }
      report.applied.push(`${String(migration.version).padStart(4, '0')}_${migration.name}`);
    }
    await session.exec(`GRANT USAGE ON SCHEMA public TO ${escapeIdentifier(appRole)}`);
    return report;
  } finally {
    await session.query('SELECT pg_advisory_unlock($1)', [migrationLockKey]);
  }
}

async function ensureAppRole(session: AdminSession, appRole: string): Promise<void> {
  // Identifiers cannot be bound as parameters; the role name is validated by config and quoted here.
  const create = `DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${escapeLiteral(appRole)}) THEN
      CREATE ROLE ${escapeIdentifier(appRole)} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
  END $$`;
  try {
    await session.exec(create);
  } catch (error) {
    // Another database of the same cluster created it concurrently.
    if (sqlState(error) !== '42710' && sqlState(error) !== '23505') throw error;
  }
  const [role] = await session.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
    'SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1',
    [appRole],
  );
  if (!role) throw new Error(`app role ${appRole} does not exist and could not be created`);
  if (role.rolsuper || role.rolbypassrls) {
    throw new Error(`app role ${appRole} is a superuser or has BYPASSRLS; row-level security would not apply`);
  }
}

export interface RoleCheck {
  currentUser: string;
  superuser: boolean;
  bypassRls: boolean;
  ownedTables: number;
  /** The user the connection logged in as; `RESET ROLE` would return to it. */
  loginUser: string;
  loginPrivileged: boolean;
}

/** What the serving connection is allowed to do; the server refuses to start if it could bypass RLS. */
export async function inspectServingRole(
  query: <Row>(sql: string) => Promise<Row[]>,
): Promise<RoleCheck> {
  const [row] = await query<{
    current_user: string;
    rolsuper: boolean;
    rolbypassrls: boolean;
    owned: number;
    login_user: string;
    login_privileged: boolean;
  }>(
    `SELECT current_user, r.rolsuper, r.rolbypassrls,
            (SELECT count(*)::int FROM pg_tables t WHERE t.schemaname = 'public' AND t.tableowner = current_user) AS owned,
            session_user AS login_user, (s.rolsuper OR s.rolbypassrls) AS login_privileged
       FROM pg_roles r, pg_roles s WHERE r.rolname = current_user AND s.rolname = session_user`,
  );
  if (!row) throw new Error('cannot inspect the serving database role');
  return {
    currentUser: row.current_user,
    superuser: row.rolsuper,
    bypassRls: row.rolbypassrls,
    ownedTables: row.owned,
    loginUser: row.login_user,
    loginPrivileged: row.login_privileged,
  };
}

export function assertServingRoleIsolated(check: RoleCheck): void {
  if (check.superuser || check.bypassRls || check.ownedTables > 0) {
    throw new Error(
      `database role ${check.currentUser} can bypass row-level security (superuser=${check.superuser}, bypassrls=${check.bypassRls}, owns ${check.ownedTables} tables); refusing to serve`,
    );
  }
}
