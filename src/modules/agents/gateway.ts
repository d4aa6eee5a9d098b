import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { isId } from '../../platform/ids.ts';
import { type AgentBusAccess, type AgentBusCredentials, agentPermissions } from '../bus/access.ts';
import { type Bus, BusPermissionError, BusUnavailableError } from '../bus/bus.ts';
import { gatewayBody, gatewayParams } from './schemas.ts';
import type { AgentIdentity, AgentsService } from './service.ts';

/**
 * Bus access for agents of the in-process bus: nothing to issue (the agent uses its token against the
 * gateway), nothing to take back (the gateway reads the agent's status on every message, so revoking the
 * agent is all it takes).
 */
export class InProcessAgentAccess implements AgentBusAccess {
  issue(): Promise<AgentBusCredentials> {
    return Promise.resolve({ kind: 'http' });
  }

  revoke(): Promise<void> {
    return Promise.resolve();
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The agent whose token a gateway request carries (set by the gateway's own hook). */
    agent: AgentIdentity | null;
  }
}

const bearer = /^Bearer ([\x21-\x7e]{1,4096})$/i;

/**
 * The agents' way onto the bus without a NATS connection: `POST /v1/agents/{agentId}/messages`. Public to
 * the framework; the route's own hook checks the agent token before the body is read (uncached: a revoked
 * agent is refused at its next message), and every message goes through the bus's permission-checking view
 * with the agent's permissions, the ones NATS would enforce on its user.
 */
export const agentGatewayRoutes: RoutePlugin<{ agents: AgentsService; bus: Pick<Bus, 'scoped'> }> = async (app, { agents, bus }) => {
  app.decorateRequest('agent', null);

  const authenticateAgent = async (request: FastifyRequest): Promise<void> => {
    const header = request.headers.authorization;
    if (header === undefined) throw new BulwarkError('unauthenticated', { headers: { 'www-authenticate': 'Bearer' } });
    const token = bearer.exec(header)?.[1];
    const identity = token === undefined ? null : await agents.authenticate(token);
    if (identity === null) throw new BulwarkError('invalid_credentials', { headers: { 'www-authenticate': 'Bearer error="invalid_token"' } });
    // A malformed path id is left to validation (400), as on every route; a well-formed other one is not the token's.
    const pathAgent = (request.params as { agentId?: string }).agentId ?? '';
    if (isId(pathAgent) && pathAgent !== identity.agentId) throw new BulwarkError('forbidden', { message: 'An agent token sends only on its own agent’s path.' });
    if (!(await agents.tenantActive(identity.tenantId))) throw new BulwarkError('tenant_suspended');
    request.agent = identity;
    request.auditContext.actor = { kind: 'agent', id: identity.agentId };
    request.log = request.log.child({ principal: `agent:${identity.agentId}`, tenantId: identity.tenantId });
    await agents.prepareActor(identity);
  };

  app.post(
    '/v1/agents/:agentId/messages',
    {
      config: { auth: 'public' },
      bodyLimit: 16 * 1024,
      onRequest: authenticateAgent,
      schema: {
        tags: ['agents'],
        summary: 'Publish a message as an agent',
        description:
          "The in-process bus's gateway for agents. Authenticated by the agent token (`Authorization: Bearer bwag_...`), checked by this route itself (so it shows no bearer security here): 401 without or with a wrong or revoked token, 403 when the token is another agent's. The agent may publish only on its own subjects (`bulwark.t.<tenantId>.agents.<agentId>.>`; 403 forbidden otherwise, and nothing is delivered). Reports go to `.heartbeat`, `.health` and `.stats`.",
        params: gatewayParams,
        body: gatewayBody,
        response: { 204: Type.Null({ description: 'Published.' }) },
      },
    },
    async (request, reply) => {
      const identity = request.agent;
      if (identity === null) throw new BulwarkError('unauthenticated', { detail: 'gateway hook did not run' });
      try {
        await bus.scoped(agentPermissions(identity.tenantId, identity.agentId)).publish(request.body.subject, request.body.payload);
      } catch (error) {
        if (error instanceof BusPermissionError) {
          throw new BulwarkError('forbidden', { message: 'An agent publishes only on its own subjects (bulwark.t.<tenantId>.agents.<agentId>.>).', cause: error });
        }
        if (error instanceof BusUnavailableError) throw new BulwarkError('service_unavailable', { message: 'The bus cannot take messages now; retry.', cause: error });
        if (error instanceof TypeError) throw new BulwarkError('validation_failed', { message: 'The payload is not a JSON value the bus carries.', cause: error });
        throw error;
      }
      return reply.code(204).send(null);
    },
  );
};
