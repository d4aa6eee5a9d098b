import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { BulwarkError } from '../../../platform/errors/bulwark-error.ts';
import { heldPermissions } from '../../../platform/http/auth.ts';
import type { RoutePlugin } from '../../../platform/http/route-kit.ts';
import type { IssuedRefresh } from '../../sessions/login-sessions.ts';
import { tokenResponse } from '../../sessions/auth-schemas.ts';
import type { TokenAnswer } from '../../sessions/token-answer.ts';
import { tenantParams } from '../../tenancy/schemas.ts';
import {
  acsBody,
  callbackQuery,
  claimDomainBody,
  connection,
  connectionList,
  connectionParams,
  createConnectionBody,
  discoverBody,
  discovery,
  domain,
  domainList,
  domainParams,
  ldapLoginBody,
  ssoPolicy,
  ssoPolicyBody,
  updateConnectionBody,
  updateDomainBody,
} from './schemas.ts';
import type { SsoService } from './service.ts';

const tags = ['sso'];
const bodyLimit = 64 * 1024;
// A SAML Response with its signatures and certificates: well under 256 KiB of base64.
const acsBodyLimit = 320 * 1024;
const flowCookie = (connectionId: string) => `bulwark_sso_${connectionId}`;

export interface SsoRouteServices {
  sso: SsoService;
  tokensFor: (issued: IssuedRefresh) => Promise<TokenAnswer>;
}

