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
  /** Creates a tenant and a tenant API key; returns their ids and the key. */
  tenantWithKey(name?: string): Promise<{ tenantId: string; apiKey: string; apiKeyId: string }>;
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
      const tenant = await call({ method: 'POST', url: '/v1/tenants', token: operatorToken, body: { name } });
      const tenantId = (tenant.json<{ id: string }>()).id;
      const key = await call({ method: 'POST', url: `/v1/tenants/${tenantId}/api-keys`, token: operatorToken, body: { name: 'test' } });
      const { key: apiKey, id: apiKeyId } = key.json<{ key: string; id: string }>();
      return { tenantId, apiKey, apiKeyId };
    },
    async close() {
      await app.close();
      await storage.close();
    },
  };
}
