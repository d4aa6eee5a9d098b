/**
 * Seeding for the authentication benchmark (bench/auth.ts) through Bulwark's public HTTP API, in-process
 * with `app.inject`: the same requests a client sends, so the bench keeps working while the services
 * behind them are refactored. Used by the in-process part and by the HTTP server child alike.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';

export interface TenantAdmin {
  tenantId: string;
  email: string;
  password: string;
}

export interface Tokens {
  accessToken: string;
  refreshToken: string;
}

async function call(app: FastifyInstance, method: 'GET' | 'POST', url: string, token: string | undefined, body?: unknown): Promise<LightMyRequestResponse> {
  return app.inject({
    method,
    url,
    headers: {
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

function expectStatus(response: LightMyRequestResponse, status: number, what: string): void {
  if (response.statusCode !== status) throw new Error(`${what}: expected ${status}, got ${response.statusCode}: ${response.body.slice(0, 300)}`);
}

/**
 * The one place that knows how an operator authenticates, as on a first run: the setup token is spent on the
 * first platform-admin by `POST /v1/setup`, who then logs in with `POST /v1/auth/operator/login`.
 */
export async function operatorToken(app: FastifyInstance): Promise<string> {
  const setupToken = `bws_${randomBytes(32).toString('base64url')}`;
  await app.services.operators.ensureSetupToken(setupToken);
  const credentials = { email: 'platform-admin@bench.example', password: `steady beacon ${randomBytes(6).toString('hex')} harbour` };
  expectStatus(await call(app, 'POST', '/v1/setup', undefined, { setupToken, ...credentials }), 201, 'setup');
  const response = await call(app, 'POST', '/v1/auth/operator/login', undefined, credentials);
  expectStatus(response, 200, 'operator login');
  return loginTokens(response).accessToken;
}

/** A tenant with its first tenant-admin (`POST /v1/tenants` with `admin`), as the README's quick start does. */
export async function createTenantAdmin(app: FastifyInstance, operator: string, name: string): Promise<TenantAdmin> {
  // Random words keep the password past the strength policy; the random part makes every run's admin new.
  const admin = { email: `bench-${randomBytes(6).toString('hex')}@example.org`, password: `quiet meadow ${randomBytes(6).toString('hex')} compass` };
  const response = await call(app, 'POST', '/v1/tenants', operator, { name, admin });
  expectStatus(response, 201, 'tenant creation');
  const { id } = response.json<{ id?: unknown }>();
  if (typeof id !== 'string') throw new Error(`tenant creation answered no id: ${response.body.slice(0, 300)}`);
  return { tenantId: id, ...admin };
}

/** The body of a password login; the benchmark sends exactly this. */
export function loginBody(admin: TenantAdmin): string {
  return JSON.stringify({ tenantId: admin.tenantId, email: admin.email, password: admin.password });
}

/** Checks a login answer: 200 with both tokens. Throws otherwise, so a failed login never counts. */
export function loginTokens(response: LightMyRequestResponse): Tokens {
  expectStatus(response, 200, 'login');
  const { accessToken, refreshToken } = response.json<{ accessToken?: unknown; refreshToken?: unknown }>();
  if (typeof accessToken !== 'string' || typeof refreshToken !== 'string') throw new Error(`login answered no tokens: ${response.body.slice(0, 300)}`);
  return { accessToken, refreshToken };
}

export async function login(app: FastifyInstance, admin: TenantAdmin): Promise<Tokens> {
  return loginTokens(await app.inject({ method: 'POST', url: '/v1/auth/login', headers: { 'content-type': 'application/json' }, payload: loginBody(admin) }));
}

/** An API key with the admin's permissions (`POST /v1/tenants/{tenantId}/api-keys`). */
export async function createApiKey(app: FastifyInstance, tenantId: string, accessToken: string): Promise<string> {
  const response = await call(app, 'POST', `/v1/tenants/${tenantId}/api-keys`, accessToken, { name: 'bench' });
  expectStatus(response, 201, 'API key creation');
  const { key } = response.json<{ key?: unknown }>();
  if (typeof key !== 'string') throw new Error(`API key creation answered no key: ${response.body.slice(0, 300)}`);
  return key;
}

/** `GET /v1/me`: the user of the access token; the bench checks the e-mail address against the admin's. */
export async function me(app: FastifyInstance, accessToken: string): Promise<{ id: string; email: string }> {
  const response = await call(app, 'GET', '/v1/me', accessToken);
  expectStatus(response, 200, 'GET /v1/me');
  const { id, email } = response.json<{ id?: unknown; email?: unknown }>();
  if (typeof id !== 'string' || typeof email !== 'string') throw new Error(`GET /v1/me answered no user: ${response.body.slice(0, 300)}`);
  return { id, email };
}

/** The public keys of the access tokens (`GET /.well-known/jwks.json`), for the raw signature baseline. */
export async function jwks(app: FastifyInstance): Promise<unknown[]> {
  const response = await call(app, 'GET', '/.well-known/jwks.json', undefined);
  expectStatus(response, 200, 'JWKS');
  const { keys } = response.json<{ keys?: unknown }>();
  if (!Array.isArray(keys)) throw new Error(`JWKS answered no keys: ${response.body.slice(0, 300)}`);
  return keys as unknown[];
}
