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
  // One row: the SHA-256 of the one-time setup token, deleted when setup spends it. Holds no tenant data.
  operator_bootstrap: 'setup token hash, no tenant data',
  // Access-token signing keys: one keyring for the whole platform; private keys sealed, public keys are public.
  signing_keys: 'platform token-signing keys, no tenant data',
  // The operators realm (0008): platform principals, not tenant data; see platformOnlyTables.
  platform_keys: 'root-wrapped keys of the platform itself',
  operators: 'platform operator accounts (PII sealed)',
  operator_password_history: 'earlier operator password hashes',
  operator_login_throttles: 'operator brute-force counters',
  operator_sessions: 'operator login sessions',
  operator_refresh_tokens: 'operator refresh token hashes',
  // The platform's audit chain (0009): operators' and the platform's own actions.
  platform_audit_heads: 'the platform audit chain head',
  platform_audit_events: 'platform audit events',
  platform_audit_checkpoints: 'signed checkpoints of the platform chain',
  platform_audit_subject_keys: 'keys of the personal data in platform events',
  platform_audit_deliveries: 'sink cursors of the platform chain',
  // The services that read secrets (0012): platform principals with their public keys and credential hashes.
  services: 'registered secret-reading services (credential hashes)',
  // Failed agent pairings per client address (0013): keyed by the address's HMAC, before any tenant is known.
  agent_pairing_throttles: 'pairing brute-force counters per client address',
  // Scheduled backup slots (0014): times and backup ids, so each slot runs once across the fleet.
  backup_runs: 'backup schedule slots, no tenant data',
  // Offboarding requests and their proofs (0015): ids, times and counts; they must outlive the tenant's purge,
  // which is why the tenant's id is not in a `tenant_id` column. FORCE RLS, platform scope only.
  tenant_offboardings: 'offboarding requests and proofs, no tenant data',
  // The self-managed TLS CA (0017): the deployment's CA certificate and its root-wrapped private key.
  tls_ca: 'the TLS CA of the platform (private key sealed)',
};

/**
 * Platform tables that hold credentials or platform keys: FORCE RLS with a policy that admits the explicit
 * platform scope only, so a statement under a tenant context (or none) reaches nothing in them.
 */
const platformOnlyTables = [
  'platform_keys',
  'operators',
  'operator_password_history',
  'operator_login_throttles',
  'operator_sessions',
  'operator_refresh_tokens',
  'platform_audit_heads',
  'platform_audit_events',
  'platform_audit_checkpoints',
  'platform_audit_subject_keys',
  'platform_audit_deliveries',
  'services',
  'agent_pairing_throttles',
  'tls_ca',
];

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

    it('credential-holding platform tables admit the platform scope only: a tenant context or none sees and writes nothing', async () => {
      const policies = await storage.db.withPlatform((tx) =>
        tx.query<{ tablename: string; permissive: string; qual: string | null; with_check: string | null }>(
          "SELECT tablename, permissive, qual, with_check FROM pg_policies WHERE schemaname = 'public'",
        ),
      );
      for (const table of platformOnlyTables) {
        const info = tables.find((candidate) => candidate.table === table);
        assert.ok(info?.rls === true && info.forced, `${table}: FORCE RLS`);
        // Restrictive policies (audit retention) only narrow further; every permissive one admits the platform scope alone.
        const own = policies.rows.filter((policy) => policy.tablename === table && policy.permissive === 'PERMISSIVE');
        assert.ok(own.length > 0, `${table}: has a policy`);
        for (const policy of own) {
          assert.match(policy.qual ?? '', /current_setting\('app\.scope'::text, true\) = 'platform'::text/, `${table}: USING`);
          assert.match(policy.with_check ?? '', /current_setting\('app\.scope'::text, true\) = 'platform'::text/, `${table}: WITH CHECK`);
        }
      }
      // A platform row is invisible under a tenant context and cannot be written from one.
      await storage.db.withPlatform((tx) =>
        tx.query("INSERT INTO platform_keys (name, wrapped_key, created_at) VALUES ('coverage-probe', 'x', now())"),
      );
      const seen = await storage.db.withTenant('0123456789ab', (tx) => tx.query('SELECT name FROM platform_keys'));
      assert.deepEqual(seen.rows, []);
      await assert.rejects(
        storage.db.withTenant('0123456789ab', (tx) => tx.query("INSERT INTO platform_keys (name, wrapped_key, created_at) VALUES ('tenant-probe', 'x', now())")),
        /row-level security/,
      );
      const updated = await storage.db.withTenant('0123456789ab', (tx) => tx.query("UPDATE platform_keys SET wrapped_key = 'y'"));
      assert.equal(updated.rowCount, 0);
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
