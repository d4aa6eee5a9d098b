import { Type } from 'typebox';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { createOperatorBody, operator, operatorParams, setOperatorPasswordBody, setupBody, updateOperatorBody } from './schemas.ts';
import type { OperatorsService } from './service.ts';

const tags = ['operators'];
const operators = '/v1/operators';

/** First-run setup and the platform's operator accounts (platform routes; operators log in under /v1/auth/operator). */
export const operatorRoutes: RoutePlugin<{ operators: OperatorsService }> = async (app, { operators: service }) => {
  app.post(
    '/v1/setup',
    {
      config: { auth: 'public' },
      bodyLimit: 8 * 1024,
      schema: {
        tags,
        summary: 'Create the first operator (first run)',
        description:
          'Spends the one-time setup token printed at first start (or BULWARK_SETUP_TOKEN) on the first operator, a platform-admin; then log in with POST /v1/auth/operator/login. A wrong token answers 401 invalid_credentials; once an operator exists, 409 setup_completed. The password must meet the default password policy.',
        body: setupBody,
        response: { 201: operator },
      },
    },
    async (request, reply) => reply.code(201).send(await service.setup(request.body)),
  );

  app.get(
    operators,
    {
      config: { auth: 'operator', permission: 'platform:operators:read' },
      schema: { tags, summary: 'List operators', description: 'Keyset-paged by id.', querystring: pageQuery, response: { 200: pageOf(operator) } },
    },
    async (request) => service.list(request.query.limit ?? 50, request.query.cursor),
  );

  app.post(
    operators,
    {
      config: { auth: 'operator', permission: 'platform:operators:write' },
      schema: {
        tags,
        summary: 'Create an operator',
        description:
          'Without a password the operator is invited (a platform-admin sets one later with PUT /v1/operators/{operatorId}/password). A given password must meet the default policy and, unless `mustChangePassword: false`, be changed at the first login.',
        body: createOperatorBody,
        response: { 201: operator },
      },
    },
    async (request, reply) => reply.code(201).send(await service.create(request.body)),
  );

  app.get(
    `${operators}/:operatorId`,
    {
      config: { auth: 'operator', permission: 'platform:operators:read' },
      schema: { tags, summary: 'Get an operator', description: 'Never the password or its hash.', params: operatorParams, response: { 200: operator } },
    },
    async (request) => service.get(request.params.operatorId),
  );

  app.patch(
    `${operators}/:operatorId`,
    {
      config: { auth: 'operator', permission: 'platform:operators:write' },
      schema: {
        tags,
        summary: 'Update an operator',
        description:
          'E-mail, name, role or status. Disabling ends every session of the operator. The last active platform-admin cannot be demoted or disabled (409 conflict).',
        params: operatorParams,
        body: updateOperatorBody,
        response: { 200: operator },
      },
    },
    async (request) => service.update(request.params.operatorId, request.body),
  );

  app.delete(
    `${operators}/:operatorId`,
    {
      config: { auth: 'operator', permission: 'platform:operators:write' },
      schema: {
        tags,
        summary: 'Delete an operator',
        description: 'Ends its sessions; its support grants stop matching. The last active platform-admin cannot be deleted (409 conflict).',
        params: operatorParams,
        response: { 204: Type.Null({ description: 'Deleted.' }) },
      },
    },
    async (request, reply) => {
      if (request.principal?.kind === 'operator' && request.principal.id === request.params.operatorId) {
        throw new BulwarkError('conflict', { message: 'Operators cannot delete themselves; another platform-admin can.' });
      }
      await service.delete(request.params.operatorId);
      return reply.code(204).send(null);
    },
  );

  app.put(
    `${operators}/:operatorId/password`,
    {
      config: { auth: 'operator', permission: 'platform:operators:write' },
      schema: {
        tags,
        summary: "Set an operator's password",
        description: 'Default policy and history apply (422 password_policy_violation). By default it must be changed at the next login. Every session of the operator ends.',
        params: operatorParams,
        body: setOperatorPasswordBody,
        response: { 204: Type.Null({ description: 'Set.' }) },
      },
    },
    async (request, reply) => {
      await service.setPassword(request.params.operatorId, request.body.password, { mustChangePassword: request.body.mustChangePassword ?? true, action: 'operator.password.set' });
      return reply.code(204).send(null);
    },
  );

  app.delete(
    `${operators}/:operatorId/lockout`,
    {
      config: { auth: 'operator', permission: 'platform:operators:write' },
      schema: {
        tags,
        summary: "Lift an operator's login lockout",
        description: 'Clears the failed-login count of the account before the lockout runs out (the source-address throttle stays).',
        params: operatorParams,
        response: { 204: Type.Null({ description: 'Unlocked (also when it was not locked).' }) },
      },
    },
    async (request, reply) => {
      await service.unlock(request.params.operatorId);
      return reply.code(204).send(null);
    },
  );
};
