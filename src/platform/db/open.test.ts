import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { adminQuery, engineSkip, openTestDatabase, postgresAdminUrl, testConfig } from '../../testing/engines.ts';
import { openDatabase } from './open.ts';

describe('opening PostgreSQL', { skip: engineSkip('postgres') }, () => {
  const login = `bulwark_test_login_${randomBytes(4).toString('hex')}`;
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('refuses a superuser login in production, and warns about it elsewhere', async () => {
    await assert.rejects(openTestDatabase('postgres', { env: 'production' }), /superuser or has BYPASSRLS[\s\S]*refusing to serve in production/);
    const storage = await openTestDatabase('postgres', { env: 'development' });
    cleanups.push(() => storage.close());
    const reopened = await openDatabase(storage.config);
    cleanups.push(() => reopened.db.close());
    assert.match(reopened.warnings.join('\n'), /RESET ROLE would escape row-level security/);
  });

  it('serves in production through a dedicated login that is a member of the app role', async () => {
    const storage = await openTestDatabase('postgres');
    cleanups.push(() => storage.close());
    await adminQuery(`CREATE ROLE ${login} LOGIN IN ROLE bulwark_app`);
    cleanups.push(() => adminQuery(`DROP ROLE IF EXISTS ${login}`));
    const url = new URL(storage.ownerUrl ?? postgresAdminUrl);
    url.username = login;
    const opened = await openDatabase(
      testConfig({ env: 'production', databaseUrl: url.toString(), databaseAdminUrl: storage.ownerUrl ?? '' }),
    );
    cleanups.push(() => opened.db.close());
    assert.deepEqual(opened.warnings, []);
    const { rows } = await opened.db.withPlatform((tx) => tx.query<{ login: string; role: string }>('SELECT session_user AS login, current_user AS role'));
    assert.deepEqual(rows, [{ login, role: 'bulwark_app' }]);
  });
});
