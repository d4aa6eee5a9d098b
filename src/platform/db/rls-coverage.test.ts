import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { engineSkip, engines, openTestDatabase, type TestDatabase } from '../../testing/engines.ts';

/**
 * Platform tables that deliberately have no tenant RLS. Each entry says why; a new table that is neither
 * covered by RLS nor listed here fails this test, so isolation cannot be forgotten.
 */
const platformTables: Record<string, string> = {
  // Owned and used only by the migration runner; the app role has no grant on it at all.
  schema_migrations: 'migration bookkeeping, no app access',
  // One row: the SHA-256 of the operator bootstrap token. Holds no tenant data.
  operator_bootstrap: 'operator credential hash, no tenant data',
  // Access-token signing keys: one keyring for the whole platform; private keys sealed, public keys are public.
  signing_keys: 'platform token-signing keys, no tenant data',
};

interface TableInfo {
  table: string;
  rls: boolean;
  forced: boolean;
  key: string[];
}

for (const engine of engines) {
  describe(`row-level security coverage [${engine}]`, { skip: engineSkip(engine) }, () => {
    let storage: TestDatabase;
    let tables: TableInfo[];

    before(async () => {
      storage = await openTestDatabase(engine);
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<TableInfo>(
          `SELECT c.relname AS table, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
                  coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                              FROM pg_index i
                              CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                             WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS key
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
            ORDER BY c.relname`,
        ),
      );
      tables = rows;
    });
    after(() => storage.close());

    it('finds the tables (the query itself works)', () => {
      const names = tables.map((table) => table.table);
      for (const expected of ['tenants', 'records', 'api_keys', 'schema_migrations']) assert.ok(names.includes(expected), expected);
    });

    it('every tenant table has ENABLE + FORCE RLS, a restrictive tenant guard and a tenant-led primary key', async () => {
      const policies = await storage.db.withPlatform((tx) =>
        tx.query<{ tablename: string; permissive: string; qual: string | null; with_check: string | null; cmd: string }>(
          "SELECT tablename, permissive, qual, with_check, cmd FROM pg_policies WHERE schemaname = 'public'",
        ),
      );
      const uncovered: string[] = [];
      for (const { table, rls, forced, key } of tables) {
        if (Object.hasOwn(platformTables, table)) continue;
        const own = policies.rows.filter((policy) => policy.tablename === table);
        const guard = own.find(
          (policy) => policy.permissive === 'RESTRICTIVE' && policy.cmd === 'ALL' && (policy.qual ?? '').includes("current_setting('app.tenant_id'"),
        );
        const tenantColumn = table === 'tenants' ? 'id' : 'tenant_id';
        if (!rls) uncovered.push(`${table}: RLS not enabled`);
        if (!forced) uncovered.push(`${table}: RLS not forced`);
        if (!guard) uncovered.push(`${table}: no restrictive policy on app.tenant_id`);
        if (key[0] !== tenantColumn) uncovered.push(`${table}: primary key does not lead with ${tenantColumn} (${key.join(', ')})`);
      }
      assert.deepEqual(uncovered, []);
    });

    it('unique constraints and foreign keys of tenant tables include tenant_id', async () => {
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<{ table: string; constraint: string; type: string; columns: string[] }>(
          `SELECT cl.relname AS table, co.conname AS constraint, co.contype::text AS type,
                  array(SELECT a.attname::text FROM unnest(co.conkey) AS k(attnum)
                          JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum) AS columns
             FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid
             JOIN pg_namespace n ON n.oid = cl.relnamespace
            WHERE n.nspname = 'public' AND co.contype IN ('u', 'f', 'p')`,
        ),
      );
      const leaky = rows.filter(
        (row) =>
          !Object.hasOwn(platformTables, row.table) &&
          row.table !== 'tenants' &&
          !row.columns.includes('tenant_id'),
      );
      assert.deepEqual(leaky, []);
    });

    it('views, if any, run with the caller’s rights (security_invoker)', async () => {
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<{ view: string }>(
          `SELECT c.relname AS view FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'v'
              AND NOT coalesce(c.reloptions @> ARRAY['security_invoker=true'], false)`,
        ),
      );
      assert.deepEqual(rows, []);
    });

    it('platform tables are on the allow-list for a reason and the app role cannot touch migrations', async () => {
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<{ allowed: boolean }>("SELECT has_table_privilege(current_user, 'schema_migrations', 'SELECT') AS allowed"),
      );
      assert.deepEqual(rows, [{ allowed: false }]);
      await assert.rejects(storage.db.withPlatform((tx) => tx.query('SELECT * FROM schema_migrations')), /permission denied/);
    });
  });
}
