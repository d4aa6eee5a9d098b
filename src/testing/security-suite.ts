import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { type ErrorCode, errorCodes } from '../platform/errors/codes.ts';
import type { TestApp } from './app.ts';

/** Shared assertions of the security suites (STYLE.md rule 12): problem documents, leaks, route table. */

export const requestIdPattern = /^[0-9a-f]{12}$/;

const problemMembers = ['type', 'title', 'status', 'code', 'detail', 'instance', 'requestId'] as const;
// Public extension members a problem may carry besides the RFC 9457 ones.
const problemExtensions = new Set(['errors', 'allowedRegions', 'checks', 'item', 'rules', 'quota', 'limit', 'used', 'policy', 'windowSeconds', 'retryAfterSeconds', 'holds', 'confirmableAt']);

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  instance: string;
  requestId: string;
  errors?: { in: string; path: string; message: string }[];
  [extension: string]: unknown;
}

/**
 * Asserts an exact problem+json response: status, code, the RFC 9457 members, the request id header, and
 * that the body leaks nothing (stack, SQL, credentials). `secrets` are strings that must never appear.
 */
export function assertProblem(response: LightMyRequestResponse, status: number, code: ErrorCode, secrets: readonly string[] = []): ProblemBody {
  const where = `${response.raw.req.method ?? '?'} ${response.raw.req.url ?? '?'}`;
  assert.equal(response.statusCode, status, `${where}: status (body ${response.body.slice(0, 300)})`);
  assert.equal(errorCodes[code].status, status, `${code} is registered with status ${status}`);
  assert.match(response.headers['content-type'] ?? '', /^application\/problem\+json(;|$)/, `${where}: content-type`);
  const requestId = response.headers['x-request-id'];
  assert.ok(typeof requestId === 'string' && requestIdPattern.test(requestId), `${where}: x-request-id ${String(requestId)}`);
  assertNoLeak(response.body, secrets, where);

  const problem = response.json<ProblemBody>();
  for (const member of problemMembers) assert.ok(member in problem, `${where}: problem has ${member}`);
  for (const member of Object.keys(problem)) {
    assert.ok((problemMembers as readonly string[]).includes(member) || problemExtensions.has(member), `${where}: unexpected member ${member}`);
  }
  assert.equal(problem.code, code, `${where}: code`);
  assert.equal(problem.status, status);
  assert.equal(problem.type, `urn:bulwark:error:${code}`);
  assert.equal(problem.title, errorCodes[code].title);
  assert.equal(typeof problem.detail, 'string');
  assert.ok(problem.detail.length > 0);
  assert.equal(problem.instance, (response.raw.req.url ?? '').split('?')[0]);
  assert.equal(problem.requestId, requestId);
  return problem;
}

/** A response body never carries a stack trace, SQL, a driver message or credential material. */
export function assertNoLeak(body: string, secrets: readonly string[], where = 'response'): void {
  assert.doesNotMatch(body, /"stack"|\bat \S+ \(|node:internal|node_modules|\.ts:\d+/, `${where}: stack trace in body`);
  assert.doesNotMatch(body, /\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b|\bSQLSTATE\b|relation "|column "|violates|syntax error/i, `${where}: SQL in body`);
  assert.doesNotMatch(body, /bw[ks]_[A-Za-z0-9_-]{8,}/, `${where}: credential in body`);
  for (const secret of secrets) assert.ok(!body.includes(secret), `${where}: a secret appears in the body`);
}

export type RouteAuth = 'public' | 'operator' | 'tenant' | 'self';

export interface Operation {
  method: string;
  /** OpenAPI path, e.g. `/v1/tenants/{tenantId}`. */
  path: string;
  /** `METHOD path`: the key of the suites' route tables. */
  key: string;
  secured: boolean;
  successStatuses: number[];
  /** The route's declared permission (`x-bulwark-permission`), for tenant and operator routes. */
  permission: string | undefined;
}

interface OpenApiDocument {
  paths: Record<string, Record<string, { security?: unknown[]; responses?: Record<string, unknown>; 'x-bulwark-permission'?: string }>>;
}

/** Every operation of the app's own OpenAPI document: a new route joins the suites without being listed. */
export async function documentedOperations(app: FastifyInstance): Promise<Operation[]> {
  await app.ready();
  const document = app.swagger() as unknown as OpenApiDocument;
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({
      method: method.toUpperCase(),
      path,
      key: `${method.toUpperCase()} ${path}`,
      secured: operation.security !== undefined,
      successStatuses: Object.keys(operation.responses ?? {})
        // A redirect is the success of a browser hop (the SSO start).
        .filter((status) => /^2\d\d$/.test(status) || status === '302')
        .map(Number),
      permission: operation['x-bulwark-permission'],
    })),
  );
}