function cookieValue(request: FastifyRequest, name: string): string | undefined {
  for (const pair of (request.headers.cookie ?? '').split(';')) {
    const [key, ...value] = pair.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

function clearFlowCookie(reply: FastifyReply, tenantId: string, connectionId: string): void {
  void reply.header('set-cookie', `${flowCookie(connectionId)}=; Path=/v1/sso/${tenantId}/${connectionId}; Max-Age=0; HttpOnly; SameSite=Lax`);
}

function tenantBucket(request: FastifyRequest): string | undefined {
  return (request.params as { tenantId?: string }).tenantId ?? (request.body as { tenantId?: string } | undefined)?.tenantId;
}

/**
 * SSO: the tenant's connections (OIDC, SAML 2.0, LDAP), its SSO requirement and e-mail domains, and the
 * public login endpoints each protocol needs (redirect start and callback, SAML ACS and metadata, LDAP
 * login, home-realm discovery). Logins answer the same tokens as a password login.
 */
export const ssoRoutes: RoutePlugin<SsoRouteServices> = async (app, { sso, tokensFor }) => {
  const connections = '/v1/tenants/:tenantId/sso-connections';
  const loginBucket = { bucket: 'login' as const, tenantOf: tenantBucket };

  app.get(
    connections,
    {
      config: { auth: 'tenant', permission: 'sso:read' },
      schema: { tags, summary: 'List SSO connections', description: 'Secrets are never returned (`secretSet` tells whether one is stored).', params: tenantParams, response: { 200: connectionList } },
    },
    async (request) => sso.list(request.params.tenantId),
  );

  app.post(
    connections,
    {
      config: { auth: 'tenant', permission: 'sso:write' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Create an SSO connection',
        description:
          'OIDC (`secret`: the client secret), SAML 2.0 (the IdP metadata values; no secret) or LDAP (`secret`: the service account password). Secrets are write-only. The answer names the endpoints to register at the provider.',
        params: tenantParams,
        body: createConnectionBody,
        response: { 201: connection },
      },
    },
    async (request, reply) => reply.code(201).send(await sso.create(request.params.tenantId, request.body, heldPermissions(request))),
  );

  app.get(
    `${connections}/:connectionId`,
    { config: { auth: 'tenant', permission: 'sso:read' }, schema: { tags, summary: 'Read an SSO connection', params: connectionParams, response: { 200: connection } } },
    async (request) => sso.get(request.params.tenantId, request.params.connectionId),
  );

  app.patch(
    `${connections}/:connectionId`,
    {
      config: { auth: 'tenant', permission: 'sso:write' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Change an SSO connection',
        description: 'Give `protocol` (it cannot change) and the members to change; a new `secret` replaces the stored one. Group mappings apply from the next login.',
        params: connectionParams,
        body: updateConnectionBody,
        response: { 200: connection },
      },
    },
    async (request) => sso.update(request.params.tenantId, request.params.connectionId, request.body, heldPermissions(request)),
  );

  app.delete(
    `${connections}/:connectionId`,
    {
      config: { auth: 'tenant', permission: 'sso:write' },
      schema: {
        tags,
        summary: 'Delete an SSO connection',
        description: 'Its linked identities go with it (the users stay); domains pointing at it fall back to password login.',
        params: connectionParams,
        response: { 204: Type.Null({ description: 'Deleted.' }) },
      },
    },
    async (request, reply) => {
      await sso.delete(request.params.tenantId, request.params.connectionId);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/tenants/:tenantId/sso-policy',
    { config: { auth: 'tenant', permission: 'policies:read' }, schema: { tags, summary: 'The SSO requirement', params: tenantParams, response: { 200: ssoPolicy } } },
    async (request) => sso.policy(request.params.tenantId),
  );

  app.put(
    '/v1/tenants/:tenantId/sso-policy',
    {
      config: { auth: 'tenant', permission: 'policies:write' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Require SSO',
        description: 'With `required`, password login answers 403 sso_required for every user but the break-glass ones (at most 5). Needs a connection first (409).',
        params: tenantParams,
        body: ssoPolicyBody,
        response: { 200: ssoPolicy },
      },
    },
    async (request) => sso.setPolicy(request.params.tenantId, request.body),
  );

  app.get(
    '/v1/tenants/:tenantId/domains',
    { config: { auth: 'tenant', permission: 'sso:read' }, schema: { tags, summary: 'List e-mail domains', params: tenantParams, response: { 200: domainList } } },
    async (request) => sso.listDomains(request.params.tenantId),
  );

  app.post(
    '/v1/tenants/:tenantId/domains',
    {
      config: { auth: 'tenant', permission: 'sso:write' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Claim an e-mail domain',
        description: 'Answers the DNS TXT record that proves control of the domain; publish it, then verify. Only verified domains take part in home-realm discovery.',
        params: tenantParams,
        body: claimDomainBody,
        response: { 201: domain },
      },
    },
    async (request, reply) => reply.code(201).send(await sso.claimDomain(request.params.tenantId, request.body.domain, request.body.connectionId)),
  );

  app.post(
    '/v1/tenants/:tenantId/domains/:domain/verify',
    {
      config: { auth: 'tenant', permission: 'sso:write' },
      schema: {
        tags,
        summary: 'Verify an e-mail domain',
        description: '422 domain_not_verified while the TXT record is missing; 409 when another tenant verified the domain first.',
        params: domainParams,
        response: { 200: domain },
      },
    },
    async (request) => sso.verifyDomain(request.params.tenantId, request.params.domain),
  );

  app.patch(
    '/v1/tenants/:tenantId/domains/:domain',
    {
      config: { auth: 'tenant', permission: 'sso:write' },
      bodyLimit,
      schema: { tags, summary: "Set a domain's connection", params: domainParams, body: updateDomainBody, response: { 200: domain } },
    },
    async (request) => sso.updateDomain(request.params.tenantId, request.params.domain, request.body.connectionId),
  );

  app.delete(
    '/v1/tenants/:tenantId/domains/:domain',
    {
      config: { auth: 'tenant', permission: 'sso:write' },
      schema: { tags, summary: 'Release an e-mail domain', params: domainParams, response: { 204: Type.Null({ description: 'Released.' }) } },
    },
    async (request, reply) => {
      await sso.deleteDomain(request.params.tenantId, request.params.domain);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/auth/discover',
    {
      config: { auth: 'public' },
      bodyLimit: 4096,
      schema: {
        tags: ['auth', ...tags],
        summary: 'Home-realm discovery',
        description: "Which tenant verified the address's domain and where its users log in (`connection`: null for password login). Unverified domains answer nulls.",
        body: discoverBody,
        response: { 200: discovery },
      },
    },
    async (request) => sso.discover(request.body.email),
  );

  app.get(
    '/v1/sso/:tenantId/:connectionId/start',
    {
      config: { auth: 'public', rateLimit: loginBucket },
      schema: {
        tags,
        summary: 'Start an SSO login',
        description: "Redirects (302) the browser to the identity provider (OIDC authorization with PKCE, or a SAML AuthnRequest). 404 for an unknown or disabled connection.",
        params: connectionParams,
        response: { 302: Type.Null({ description: 'To the identity provider (`Location`).' }) },
      },
    },
    async (request, reply) => {
      const { tenantId, connectionId } = request.params;
      // HTTPS as the browser sees it: this request's (ours, or a trusted proxy's), or the public URL's.
      const https = request.protocol === 'https' || sso.publicUrlIsHttps;
      const { url, binding, crossSitePost } = await sso.start(tenantId, connectionId, { https });
      if (binding !== undefined) {
        // SAML comes back by a cross-site POST, which carries only a SameSite=None cookie (HTTPS only).
        const sameSite = crossSitePost ? 'None' : 'Lax';
        void reply.header('set-cookie', `${flowCookie(connectionId)}=${binding}; Path=/v1/sso/${tenantId}/${connectionId}; Max-Age=600; HttpOnly; SameSite=${sameSite}${https ? '; Secure' : ''}`);
      }
      return reply.code(302).header('location', url).send(null);
    },
  );

  app.get(
    '/v1/sso/:tenantId/:connectionId/callback',
    {
      config: { auth: 'public', rateLimit: loginBucket },
      schema: {
        tags,
        summary: 'OIDC redirect back',
        description: 'The provider sends the browser here with `code` and `state`. The answer is the tokens; 401 sso_failed when any check fails (state, PKCE, ID token signature, issuer, audience, expiry, nonce, the browser that started).',
        params: connectionParams,
        querystring: callbackQuery,
        response: { 200: tokenResponse },
      },
    },
    async (request, reply) => {
      const { tenantId, connectionId } = request.params;
      const callbackUrl = new URL(request.url, 'http://callback.invalid');
      const issued = await sso.finishOidc(tenantId, connectionId, callbackUrl, cookieValue(request, flowCookie(connectionId)), request.ip);
      clearFlowCookie(reply, tenantId, connectionId);
      return tokensFor(issued);
    },
  );

  await app.register(acsRoute, { sso, tokensFor });

  app.get(
    '/v1/sso/:tenantId/:connectionId/metadata',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'SAML service provider metadata',
        description: 'The SP metadata XML to load into the IdP (entity id, ACS URL). Also the SP entity id.',
        params: connectionParams,
        produces: ['application/samlmetadata+xml'],
        response: { 200: Type.String({ description: 'SAML 2.0 metadata (XML).' }) },
      },
    },
    async (request, reply) => {
      const xml = await sso.metadata(request.params.tenantId, request.params.connectionId);
      // Public and the same for everyone: an IdP may poll it.
      return reply.type('application/samlmetadata+xml').header('cache-control', 'public, max-age=300').serializer((payload) => payload as string).send(xml);
    },
  );

  app.post(
    '/v1/auth/ldap',
    {
      config: { auth: 'public', rateLimit: loginBucket },
      bodyLimit: 8 * 1024,
      schema: {
        tags: ['auth', ...tags],
        summary: 'Log in against an LDAP directory',
        description: "Binds to the tenant's directory as the user (LDAPS or StartTLS). 401 sso_failed for wrong credentials; 502 sso_provider_unavailable when the directory cannot be reached.",
        body: ldapLoginBody,
        response: { 200: tokenResponse },
      },
    },
    async (request) => tokensFor(await sso.loginLdap(request.body, request.ip)),
  );
};

/** The ACS takes the HTTP-POST binding's form body: a plugin of its own, so only this route parses forms. */
const acsRoute: RoutePlugin<SsoRouteServices> = async (app, { sso, tokensFor }) => {
  // Only the binding's form (SAML Bindings section 3.5.4): the app-wide JSON parser is no way in here.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _body, done) => {
    done(new BulwarkError('unsupported_media_type', { message: 'The ACS takes the HTTP-POST binding: an application/x-www-form-urlencoded form.' }), undefined);
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: acsBodyLimit }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  app.post(
    '/v1/sso/:tenantId/:connectionId/acs',
    {
      config: { auth: 'public', rateLimit: { bucket: 'login', tenantOf: tenantBucket } },
      bodyLimit: acsBodyLimit,
      schema: {
        tags,
        summary: 'SAML assertion consumer service',
        description:
          'The IdP posts the signed Response here (HTTP-POST binding, form-encoded). Signed assertions only; issuer, audience, recipient, destination, validity window, InResponseTo and one use per assertion id are checked; over HTTPS, so is the browser that started the login. The answer is the tokens; 401 sso_failed otherwise.',
        params: connectionParams,
        consumes: ['application/x-www-form-urlencoded'],
        body: acsBody,
        response: { 200: tokenResponse },
      },
    },
    async (request, reply) => {
      const { tenantId, connectionId } = request.params;
      const issued = await sso.finishSaml(tenantId, connectionId, request.body.SAMLResponse, request.body.RelayState, cookieValue(request, flowCookie(connectionId)), request.ip);
      clearFlowCookie(reply, tenantId, connectionId);
      return tokensFor(issued);
    },
  );
};
