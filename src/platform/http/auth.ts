import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BulwarkError } from '../errors/bulwark-error.ts';
import { isId } from '../ids.ts';
import { type Actor, type RequestContext, runInRequest } from './request-context.ts';

/** Who is calling. New credential kinds (JWT sessions, services, agents) add a member here. */
export type Principal =
  /** A platform operator logged in with an access token; `role` is its platform role as of this request. */
  | { kind: 'operator'; id: string; sessionId: string; role: string }
  | { kind: 'api-key'; id: string; tenantId: string; scopes: readonly string[] }
  | { kind: 'user'; id: string; tenantId: string; sessionId: string };

/** One credential type. The hook asks each in turn whether a bearer token has its shape. */
export interface Authenticator {
  accepts(token: string): boolean;
  /** Resolves the principal, or null when the token is unknown, revoked or expired. */
  authenticate(token: string): Promise<Principal | null>;
}

/**
 * Who may call a route. `tenant` routes carry `:tenantId`: operators reach any tenant, a tenant-bound
 * principal only its own (another tenant's path answers 404, as if it did not exist). `self` routes are a
 * logged-in person's own (a tenant user or an operator, with an access token; never an API key).
 */
export type RouteAuth = 'public' | 'operator' | 'tenant' | 'self';

/** What the caller may do in the tenant, as decided for this request. */
export interface AccessDecision {
  permissions: ReadonlySet<string>;
  /** Set when an operator acts through a tenant's support-access grant. */
  grantId?: string;
}

/** Decides whether a principal holds a route's permission; throws 403 when it does not. */
export interface Authorizer {
  /** A tenant route: the permission in that tenant. */
  authorize(principal: Principal, tenantId: string, permission: string): Promise<AccessDecision>;
  /** An operator route: a platform permission. */
  authorizePlatform(principal: Principal, permission: string): void;
}

export type TenantStatus = 'active' | 'suspended' | 'offboarding' | 'deleted';

export interface TenantGate {
  status(tenantId: string): Promise<TenantStatus | null>;
}

/** What the auth hook (and admission control) need of the audit trail: refusals are recorded, and the actor's key made ready. */
export interface AccessAudit {
  prepareSubject(scope: { tenantId: string } | 'platform', actor: Actor): Promise<void>;
  recordAlone(
    scope: { tenantId: string } | 'platform',
    event: { action: 'access.denied' | 'limit.exceeded'; outcome: 'denied'; detail: Record<string, unknown>; target?: { type: string; id: string } },
  ): Promise<unknown>;
}

/**
 * Admission control (the limits module) at the three points of authentication: before it (anonymous
 * calls, and addresses over their budget of failures), after a failure, and right after success, before
 * authorization and any database work of the route.
 */
export interface Admission {
  beforeAuthentication(request: FastifyRequest, reply: FastifyReply, isPublic: boolean): Promise<void>;
  authenticationFailed(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  admit(request: FastifyRequest, reply: FastifyReply, principal: Principal): Promise<void>;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    /** The request as the audit trail sees it; handlers run inside it (see request-context.ts). */
    auditContext: RequestContext;
    /** The caller's permissions in the route's tenant, set on tenant routes only (see `heldPermissions`). */
    permissions: ReadonlySet<string> | null;
  }
  interface FastifyContextConfig {
    auth?: RouteAuth;
    /** The one permission a tenant or operator route requires (`resource:action`); checked at start-up. */
    permission?: string;
  }
}

export function tenantOf(principal: Principal): string | undefined {
  return principal.kind === 'operator' ? undefined : principal.tenantId;
}

/**
 * Authentication and tenant gating for every route, before the body is even parsed.
 * A route without an explicit `auth` is treated as operator-only (fail closed).
 */
export function actorOf(principal: Principal): Actor {
  return { kind: principal.kind, id: principal.id };
}

const maxUserAgentChars = 512;

