import { Type } from 'typebox';
import { heldPermissions } from '../../platform/http/auth.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { userParams } from '../identity/schemas.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import { createGrantBody, createRoleBody, grantParams, role, roleParams, supportGrant, updateRoleBody, userRoles } from './schemas.ts';
import type { AccessService } from './service.ts';

const roles = '/v1/tenants/:tenantId/roles';
const grants = '/v1/tenants/:tenantId/support-grants';
const noOneElses = 'Nobody gives away a permission they do not hold (403 forbidden names the missing ones).';

/** Roles, role assignments and support-access grants of a tenant. */
export const accessRoutes: RoutePlugin<{ access: AccessService }> = async (app, { access }) => {
  app.get(
    roles,
    {
      config: { auth: 'tenant', permission: 'roles:read' },
      schema: {
        tags: ['roles'],
        summary: 'List roles',
        description: 'The built-in roles (tenant-admin, member, viewer, auditor) and the custom roles of the tenant, with their permissions.',
        params: tenantParams,
        response: { 200: Type.Object({ items: Type.Array(role) }) },
      },
    },
    async (request) => ({ items: await access.listRoles(request.params.tenantId) }),
  );

  app.post(
    roles,
    {
      config: { auth: 'tenant', permission: 'roles:write' },
      schema: {
        tags: ['roles'],
        summary: 'Create a custom role',
        description: `A named set of permissions. Built-in names are taken (409). ${noOneElses}`,
        params: tenantParams,
        body: createRoleBody,
        response: { 201: role },
      },
    },
    async (request, reply) => reply.code(201).send(await access.createRole(request.params.tenantId, request.body, heldPermissions(request))),
  );

  app.get(
    `${roles}/:roleName`,
    { config: { auth: 'tenant', permission: 'roles:read' }, schema: { tags: ['roles'], summary: 'Get a role', params: roleParams, response: { 200: role } } },
    async (request) => access.getRole(request.params.tenantId, request.params.roleName),
  );

  app.put(
    `${roles}/:roleName`,
    {
      config: { auth: 'tenant', permission: 'roles:write' },
      schema: {
        tags: ['roles'],
        summary: 'Change a custom role',
        description: `Its holders gain or lose permissions at once here, on other instances within BULWARK_AUTH_CACHE_TTL_MS. Built-in roles answer 409. ${noOneElses}`,
        params: roleParams,
        body: updateRoleBody,
        response: { 200: role },
      },
    },
    async (request) => access.updateRole(request.params.tenantId, request.params.roleName, request.body, heldPermissions(request)),
  );

  app.delete(
    `${roles}/:roleName`,
    {
      config: { auth: 'tenant', permission: 'roles:write' },
      schema: {
        tags: ['roles'],
        summary: 'Delete a custom role',
        description: 'Also takes it from every user that has it. Built-in roles answer 409.',
        params: roleParams,
        response: { 204: Type.Null({ description: 'Deleted.' }) },
      },
    },
    async (request, reply) => {
      await access.deleteRole(request.params.tenantId, request.params.roleName, heldPermissions(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/tenants/:tenantId/users/:userId/roles',
    { config: { auth: 'tenant', permission: 'users:read' }, schema: { tags: ['roles'], summary: "A user's roles", params: userParams, response: { 200: userRoles } } },
    async (request) => access.userRoles(request.params.tenantId, request.params.userId),
  );

  app.put(
    '/v1/tenants/:tenantId/users/:userId/roles',
    {
      config: { auth: 'tenant', permission: 'roles:write' },
      schema: {
        tags: ['roles'],
        summary: "Set a user's roles",
        description: `Replaces the user's roles (an empty list takes them all). The last tenant-admin keeps the role (409). The caller must hold the permissions of the roles taken and given. ${noOneElses}`,
        params: userParams,
        body: userRoles,
        response: { 200: userRoles },
      },
    },
    async (request) => access.setUserRoles(request.params.tenantId, request.params.userId, request.body.roles, heldPermissions(request)),
  );

  app.post(
    grants,
    {
      config: { auth: 'tenant', permission: 'support-grants:write' },
      schema: {
        tags: ['support-grants'],
        summary: 'Grant support access',
        description:
          'Lets platform operators act in the tenant with the given permissions until it expires (at most BULWARK_SUPPORT_GRANT_MAX_HOURS) or is revoked. Each request made under it is counted and logged. Permissions that would outlive the grant (api-keys:write, roles:write, support-grants:write, keys:customer-key) cannot be granted. Operators cannot create grants.',
        params: tenantParams,
        body: createGrantBody,
        response: { 201: supportGrant },
      },
    },
    async (request, reply) => {
      const { principal } = request;
      if (principal === null) throw new BulwarkError('unauthenticated');
      return reply.code(201).send(await access.createGrant(request.params.tenantId, request.body, principal, heldPermissions(request)));
    },
  );

  app.get(
    grants,
    {
      config: { auth: 'tenant', permission: 'support-grants:read' },
      schema: { tags: ['support-grants'], summary: 'List support grants', description: 'Live, expired and revoked, keyset-paged by id.', params: tenantParams, querystring: pageQuery, response: { 200: pageOf(supportGrant) } },
    },
    async (request) => access.listGrants(request.params.tenantId, request.query.limit ?? 50, request.query.cursor),
  );

  app.delete(
    `${grants}/:grantId`,
    {
      config: { auth: 'tenant', permission: 'support-grants:write' },
      schema: {
        tags: ['support-grants'],
        summary: 'Revoke a support grant',
        description: 'Takes effect on the next request on every instance (grants are not cached).',
        params: grantParams,
        response: { 200: supportGrant },
      },
    },
    async (request) => access.revokeGrant(request.params.tenantId, request.params.grantId),
  );
};
