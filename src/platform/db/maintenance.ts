import { type PGlite, protocol } from '@electric-sql/pglite';
import pg from 'pg';
import { postgresClientConfig, type PostgresTlsFiles } from './postgres-tls.ts';

/**
 * What only the schema owner may do, narrowed to one operation: rewriting tables so the dead row versions a
 * DELETE leaves behind (with whatever plaintext columns they held) are gone from the table files, then a
 * checkpoint. Offboarding is the one user: it is handed this object, nothing else is.
 */
export interface DatabaseMaintenance {
  /** VACUUM FULL each named table of the public schema, then CHECKPOINT. Unknown names are refused. */
  vacuumFull(tables: readonly string[]): Promise<void>;
}

const knownTablesSql = `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY ($1::text[])`;

/** The tables as quoted identifiers, each checked against the catalog first: no name reaches SQL unless it is a table. */
async function checkedTables(tables: readonly string[], known: (names: string[]) => Promise<string[]>): Promise<string[]> {
  const wanted = [...new Set(tables)].sort();
  const found = new Set(await known(wanted));
  const unknown = wanted.filter((name) => !found.has(name));
  if (unknown.length > 0) throw new Error(`not tables of the public schema: ${unknown.join(', ')}`);
  return wanted.map((name) => pg.escapeIdentifier(name));
}

/**
 * PGlite: one session, which serves as the app role. These statements run as its bootstrap (owner) role,
 * with both of PGlite's locks held throughout, so no other statement of the process runs while the role is
 * reset. VACUUM cannot run in a transaction: each statement is a simple query of its own.
 *
 * A checkpoint alone leaves the old WAL segment in pg_wal, and PostgreSQL recycles old segments by
 * renaming them, contents and all (measured: the deleted rows' text stayed readable in a recycled segment).
 * So WAL recycling is off for this session, the segment that holds the deleted rows is closed
 * (pg_switch_wal) and the checkpoint removes it. No ANALYZE: PGlite has no autovacuum and so no column
 * statistics, and creating them would copy other tenants' values into pg_statistic, whose dead row
 * versions nothing here rewrites.
 */
export function pgliteMaintenance(pglite: PGlite, appRole: string): DatabaseMaintenance {
  const run = async (sql: string) => {
    await pglite.execProtocol(protocol.serialize.query(sql));
  };
  return {
    async vacuumFull(tables) {
      const names = await checkedTables(tables, async (wanted) => (await pglite.query<{ name: string }>(knownTablesSql, [wanted])).rows.map((row) => row.name));
      // Written inside the locked callback; an object, so the check after it reads the live value.
      const session = { asOwner: false };
      try {
        await pglite._runExclusiveTransaction(() =>
          pglite._runExclusiveQuery(async () => {
            await run('RESET ROLE');
            session.asOwner = true;
            try {
              await run('SET wal_recycle = off');
              for (const name of names) await run(`VACUUM FULL ${name}`);
              await run('SELECT pg_switch_wal()');
              await run('CHECKPOINT');
            } finally {
              await run('RESET wal_recycle');
              await run(`SET ROLE ${pg.escapeIdentifier(appRole)}`);
              session.asOwner = false;
            }
          }),
        );
      } finally {
        // A session left as the owner would serve every later statement past RLS: closed instead (every
        // request then fails) if the role could not be taken back.
        if (session.asOwner) await pglite.close().catch(() => undefined);
      }
    },
  };
}

/**
 * PostgreSQL: a short connection as the schema owner (the URL that migrated). CHECKPOINT needs a superuser
 * or the pg_checkpoint role. ANALYZE replaces the column statistics autovacuum took while the tenant's rows
 * were there (most common values are row values). WAL segments, archives and replicas are the server's:
 * see docs/offboarding.md.
 */
export function postgresMaintenance(ownerUrl: string, tls: PostgresTlsFiles = {}): DatabaseMaintenance {
  return {
    async vacuumFull(tables) {
      const client = new pg.Client({ ...postgresClientConfig(ownerUrl, tls), connectionTimeoutMillis: 5_000 });
      await client.connect();
      try {
        const names = await checkedTables(tables, async (wanted) => (await client.query<{ name: string }>(knownTablesSql, [wanted])).rows.map((row) => row.name));
        for (const name of names) await client.query(`VACUUM (FULL, ANALYZE) ${name}`);
        await client.query('CHECKPOINT');
      } finally {
        await client.end();
      }
    },
  };
}
