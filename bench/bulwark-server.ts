/**
 * The system under test: the real Bulwark app (auth hook, tenant gate, schema validation, RLS through
 * the pipelined tenant path, response serialisation), seeded through its services.
 */
import { allTenantPermissions } from '../src/modules/access/permissions.ts';
import { runBulwarkChild } from './bulwark-app.ts';
import { benchRecord } from './record.ts';

runBulwarkChild(async (app) => {
  const tenant = await app.services.tenancy.create({ name: 'Bench tenant' });
  const { key } = await app.services.apiKeys.create(tenant.id, { name: 'bench' }, new Set(allTenantPermissions));
  const collection = 'bench';
  const record = await app.services.records.create(tenant.id, collection, benchRecord);
  return { seed: { tenantId: tenant.id, collection, recordId: record.id, data: record.data, apiKey: key } };
});