/** Fills `{name}` path parameters; a parameter without a value fails loudly so a new one gets a fixture. */
export function fillPath(path: string, values: Readonly<Record<string, string>>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no test value for path parameter {${name}} in ${path}`);
    return value;
  });
}

/**
 * Tables with no platform read policy (second factors and SSO state), read as their owner: past RLS, so a
 * change no policy shows is still seen.
 */
async function credentialState(test: TestApp, tenantId: string): Promise<Record<string, unknown>> {
  const read = (sql: string) => test.storage.asOwner(sql, [tenantId]);
  const [factors, recoveryCodes, challenges, loginPolicies, connections, identities, flows, domains] = await Promise.all([
    read("SELECT id, user_id, kind, status, encode(secret, 'hex') AS secret, last_used_step, sign_count FROM mfa_factors WHERE tenant_id = $1 ORDER BY id"),
    read("SELECT user_id, encode(code_hmac, 'hex') AS code, used_at FROM mfa_recovery_codes WHERE tenant_id = $1 ORDER BY user_id, code"),
    read('SELECT id, attempts, consumed_at, webauthn_challenge IS NOT NULL AS ceremony FROM mfa_challenges WHERE tenant_id = $1 ORDER BY id'),
    read('SELECT mfa_mode, sso_required, sso_break_glass, updated_at FROM login_policies WHERE tenant_id = $1'),
    read("SELECT id, protocol, name, enabled, config, encode(secret, 'hex') AS secret, role_mappings, updated_at FROM sso_connections WHERE tenant_id = $1 ORDER BY id"),
    read("SELECT connection_id, encode(subject_hmac, 'hex') AS subject, user_id FROM sso_identities WHERE tenant_id = $1 ORDER BY connection_id, subject"),
    read('SELECT id, connection_id, consumed_at FROM sso_flows WHERE tenant_id = $1 ORDER BY id'),
    read('SELECT domain, connection_id, verified_at FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain'),
  ]);
  return { factors, recoveryCodes, challenges, loginPolicies, connections, identities, flows, domains };
}

/** What one tenant holds, as stored (platform scope reads across tenants; RLS still applies). */
export async function storedState(test: TestApp, tenantId: string): Promise<unknown> {
  const credentials = await credentialState(test, tenantId);
  const state = await test.storage.db.withPlatform(async (tx) => {
    const tenant = await tx.query('SELECT id, name, region, status, created_at, updated_at FROM tenants WHERE id = $1', [tenantId]);
    const records = await tx.query(
      "SELECT collection, id, version, encode(body, 'hex') AS body, created_at, updated_at FROM records WHERE tenant_id = $1 ORDER BY collection, id",
      [tenantId],
    );
    const keys = await tx.query(
      "SELECT id, name, encode(secret_hash, 'hex') AS secret_hash, expires_at, revoked_at FROM api_keys WHERE tenant_id = $1 ORDER BY id",
      [tenantId],
    );
    // password_history has no platform read policy: the users row (with its hash) shows every password change.
    const users = await tx.query(
      `SELECT id, encode(email_hmac, 'hex') AS email_hmac, encode(pii, 'hex') AS pii, status, password_hash, must_change_password, updated_at
         FROM users WHERE tenant_id = $1 ORDER BY id`,
      [tenantId],
    );
    const policy = await tx.query('SELECT policy, updated_at FROM password_policies WHERE tenant_id = $1', [tenantId]);
    const sessions = await tx.query('SELECT id, user_id, revoked_at, revoked_reason FROM user_sessions WHERE tenant_id = $1 ORDER BY id', [tenantId]);
    const roles = await tx.query('SELECT name, permissions, updated_at FROM roles WHERE tenant_id = $1 ORDER BY name', [tenantId]);
    const assignments = await tx.query('SELECT user_id, role_name FROM user_roles WHERE tenant_id = $1 ORDER BY user_id, role_name', [tenantId]);
    const grants = await tx.query('SELECT id, permissions, revoked_at FROM support_grants WHERE tenant_id = $1 ORDER BY id', [tenantId]);
    // Encryption counts move in the background (they are stored when keys leave memory): not part of the state.
    const keyring = await tx.query(
      'SELECT current_version, min_decryption_version, rotation_period_days, rotation_encryptions, customer_kms_configured_at FROM tenant_keyrings WHERE tenant_id = $1',
      [tenantId],
    );
    const dataKeys = await tx.query('SELECT version, wrapped_key, destroyed_at FROM tenant_keys WHERE tenant_id = $1 ORDER BY version', [tenantId]);
    return {
      tenant: tenant.rows,
      records: records.rows,
      keys: keys.rows,
      users: users.rows,
      policy: policy.rows,
      sessions: sessions.rows,
      roles: roles.rows,
      assignments: assignments.rows,
      grants: grants.rows,
      keyring: keyring.rows,
      dataKeys: dataKeys.rows,
    };
  });
  return { ...state, ...credentials };
}

/** The platform realm as stored: tenants, operators (with their hashes) and operator sessions. */
export async function platformState(test: Pick<TestApp, 'storage'>): Promise<unknown> {
  return test.storage.db.withPlatform(async (tx) => {
    const tenants = await tx.query('SELECT id, name, region, status, updated_at FROM tenants ORDER BY id');
    const operators = await tx.query(
      `SELECT id, encode(email_hmac, 'hex') AS email_hmac, encode(pii, 'hex') AS pii, role, status, password_hash, must_change_password, updated_at
         FROM operators ORDER BY id`,
    );
    const sessions = await tx.query('SELECT id, operator_id, revoked_at, revoked_reason FROM operator_sessions ORDER BY id');
    const throttles = await tx.query('SELECT subject, failures, blocked_until FROM operator_login_throttles ORDER BY subject');
    return { tenants: tenants.rows, operators: operators.rows, sessions: sessions.rows, throttles: throttles.rows };
  });
}

export async function recordCount(test: TestApp, tenantId?: string): Promise<number> {
  const { rows } = await test.storage.db.withPlatform((tx) =>
    tenantId === undefined
      ? tx.query<{ n: number }>('SELECT count(*)::int AS n FROM records')
      : tx.query<{ n: number }>('SELECT count(*)::int AS n FROM records WHERE tenant_id = $1', [tenantId]),
  );
  return rows[0]?.n ?? -1;
}

/** Same inject() as TestApp.call, but the body is sent as raw bytes with exactly the given headers. */
export function rawCall(
  test: TestApp,
  request: { method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'; url: string; token?: string; payload?: string; headers?: Record<string, string> },
): Promise<LightMyRequestResponse> {
  return test.app.inject({
    method: request.method,
    url: request.url,
    headers: { ...(request.token === undefined ? {} : { authorization: `Bearer ${request.token}` }), ...request.headers },
    ...(request.payload === undefined ? {} : { payload: request.payload }),
  });
}
