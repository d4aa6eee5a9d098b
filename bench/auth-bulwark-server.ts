/**
 * Bulwark under the session-check load of bench/auth.ts: the real app, a tenant and its admin created
 * through the HTTP API, and the admin's access token for `GET /v1/me` (token verify, session and role
 * checks, the user read through RLS and its PII decrypted).
 */
import { runBulwarkChild } from './bulwark-app.ts';
import { createTenantAdmin, login, me, operatorToken } from './auth-seed.ts';

runBulwarkChild(async (app) => {
  const admin = await createTenantAdmin(app, await operatorToken(app), 'Bench tenant');
  const { accessToken } = await login(app, admin);
  const user = await me(app, accessToken);
  if (user.email !== admin.email) throw new Error(`GET /v1/me named ${user.email}, expected ${admin.email}`);
  return { target: { path: '/v1/me', headers: { authorization: `Bearer ${accessToken}` }, email: admin.email } };
});
