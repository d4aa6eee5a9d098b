import { Type } from 'typebox';
import { heldPermissions } from '../../platform/http/auth.ts';
import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import { apiKey, apiKeyParams, createApiKeyBody, createdApiKey } from './schemas.ts';
import type { ApiKeyService } from './service.ts';

const tags = ['api-keys'];

export const apiKeyRoutes: RoutePlugin<{ apiKeys: ApiKeyService }> = async (app, { apiKeys }) => {
  app.post(
    '/v1/tenants/:tenantId/api-keys',
    {
      config: { auth: 'tenant', permission: 'api-keys:write' },
      schema: {
        tags,
        summary: 'Create an API key',
        description:
          "The response carries the key once. Store it now: only its hash is kept. `scopes` limits what the key may do; it cannot exceed the creator's permissions.",
        params: tenantParams,
        body: createApiKeyBody,
        response: { 201: createdApiKey },
      },
    },
    async (request, reply) => reply.code(201).send(await apiKeys.create(request.params.tenantId, request.body, heldPermissions(request))),
  );

  app.get(
    '/v1/tenants/:tenantId/api-keys',
    {
      config: { auth: 'tenant', permission: 'api-keys:read' },
      schema: { tags, summary: 'List API keys', description: 'Never includes key material.', params: tenantParams, querystring: pageQuery, response: { 200: pageOf(apiKey) } },
    },
    async (request) => apiKeys.list(request.params.tenantId, request.query.limit ?? 50, request.query.cursor),
  );

  app.delete(
    '/v1/tenants/:tenantId/api-keys/:keyId',
    {
      config: { auth: 'tenant', permission: 'api-keys:write' },
      schema: {
        tags,
        summary: 'Revoke an API key',
        description: 'Takes effect at once on this instance; other instances stop accepting it within BULWARK_AUTH_CACHE_TTL_MS.',
        params: apiKeyParams,
        response: { 204: Type.Null({ description: 'Revoked.' }) },
      },
    },
    async (request, reply) => {
      await apiKeys.revoke(request.params.tenantId, request.params.keyId);
      return reply.code(204).send(null);
    },
  );
};
