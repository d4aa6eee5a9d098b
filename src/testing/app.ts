import { randomBytes } from 'node:crypto';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Config } from '../platform/config/config.ts';
import type { Clock } from '../platform/clock.ts';
import { buildApp } from '../server/app.ts';
import { EnvRootKey } from '../modules/keys/root/env.ts';
import type { RootKeyProvider } from '../modules/keys/root/provider.ts';
import { type EngineName, openTestDatabase, type TestDatabase } from './engines.ts';

export interface TestApp {
  app: FastifyInstance;
  storage: TestDatabase;
  rootKeys: RootKeyProvider;
  operatorToken: string;
  /** inject() with JSON encoding and an optional bearer token. */
  call(request: { method: InjectOptions['method']; url: string; token?: string | undefined; body?: unknown; headers?: Record<string, string> }): Promise<LightMyRequestResponse>;
  /**
   * Creates a tenant with a tenant-admin user, logs the admin in and makes an API key with every
   * permission; returns the ids, the key and the admin's access token.
   */
  tenantWithKey(name?: string): Promise<{ tenantId: string; apiKey: string; apiKeyId: string; adminToken: string }>;
  close(): Promise<void>;
}

export async function createTestApp(
  engine: EngineName,
  options: { config?: Partial<Record<keyof Config, string>>; clock?: Clock; rootKeys?: RootKeyProvider; pgliteDir?: string } = {},
): Promise<TestApp> {
  const storage = await openTestDatabase(engine, options.config, options.pgliteDir === undefined ? {} : { pgliteDir: options.pgliteDir });
  const rootKeys = options.rootKeys ?? new EnvRootKey(randomBytes(32).toString('base64'));
  const app = await buildApp({ config: storage.config, db: storage.db, rootKeys, ...(options.clock ? { clock: options.clock } : {}) });
  const operatorToken = `bws_${randomBytes(32).toString('base64url')}`;
  await app.services.bootstrap.ensure(operatorToken);

  const call: TestApp['call'] = async ({ method, url, token, body, headers = {} }) =>
    app.inject({
      method,
      url,
      headers: {
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
    });

  return {
    app,
    storage,
    rootKeys,
    operatorToken,
    call,
    async tenantWithKey(name = 'Tenant') {
      const admin = { email: `owner-${randomBytes(6).toString('hex')}@example.org`, password: `quiet meadow ${randomBytes(6).toString('hex')} compass` };
      const tenant = await call({ method: 'POST', url: '/v1/tenants', token: operatorToken, body: { name, admin } });
      if (tenant.statusCode !== 201) throw new Error(`tenant creation failed: ${tenant.body}`);
      const tenantId = tenant.json<{ id: string }>().id;
      const login = await call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, ...admin } });
      const adminToken = login.json<{ accessToken: string }>().accessToken;
      const key = await call({ method: 'POST', url: `/v1/tenants/${tenantId}/api-keys`, token: adminToken, body: { name: 'test' } });
      if (key.statusCode !== 201) throw new Error(`API key creation failed: ${key.body}`);
      const { key: apiKey, id: apiKeyId } = key.json<{ key: string; id: string }>();
      return { tenantId, apiKey, apiKeyId, adminToken };
    },
    async close() {
      await app.close();
      await storage.close();
    },
  };
}
