import assert from 'node:assert/strict';
import { randomBytes, createHash, pbkdf2Sync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { storedDataContains } from '../../testing/at-rest.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { assertProblem } from '../../testing/security-suite.ts';
import { verifyPassword } from './passwords.ts';

interface UserBody {
  id: string;
  email: string;
  firstName: string | null;
  lastName: string | null;
  status: string;
  passwordSet: boolean;
  mustChangePassword: boolean;
}

const strongPassword = 'correct horse battery staple 42!';

for (const engine of engines) {
  describe(`users [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let pgliteDir: string;
    let tenantId: string;
    let apiKey: string;

    before(async () => {
      pgliteDir = join(mkdtempSync(join(tmpdir(), 'bulwark-users-')), 'pglite');
      test = await createTestApp(engine, { pgliteDir });
      ({ tenantId, apiKey } = await test.tenantWithKey('People'));
    });
    after(() => test.close());

    const call = (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, body?: unknown, tenant = tenantId, token = apiKey) =>
      test.call({ method, url: `/v1/tenants/${tenant}${path}`, token, body });
    const storedHash = async (id: string) =>
      (
        await test.storage.db.withTenant(tenantId, (tx) =>
          tx.query<{ password_hash: string | null }>('SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, id]),
        )
      ).rows[0]?.password_hash ?? null;

    it('creates, reads, lists, finds by e-mail, updates, disables and deletes a user', async () => {
      const created = await call('POST', '/users', { email: 'Ada.Lovelace@Example.org', firstName: 'Ada', lastName: 'Lovelace' });
      assert.equal(created.statusCode, 201, created.body);
      const ada = created.json<UserBody>();
      assert.deepEqual(
        { email: ada.email, firstName: ada.firstName, status: ada.status, passwordSet: ada.passwordSet },
        { email: 'Ada.Lovelace@Example.org', firstName: 'Ada', status: 'active', passwordSet: false },
      );
      assert.deepEqual((await call('GET', `/users/${ada.id}`)).json<UserBody>(), ada);

      const found = await call('GET', `/users?email=${encodeURIComponent('ada.lovelace@example.ORG')}`);
      assert.deepEqual(found.json<{ items: UserBody[] }>().items.map((user) => user.id), [ada.id], 'lookup is case-insensitive');
      assert.deepEqual((await call('GET', '/users?email=nobody@example.org')).json<{ items: unknown[] }>().items, []);

      assertProblem(await call('POST', '/users', { email: 'ADA.lovelace@example.org' }), 409, 'conflict');
      const grace = (await call('POST', '/users', { email: 'grace@example.org', firstName: 'Grace' })).json<UserBody>();
      assertProblem(await call('PATCH', `/users/${grace.id}`, { email: 'ada.lovelace@example.org' }), 409, 'conflict');

      const updated = await call('PATCH', `/users/${ada.id}`, { lastName: 'King', status: 'disabled' });
      assert.equal(updated.statusCode, 200);
      assert.deepEqual([updated.json<UserBody>().lastName, updated.json<UserBody>().status], ['King', 'disabled']);
      const renamed = await call('PATCH', `/users/${ada.id}`, { email: 'countess@example.org', firstName: null });
      assert.deepEqual([renamed.json<UserBody>().email, renamed.json<UserBody>().firstName], ['countess@example.org', null]);
      assert.deepEqual((await call('GET', '/users?email=countess@example.org')).json<{ items: UserBody[] }>().items.map((user) => user.id), [ada.id]);

      const page = await call('GET', '/users?limit=1');
      assert.equal(page.json<{ items: unknown[] }>().items.length, 1);
      assert.ok(page.json<{ nextCursor: string | null }>().nextCursor !== null);

      assert.equal((await call('DELETE', `/users/${ada.id}`)).statusCode, 204);
      assertProblem(await call('GET', `/users/${ada.id}`), 404, 'not_found');
      assertProblem(await call('DELETE', `/users/${ada.id}`), 404, 'not_found');
    });

    it('another tenant sees none of these users, even with the same e-mail address', async () => {
      const other = await test.tenantWithKey('Other people');
      const mine = (await call('POST', '/users', { email: 'shared@example.org' })).json<UserBody>();
      const theirs = await call('POST', '/users', { email: 'shared@example.org' }, other.tenantId, other.apiKey);
      assert.equal(theirs.statusCode, 201, 'uniqueness is per tenant');
      assertProblem(await call('GET', `/users/${mine.id}`, undefined, other.tenantId, other.apiKey), 404, 'not_found');
      assertProblem(await call('GET', `/users/${mine.id}`, undefined, tenantId, other.apiKey), 404, 'not_found');
      const hmacs = await test.storage.db.withPlatform((tx) =>
        tx.query<{ email_hmac: Uint8Array }>("SELECT email_hmac FROM users WHERE tenant_id IN ($1, $2) AND id IN ($3, $4)", [
          tenantId,
          other.tenantId,
          mine.id,
          theirs.json<UserBody>().id,
        ]),
      );
      const [first, second] = hmacs.rows.map((row) => Buffer.from(row.email_hmac).toString('hex'));
      assert.ok(first !== undefined && first !== second, 'each tenant hashes lookups under its own key');
    });

    it('passwords: the policy names each failed rule, history blocks reuse, and only an Argon2id hash is stored', async () => {
      const user = (await call('POST', '/users', { email: 'pat@example.org', firstName: 'Patricia' })).json<UserBody>();
      const weak = assertProblem(await call('PUT', `/users/${user.id}/password`, { password: 'short' }), 422, 'password_policy_violation', ['short']);
      const rules = (weak as unknown as { rules: { rule: string }[] }).rules.map((rule) => rule.rule);
      assert.ok(rules.includes('min_length'), rules.join());
      const personal = assertProblem(await call('PUT', `/users/${user.id}/password`, { password: 'Patricia-the-great-2024' }), 422, 'password_policy_violation');
      assert.ok((personal as unknown as { rules: { rule: string }[] }).rules.some((rule) => rule.rule === 'contains_user_data'));
      assert.equal(await storedHash(user.id), null, 'a refused password changes nothing');

      assert.equal((await call('PUT', `/users/${user.id}/password`, { password: strongPassword })).statusCode, 204);
      const hash = await storedHash(user.id);
      assert.match(hash ?? '', /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
      assert.equal((await verifyPassword(hash ?? '', strongPassword)).ok, true);
      const after = (await call('GET', `/users/${user.id}`)).json<UserBody>();
      assert.deepEqual([after.passwordSet, after.mustChangePassword], [true, true], 'an admin-set password must be changed at next login');

      assert.equal((await call('PUT', `/users/${user.id}/password`, { password: 'a different passphrase 77?', mustChangePassword: false })).statusCode, 204);
      const reused = assertProblem(await call('PUT', `/users/${user.id}/password`, { password: strongPassword }), 422, 'password_policy_violation');
      assert.deepEqual((reused as unknown as { rules: { rule: string }[] }).rules.map((rule) => rule.rule), ['reused']);

      // With history off, the same password is accepted again.
      const policy = (await call('GET', '/password-policy')).json<Record<string, unknown>>();
      assert.equal(policy['minLength'], 12);
      assert.equal((await call('PUT', '/password-policy', { ...policy, historyCount: 0 })).statusCode, 200);
      assert.equal((await call('PUT', `/users/${user.id}/password`, { password: strongPassword })).statusCode, 204);
      assertProblem(await call('PUT', '/password-policy', { ...policy, minLength: 200 }), 400, 'validation_failed');
      assertProblem(await call('PUT', '/password-policy', { ...policy, maxLength: 64, minLength: 65 }), 400, 'validation_failed');
      assertProblem(await call('PUT', '/password-policy', { ...policy, extra: 1 }), 400, 'validation_failed');
      assert.deepEqual((await call('GET', '/password-policy')).json<Record<string, unknown>>(), { ...policy, historyCount: 0 });
      assert.equal((await call('PUT', '/password-policy', policy)).statusCode, 200);
    });

    it('imports legacy hashes as they are, reports them, and refuses malformed ones', async () => {
      const salt = randomBytes(16);
      const derived = pbkdf2Sync('keycloak secret', salt, 27_500, 64, 'sha256');
      const imported = await call('POST', '/user-imports', {
        users: [
          { email: 'old-md5@example.org', credential: { algorithm: 'md5', hash: createHash('md5').update('md5 secret').digest('hex') } },
          {
            email: 'old-kc@example.org',
            firstName: 'Kay',
            credential: { algorithm: 'pbkdf2-sha256', iterations: 27_500, salt: salt.toString('base64'), hash: derived.toString('base64') },
          },
        ],
      });
      assert.equal(imported.statusCode, 201, imported.body);
      const [md5User, kcUser] = imported.json<{ users: { id: string }[] }>().users;
      assert.ok(md5User && kcUser);
      assert.equal((await verifyPassword((await storedHash(md5User.id)) ?? '', 'md5 secret')).needsRehash, true);
      assert.equal((await verifyPassword((await storedHash(kcUser.id)) ?? '', 'keycloak secret')).ok, true);

      const report = (await call('GET', '/legacy-password-hashes')).json<{ total: number; byAlgorithm: Record<string, number>; users: { id: string; algorithm: string }[] }>();
      assert.equal(report.total, 2);
      assert.deepEqual(report.byAlgorithm, { md5: 1, 'pbkdf2-sha256': 1 });
      assert.ok(!JSON.stringify(report).includes(derived.toString('base64')), 'never the hashes');

      const before = (await call('GET', '/users')).json<{ items: unknown[] }>().items.length;
      const taken = await call('POST', '/user-imports', {
        users: [
          { email: 'fresh@example.org', credential: { algorithm: 'md5', hash: 'a'.repeat(32) } },
          { email: 'OLD-md5@example.org', credential: { algorithm: 'md5', hash: 'b'.repeat(32) } },
        ],
      });
      assertProblem(taken, 409, 'conflict');
      assertProblem(await call('POST', '/user-imports', { users: [{ email: 'x@example.org', credential: { algorithm: 'md5', hash: 'zz' } }] }), 400, 'validation_failed');
      assertProblem(
        await call('POST', '/user-imports', { users: [{ email: 'y@example.org', credential: { algorithm: 'pbkdf2-sha256', iterations: 10, salt: 'c2FsdHNhbHQ=', hash: 'aGFzaGhhc2hoYXNoaGFzaA==' } }] }),
        400,
        'validation_failed',
      );
      assertProblem(await call('POST', '/user-imports', { users: [{ email: 'z@example.org', credential: { algorithm: 'sha1', hash: 'ab' } }] }), 400, 'validation_failed');
      assert.equal((await call('GET', '/users')).json<{ items: unknown[] }>().items.length, before, 'a refused batch adds nobody');
    });

    it('bad input answers 4xx and changes nothing', async () => {
      const before = (await call('GET', '/users')).json<{ items: unknown[] }>().items.length;
      for (const body of [{}, { email: 'no-at-sign' }, { email: 'a@b', unknown: 1 }, { email: 'a@b', firstName: '' }, { email: 'a@b', password: 'x'.repeat(1025) }, { email: `${'x'.repeat(250)}@b.co` }]) {
        assertProblem(await call('POST', '/users', body), 400, 'validation_failed');
      }
      assertProblem(await call('GET', '/users/NOT-AN-ID'), 400, 'validation_failed');
      assertProblem(await call('GET', '/users?email=nope'), 400, 'validation_failed');
      assertProblem(await call('PATCH', '/users/0123456789ab', {}), 400, 'validation_failed');
      assertProblem(await call('PATCH', '/users/0123456789ab', { status: 'deleted' }), 400, 'validation_failed');
      assertProblem(await call('PUT', '/users/0123456789ab/password', { password: strongPassword }), 404, 'not_found');
      assert.equal((await call('GET', '/users')).json<{ items: unknown[] }>().items.length, before);
    });

    it('user PII never reaches the stored data in clear (last: the PGlite search closes the database)', async () => {
      const marker = `pii-${randomBytes(8).toString('hex')}`;
      assert.equal((await call('POST', '/users', { email: `${marker}@example.org`, firstName: `${marker}-first`, lastName: `${marker}-last` })).statusCode, 201);
      const control = `control-${randomBytes(8).toString('hex')}`;
      assert.equal((await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}`, token: test.operatorToken, body: { name: control } })).statusCode, 200);
      const [controlFound, markerFound] = await storedDataContains(test.storage, pgliteDir, [control, marker]);
      assert.ok(controlFound, 'the search finds the unencrypted control');
      assert.ok(!markerFound, 'no e-mail or name of a user is stored in clear');
    });
  });
}
