import { Type } from 'typebox';
import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { collectionParams, conditionalHeaders, record, recordBody, recordParams } from './schemas.ts';
import { etagOf, type RecordsService } from './service.ts';

const tags = ['records'];
const base = '/v1/tenants/:tenantId/collections/:collection/records';
const writeHeaders = Type.Object({
  'if-match': conditionalHeaders.properties['if-match'],
  'if-none-match': Type.Optional(Type.String({ pattern: '^\\*$', description: '`*`: create only; 412 if the record exists.' })),
});
const deleteHeaders = Type.Object({ 'if-match': conditionalHeaders.properties['if-match'] });

/** The tenant data store: JSON records in named collections, isolated per tenant by RLS. */
export const recordsRoutes: RoutePlugin<{ records: RecordsService; recordMaxBytes: number }> = async (app, { records, recordMaxBytes }) => {
  // Room for the JSON envelope around `data`; the exact limit is enforced on the serialised record.
  const bodyLimit = recordMaxBytes + 1024;

  app.get(
    base,
    {
      config: { auth: 'tenant', permission: 'records:read' },
      schema: {
        tags,
        summary: 'List records of a collection',
        description: 'Keyset-paged by record id; a cursor stays valid while records are added or removed.',
        params: collectionParams,
        querystring: pageQuery,
        response: { 200: pageOf(record) },
      },
    },
    async (request) => records.list(request.params.tenantId, request.params.collection, request.query.limit ?? 50, request.query.cursor),
  );

  app.post(
    base,
    {
      config: { auth: 'tenant', permission: 'records:write' },
      bodyLimit,
      schema: { tags, summary: 'Create a record with a server-chosen id', params: collectionParams, body: recordBody, response: { 201: record } },
    },
    async (request, reply) => {
      const created = await records.create(request.params.tenantId, request.params.collection, request.body.data);
      return reply
        .code(201)
        .header('etag', etagOf(created.version))
        .header('location', `/v1/tenants/${request.params.tenantId}/collections/${created.collection}/records/${created.id}`)
        .send(created);
    },
  );

  app.get(
    `${base}/:recordId`,
    {
      config: { auth: 'tenant', permission: 'records:read' },
      schema: { tags, summary: 'Get a record', description: 'The ETag header carries the version.', params: recordParams, response: { 200: record } },
    },
    async (request, reply) => {
      const found = await records.get(request.params.tenantId, request.params.collection, request.params.recordId);
      return reply.header('etag', etagOf(found.version)).send(found);
    },
  );

  app.put(
    `${base}/:recordId`,
    {
      config: { auth: 'tenant', permission: 'records:write' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Create or replace a record',
        description:
          'Optimistic concurrency: `If-Match: "<version>"` replaces only that version (412 otherwise); `If-None-Match: *` only creates.',
        params: recordParams,
        headers: writeHeaders,
        body: recordBody,
        response: { 200: record, 201: record },
      },
    },
    async (request, reply) => {
      const { tenantId, collection, recordId } = request.params;
      const { record: stored, created } = await records.put(tenantId, collection, recordId, request.body.data, {
        ifMatch: request.headers['if-match'],
        ifNoneMatch: request.headers['if-none-match'],
      });
      return reply.code(created ? 201 : 200).header('etag', etagOf(stored.version)).send(stored);
    },
  );

  app.delete(
    `${base}/:recordId`,
    {
      config: { auth: 'tenant', permission: 'records:write' },
      schema: {
        tags,
        summary: 'Delete a record',
        description: '`If-Match` makes the delete conditional on the version.',
        params: recordParams,
        headers: deleteHeaders,
        response: { 204: Type.Null({ description: 'Deleted.' }) },
      },
    },
    async (request, reply) => {
      const { tenantId, collection, recordId } = request.params;
      await records.delete(tenantId, collection, recordId, { ifMatch: request.headers['if-match'] });
      return reply.code(204).send(null);
    },
  );
};
