import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { Type } from 'typebox';
import type { CreateUserBody, createUserBody } from '../identity/schemas.ts';
import type { OffboardingService } from './offboarding.ts';
import { createdTenant, createTenantBody, offboarding, tenant, tenantParams, updateTenantBody } from './schemas.ts';
import type { TenancyService } from './service.ts';

/** The tenant's first administrator, created with the tenant (the identity and access modules do it). */
export interface TenantOnboarding {
  adminSchema: typeof createUserBody;
  /** Refuses a bad admin (e.g. a weak password) before the tenant exists. */
  check(admin: CreateUserBody): Promise<void>;
  create(tenantId: string, admin: CreateUserBody): Promise<{ id: string; email: string }>;
}

const tags = ['tenants'];

/** Tenant management: platform-operator routes, offboarding (`DELETE`, then confirm) included. */
export const tenancyRoutes: RoutePlugin<{ tenancy: TenancyService; onboarding: TenantOnboarding; offboarding: OffboardingService }> = async (
  app,
  { tenancy, onboarding, offboarding: offboardings },
) => {
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

  app.delete(
    '/v1/tenants/:tenantId',
    {
      config: { auth: 'operator', permission: 'platform:tenants:offboard' },
      schema: {
        tags,
        summary: 'Request offboarding',
        description:
          "Starts the tenant's offboarding: its status becomes `offboarding`, so its tenant-scoped routes, logins and agents are refused, and nothing is destroyed yet. After the grace period (`confirmableAt`, BULWARK_OFFBOARDING_GRACE_HOURS) `POST .../offboarding/confirm` destroys the tenant; until then `POST .../offboarding/cancel` restores its status. 409 `legal_hold_active` (naming the holds in `holds`) while a legal hold is in force. Asking again answers the standing request.",
        params: tenantParams,
        response: { 202: offboarding },
      },
    },
    async (request, reply) => reply.code(202).send(await offboardings.request(request.params.tenantId)),
  );

  app.get(
    '/v1/tenants/:tenantId/offboarding',
    {
      config: { auth: 'operator', permission: 'platform:tenants:read' },
      schema: {
        tags,
        summary: 'Get the offboarding',
        description: 'The request (`requested`), a confirmation under way (`confirming`), or the result (`completed`) with the proof of what was destroyed; kept after the tenant is gone. 404 when no offboarding was requested.',
        params: tenantParams,
        response: { 200: offboarding },
      },
    },
    async (request) => offboardings.state(request.params.tenantId),
  );

  app.post(
    '/v1/tenants/:tenantId/offboarding/cancel',
    {
      config: { auth: 'operator', permission: 'platform:tenants:offboard' },
      schema: {
        tags,
        summary: 'Cancel the offboarding',
        description: 'Restores the status the tenant had before the request. 409 `conflict` once a confirmation has begun.',
        params: tenantParams,
        response: { 200: tenant },
      },
    },
    async (request) => offboardings.cancel(request.params.tenantId),
  );

  app.post(
    '/v1/tenants/:tenantId/offboarding/confirm',
    {
      config: { auth: 'operator', permission: 'platform:tenants:offboard' },
      schema: {
        tags,
        summary: 'Confirm the offboarding',
        description:
          "Destroys the tenant for good: exports its audit chain to the operator archive (when BULWARK_OFFBOARDING_AUDIT_ARCHIVE is on), revokes its agents' credentials, shreds it out of every backup (escrow key and segments), then in one transaction destroys its data keys and deletes every one of its rows, and records the proof (`tenant.offboard` in the platform audit trail); last, every tenant table is rewritten (VACUUM FULL), so no dead row version keeps its data. 409 `offboarding_grace_period` before `confirmableAt`, 409 `legal_hold_active` if a hold appeared. A confirmation that failed half way is finished by confirming again; confirming a completed offboarding answers its proof.",
        params: tenantParams,
        response: { 200: offboarding },
      },
    },
    async (request) => offboardings.confirm(request.params.tenantId),
  );
};
