import { Type } from 'typebox';
import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import { agent, agentParams, createPairingCodeBody, livePairingCode, pairBody, pairing, pairingCode, withdrawnCodes } from './schemas.ts';
import type { AgentsService } from './service.ts';

const tags = ['agents'];

/**
 * Agents of a tenant: pairing codes, the pairing itself (public: the code is the credential), the agent
 * list with each one's last reports, and revocation.
 */
export const agentRoutes: RoutePlugin<{ agents: AgentsService }> = async (app, { agents }) => {
  app.post(
    '/v1/tenants/:tenantId/agents/pairing-codes',
    {
      config: { auth: 'tenant', permission: 'agents:write' },
      bodyLimit: 4096,
      schema: {
        tags,
        summary: 'Create a pairing code',
        description:
          'The answer carries the code once: 8 characters, single use, valid for `ttlSeconds` (default BULWARK_AGENT_PAIRING_TTL_SECONDS). Only its keyed hash is stored. A tenant holds at most BULWARK_AGENT_PAIRING_MAX_LIVE_CODES unexpired codes (409 beyond).',
        params: tenantParams,
        body: createPairingCodeBody,
        response: { 201: pairingCode },
      },
    },
    async (request, reply) => reply.code(201).send(await agents.createPairingCode(request.params.tenantId, request.body)),
  );

  app.get(
    '/v1/tenants/:tenantId/agents/pairing-codes',
    {
      config: { auth: 'tenant', permission: 'agents:read' },
      schema: { tags, summary: 'List live pairing codes', description: 'Unexpired, unused codes; never the code itself.', params: tenantParams, querystring: pageQuery, response: { 200: pageOf(livePairingCode) } },
    },
    async (request) => agents.listPairingCodes(request.params.tenantId, request.query.limit ?? 50, request.query.cursor),
  );

  app.delete(
    '/v1/tenants/:tenantId/agents/pairing-codes',
    {
      config: { auth: 'tenant', permission: 'agents:write' },
      schema: {
        tags,
        summary: 'Withdraw every pairing code',
        description: 'No code of the tenant pairs any more (for a code seen where it should not have been). Paired agents stay.',
        params: tenantParams,
        response: { 200: withdrawnCodes },
      },
    },
    async (request) => agents.withdrawPairingCodes(request.params.tenantId),
  );

  app.post(
    '/v1/agents/pair',
    {
      config: { auth: 'public' },
      bodyLimit: 4096,
      schema: {
        tags,
        summary: 'Pair an agent',
        description:
          "No bearer credential: the pairing code is the credential, and it names the tenant the agent joins. The answer carries the agent token (`bwag_...`, shown once) and the agent's bus credentials: NATS credentials of its own when the server runs with NATS, else `{ kind: 'http' }` for the message gateway. An unknown, spent or expired code answers 401 invalid_pairing_code; after BULWARK_AGENT_PAIRING_MAX_FAILURES wrong codes from one address within BULWARK_AGENT_PAIRING_WINDOW_SECONDS the address gets 429 too_many_attempts, right codes included.",
        body: pairBody,
        response: { 201: pairing },
      },
    },
    async (request, reply) => reply.code(201).send(await agents.pair(request.body, request.ip)),
  );

  app.get(
    '/v1/tenants/:tenantId/agents',
    {
      config: { auth: 'tenant', permission: 'agents:read' },
      schema: { tags, summary: 'List agents', description: 'Revoked agents included. Never includes a token.', params: tenantParams, querystring: pageQuery, response: { 200: pageOf(agent) } },
    },
    async (request) => agents.list(request.params.tenantId, request.query.limit ?? 50, request.query.cursor),
  );

  app.get(
    '/v1/tenants/:tenantId/agents/:agentId',
    {
      config: { auth: 'tenant', permission: 'agents:read' },
      schema: { tags, summary: 'Read an agent', description: 'Its status, whether it is stale, when it was last heard from, its health and its latest stats.', params: agentParams, response: { 200: agent } },
    },
    async (request) => agents.get(request.params.tenantId, request.params.agentId),
  );

  app.delete(
    '/v1/tenants/:tenantId/agents/:agentId',
    {
      config: { auth: 'tenant', permission: 'agents:write' },
      schema: {
        tags,
        summary: 'Revoke an agent',
        description: 'Its token stops working at once, and its bus access is cut (with NATS, its connections are closed). Revoking a revoked agent changes nothing.',
        params: agentParams,
        response: { 204: Type.Null({ description: 'Revoked.' }) },
      },
    },
    async (request, reply) => {
      await agents.revoke(request.params.tenantId, request.params.agentId);
      return reply.code(204).send(null);
    },
  );
};
