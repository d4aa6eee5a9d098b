/**
 * Bulwark under the session-check load of bench/auth.ts: the real app, a tenant and its admin created
 * through the HTTP API, and the admin's access token for `GET /v1/me` (token verify, session and role
 * checks, the user read through RLS and its PII decrypted).
 */
import { randomBytes } from 'node:crypto';
import { EnvRootKey } from '../src/modules/keys/root/env.ts';
import { loadConfig } from '../src/platform/config/config.ts';
import { openDatabase } from '../src/platform/db/open.ts';
import { buildApp } from '../src/server/app.ts';
import { type AuthBulwarkSpec, authSpecArgument, runAuthChild } from './auth-child.ts';
import { createTenantAdmin, login, me, operatorToken } from './auth-seed.ts';

runAuthChild(async () => {
  const spec = authSpecArgument() as AuthBulwarkSpec;
  const config = loadConfig(
    {},
    {
      env: 'production',
      logLevel: 'silent',
      databasePoolMax: String(spec.poolMax),
      ...(spec.database === undefined ? {} : { databaseUrl: spec.database.login, databaseAdminUrl: spec.database.owner }),
    },
  );
  const { db } = await openDatabase(config, { pgliteDataDir: 'memory://' });
  try {
    // A throwaway root key: the bench measures the request path, not the provider.
    const app = await buildApp({ config, db, rootKeys: new EnvRootKey(randomBytes(32).toString('base64')) });
    const admin = await createTenantAdmin(app, await operatorToken(app), 'Bench tenant');
    const { accessToken } = await login(app, admin);
    const user = await me(app, accessToken);
    if (user.email !== admin.email) throw new Error(`GET /v1/me named ${user.email}, expected ${admin.email}`);
    return { app, target: { path: '/v1/me', headers: { authorization: `Bearer ${accessToken}` }, email: admin.email }, close: () => db.close() };
  } catch (error) {
    await db.close();
    throw error;
  }
});
