import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { tenantId } from '../tenancy/schemas.ts';
import { allTenantPermissions } from './permissions.ts';

export const permission = Type.Union(
  allTenantPermissions.map((name) => Type.Literal(name)),
  { description: 'A tenant permission, `resource:action`.' },
);
const permissionList = Type.Array(permission, { minItems: 1, maxItems: 100, uniqueItems: true });

export const roleName = Type.String({ pattern: '^[a-z][a-z0-9-]{1,62}$', description: 'Role name: lowercase letters, digits and dashes.' });
export const roleParams = Type.Object({ tenantId, roleName }, { additionalProperties: false });

export const role = Type.Object({
  name: Type.String(),
  description: Type.String(),
  builtIn: Type.Boolean({ description: 'Built-in roles cannot be changed or deleted.' }),
  permissions: Type.Array(Type.String()),
  createdAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  updatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
export type Role = Static<typeof role>;

const description = Type.String({ maxLength: 500, description: 'What the role is for.' });

export const createRoleBody = Type.Object({ name: roleName, description: Type.Optional(description), permissions: permissionList }, { additionalProperties: false });
export type CreateRoleBody = Static<typeof createRoleBody>;

export const updateRoleBody = Type.Object({ description: Type.Optional(description), permissions: permissionList }, { additionalProperties: false });
export type UpdateRoleBody = Static<typeof updateRoleBody>;

export const userRoles = Type.Object(
  { roles: Type.Array(roleName, { maxItems: 20, uniqueItems: true, description: 'Role names: built-in or custom.' }) },
  { additionalProperties: false },
);
export type UserRoles = Static<typeof userRoles>;

export const grantParams = Type.Object(
  { tenantId, grantId: Type.String({ pattern: idPattern, description: 'Support grant id.' }) },
  { additionalProperties: false },
);

export const supportGrant = Type.Object({
  id: Type.String(),
  operatorId: Type.Union([Type.String(), Type.Null()], { description: 'The one operator it is for; null for any operator.' }),
  permissions: Type.Array(Type.String()),
  reason: Type.String(),
  grantedBy: Type.String({ description: '`user:<id>` or `api-key:<id>`.' }),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  useCount: Type.Integer({ description: 'Requests an operator made under this grant.' }),
  active: Type.Boolean(),
});
export type SupportGrant = Static<typeof supportGrant>;

export const createGrantBody = Type.Object(
  {
    permissions: permissionList,
    reason: Type.String({ minLength: 1, maxLength: 500, pattern: '\\S', description: 'Why support needs access (e.g. the ticket).' }),
    durationHours: Type.Integer({ minimum: 1, maximum: 720, description: 'How long the grant lasts; at most BULWARK_SUPPORT_GRANT_MAX_HOURS.' }),
    operatorId: Type.Optional(Type.String({ pattern: idPattern, description: 'Limit the grant to one operator.' })),
  },
  { additionalProperties: false },
);
export type CreateGrantBody = Static<typeof createGrantBody>;
