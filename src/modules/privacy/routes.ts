import { Readable } from 'node:stream';
import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { heldPermissions } from '../../platform/http/auth.ts';
import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import type { AccessService } from '../access/service.ts';
import type { AuditRecorder, SubjectAuditRecord } from '../audit/service.ts';
import type { Clock } from '../../platform/clock.ts';
import { userParams } from '../identity/schemas.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import { createHoldBody, deferred, erased, eraseBody, erasureRequest, holdParams, inventory, legalHold, releasedHold, subjectExport, type SubjectExportDocument, type SubjectExportHead } from './schemas.ts';
import type { PrivacyService, Requester } from './service.ts';
import { type TenantExportSources, tenantExportLines } from './tenant-export.ts';

const tags = ['privacy'];

/** `user:<id>`, `api-key:<id>` or `operator:<id>`: who placed, released or asked, as the rows name them. */
function requesterOf(request: FastifyRequest): Requester {
  const { principal } = request;
  if (principal === null) throw new BulwarkError('unauthenticated');
  return `${principal.kind}:${principal.id}`;
}

/**
 * The copy as one JSON document, streamed: the head as it is, then the events batch by batch, so a user
 * with years of logins costs constant memory.
 */
async function* exportDocument(head: SubjectExportHead, events: AsyncIterable<SubjectAuditRecord[]>): AsyncGenerator<string> {
  const text = JSON.stringify(head);
  yield `${text.slice(0, -1)},"auditEvents":[`;
  let first = true;
  for await (const batch of events) {
    if (batch.length === 0) continue;
    yield `${first ? '' : ','}${batch.map((event) => JSON.stringify(event)).join(',')}`;
    first = false;
  }
  yield ']}';
}

/**
 * Personal data: legal holds, a user's copy (GDPR Art. 15 and 20), erasure (Art. 17) and its register, and
 * the operator's inventory of where personal data lives (Art. 30).
 */
