import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import { limitOverrides, limitsDocument } from './schemas.ts';
import type { LimitsService } from './service.ts';

const tags = ['limits'];

/** A tenant's limits: its admins and auditors read them, platform admins set them. */
export const limitsRoutes: RoutePlugin<{ limits: LimitsService }> = async (app, { limits }) => {
  app.get(
    '/v1/tenants/:tenantId/limits',
    {
      config: { auth: 'tenant', permission: 'limits:read' },
      schema: {
        tags,
        summary: "Get the tenant's limits and usage",
        description:
          'Effective rate limits, quotas (with current usage) and the concurrency cap, each marked `default` or `override`, and the overrides as set. Operators read it without a support grant.',
        params: tenantParams,
        response: { 200: limitsDocument },
      },
    },
    async (request) => limits.describe(request.params.tenantId),
  );

  app.put(
    '/v1/tenants/:tenantId/limits',
    {
      config: { auth: 'operator', permission: 'platform:limits:write' },
      schema: {
        tags,
        summary: "Set the tenant's limit overrides",
        description:
          'Replaces the overrides: what the body leaves out follows the platform defaults (`BULWARK_RATE_LIMIT_*`, `BULWARK_QUOTA_*`, `BULWARK_TENANT_MAX_CONCURRENT_REQUESTS`). A quota below the current usage refuses new writes and deletes nothing. Other instances apply a change within `BULWARK_AUTH_CACHE_TTL_MS`. Recorded in the platform audit trail.',
        params: tenantParams,
        body: limitOverrides,
        response: { 200: limitsDocument },
      },
    },
    async (request) => limits.setOverrides(request.params.tenantId, request.body),
  );
};
