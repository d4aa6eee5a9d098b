import assert from 'node:assert/strict';
import type { TestApp } from './app.ts';

/** A login's tokens, as the login routes answer them (the members tests use). */
export interface Tokens {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
}

/** GET /v1/me for a tenant user (the members tests use). */
export interface Me {
  kind: string;
  tenantId: string;
  id: string;
  email: string;
  firstName: string | null;
  lastName: string | null;
  passwordSet: boolean;
}

/** An event as GET /v1/tenants/{t}/audit answers it. */
export interface AuditItem {
  action: string;
  outcome: string;
  actor: { kind: string; id: string | null };
  target: { type: string; id: string } | null;
  sessionId: string | null;
  detail: Record<string, unknown>;
}

/**
 * Everything a login could change in a tenant, read as the owner (past RLS): users, sessions, refresh
 * tokens, linked SSO identities (with their last login) and role assignments. A refused login leaves it equal.
 */
export async function loginState(test: Pick<TestApp, 'storage'>, tenantId: string): Promise<Record<string, unknown>> {
  const [row] = await test.storage.asOwner(
    `SELECT (SELECT count(*)::int FROM users WHERE tenant_id = $1) AS users,
            (SELECT count(*)::int FROM user_sessions WHERE tenant_id = $1) AS sessions,
            (SELECT count(*)::int FROM refresh_tokens WHERE tenant_id = $1) AS refresh_tokens,
            (SELECT coalesce(string_agg(connection_id || ':' || user_id || ':' || coalesce(last_login_at::text, '-'), ',' ORDER BY connection_id, user_id), '')
               FROM sso_identities WHERE tenant_id = $1) AS identities,
            (SELECT coalesce(string_agg(user_id || ':' || role_name, ',' ORDER BY user_id, role_name), '') FROM user_roles WHERE tenant_id = $1) AS roles`,
    [tenantId],
  );
  assert.ok(row !== undefined);
  return row;
}