export function registerAuth(
  app: FastifyInstance,
  authenticators: readonly Authenticator[],
  tenants: TenantGate,
  authorizer: Authorizer,
  audit: AccessAudit,
  admission: Admission,
): void {
  app.decorateRequest('principal', null);
  app.decorateRequest('permissions', null);
  app.decorateRequest('auditContext', null as unknown as RequestContext);

  // First of all hooks: the hooks after it run inside the request's context. The handler runs in it again
  // from a preHandler hook (below), because parsing the body leaves it.
  app.addHook('onRequest', (request, _reply, done) => {
    const userAgent = request.headers['user-agent'];
    request.auditContext = {
      requestId: request.id,
      source: request.ip,
      userAgent: typeof userAgent === 'string' ? userAgent.slice(0, maxUserAgentChars) : null,
      actor: null,
      sessionId: null,
      grantId: null,
    };
    runInRequest(request.auditContext, done);
  });
  app.addHook('preHandler', (request, _reply, done) => {
    runInRequest(request.auditContext, done);
  });

  app.addHook('onRequest', async (request, reply) => {
    // Unknown paths answer 404/405 to everyone: the route table is public (OpenAPI) anyway.
    if (request.is404) return;
    const auth = request.routeOptions.config.auth ?? 'operator';
    await admission.beforeAuthentication(request, reply, auth === 'public');
    if (auth === 'public') return;

    let principal: Principal;
    try {
      principal = await authenticate(request, authenticators);
    } catch (error) {
      await admission.authenticationFailed(request, reply);
      throw error;
    }
    request.principal = principal;
    request.auditContext.actor = actorOf(principal);
    if (principal.kind === 'user' || principal.kind === 'operator') request.auditContext.sessionId = principal.sessionId;
    const mutating = request.method !== 'GET' && request.method !== 'HEAD';
    const principalTenant = tenantOf(principal);
    const { tenantId } = request.params as { tenantId?: string };
    // Admission first: a flood's refusals must stay cheap, and the child logger (with its redaction) is not.
    await admission.admit(request, reply, principal);
    // One child logger per request; Fastify writes "request completed" through reply.log, so it shares it.
    request.log = request.log.child({
      principal: `${principal.kind}:${principal.id}`,
      ...(principal.kind === 'user' || principal.kind === 'operator' ? { sessionId: principal.sessionId } : {}),
      ...(principalTenant !== undefined ? { tenantId: principalTenant } : auth === 'tenant' && tenantId !== undefined && isId(tenantId) ? { tenantId } : {}),
    });
    reply.log = request.log;

    if (auth === 'operator') {
      const { permission } = request.routeOptions.config;
      if (permission === undefined) throw new BulwarkError('forbidden', { detail: 'route declares no permission' });
      if (principal.kind === 'operator') await audit.prepareSubject('platform', actorOf(principal));
      try {
        authorizer.authorizePlatform(principal, permission);
      } catch (error) {
        // An operator refused by its role is recorded; a tenant credential on a platform route is not the platform's.
        if (principal.kind === 'operator') await recordDenial(audit, 'platform', request.routeOptions.url, permission, error);
        throw error;
      }
      return;
    }
    if (auth === 'self') {
      if (principal.kind === 'operator') return;
      if (principal.kind !== 'user') throw new BulwarkError('forbidden', { message: 'This route is for a logged-in user or operator (an access token).' });
      const status = await tenants.status(principal.tenantId);
      if (status !== 'active') throw new BulwarkError(status === 'suspended' || status === 'offboarding' ? 'tenant_suspended' : 'invalid_credentials');
      return;
    }
    // A malformed id is left to schema validation (400); it can match no tenant anyway.
    if (tenantId === undefined || !isId(tenantId)) return;
    if (principalTenant !== undefined && principalTenant !== tenantId) throw new BulwarkError('not_found');
    const status = await tenants.status(tenantId);
    if (status === null || status === 'deleted') throw new BulwarkError('not_found');
    if (status !== 'active') throw new BulwarkError('tenant_suspended');
    const { permission } = request.routeOptions.config;
    // The start-up check makes this unreachable; refusing keeps a gap from ever failing open.
    if (permission === undefined) throw new BulwarkError('forbidden', { detail: 'route declares no permission' });
    // The actor's key is made ready before anything in this request may record an event with personal data.
    if (mutating || principal.kind === 'operator') await audit.prepareSubject({ tenantId }, actorOf(principal));
    let decision: AccessDecision;
    try {
      decision = await authorizer.authorize(principal, tenantId, permission);
    } catch (error) {
      await recordDenial(audit, { tenantId }, request.routeOptions.url, permission, error);
      throw error;
    }
    request.permissions = decision.permissions;
    if (decision.grantId !== undefined) {
      request.auditContext.grantId = decision.grantId;
      request.log = request.log.child({ supportGrantId: decision.grantId });
      reply.log = request.log;
      request.log.info({ permission }, 'support grant used');
    }
  });
}

/** An authenticated caller refused a permission: recorded in the scope it tried to act in. */
async function recordDenial(audit: AccessAudit, scope: { tenantId: string } | 'platform', route: string | undefined, permission: string, error: unknown): Promise<void> {
  if (!(error instanceof BulwarkError) || error.status !== 403) return;
  await audit.recordAlone(scope, { action: 'access.denied', outcome: 'denied', detail: { permission, route: route ?? null, code: error.code } });
}

/** The caller's permissions on a tenant route, for handlers that let a caller give some away. */
export function heldPermissions(request: FastifyRequest): ReadonlySet<string> {
  if (request.permissions === null) throw new BulwarkError('forbidden', { detail: 'no permissions resolved for this route' });
  return request.permissions;
}

async function authenticate(request: FastifyRequest, authenticators: readonly Authenticator[]): Promise<Principal> {
  const header = request.headers.authorization;
  if (header === undefined) {
    throw new BulwarkError('unauthenticated', { headers: { 'www-authenticate': 'Bearer' } });
  }
  const match = /^Bearer ([\x21-\x7e]{1,4096})$/i.exec(header);
  const token = match?.[1];
  const authenticator = token === undefined ? undefined : authenticators.find((candidate) => candidate.accepts(token));
  const principal = token !== undefined && authenticator ? await authenticator.authenticate(token) : null;
  if (principal === null) {
    throw new BulwarkError('invalid_credentials', { headers: { 'www-authenticate': 'Bearer error="invalid_token"' } });
  }
  return principal;
}
