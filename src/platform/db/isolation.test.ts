import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { engineSkip, engines, openTestDatabase, type TestDatabase } from '../../testing/engines.ts';
import { newId } from '../ids.ts';

/** Isolation enforced by the database itself (DESIGN.md invariant 1), proven on both engines. */
for (const engine of engines) {
  describe(`database isolation [${engine}]`, { skip: engineSkip(engine) }, () => {
    let storage: TestDatabase;
    const tenantA = newId();
    const tenantB = newId();

    before(async () => {
      // One connection, so the pooled-connection reuse test really reuses it.
      storage = await openTestDatabase(engine, { databasePoolMax: '1' });
      const { db } = storage;
      await db.withPlatform(async (tx) => {
        await tx.query("INSERT INTO tenants (id, name, region) VALUES ($1, 'A', 'local'), ($2, 'B', 'local')", [tenantA, tenantB]);
      });
      for (const [tenantId, marker] of [[tenantA, 'a'], [tenantB, 'b']] as const) {
        await db.withTenant(tenantId, (tx) =>
          tx.query("INSERT INTO records (tenant_id, collection, id, version, body, body_bytes) VALUES ($1, 'c', $2, 1, $3, 1)", [
            tenantId,
            newId(),
            Buffer.from(marker),
          ]),
        );
      }
    });
    after(() => storage.close());

    it('the serving role is neither superuser nor BYPASSRLS nor a table owner', async () => {
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<{ rolsuper: boolean; rolbypassrls: boolean; owned: number }>(
          `SELECT r.rolsuper, r.rolbypassrls,
                  (SELECT count(*)::int FROM pg_tables t WHERE t.schemaname = 'public' AND t.tableowner = current_user) AS owned
             FROM pg_roles r WHERE r.rolname = current_user`,
        ),
      );
      assert.deepEqual(rows, [{ rolsuper: false, rolbypassrls: false, owned: 0 }]);
    });

    it('a query without WHERE tenant_id under tenant A returns only A rows', async () => {
      const { rows } = await storage.db.withTenant(tenantA, (tx) => tx.query<{ tenant_id: string }>('SELECT tenant_id FROM records'));
      assert.deepEqual(rows.map((row) => row.tenant_id), [tenantA]);
      const tenants = await storage.db.withTenant(tenantA, (tx) => tx.query<{ id: string }>('SELECT id FROM tenants'));
      assert.deepEqual(tenants.rows.map((row) => row.id), [tenantA]);
    });

    it('the single-statement fast path applies the same context', async () => {
      const { rows } = await storage.db.tenantQuery<{ tenant_id: string }>(tenantB, 'SELECT tenant_id FROM records');
      assert.deepEqual(rows.map((row) => row.tenant_id), [tenantB]);
    });

    it('no context, no rows: the context does not outlive its transaction', async () => {
      await storage.db.withTenant(tenantA, (tx) => tx.query('SELECT 1'));
      // Same (only) connection, new transaction with an empty context.
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<{ tenant: string | null }>("SELECT nullif(current_setting('app.tenant_id', true), '') AS tenant"),
      );
      assert.deepEqual(rows, [{ tenant: null }]);
      const leaked = await storage.db.withTenant('', (tx) => tx.query('SELECT * FROM records'));
      assert.equal(leaked.rows.length, 0);
    });

    it('a pooled connection reused for tenant B after tenant A sees only B', async () => {
      await storage.db.tenantQuery(tenantA, 'SELECT count(*) FROM records');
      const { rows } = await storage.db.withTenant(tenantB, (tx) => tx.query<{ tenant_id: string }>('SELECT tenant_id FROM records'));
      assert.deepEqual(rows.map((row) => row.tenant_id), [tenantB]);
    });

    it('a failed statement does not leave its context on the connection', async () => {
      await assert.rejects(storage.db.tenantQuery(tenantA, 'SELECT 1/0'));
      await assert.rejects(storage.db.withTenant(tenantA, async (tx) => {
        await tx.query('SELECT 1');
        throw new Error('abort');
      }));
      const { rows } = await storage.db.withTenant(tenantB, (tx) => tx.query<{ tenant_id: string }>('SELECT tenant_id FROM records'));
      assert.deepEqual(rows.map((row) => row.tenant_id), [tenantB]);
    });

    it('tenant A cannot write, update or delete rows of tenant B', async () => {
      await assert.rejects(
        storage.db.withTenant(tenantA, (tx) =>
          tx.query("INSERT INTO records (tenant_id, collection, id, version, body, body_bytes) VALUES ($1, 'c', $2, 1, '\\x00', 1)", [tenantB, newId()]),
        ),
        /row-level security/,
      );
      const updated = await storage.db.withTenant(tenantA, (tx) => tx.query('UPDATE records SET version = 99 WHERE tenant_id = $1', [tenantB]));
      assert.equal(updated.rowCount, 0);
      const deleted = await storage.db.withTenant(tenantA, (tx) => tx.query('DELETE FROM records WHERE tenant_id = $1', [tenantB]));
      assert.equal(deleted.rowCount, 0);
      await assert.rejects(
        storage.db.withTenant(tenantA, (tx) => tx.query('UPDATE records SET tenant_id = $1', [tenantB])),
        /row-level security/,
      );
      const { rows } = await storage.db.withTenant(tenantB, (tx) => tx.query<{ version: number }>('SELECT version FROM records'));
      assert.deepEqual(rows, [{ version: 1 }]);
    });

    it('the platform scope reads across tenants but cannot write tenant rows', async () => {
      const { rows } = await storage.db.withPlatform((tx) => tx.query<{ n: number }>('SELECT count(*)::int AS n FROM records'));
      assert.equal(rows[0]?.n, 2);
      await assert.rejects(
        storage.db.withPlatform((tx) =>
          tx.query("INSERT INTO records (tenant_id, collection, id, version, body, body_bytes) VALUES ($1, 'c', $2, 1, '\\x00', 1)", [tenantA, newId()]),
        ),
        /row-level security/,
      );
      const deleted = await storage.db.withPlatform((tx) => tx.query('DELETE FROM records'));
      assert.equal(deleted.rowCount, 0);
    });

    it('a tenant context cannot create or modify tenants', async () => {
      await assert.rejects(
        storage.db.withTenant(tenantA, (tx) => tx.query("INSERT INTO tenants (id, name, region) VALUES ($1, 'X', 'local')", [newId()])),
        /row-level security/,
      );
      const renamed = await storage.db.withTenant(tenantA, (tx) => tx.query("UPDATE tenants SET name = 'hijacked' WHERE id = $1", [tenantB]));
      assert.equal(renamed.rowCount, 0);
    });
  });
}
