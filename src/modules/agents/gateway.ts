import type { X509Certificate } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { isId } from '../../platform/ids.ts';
import { type AgentBusAccess, type AgentBusCredentials, agentPermissions } from '../bus/access.ts';
import { type Bus, BusPermissionError, BusUnavailableError } from '../bus/bus.ts';
import { agentCertificate, gatewayBody, gatewayParams } from './schemas.ts';
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
    /** The agent whose token or client certificate a gateway request carries (set by the gateway's own hook). */
    agent: AgentIdentity | null;
  }
}

const bearer = /^Bearer ([\x21-\x7e]{1,4096})$/i;

/**
 * The client certificate of the request's TLS connection, if the listener asked for one and the client sent
 * one. The listener does not judge it (`rejectUnauthorized: false`): the handshake proved the client holds its
 * key, and `AgentsService.authenticateCertificate` decides whether it names an agent.
 */
function peerCertificate(request: FastifyRequest): X509Certificate | undefined {
  const socket = request.raw.socket;
  return socket instanceof TLSSocket ? socket.getPeerX509Certificate() : undefined;
}

/**
 * The agents' routes with an agent credential: `POST /v1/agents/{agentId}/messages`, the way onto the bus
 * without a NATS connection, and `POST /v1/agents/{agentId}/certificate`, a fresh client certificate. Public
 * to the framework; the routes' own hook checks the agent before the body is read, by its token (an
 * `Authorization` header) or else by its TLS client certificate (uncached either way: a revoked agent is
 * refused at its next request). Every message goes through the bus's permission-checking view with the
 * agent's permissions, the ones NATS would enforce on its user.
 */
export const agentGatewayRoutes: RoutePlugin<{ agents: AgentsService; bus: Pick<Bus, 'scoped'> }> = async (app, { agents, bus }) => {
  app.decorateRequest('agent', null);

  const authenticateAgent = async (request: FastifyRequest): Promise<void> => {
    const header = request.headers.authorization;
    // An explicit header is the credential when there is one; a certificate is considered only without it.
    const peer = header === undefined ? peerCertificate(request) : undefined;
    if (header === undefined && peer === undefined) throw new BulwarkError('unauthenticated', { headers: { 'www-authenticate': 'Bearer' } });
    let identity: AgentIdentity | null;
    if (peer !== undefined) {
      identity = await agents.authenticateCertificate(peer);
    } else {
      const token = bearer.exec(header ?? '')?.[1];
      identity = token === undefined ? null : await agents.authenticate(token);
    }
    // A certificate that proves no active agent gets the answer of a bad token.
    if (identity === null) throw new BulwarkError('invalid_credentials', { headers: { 'www-authenticate': 'Bearer error="invalid_token"' } });
    // A malformed path id is left to validation (400), as on every route; a well-formed other one is not the token's.
    const pathAgent = (request.params as { agentId?: string }).agentId ?? '';
    if (isId(pathAgent) && pathAgent !== identity.agentId) throw new BulwarkError('forbidden', { message: 'An agent’s credential is good only on its own agent’s path.' });
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
          "The in-process bus's gateway for agents. Authenticated by the agent token (`Authorization: Bearer bwag_...`) or, without that header, by the agent's TLS client certificate (mutual TLS, when the server requests client certificates), checked by this route itself (so it shows no bearer security here): 401 without a credential or with a wrong, expired or revoked one, 403 when it is another agent's. The agent may publish only on its own subjects (`bulwark.t.<tenantId>.agents.<agentId>.>`; 403 forbidden otherwise, and nothing is delivered). Reports go to `.heartbeat`, `.health` and `.stats`.",
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

  app.post(
    '/v1/agents/:agentId/certificate',
    {
      config: { auth: 'public' },
      onRequest: authenticateAgent,
      schema: {
        tags: ['agents'],
        summary: "Renew an agent's client certificate",
        description:
          "A fresh client certificate (valid BULWARK_AGENT_CERTIFICATE_DAYS) over the key the agent paired with, signed by its tenant's agent CA, audited as `agent.certificate.issue`. Authenticated like the gateway, by the agent token or the agent's current client certificate, checked by this route itself: 401 without a credential or with a wrong, expired or revoked one, 403 when it is another agent's, 409 for an agent paired with an X25519 key (no certificate for a key that cannot sign). Earlier certificates stay valid until they expire. No body.",
        params: gatewayParams,
        response: { 201: agentCertificate },
      },
    },
    async (request, reply) => {
      const identity = request.agent;
      if (identity === null) throw new BulwarkError('unauthenticated', { detail: 'gateway hook did not run' });
      return reply.code(201).send(await agents.renewCertificate(identity));
    },
  );
};
