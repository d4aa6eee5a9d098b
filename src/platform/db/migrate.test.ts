import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { engineSkip, engines, openTestDatabase, type TestDatabase } from '../../testing/engines.ts';
import { type AdminSession, loadMigrations, migrate } from './migrate.ts';
import { migratePostgres } from './open.ts';

const appRole = 'bulwark_app';

describe('migration files', () => {
  it('are numbered without gaps and reference the app role only through the placeholder', () => {
    const migrations = loadMigrations();
    assert.ok(migrations.length > 0);
    migrations.forEach((migration, index) => assert.equal(migration.version, index + 1));
    for (const migration of migrations) assert.doesNotMatch(migration.sql, /\bbulwark_app\b/);
  });
});

for (const engine of engines) {
  describe(`migrations [${engine}]`, { skip: engineSkip(engine) }, () => {
    // PGlite: a fresh instance as its owner. PostgreSQL: a throwaway database migrated by its owner.
    let storage: TestDatabase | undefined;
    let pglite: PGlite | undefined;
    let runMigrations: () => ReturnType<typeof migrate>;
    let owner: AdminSession;
    let ownerClient: pg.Client | undefined;

    before(async () => {
      if (engine === 'pglite') {
        const instance = await PGlite.create();
        pglite = instance;
        owner = {
          exec: async (sql) => {
            await instance.exec(sql);
          },
          query: async <Row>(sql: string, params: readonly unknown[] = []) => (await instance.query<Row>(sql, params as unknown[])).rows,
        };
        runMigrations = () => migrate(owner, appRole);
      } else {
        storage = await openTestDatabase('postgres');
        const url = storage.ownerUrl ?? '';
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        ownerClient = client;
        owner = {
          exec: async (sql) => {
            await client.query(sql);
          },
          query: async <Row>(sql: string, params: readonly unknown[] = []) => (await client.query(sql, params as unknown[])).rows as Row[],
        };
        runMigrations = () => migratePostgres(url, appRole);
      }
    });
    after(async () => {
      await ownerClient?.end();
      await storage?.close();
      await pglite?.close();
    });

    const schemaSnapshot = () =>
      owner.query<{ object: string }>(
        `SELECT c.relname || ':' || c.relkind::text || ':' || c.relforcerowsecurity::text AS object FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
         UNION ALL SELECT tablename::text || ':' || policyname::text FROM pg_policies WHERE schemaname = 'public'
         ORDER BY 1`,
      );

    it('a fresh database gets every migration (PostgreSQL: already applied when opened)', async () => {
      const first = await runMigrations();
      const all = loadMigrations().length;
      if (engine === 'pglite') assert.equal(first.applied.length, all);
      else assert.deepEqual(first, { applied: [], alreadyApplied: all });
      const versions = await owner.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      assert.equal(versions.length, all);
    });

    it('re-running is a no-op', async () => {
      const before = await schemaSnapshot();
      const again = await runMigrations();
      assert.deepEqual(again, { applied: [], alreadyApplied: loadMigrations().length });
      assert.deepEqual(await schemaSnapshot(), before);
    });

    it('refuses a migration whose file changed after it was applied', async () => {
      await owner.query("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1");
      await assert.rejects(runMigrations(), /was changed after it was applied/);
      const [migration] = loadMigrations();
      await owner.query('UPDATE schema_migrations SET checksum = $1 WHERE version = 1', [migration?.checksum]);
    });

    it('the app role can log in only through membership and cannot bypass RLS', async () => {
      const [role] = await owner.query<{ rolcanlogin: boolean; rolsuper: boolean; rolbypassrls: boolean }>(
        'SELECT rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1',
        [appRole],
      );
      assert.deepEqual(role, { rolcanlogin: false, rolsuper: false, rolbypassrls: false });
    });
  });
}
