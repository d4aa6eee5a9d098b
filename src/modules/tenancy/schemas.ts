import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';

export const tenantId = Type.String({ pattern: idPattern, description: 'Tenant id: 12 lowercase hex characters.' });
export const tenantParams = Type.Object({ tenantId }, { additionalProperties: false });

const tenantName = Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: 'Display name.' });
const region = Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$', description: 'One of the configured regions (BULWARK_REGIONS).' });

export const tenant = Type.Object({
  id: tenantId,
  name: Type.String(),
  region: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('suspended'), Type.Literal('offboarding'), Type.Literal('deleted')]),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type Tenant = Static<typeof tenant>;

export const createTenantBody = Type.Object({ name: tenantName, region: Type.Optional(region) }, { additionalProperties: false });

export const createdTenant = Type.Object({
  ...tenant.properties,
  admin: Type.Optional(Type.Object({ id: Type.String(), email: Type.String() }, { description: 'The first user, when `admin` was given.' })),
});

export const updateTenantBody = Type.Object(
  {
    name: Type.Optional(tenantName),
    status: Type.Optional(
      Type.Union([Type.Literal('active'), Type.Literal('suspended')], {
        description: 'Suspending blocks every tenant-scoped route with 403 tenant_suspended.',
      }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateTenant = Static<typeof updateTenantBody>;
