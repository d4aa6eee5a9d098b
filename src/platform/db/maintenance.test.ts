import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { engineSkip, engines, openTestDatabase, type TestDatabase } from '../../testing/engines.ts';

for (const engine of engines) {
  describe(`database maintenance [${engine}]`, { skip: engineSkip(engine) }, () => {
    let storage: TestDatabase;
    const servingRole = async () => (await storage.db.withPlatform((tx) => tx.query<{ role: string }>('SELECT current_user AS role'))).rows[0]?.role;

    before(async () => {
      storage = await openTestDatabase(engine);
    });
    after(() => storage.close());

    it('rewrites named tables and leaves the session serving as the app role', async () => {
      await storage.maintenance.vacuumFull(['tenants', 'records', 'audit_events']);
      assert.equal(await servingRole(), storage.config.databaseAppRole);
      // RLS applies again: with no context, a tenant table shows nothing.
      assert.deepEqual((await storage.db.withPlatform((tx) => tx.query('SELECT 1 FROM tenant_keys'))).rows, []);
    });

    it('refuses a name that is not a table of the public schema, before running anything', async () => {
      for (const names of [['no_such_table'], ['records; DROP TABLE records'], ['pg_authid'], ['tenants', '"records"']]) {
        await assert.rejects(storage.maintenance.vacuumFull(names), /not tables of the public schema/, names.join(' '));
      }
      assert.equal(await servingRole(), storage.config.databaseAppRole);
      assert.equal((await storage.asOwner("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'records'"))[0]?.['n'], 1);
    });
  });
}