export const privacyRoutes: RoutePlugin<{ privacy: PrivacyService; access: AccessService; tenantExport: TenantExportSources & { audit: AuditRecorder; clock: Clock } }> = async (
  app,
  { privacy, access, tenantExport },
) => {
  app.get(
    '/v1/tenants/:tenantId/export',
    {
      config: { auth: 'tenant', permission: 'data:export', rateLimit: { bucket: 'export' } },
      schema: {
        tags,
        summary: "Export all of the tenant's data",
        description:
          'One NDJSON archive, streamed: a `header` line, then every `user` (with its roles), `role`, `record` (decrypted) and `audit-event`. Secrets stay write-only and are not in it. Nothing is written to storage: the archive goes only to the caller. Audited (`tenant.export`) before the first byte.',
        params: tenantParams,
        response: { 200: { description: 'The archive.', content: { 'application/x-ndjson': { schema: Type.String() } } } },
      },
    },
    async (request, reply) => {
      const { tenantId } = request.params;
      await tenantExport.audit.recordAlone({ tenantId }, { action: 'tenant.export', target: { type: 'tenant', id: tenantId } });
      return reply
        .type('application/x-ndjson')
        .header('content-disposition', `attachment; filename="tenant-${tenantId}.ndjson"`)
        .send(Readable.from(tenantExportLines(tenantExport, tenantId, tenantExport.clock.now())) as unknown as string);
    },
  );


  const holds = '/v1/tenants/:tenantId/legal-holds';

  app.post(
    holds,
    {
      config: { auth: 'tenant', permission: 'legal-holds:write' },
      bodyLimit: 4096,
      schema: {
        tags,
        summary: 'Place a legal hold',
        description:
          'On the whole tenant, or on one user (`userId`). While it is in force, erasure of the data it covers waits (answered 202 deferred), the users it covers cannot be deleted, and the tenant cannot be offboarded (409 legal_hold_active, naming the hold). Support access cannot place or release holds.',
        params: tenantParams,
        body: createHoldBody,
        response: { 201: legalHold },
      },
    },
    async (request, reply) => reply.code(201).send(await privacy.createHold(request.params.tenantId, request.body, requesterOf(request))),
  );

  app.get(
    holds,
    {
      config: { auth: 'tenant', permission: 'legal-holds:read' },
      schema: { tags, summary: 'List legal holds', description: 'By id; released holds included (`active: false`).', params: tenantParams, querystring: pageQuery, response: { 200: pageOf(legalHold) } },
    },
    async (request) => privacy.listHolds(request.params.tenantId, request.query.limit ?? 50, request.query.cursor),
  );

  app.get(
    `${holds}/:holdId`,
    { config: { auth: 'tenant', permission: 'legal-holds:read' }, schema: { tags, summary: 'Read a legal hold', params: holdParams, response: { 200: legalHold } } },
    async (request) => privacy.getHold(request.params.tenantId, request.params.holdId),
  );

  app.delete(
    `${holds}/:holdId`,
    {
      config: { auth: 'tenant', permission: 'legal-holds:write' },
      schema: {
        tags,
        summary: 'Release a legal hold',
        description:
          'The hold stays listed, with `releasedAt` and `releasedBy`. Erasure requests it deferred run now if no other hold covers their user (`erasuresCompleted`). Releasing a released hold answers 409 conflict.',
        params: holdParams,
        response: { 200: releasedHold },
      },
    },
    async (request) => privacy.releaseHold(request.params.tenantId, request.params.holdId, requesterOf(request)),
  );

  app.get(
    '/v1/tenants/:tenantId/users/:userId/export',
    {
      // A copy of someone's personal data: charged to the tenant's `export` bucket, like the audit export.
      config: { auth: 'tenant', permission: 'privacy:export', rateLimit: { bucket: 'export' } },
      schema: {
        tags,
        summary: "Export a user's data (data subject access)",
        description:
          "Everything Bulwark holds about the user, decrypted, as one JSON document (an attachment): profile, roles, sessions, second factors (never their secrets), SSO links, legal holds and erasure requests naming them, and every audit event they did, that was done to them or that holds their personal data. Another person's personal data in those events (the admin's address) is withheld. Audited (`privacy.export`) before the first byte. Personal data the tenant keeps in its own records is not included: it is the tenant's content (docs/privacy.md).",
        params: userParams,
        response: { 200: { description: 'The data subject export.', content: { 'application/json': { schema: subjectExport } } } },
      },
    },
    async (request, reply) => {
      const { tenantId, userId } = request.params;
      const { head, events } = await privacy.exportUser(tenantId, userId);
      return reply
        .type('application/json; charset=utf-8')
        .header('content-disposition', `attachment; filename="user-${userId}.json"`)
        // The declared schema documents the document; Fastify pipes a stream as it is.
        .send(Readable.from(exportDocument(head, events)) as unknown as SubjectExportDocument);
    },
  );

  app.post(
    '/v1/tenants/:tenantId/users/:userId/erase',
    {
      config: { auth: 'tenant', permission: 'privacy:erase' },
      bodyLimit: 4096,
      schema: {
        tags,
        summary: "Erase a user's personal data",
        description:
          "Without a legal hold over the user: the user and everything hanging off them is deleted (sessions revoked first) and their audit subject key destroyed, so their personal data in the audit trail no longer opens while the trail keeps their random id and still verifies: 200 with the counts removed. With a hold: nothing is deleted; the user is disabled, their sessions end, and the request waits until the last hold over them is released: 202 deferred, naming the holds. Like deleting a user, it needs every permission the user holds; the tenant's last active tenant-admin is refused (409 conflict). Send `{}` or `{ \"reason\": \"...\" }`.",
        params: userParams,
        body: eraseBody,
        response: { 200: erased, 202: deferred },
      },
    },
    async (request, reply) => {
      const { tenantId, userId } = request.params;
      await access.assertMayManage(tenantId, userId, heldPermissions(request));
      const outcome = await privacy.erase(tenantId, userId, request.body, requesterOf(request));
      return reply.code(outcome.outcome === 'erased' ? 200 : 202).send(outcome);
    },
  );

  app.get(
    '/v1/tenants/:tenantId/erasure-requests',
    {
      config: { auth: 'tenant', permission: 'privacy:read' },
      schema: {
        tags,
        summary: 'List erasure requests',
        description: 'The register of erasures, by id: completed ones with the counts they removed, pending ones with the holds that defer them. Users are named by id only.',
        params: tenantParams,
        querystring: pageQuery,
        response: { 200: pageOf(erasureRequest) },
      },
    },
    async (request) => privacy.listErasureRequests(request.params.tenantId, request.query.limit ?? 50, request.query.cursor),
  );

  app.get(
    '/v1/privacy/inventory',
    {
      config: { auth: 'operator', permission: 'platform:privacy:read' },
      schema: {
        tags,
        summary: 'The inventory of personal data',
        description:
          'Every column that holds personal data or ties a row to a person: what it holds, why, on which basis, for how long, and how it is protected. Generated at request time from the `pii:` annotations on the columns of the running database, so it matches the schema that is deployed.',
        response: { 200: inventory },
      },
    },
    async () => privacy.inventory(),
  );
};
