import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import type { Inventory } from './schemas.ts';
import { parseAnnotation } from './service.ts';

/**
 * Columns always personal by their name: each must carry a `pii:` annotation, whatever table it is in.
 */
const personalByName = new Set(['pii', 'email_hmac', 'subject', 'subject_hmac', 'password_hash', 'user_id', 'operator_id', 'actor_id', 'target_id']);

/** Names that suggest personal data: a match is annotated, or on the allow-list below with the reason it is not. */
const looksPersonal = /(^|_)(e?mail|name|phone|ip|address|addr|user_agent|source|subject|pii|birth|location|reason|message|hint|by|user_id|operator_id|actor_id|target_id|break_glass)($|_)/;

/**
 * Columns whose name looks personal but whose content is not about a person. Each says why; an entry for a
 * column that no longer exists, or that is annotated after all, fails the test (no stale entries).
 */
const notPersonal: Record<string, string> = {
  // A tenant is a customer company: its name is the company's, not a person's. (A sole trader's business name
  // can be a person's name; the tenant then chose it as a trading name, and it goes with the tenant.)
  'tenants.name': 'company (tenant) name',
  'api_keys.name': "a label for a machine credential, chosen by the tenant's admin",
  'roles.name': 'a role identifier',
  'user_roles.role_name': 'a role identifier (the assignment itself is annotated on user_id)',
  'secrets.name': 'a secret identifier',
  'secret_versions.name': 'a secret identifier',
  'secret_copies.name': 'a secret identifier',
  'services.name': 'a registered service (machine) name',
  'platform_keys.name': "a platform key's purpose",
  'sso_connections.name': 'an identity provider connection label',
  'sso_connections.link_by_email': 'a boolean setting',
  // Agents run on machines of the tenant's network and report machine telemetry; their names are host labels.
  'agents.name': 'an agent (machine) label',
  'agents.health_message': "an agent's health text (machine telemetry, bounded to 256 characters)",
  'agent_pairing_codes.name_hint': 'the agent label suggested with a pairing code',
  'user_sessions.revoked_reason': 'a closed list of revocation causes',
  'operator_sessions.revoked_reason': 'a closed list of revocation causes',
  'erasure_requests.held_by': 'legal hold ids',
  'schema_migrations.name': 'migration file names',
};

interface ColumnRow {
  table: string;
  column: string;
  comment: string | null;
}

for (const engine of engines) {
  describe(`personal-data inventory [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let columns: ColumnRow[];
    let served: Inventory;

    before(async () => {
      test = await createTestApp(engine);
      columns = (await test.storage.asOwner(
        `SELECT c.relname AS table, a.attname AS column, col_description(c.oid, a.attnum) AS comment
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY 1, 2`,
      )) as unknown as ColumnRow[];
      const response = await test.call({ method: 'GET', url: '/v1/privacy/inventory', token: test.operatorToken });
      assert.equal(response.statusCode, 200, response.body);
      served = response.json<Inventory>();
    });
    after(() => test.close());

    const key = (row: { table: string; column: string }) => `${row.table}.${row.column}`;
    const annotated = () => columns.filter((row) => row.comment?.startsWith('pii:') === true);

    it('finds the schema (the catalog query works)', () => {
      assert.ok(columns.length > 100);
      assert.ok(columns.some((row) => key(row) === 'users.pii'));
    });

    it('every annotation is well-formed: data categories, purpose, basis, retention, protection', () => {
      const malformed = annotated().filter((row) => parseAnnotation(row.comment ?? '') === undefined).map(key);
      assert.deepEqual(malformed, []);
      assert.equal(parseAnnotation('pii:{"data":[]}'), undefined);
      assert.equal(parseAnnotation('pii:not json'), undefined);
      assert.equal(parseAnnotation('a plain comment'), undefined);
    });

    it('the route serves exactly the annotated columns, as the catalog has them now', () => {
      assert.deepEqual(served.columns.map(key).sort(), annotated().map(key).sort());
      const users = served.columns.find((entry) => key(entry) === 'users.pii');
      assert.ok(users);
      assert.equal(users.scope, 'tenant');
      assert.ok(users.data.includes('e-mail address') && users.data.includes('first name'));
      assert.match(users.protection, /sealed with the tenant data key/);
      assert.equal(served.columns.find((entry) => key(entry) === 'operators.pii')?.scope, 'platform');
      assert.equal(served.columns.find((entry) => key(entry) === 'records.body')?.scope, 'tenant');
    });

    it('cannot drift: every column personal by name is annotated', () => {
      const missing = columns.filter((row) => personalByName.has(row.column) && row.comment?.startsWith('pii:') !== true).map(key);
      assert.deepEqual(missing, [], 'annotate these columns (COMMENT ON COLUMN ... IS \'pii:{...}\') in their migration');
      // The control: the rule reaches real columns.
      assert.ok(columns.filter((row) => personalByName.has(row.column)).length >= 25);
    });

    it('cannot drift: every column whose name looks personal is annotated or allow-listed with a reason; no entry is stale', () => {
      const unexplained = columns.filter((row) => looksPersonal.test(row.column) && row.comment?.startsWith('pii:') !== true && !Object.hasOwn(notPersonal, key(row))).map(key);
      assert.deepEqual(unexplained, [], 'annotate these columns, or allow-list them in this test saying why they hold no personal data');
      const present = new Set(columns.map(key));
      const stale = Object.keys(notPersonal).filter((entry) => !present.has(entry));
      assert.deepEqual(stale, [], 'allow-list entries for columns that no longer exist');
      const contradicted = annotated().map(key).filter((entry) => Object.hasOwn(notPersonal, entry));
      assert.deepEqual(contradicted, [], 'allow-listed as not personal, yet annotated');
    });

    it('is an operator route: the platform-auditor reads it, a tenant credential gets 403', async () => {
      const tenant = await test.tenantWithKey('Inventory');
      assertProblem(await test.call({ method: 'GET', url: '/v1/privacy/inventory', token: tenant.apiKey }), 403, 'forbidden');
      assertProblem(await test.call({ method: 'GET', url: '/v1/privacy/inventory', token: tenant.adminToken }), 403, 'forbidden');
      assertProblem(await test.call({ method: 'GET', url: '/v1/privacy/inventory' }), 401, 'unauthenticated');
      const email = `auditor-${Date.now()}@operator.example`;
      const password = 'quiet river sentinel 12 lantern';
      const created = await test.call({ method: 'POST', url: '/v1/operators', token: test.operatorToken, body: { email, password, role: 'platform-auditor', mustChangePassword: false } });
      assert.equal(created.statusCode, 201, created.body);
      const login = await test.call({ method: 'POST', url: '/v1/auth/operator/login', body: { email, password } });
      const auditor = login.json<{ accessToken: string }>().accessToken;
      assert.equal((await test.call({ method: 'GET', url: '/v1/privacy/inventory', token: auditor })).statusCode, 200);
    });
  });
}
