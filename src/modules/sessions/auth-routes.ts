import { Type } from 'typebox';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { AccessService } from '../access/service.ts';
import type { LoginService } from '../identity/login.ts';
import { loginAnswer } from '../identity/mfa/schemas.ts';
import type { MfaService } from '../identity/mfa/service.ts';
import type { UsersService } from '../identity/service.ts';
import { operatorLoginBody, operatorPasswordChangeBody } from '../operators/schemas.ts';
import type { OperatorsService } from '../operators/service.ts';
import { changePasswordBody, jwksDocument, loginBody, meResponse, refreshBody, tokenResponse } from './auth-schemas.ts';
import { type LoginSessionService, platformScope } from './login-sessions.ts';
import { tokenAnswerer } from './token-answer.ts';
import type { TokenService } from './tokens.ts';

const tags = ['auth'];
// Credentials and tokens only: nothing here needs more than a few KiB.
const bodyLimit = 8 * 1024;

export interface AuthRouteServices {
  login: LoginService;
  users: UsersService;
  sessions: LoginSessionService;
  operators: OperatorsService;
  operatorSessions: LoginSessionService;
  tokens: TokenService;
  access: AccessService;
  mfa: MfaService;
}

/**
 * Login (tenant users and platform operators, each in its own realm), refresh, logout, self-service password
 * change, the JWKS, and the logged-in person.
 */
export const authRoutes: RoutePlugin<AuthRouteServices> = async (app, { login, users, sessions, operators, operatorSessions, tokens, access: roles, mfa }) => {
  const tokensFor = tokenAnswerer({ tokens, access: roles, operators });
  // A refresh token names its realm by its prefix.
  const realmOf = (refreshToken: string) => (operatorSessions.accepts(refreshToken) ? ({ sessions: operatorSessions, kind: 'operator' } as const) : ({ sessions, kind: 'user' } as const));

  app.post(
    '/v1/auth/login',
    {
      // The tenant's login bucket, on top of the address's: one tenant's login storm cannot take the hashing capacity of all.
      config: { auth: 'public', rateLimit: { bucket: 'login', tenantOf: (request) => (request.body as { tenantId: string }).tenantId } },
      bodyLimit,
      schema: {
        tags,
        summary: 'Log in with e-mail and password',
        description:
          'Returns an access token and a refresh token, or (`mfaRequired: true`) an MFA challenge to finish with POST /v1/auth/mfa. 403 sso_required when the tenant requires single sign-on. A wrong e-mail or password answers 401 invalid_credentials either way; repeated failures answer 429 too_many_attempts with Retry-After (per account and per source address). 403 password_change_required: change it with POST /v1/auth/password first.',
        body: loginBody,
        response: { 200: loginAnswer },
      },
    },
    async (request) => {
      const { tenantId } = request.body;
      const outcome = await login.authenticate(
        { ...request.body, source: request.ip },
        {
          // A second factor due: the login answers its challenge, and the session starts at POST /v1/auth/mfa.
          onSuccess: async (tx, userId) => (await mfa.challengeAfterPassword(tx, tenantId, userId)) ?? sessions.startIn(tx, tenantId, userId),
          sessionOf: (started) => ('sessionId' in started ? started.sessionId : undefined),
          detailOf: (started) => ('challengeToken' in started ? { mfa: started.purpose } : {}),
        },
      );
      return 'challengeToken' in outcome ? { mfaRequired: true as const, ...outcome } : tokensFor(outcome, 'user');
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
    async (request) => {
      const realm = realmOf(request.body.refreshToken);
      return tokensFor(await realm.sessions.refresh(request.body.refreshToken), realm.kind);
    },
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
      await realmOf(request.body.refreshToken).sessions.logout(request.body.refreshToken);
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
      await sessions.revokeAllOf(tenantId, userId, 'password_changed');
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/auth/operator/login',
    {
      config: { auth: 'public' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Log in as a platform operator',
        description:
          "Operators are their own realm: no tenant id. Same answers and brute-force protection as a user's login (401 invalid_credentials, 429 too_many_attempts, 403 password_change_required: change it with POST /v1/auth/operator/password first).",
        body: operatorLoginBody,
        response: { 200: tokenResponse },
      },
    },
    async (request) => {
      const issued = await operators.authenticate({ ...request.body, source: request.ip }, (tx, operatorId) => operatorSessions.startIn(tx, platformScope, operatorId));
      return tokensFor(issued, 'operator');
    },
  );

  app.post(
    '/v1/auth/operator/password',
    {
      config: { auth: 'public' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Change your operator password',
        description:
          'With the current password (throttled like a login), also when it expired or a platform-admin set it. The new one must meet the default password policy (422 password_policy_violation). Every session of the operator ends.',
        body: operatorPasswordChangeBody,
        response: { 204: Type.Null({ description: 'Changed.' }) },
      },
    },
    async (request, reply) => {
      const { email, currentPassword, newPassword } = request.body;
      await operators.changePassword({ email, password: currentPassword, newPassword, source: request.ip });
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
      const document = await tokens.jwks();
      // Only a success may be cached: an error (the database away) answers no-store.
      void reply.header('cache-control', 'public, max-age=300');
      return document;
    },
  );

  app.get(
    '/v1/me',
    {
      config: { auth: 'self' },
      schema: {
        tags,
        summary: 'The logged-in user or operator',
        description: 'Who the access token belongs to: `kind` is `user` (with its tenant) or `operator`. API keys have no person behind them (403).',
        response: { 200: meResponse },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal?.kind === 'user') return { kind: 'user' as const, tenantId: principal.tenantId, ...(await users.get(principal.tenantId, principal.id)) };
      if (principal?.kind === 'operator') return { kind: 'operator' as const, ...(await operators.get(principal.id)) };
      throw new BulwarkError('forbidden');
    },
  );
};
