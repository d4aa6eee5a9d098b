/**
 * The noisy-neighbour bench's server: the real Bulwark app with its production limits, two tenants with a
 * record each, and tenant A held to `floodLimit` requests a second by an operator's override.
 */
import { allTenantPermissions } from '../src/modules/access/permissions.ts';
import { runBulwarkChild } from './bulwark-app.ts';
import { specArgument } from './child.ts';
import type { NoisySpec } from './protocol.ts';
import { benchRecord } from './record.ts';

const { limitA } = specArgument() as NoisySpec;

runBulwarkChild(async (app) => {
  const { tenancy, apiKeys, records, limits } = app.services;
  const seedTenant = async (name: string) => {
    const tenant = await tenancy.create({ name });
    const { key } = await apiKeys.create(tenant.id, { name: 'bench' }, new Set(allTenantPermissions));
    const record = await records.create(tenant.id, 'bench', benchRecord);
    return { tenantId: tenant.id, apiKey: key, path: `/v1/tenants/${tenant.id}/collections/bench/records/${record.id}` };
  };
  const a = await seedTenant('Noisy tenant A');
  const b = await seedTenant('Quiet tenant B');
  await limits.setOverrides(a.tenantId, { rates: { requests: { limit: limitA, windowSeconds: 1 } } });
  return { tenants: { a, b } };
});
