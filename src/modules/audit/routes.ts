import { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import { toCsvRow } from './export-format.ts';
import {
  auditExportQuery,
  auditPage,
  auditQuery,
  auditSettings,
  auditSettingsBody,
  auditSummary,
  auditSummaryQuery,
  checkpointKey,
  checkpointList,
  verifyReport,
} from './schemas.ts';
import { type AuditRecord, type AuditScope, type AuditService, decodeSeqCursor } from './service.ts';
import type { EventFilter } from './store.ts';

const tags = ['audit'];

const csvColumns = [
  'seq',
  'id',
  'occurredAt',
  'actorKind',
  'actorId',
  'action',
  'targetType',
  'targetId',
  'outcome',
  'requestId',
  'sessionId',
  'personalData',
  'source',
  'userAgent',
  'email',
  'detail',
  'hash',
  'prevHash',
] as const;

function csvCells(event: AuditRecord): (string | number | null)[] {
  return [
    event.seq,
    event.id,
    event.occurredAt,
    event.actor.kind,
    event.actor.id,
    event.action,
    event.target?.type ?? null,
    event.target?.id ?? null,
    event.outcome,
    event.requestId,
    event.sessionId,
    event.personalData,
    event.source,
    event.userAgent,
    event.email,
    JSON.stringify(event.detail),
    event.hash,
    event.prevHash,
  ];
}

interface FilterQuery {
  from?: string | undefined;
  to?: string | undefined;
  actorKind?: string | undefined;
  actorId?: string | undefined;
  action?: string | undefined;
  targetType?: string | undefined;
  targetId?: string | undefined;
  outcome?: string | undefined;
  requestId?: string | undefined;
}

function filterOf(query: FilterQuery): EventFilter {
  const prefix = query.action?.endsWith('.*') === true ? query.action.slice(0, -2) : undefined;
  return {
    from: query.from === undefined ? undefined : new Date(query.from),
    to: query.to === undefined ? undefined : new Date(query.to),
    actorKind: query.actorKind,
    actorId: query.actorId,
    ...(prefix === undefined ? { action: query.action } : { actionPrefix: prefix }),
    targetType: query.targetType,
    targetId: query.targetId,
    outcome: query.outcome,
    requestId: query.requestId,
  };
}

/**
 * The audit trail's routes, once for a tenant's chain (`/v1/tenants/{tenantId}/audit...`, permissions
 * audit:*) and once for the platform's (`/v1/audit...`, platform:audit:*): query, streamed export, summary,
 * verification, retention. Reading the trail is itself audited where it hands out personal data in bulk
 * (exports) or runs a verification.
 */
export const auditRoutes: RoutePlugin<{ audit: AuditService }> = async (app, { audit }) => {
  const chains = [
    {
      base: '/v1/tenants/:tenantId/audit',
      auth: 'tenant' as const,
      read: 'audit:read',
      write: 'audit:write',
      params: tenantParams,
      scopeOf: (request: FastifyRequest) => ({ tenantId: (request.params as { tenantId: string }).tenantId }) as AuditScope,
      what: "the tenant's",
    },
    {
      base: '/v1/audit',
      auth: 'operator' as const,
      read: 'platform:audit:read',
      write: 'platform:audit:write',
      params: undefined,
      scopeOf: (): AuditScope => 'platform',
      what: "the platform's (operators' and the platform's own actions)",
    },
  ];

  for (const chain of chains) {
    const params = chain.params === undefined ? {} : { params: chain.params };

    app.get(
      chain.base,
      {
        config: { auth: chain.auth, permission: chain.read },
        schema: {
          tags,
          summary: `Query ${chain.what} audit trail`,
          description: 'Newest first, keyset-paged by sequence number. Filters combine (AND). Personal data is shown where its subject has not been erased.',
          ...params,
          querystring: auditQuery,
          response: { 200: auditPage },
        },
      },
      async (request) => {
        const query = request.query;
        return audit.query(chain.scopeOf(request), filterOf(query), query.limit ?? 50, decodeSeqCursor(query.cursor));
      },
    );

    app.get(
      `${chain.base}/export`,
      {
        // A tenant's exports spend its `export` bucket; an operator's, only the operator's own.
        config: { auth: chain.auth, permission: chain.read, rateLimit: { bucket: 'export' } },
        schema: {
          tags,
          summary: `Export ${chain.what} audit trail`,
          description:
            'Streamed oldest first, in constant memory: NDJSON (one event per line) or CSV (a header row; cells that a spreadsheet would run as a formula are prefixed with an apostrophe). The export is audited (`audit.export`) before the first byte.',
          ...params,
          querystring: auditExportQuery,
          // A stream, not serialised by a schema: documented by its media types.
          response: {
            200: {
              description: 'The events, oldest first.',
              content: { 'application/x-ndjson': { schema: Type.String() }, 'text/csv': { schema: Type.String() } },
            },
          },
        },
      },
      async (request, reply) => {
        const scope = chain.scopeOf(request);
        const { format = 'ndjson', ...query } = request.query;
        const filter = filterOf(query);
        await audit.recordAlone(scope, { action: 'audit.export', detail: { format, filter: { ...query } } });
        const events = audit.export(scope, filter);
        const lines = async function* () {
          if (format === 'csv') yield toCsvRow([...csvColumns]);
          for await (const batch of events) {
            yield batch.map((event) => (format === 'csv' ? toCsvRow(csvCells(event)) : `${JSON.stringify(event)}\n`)).join('');
          }
        };
        return reply
          .type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson')
          .header('content-disposition', `attachment; filename="audit.${format}"`)
          // The declared 200 is text for the schema's sake; Fastify pipes a stream as it is.
          .send(Readable.from(lines()) as unknown as string);
      },
    );

    app.get(
      `${chain.base}/summary`,
      {
        config: { auth: chain.auth, permission: chain.read },
        schema: {
          tags,
          summary: `Counts of ${chain.what} audit events`,
          description: 'By action, by actor and by outcome, over the filter (e.g. a period with from and to).',
          ...params,
          querystring: auditSummaryQuery,
          response: { 200: auditSummary },
        },
      },
      async (request) => audit.summary(chain.scopeOf(request), filterOf(request.query)),
    );

    app.post(
      `${chain.base}/verify`,
      {
        config: { auth: chain.auth, permission: chain.read },
        schema: {
          tags,
          summary: `Verify ${chain.what} audit chain`,
          description:
            'Walks the chain from its oldest kept event: every sequence number present, every link and hash right, every checkpoint signed and matching, the head matching the last event. `firstBreak` names the first sequence number from which it does not hold. The verification is audited.',
          ...params,
          response: { 200: verifyReport },
        },
      },
      async (request) => {
        const scope = chain.scopeOf(request);
        const report = await audit.verify(scope);
        await audit.recordAlone(scope, { action: 'audit.verify', outcome: report.ok ? 'success' : 'failure', detail: { ...report } });
        return report;
      },
    );

    app.get(
      `${chain.base}/checkpoints`,
      {
        config: { auth: chain.auth, permission: chain.read },
        schema: {
          tags,
          summary: `The signed checkpoints of ${chain.what} audit chain`,
          description: 'Oldest first. Each signs (scope, seq, hash, kind, signedAt) with the key at /v1/audit/checkpoint-key, so the chain can be checked outside Bulwark.',
          ...params,
          response: { 200: checkpointList },
        },
      },
      async (request) => ({ items: await audit.checkpoints(chain.scopeOf(request)) }),
    );

    app.get(
      `${chain.base}/settings`,
      {
        config: { auth: chain.auth, permission: chain.read },
        schema: { tags, summary: `Retention of ${chain.what} audit trail`, ...params, response: { 200: auditSettings } },
      },
      async (request) => audit.retention(chain.scopeOf(request)),
    );

    app.put(
      `${chain.base}/settings`,
      {
        config: { auth: chain.auth, permission: chain.write },
        schema: {
          tags,
          summary: `Set the retention of ${chain.what} audit trail`,
          description:
            'Events older than `retentionDays` are pruned by a periodic job. A signed retention checkpoint keeps the boundary, so the chain still verifies from the oldest kept event.',
          ...params,
          body: auditSettingsBody,
          response: { 200: auditSettings },
        },
      },
      async (request) => {
        const scope = chain.scopeOf(request);
        await audit.setRetention(scope, request.body.retentionDays);
        return audit.retention(scope);
      },
    );
  }

  app.get(
    '/v1/audit/checkpoint-key',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'The public key of the audit checkpoints',
        description: 'Ed25519. A checkpoint signature covers `["bulwark/audit/checkpoint/v1", scope, seq, hash hex, kind, signedAt]` as JSON (docs/audit.md).',
        response: { 200: checkpointKey },
      },
    },
    async (_request, reply) => {
      const { keyId, publicKey } = await audit.checkpointKey();
      void reply.header('cache-control', 'public, max-age=300');
      const jwk = publicKey.export({ format: 'jwk' });
      return {
        keyId,
        algorithm: 'Ed25519' as const,
        publicKey: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
        jwk: { kty: String(jwk.kty), crv: String(jwk.crv), x: String(jwk.x), kid: keyId },
      };
    },
  );
};
