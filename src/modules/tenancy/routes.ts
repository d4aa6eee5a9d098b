import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { Type } from 'typebox';
import type { CreateUserBody, createUserBody } from '../identity/schemas.ts';
import { createdTenant, createTenantBody, tenant, tenantParams, updateTenantBody } from './schemas.ts';
import type { TenancyService } from './service.ts';

/** The tenant's first administrator, created with the tenant (the identity and access modules do it). */
export interface TenantOnboarding {
  adminSchema: typeof createUserBody;
  /** Refuses a bad admin (e.g. a weak password) before the tenant exists. */
  check(admin: CreateUserBody): Promise<void>;
  create(tenantId: string, admin: CreateUserBody): Promise<{ id: string; email: string }>;
}

const tags = ['tenants'];

/** Tenant management: platform-operator routes. Offboarding (DELETE) arrives with the backups module. */
export const tenancyRoutes: RoutePlugin<{ tenancy: TenancyService; onboarding: TenantOnboarding }> = async (app, { tenancy, onboarding }) => {
  const body = Type.Object(
    {
      ...createTenantBody.properties,
      admin: Type.Optional({
        ...onboarding.adminSchema,
        description: "The tenant's first user, with the tenant-admin role. A password must meet the default password policy.",
      }),
    },
    { additionalProperties: false },
  );

  app.post(
    '/v1/tenants',
    {
      config: { auth: 'operator', permission: 'platform:tenants:write' },
      schema: {
        tags,
        summary: 'Create a tenant',
        description:
          'Creates an active tenant in the given region (default: the first configured region), and with `admin` its first tenant-admin user. Operators cannot act inside a tenant without a support grant, so `admin` is how a new tenant gets someone who can.',
        body,
        response: { 201: createdTenant },
      },
    },
    async (request, reply) => {
      const { admin, ...fields } = request.body;
      if (admin !== undefined) await onboarding.check(admin);
      const created = await tenancy.create(fields);
      if (admin === undefined) return reply.code(201).send(created);
      return reply.code(201).send({ ...created, admin: await onboarding.create(created.id, admin) });
    },
  );

  app.get(
    '/v1/tenants',
    {
      config: { auth: 'operator', permission: 'platform:tenants:read' },
      schema: { tags, summary: 'List tenants', description: 'Keyset-paged by id.', querystring: pageQuery, response: { 200: pageOf(tenant) } },
    },
    async (request) => tenancy.list(request.query.limit ?? 50, request.query.cursor),
  );

  app.get(
    '/v1/tenants/:tenantId',
    {
      config: { auth: 'operator', permission: 'platform:tenants:read' },
      schema: { tags, summary: 'Get a tenant', params: tenantParams, response: { 200: tenant } },
    },
    async (request) => tenancy.get(request.params.tenantId),
  );

  app.patch(
    '/v1/tenants/:tenantId',
    {
      config: { auth: 'operator', permission: 'platform:tenants:write' },
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
