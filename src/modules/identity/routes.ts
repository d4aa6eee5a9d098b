import { Type } from 'typebox';
import { pageOf } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import {
  createUserBody,
  importUsersBody,
  importUsersResult,
  legacyHashReport,
  maxImportBatch,
  passwordPolicy,
  setPasswordBody,
  updateUserBody,
  user,
  userListQuery,
  userParams,
} from './schemas.ts';
import type { FastifyRequest } from 'fastify';
import type { Queryable } from '../../platform/db/database.ts';
import { heldPermissions } from '../../platform/http/auth.ts';
import type { AccessService } from '../access/service.ts';
import type { LoginSessionService } from '../sessions/login-sessions.ts';
import type { LoginService } from './login.ts';
import type { UsersService } from './service.ts';

const tags = ['users'];
const users = '/v1/tenants/:tenantId/users';

/**
 * A tenant's users and its password policy. Login, sessions and tokens build on these.
 * `importBodyLimit`: an import batch may use the whole request body limit (most routes get a small one).
 * `holds`: the legal holds (privacy module) that keep a user from being deleted while they are in force.
 */
export const identityRoutes: RoutePlugin<{
  users: UsersService;
  login: LoginService;
  sessions: LoginSessionService;
  access: AccessService;
  importBodyLimit: number;
  holds: { assertNotHeld(tx: Queryable, tenantId: string, userId: string): Promise<void> };
}> = async (app, { users: service, login, sessions, access, importBodyLimit, holds }) => {
  // Changing another user's password, e-mail, status or existence needs every permission that user holds.
  const mayManage = (request: FastifyRequest<{ Params: { tenantId: string; userId: string } }>) =>
    access.assertMayManage(request.params.tenantId, request.params.userId, heldPermissions(request));

  app.get(
    users,
    {
      config: { auth: 'tenant', permission: 'users:read' },
      schema: {
        tags,
        summary: 'List users',
        description: 'Keyset-paged by id. `email` finds one user by address (through its keyed hash; addresses are stored encrypted).',
        params: tenantParams,
        querystring: userListQuery,
        response: { 200: pageOf(user) },
      },
    },
    async (request) => service.list(request.params.tenantId, request.query),
  );

  app.post(
    users,
    {
      config: { auth: 'tenant', permission: 'users:write' },
      schema: {
        tags,
        summary: 'Create a user',
        description: 'Without a password the user is invited (no password yet). A password must meet the password policy (422 password_policy_violation names each failed rule).',
        params: tenantParams,
        body: createUserBody,
        response: { 201: user },
      },
    },
    async (request, reply) => reply.code(201).send(await service.create(request.params.tenantId, request.body)),
  );

  app.post(
    '/v1/tenants/:tenantId/user-imports',
    {
      config: { auth: 'tenant', permission: 'users:write' },
      bodyLimit: importBodyLimit,
      schema: {
        tags,
        summary: 'Import users with their existing password hashes',
        description: `Up to ${maxImportBatch} users, all or nothing. Hashes from another system (unsalted MD5, PBKDF2-SHA256 as Keycloak stores them, or Argon2id) are verified at each user's next login and replaced by Argon2id.`,
        params: tenantParams,
        body: importUsersBody,
        response: { 201: importUsersResult },
      },
    },
    async (request, reply) => reply.code(201).send(await service.import(request.params.tenantId, request.body)),
  );

  app.get(
    '/v1/tenants/:tenantId/legacy-password-hashes',
    {
      config: { auth: 'tenant', permission: 'users:read' },
      schema: {
        tags,
        summary: 'Users still on imported legacy hashes',
        description: 'Who has not logged in since an import: their password is still an MD5 or PBKDF2 hash. Never the hashes themselves.',
        params: tenantParams,
        response: { 200: legacyHashReport },
      },
    },
    async (request) => service.legacyHashReport(request.params.tenantId),
  );

  app.get(
    `${users}/:userId`,
    { config: { auth: 'tenant', permission: 'users:read' }, schema: { tags, summary: 'Get a user', description: 'Never the password or its hash.', params: userParams, response: { 200: user } } },
    async (request) => service.get(request.params.tenantId, request.params.userId),
  );

  app.patch(
    `${users}/:userId`,
    {
      config: { auth: 'tenant', permission: 'users:write' },
      schema: {
        tags,
        summary: 'Update a user',
        description:
          'E-mail, names, or status (`disabled` blocks login and ends every session of the user). A taken e-mail answers 409 conflict, as does disabling the last active tenant-admin.',
        params: userParams,
        body: updateUserBody,
        response: { 200: user },
      },
    },
    async (request) => {
      const { tenantId, userId } = request.params;
      await mayManage(request);
      const updated = await service.update(tenantId, userId, request.body, { guard: (tx) => access.assertAdminRemains(tx, tenantId, userId) });
      // A disabled user's sessions end at once, not when their refresh tokens run out.
      if (request.body.status === 'disabled') await sessions.revokeAllOf(tenantId, userId, 'admin');
      return updated;
    },
  );

  app.delete(
    `${users}/:userId`,
    {
      config: { auth: 'tenant', permission: 'users:write' },
      schema: {
        tags,
        summary: 'Delete a user',
        description:
          'Deletes the user, its password history and its sessions. The last active tenant-admin cannot be deleted (409 conflict), nor a user a legal hold covers (409 legal_hold_active). To erase a person, with their personal data in the audit trail, use `POST .../users/{userId}/erase`.',
        params: userParams,
        response: { 204: Type.Null({ description: 'Deleted.' }) },
      },
    },
    async (request, reply) => {
      const { tenantId, userId } = request.params;
      await mayManage(request);
      await service.delete(tenantId, userId, {
        guard: async (tx) => {
          await access.assertAdminRemains(tx, tenantId, userId);
          await holds.assertNotHeld(tx, tenantId, userId);
        },
      });
      // The rows went with the user; this drops the sessions' cached liveness on this instance too.
      await sessions.revokeAllOf(tenantId, userId, 'user_deleted');
      return reply.code(204).send(null);
    },
  );

  app.put(
    `${users}/:userId/password`,
    {
      config: { auth: 'tenant', permission: 'users:write' },
      schema: {
        tags,
        summary: "Set a user's password",
        description:
          'Policy and history apply (422 password_policy_violation). By default the user must change it at the next login. Every session of the user ends.',
        params: userParams,
        body: setPasswordBody,
        response: { 204: Type.Null({ description: 'Set.' }) },
      },
    },
    async (request, reply) => {
      const { tenantId, userId } = request.params;
      await mayManage(request);
      await service.setPassword(tenantId, userId, request.body.password, { mustChangePassword: request.body.mustChangePassword ?? true, action: 'user.password.set' });
      await sessions.revokeAllOf(tenantId, userId, 'password_changed');
      return reply.code(204).send(null);
    },
  );

  app.delete(
    `${users}/:userId/lockout`,
    {
      config: { auth: 'tenant', permission: 'users:write' },
      schema: {
        tags,
        summary: "Lift a user's login lockout",
        description: 'Clears the failed-login count of the account before the lockout runs out (the source-address throttle stays).',
        params: userParams,
        response: { 204: Type.Null({ description: 'Unlocked (also when it was not locked).' }) },
      },
    },
    async (request, reply) => {
      await login.unlock(request.params.tenantId, request.params.userId);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/tenants/:tenantId/password-policy',
    {
      config: { auth: 'tenant', permission: 'policies:read' },
      schema: { tags, summary: 'The password policy', description: 'The defaults until one is set.', params: tenantParams, response: { 200: passwordPolicy } },
    },
    async (request) => service.passwordPolicy(request.params.tenantId),
  );

  app.put(
    '/v1/tenants/:tenantId/password-policy',
    {
      config: { auth: 'tenant', permission: 'policies:write' },
      schema: {
        tags,
        summary: 'Set the password policy',
        description: 'The whole policy. Applies to passwords set from now on; `expiryDays` also to existing ones at their next login.',
        params: tenantParams,
        body: passwordPolicy,
        response: { 200: passwordPolicy },
      },
    },
    async (request) => service.setPasswordPolicy(request.params.tenantId, request.body),
  );
};
