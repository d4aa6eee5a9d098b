/**
 * The system under test: the real Bulwark app (auth hook, tenant gate, schema validation, RLS through
 * the pipelined tenant path, response serialisation), seeded through its services.
 */
import { allTenantPermissions } from '../src/modules/access/permissions.ts';
import { loadConfig } from '../src/platform/config/config.ts';
import { openDatabase } from '../src/platform/db/open.ts';
import { randomBytes } from 'node:crypto';
import { EnvRootKey } from '../src/modules/keys/root/env.ts';
import { buildApp } from '../src/server/app.ts';
import { runChild, specArgument } from './child.ts';
import type { BulwarkSpec } from './protocol.ts';
import { benchRecord } from './record.ts';

runChild(async () => {
  const spec = specArgument() as BulwarkSpec;
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
    const tenant = await app.services.tenancy.create({ name: 'Bench tenant' });
    const { key } = await app.services.apiKeys.create(tenant.id, { name: 'bench' }, new Set(allTenantPermissions));
    const collection = 'bench';
    const record = await app.services.records.create(tenant.id, collection, benchRecord);
    return {
      app,
      seed: { tenantId: tenant.id, collection, recordId: record.id, data: record.data, apiKey: key },
      close: () => db.close(),
    };
  } catch (error) {
    await db.close();
    throw error;
  }
});
