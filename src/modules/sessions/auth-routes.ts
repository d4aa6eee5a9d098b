import { Type } from 'typebox';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { AccessService } from '../access/service.ts';
import type { LoginService } from '../identity/login.ts';
import { user } from '../identity/schemas.ts';
import type { UsersService } from '../identity/service.ts';
import { changePasswordBody, jwksDocument, loginBody, refreshBody, tokenResponse } from './auth-schemas.ts';
import type { TokenService } from './tokens.ts';
import type { IssuedRefresh, UserSessionService } from './user-sessions.ts';

const tags = ['auth'];
// Credentials and tokens only: nothing here needs more than a few KiB.
const bodyLimit = 8 * 1024;

/** Login, refresh, logout, self-service password change, the JWKS, and the logged-in user. */
export const authRoutes: RoutePlugin<{ login: LoginService; users: UsersService; sessions: UserSessionService; tokens: TokenService; access: AccessService }> = async (
  app,
  { login, users, sessions, tokens, access: roles },
) => {
  const tokensFor = async (issued: IssuedRefresh) => {
    // `roles` informs the client; each request re-checks the roles (cached for BULWARK_AUTH_CACHE_TTL_MS).
    const roleNames = await roles.roleNamesOf(issued.tenantId, issued.userId);
    const access = await tokens.issueAccessToken({ sub: issued.userId, tenantId: issued.tenantId, sid: issued.sessionId, roles: roleNames, ver: 1, kind: 'user' });
    return {
      tokenType: 'Bearer' as const,
      accessToken: access.token,
      expiresIn: access.expiresIn,
      refreshToken: issued.refreshToken,
      refreshExpiresAt: issued.refreshExpiresAt.toISOString(),
      sessionId: issued.sessionId,
    };
  };

  app.post(
    '/v1/auth/login',
    {
      config: { auth: 'public' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Log in with e-mail and password',
        description:
          'Returns an access token and a refresh token. A wrong e-mail or password answers 401 invalid_credentials either way; repeated failures answer 429 too_many_attempts with Retry-After (per account and per source address). 403 password_change_required: change it with POST /v1/auth/password first.',
        body: loginBody,
        response: { 200: tokenResponse },
      },
    },
    async (request) => {
      const { userId } = await login.authenticate({ ...request.body, source: request.ip });
      return tokensFor(await sessions.start(request.body.tenantId, userId));
    },
  );

  app.post(
    '/v1/auth/refresh',
    {
      config: { auth: 'public' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Exchange a refresh token for new tokens',
        description: 'The refresh token is spent; the answer holds the next one. Presenting a spent token again ends the whole session (reuse detection).',
        body: refreshBody,
        response: { 200: tokenResponse },
      },
    },
    async (request) => tokensFor(await sessions.refresh(request.body.refreshToken)),
  );

  app.post(
    '/v1/auth/logout',
    {
      config: { auth: 'public' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Log out',
        description: "Ends the refresh token's session: its refresh tokens stop working at once, its access tokens within the session cache window.",
        body: refreshBody,
        response: { 204: Type.Null({ description: 'Logged out (also for an unknown token).' }) },
      },
    },
    async (request, reply) => {
      await sessions.logout(request.body.refreshToken);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/auth/password',
    {
      config: { auth: 'public' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Change your password',
        description:
          'With the current password (throttled like a login), also when it expired or an admin set it. The new one must meet the policy (422 password_policy_violation). Every session of the user ends.',
        body: changePasswordBody,
        response: { 204: Type.Null({ description: 'Changed.' }) },
      },
    },
    async (request, reply) => {
      const { tenantId, email, currentPassword, newPassword } = request.body;
      const { userId } = await login.changePassword({ tenantId, email, password: currentPassword, newPassword, source: request.ip });
      await sessions.revokeAllOfUser(tenantId, userId, 'password_changed');
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/.well-known/jwks.json',
    {
      config: { auth: 'public' },
      schema: { tags, summary: 'Public keys of the access tokens', description: 'JWKS (RFC 7517): the signing key and retired keys still within their verification window.', response: { 200: jwksDocument } },
    },
    async (_request, reply) => {
      void reply.header('cache-control', 'public, max-age=300');
      return tokens.jwks();
    },
  );

  app.get(
    '/v1/me',
    { config: { auth: 'user' }, schema: { tags, summary: 'The logged-in user', description: 'The user of the access token.', response: { 200: user } } },
    async (request) => {
      const principal = request.principal;
      if (principal?.kind !== 'user') throw new BulwarkError('forbidden');
      return users.get(principal.tenantId, principal.id);
    },
  );
};
