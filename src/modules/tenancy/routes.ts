import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { createTenantBody, tenant, tenantParams, updateTenantBody } from './schemas.ts';
import type { TenancyService } from './service.ts';

const tags = ['tenants'];

/** Tenant management: platform-operator routes. Offboarding (DELETE) arrives with the backups module. */
export const tenancyRoutes: RoutePlugin<{ tenancy: TenancyService }> = async (app, { tenancy }) => {
  app.post(
    '/v1/tenants',
    {
      config: { auth: 'operator' },
      schema: {
        tags,
        summary: 'Create a tenant',
        description: 'Creates an active tenant in the given region (default: the first configured region).',
        body: createTenantBody,
        response: { 201: tenant },
      },
    },
    // 1 authenticate (hook) 2 validate (schema) 3-6 check region, insert with a fresh id 7 respond.
    async (request, reply) => reply.code(201).send(await tenancy.create(request.body)),
  );

  app.get(
    '/v1/tenants',
    {
      config: { auth: 'operator' },
      schema: { tags, summary: 'List tenants', description: 'Keyset-paged by id.', querystring: pageQuery, response: { 200: pageOf(tenant) } },
    },
    async (request) => tenancy.list(request.query.limit ?? 50, request.query.cursor),
  );

  app.get(
    '/v1/tenants/:tenantId',
    {
      config: { auth: 'operator' },
      schema: { tags, summary: 'Get a tenant', params: tenantParams, response: { 200: tenant } },
    },
    async (request) => tenancy.get(request.params.tenantId),
  );

  app.patch(
    '/v1/tenants/:tenantId',
    {
      config: { auth: 'operator' },
      schema: {
        tags,
        summary: 'Update a tenant',
        description: 'Rename, suspend (`status: suspended`) or reactivate (`status: active`) a tenant.',
        params: tenantParams,
        body: updateTenantBody,
        response: { 200: tenant },
      },
    },
    async (request) => tenancy.update(request.params.tenantId, request.body),
  );
};
