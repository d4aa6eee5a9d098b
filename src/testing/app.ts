import { randomBytes } from 'node:crypto';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../platform/config/config.ts';
import type { Clock } from '../platform/clock.ts';
import type { Argon2Params } from '../modules/identity/passwords.ts';
import { buildApp } from '../server/app.ts';
import { EnvRootKey } from '../modules/keys/root/env.ts';
import type { RootKeyProvider } from '../modules/keys/root/provider.ts';
import { type EngineName, openTestDatabase, type TestDatabase } from './engines.ts';

/** An app over a throwaway database that has not been through setup: no operator yet. */
export interface BareTestApp {
  app: FastifyInstance;
  storage: TestDatabase;
  rootKeys: RootKeyProvider;
  /** inject() with JSON encoding and an optional bearer token. */
  call: (request: { method: InjectOptions['method']; url: string; token?: string | undefined; body?: unknown; headers?: Record<string, string> }) => Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export interface TestOptions {
  config?: Partial<Record<keyof Config, string>>;
  clock?: Clock;
  rootKeys?: RootKeyProvider;
  pgliteDir?: string;
  /** The app's logger (default: the configured level, to stdout); a test that reads the log lines passes its own. */
  logger?: Logger;
  /** Argon2id cost (default: the production one); `cheapArgon2` for suites that hash hundreds of passwords and test none. */
  argon2?: Argon2Params;
}

/** The least Argon2id allows (well under a millisecond a hash, against ~20 ms at the OWASP cost). */
export const cheapArgon2: Argon2Params = Object.freeze({ memoryCost: 8, timeCost: 1, parallelism: 1 });

/**
 * A unique passphrase for a test account. The random part is letters only: the password policy's strength
 * check (zxcvbn) spends about 40 ms on a passphrase with a hex id in it (digits set off its date and sequence
 * matching) and about 10 ms on one without, and the suites make hundreds.
 */
export function testPassphrase(first: string, last: string): string {
  const letters = 'bcdfghjkmnpqrstvwxz';
  return `${first} ${Array.from(randomBytes(12), (byte) => letters.charAt(byte % letters.length)).join('')} ${last}`;
}

export async function createBareTestApp(engine: EngineName, options: TestOptions = {}): Promise<BareTestApp> {
  const storage = await openTestDatabase(engine, options.config, options.pgliteDir === undefined ? {} : { pgliteDir: options.pgliteDir });
  const rootKeys = options.rootKeys ?? new EnvRootKey(randomBytes(32).toString('base64'));
  const app = await buildApp({
    config: storage.config,
    db: storage.db,
    rootKeys,
    maintenance: storage.maintenance,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.argon2 ? { argon2: options.argon2 } : {}),
  });
  return {
    app,
    storage,
    rootKeys,
    call: async ({ method, url, token, body, headers = {} }) =>
      app.inject({
        method,
        url,
        headers: {
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
      }),
    async close() {
      await app.close();
      await storage.close();
    },
  };
}

export interface TestApp extends BareTestApp {
  /** An access token of the platform-admin that setup created (valid for the access-token lifetime). */
  operatorToken: string;
  /** The platform-admin's credentials, e.g. to log in again after moving a test clock past the token's expiry. */
  operator: { id: string; email: string; password: string };
  /** Logs the platform-admin in again and makes the new access token `operatorToken`. */
  relogOperator(): Promise<string>;
  /**
   * Creates a tenant with a tenant-admin user, logs the admin in and makes an API key with every
   * permission; returns the ids, the key and the admin's access token.
   */
  tenantWithKey(name?: string): Promise<{ tenantId: string; apiKey: string; apiKeyId: string; adminToken: string }>;
}

export async function createTestApp(
  engine: EngineName,
  options: TestOptions & {
    /** Reopening a database that already went through setup: log this operator in instead. */
    operator?: TestApp['operator'];
  } = {},
): Promise<TestApp> {
  const bare = await createBareTestApp(engine, options);
  const { app, call } = bare;

  // First run, as an operator would do it: the setup token creates the platform-admin, who logs in.
  let operator = options.operator;
  if (operator === undefined) {
    const setupToken = `bws_${randomBytes(32).toString('base64url')}`;
    await app.services.operators.ensureSetupToken(setupToken);
    const credentials = { email: 'platform-admin@operator.example', password: testPassphrase('steady beacon', 'harbour') };
    const setup = await call({ method: 'POST', url: '/v1/setup', body: { setupToken, ...credentials } });
    if (setup.statusCode !== 201) throw new Error(`setup failed: ${setup.body}`);
    operator = { id: setup.json<{ id: string }>().id, ...credentials };
  }
  const { email, password } = operator;
  const operatorLogin = async () => {
    const login = await call({ method: 'POST', url: '/v1/auth/operator/login', body: { email, password } });
    if (login.statusCode !== 200) throw new Error(`operator login failed: ${login.body}`);
    return login.json<{ accessToken: string }>().accessToken;
  };

  const test: TestApp = {
    ...bare,
    operatorToken: await operatorLogin(),
    operator,
    async relogOperator() {
      test.operatorToken = await operatorLogin();
      return test.operatorToken;
    },
    call,
    async tenantWithKey(name = 'Tenant') {
      const admin = { email: `owner-${randomBytes(6).toString('hex')}@example.org`, password: testPassphrase('quiet meadow', 'compass') };
      const tenant = await call({ method: 'POST', url: '/v1/tenants', token: test.operatorToken, body: { name, admin } });
      if (tenant.statusCode !== 201) throw new Error(`tenant creation failed: ${tenant.body}`);
      const tenantId = tenant.json<{ id: string }>().id;
      const login = await call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, ...admin } });
      const adminToken = login.json<{ accessToken: string }>().accessToken;
      const key = await call({ method: 'POST', url: `/v1/tenants/${tenantId}/api-keys`, token: adminToken, body: { name: 'test' } });
      if (key.statusCode !== 201) throw new Error(`API key creation failed: ${key.body}`);
      const { key: apiKey, id: apiKeyId } = key.json<{ key: string; id: string }>();
      return { tenantId, apiKey, apiKeyId, adminToken };
    },
  };
  return test;
}
