import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { BulwarkError } from '../../../platform/errors/bulwark-error.ts';
import { heldPermissions } from '../../../platform/http/auth.ts';
import type { RoutePlugin } from '../../../platform/http/route-kit.ts';
import type { AccessService } from '../../access/service.ts';
import type { IssuedRefresh, LoginSessionService } from '../../sessions/login-sessions.ts';
import type { TokenAnswer } from '../../sessions/token-answer.ts';
import { tenantParams } from '../../tenancy/schemas.ts';
import { userParams } from '../schemas.ts';
import {
  challengeBody,
  challengeTotpBody,
  confirmTotpBody,
  enrolled,
  factorParams,
  mfaLoginBody,
  mfaOverview,
  mfaPolicy,
  mfaPolicyBody,
  mfaTokenResponse,
  recoveryCodesAnswer,
  registerWebauthnBody,
  resetAnswer,
  startTotpBody,
  totpEnrolment,
  webauthnOptions,
} from './schemas.ts';
import { challengeTenant, type MfaProof, type MfaService } from './service.ts';

const tags = ['mfa'];
// Codes, tokens and WebAuthn credentials: a few KiB at most.
const bodyLimit = 16 * 1024;
// The tenant's login bucket: a challenge is part of a login.
const loginBucket = { bucket: 'login' as const, tenantOf: (request: FastifyRequest) => challengeTenant((request.body as { challengeToken: string }).challengeToken) };

/** The logged-in user of a `self` route; operators and API keys have no factors here. */
function selfUser(request: FastifyRequest): { tenantId: string; id: string; sessionId: string } {
  const principal = request.principal;
  if (principal?.kind !== 'user') throw new BulwarkError('forbidden', { message: 'Only a tenant user has second factors.' });
  return { tenantId: principal.tenantId, id: principal.id, sessionId: principal.sessionId };
}

export interface MfaRouteServices {
  mfa: MfaService;
  sessions: LoginSessionService;
  access: AccessService;
  /** The token answer of a started session (shared with the password login). */
  tokensFor: (issued: IssuedRefresh) => Promise<TokenAnswer>;
  /** How old a session may be to change its user's factors. */
  recentLoginMs: number;
}

/**
 * The login's second step (public: the challenge token is the credential), a user's own factors, the
 * tenant's MFA policy, and an admin's reset of a user's factors.
 */
export const mfaRoutes: RoutePlugin<MfaRouteServices> = async (app, { mfa, sessions, access, tokensFor, recentLoginMs }) => {
  /**
   * Changing one's factors needs a recent login ("sudo mode"): a token refreshed from an old session, or
   * one stolen later in its life, cannot add a factor of its own or mint recovery codes that outlive it.
   */
  const recentUser = async (request: FastifyRequest) => {
    const me = selfUser(request);
    const startedAt = await sessions.startedAt(me.tenantId, me.sessionId);
    if (startedAt === undefined || mfa.now().getTime() - startedAt.getTime() > recentLoginMs) {
      throw new BulwarkError('reauthentication_required', { message: `Changing second factors needs a login in the last ${Math.round(recentLoginMs / 60_000)} minutes: log in again, then retry.` });
    }
    return me;
  };
  app.post(
    '/v1/auth/mfa',
    {
      config: { auth: 'public', rateLimit: loginBucket },
      bodyLimit,
      schema: {
        tags: ['auth', ...tags],
        summary: 'Finish a login with its second factor',
        description:
          'With the `challengeToken` of the login answer and a TOTP code, a recovery code or a WebAuthn assertion (from the options of POST /v1/auth/mfa/webauthn/options). For an `enroll` challenge, the proof of the factor being enrolled; the answer then carries the recovery codes, once. A wrong proof answers 401 invalid_mfa_code (and counts toward the lockout: 429 too_many_attempts); after 5 the challenge is spent (401 mfa_challenge_invalid).',
        body: mfaLoginBody,
        response: { 200: mfaTokenResponse },
      },
    },
    async (request) => {
      const body = request.body;
      const proof: MfaProof = body.method === 'webauthn' ? { method: 'webauthn', credential: body.credential } : { method: body.method, code: body.code };
      const { result, recoveryCodes } = await mfa.completeLogin(
        body.challengeToken,
        proof,
        request.ip,
        (tx, tenantId, userId) => sessions.startIn(tx, tenantId, userId),
        (issued) => issued.sessionId,
      );
      return { ...(await tokensFor(result)), ...(recoveryCodes === undefined ? {} : { recoveryCodes }) };
    },
  );

  app.post(
    '/v1/auth/mfa/totp',
    {
      config: { auth: 'public', rateLimit: loginBucket },
      bodyLimit,
      schema: {
        tags: ['auth', ...tags],
        summary: 'Enrol an authenticator app during a login',
        description: 'For an `enroll` challenge: a new TOTP seed. Show it (QR code of `otpauthUri`), then finish the login with POST /v1/auth/mfa and a code of it.',
        body: challengeTotpBody,
        response: { 200: totpEnrolment },
      },
    },
    async (request) => mfa.startTotpForChallenge(request.body.challengeToken, request.body.name),
  );

  app.post(
    '/v1/auth/mfa/webauthn/options',
    {
      config: { auth: 'public', rateLimit: loginBucket },
      bodyLimit,
      schema: {
        tags: ['auth', ...tags],
        summary: 'WebAuthn options for a login',
        description: "For a `verify` challenge: request options listing the user's passkeys. For an `enroll` challenge: creation options for a new passkey. Single use.",
        body: challengeBody,
        response: { 200: webauthnOptions },
      },
    },
    async (request) => mfa.webauthnOptionsForChallenge(request.body.challengeToken),
  );

  app.get(
    '/v1/me/mfa',
    {
      config: { auth: 'self' },
      schema: { tags, summary: 'Your second factors', description: "The tenant's policy, your factors and how many recovery codes are left.", response: { 200: mfaOverview } },
    },
    async (request) => {
      const me = selfUser(request);
      return mfa.overview(me.tenantId, me.id);
    },
  );

  app.post(
    '/v1/me/mfa/totp',
    {
      config: { auth: 'self' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Start enrolling an authenticator app',
        description: 'A new TOTP seed (pending until confirmed with a code; a pending one from before is replaced). 403 mfa_disabled when the policy is off.',
        body: startTotpBody,
        response: { 201: totpEnrolment },
      },
    },
    async (request, reply) => {
      const me = await recentUser(request);
      return reply.code(201).send(await mfa.startTotp(me.tenantId, me.id, request.body.name));
    },
  );

  app.post(
    '/v1/me/mfa/totp/:factorId/verify',
    {
      config: { auth: 'self' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Confirm an authenticator app',
        description: 'Activates the pending seed with a current code (401 invalid_mfa_code otherwise). Your first factor comes with recovery codes, shown once.',
        params: factorParams,
        body: confirmTotpBody,
        response: { 200: enrolled },
      },
    },
    async (request) => {
      const me = await recentUser(request);
      return mfa.confirmTotp(me.tenantId, me.id, request.params.factorId, request.body.code);
    },
  );

  app.post(
    '/v1/me/mfa/webauthn/registration-options',
    {
      config: { auth: 'self' },
      schema: { tags, summary: 'Start registering a passkey', description: 'Creation options for `navigator.credentials.create()`; single use, 5 minutes.', response: { 200: webauthnOptions } },
    },
    async (request) => {
      const me = await recentUser(request);
      return mfa.webauthnRegistrationOptions(me.tenantId, me.id);
    },
  );

  app.post(
    '/v1/me/mfa/webauthn',
    {
      config: { auth: 'self' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Register a passkey',
        description: "The browser's answer to the registration options. Your first factor comes with recovery codes, shown once.",
        body: registerWebauthnBody,
        response: { 201: enrolled },
      },
    },
    async (request, reply) => {
      const me = await recentUser(request);
      return reply.code(201).send(await mfa.registerWebauthn(me.tenantId, me.id, request.body.credential, request.body.name));
    },
  );

  app.delete(
    '/v1/me/mfa/factors/:factorId',
    {
      config: { auth: 'self' },
      schema: {
        tags,
        summary: 'Remove one of your factors',
        description: "409 conflict for the last one when the tenant's policy requires MFA of you. Removing the last factor also voids the recovery codes.",
        params: factorParams,
        response: { 204: Type.Null({ description: 'Removed.' }) },
      },
    },
    async (request, reply) => {
      const me = await recentUser(request);
      await mfa.removeFactor(me.tenantId, me.id, request.params.factorId);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/me/mfa/recovery-codes',
    {
      config: { auth: 'self' },
      schema: { tags, summary: 'New recovery codes', description: 'Ten new codes, shown once; the previous ones stop working. Needs an active factor.', response: { 200: recoveryCodesAnswer } },
    },
    async (request) => {
      const me = await recentUser(request);
      return mfa.regenerateRecoveryCodes(me.tenantId, me.id);
    },
  );

  app.get(
    '/v1/tenants/:tenantId/mfa-policy',
    {
      config: { auth: 'tenant', permission: 'policies:read' },
      schema: { tags, summary: 'The MFA policy', params: tenantParams, response: { 200: mfaPolicy } },
    },
    async (request) => mfa.policy(request.params.tenantId),
  );

  app.put(
    '/v1/tenants/:tenantId/mfa-policy',
    {
      config: { auth: 'tenant', permission: 'policies:write' },
      bodyLimit,
      schema: {
        tags,
        summary: 'Set the MFA policy',
        description: 'Takes effect at the next login of each user; sessions already running are not ended.',
        params: tenantParams,
        body: mfaPolicyBody,
        response: { 200: mfaPolicy },
      },
    },
    async (request) => mfa.setPolicy(request.params.tenantId, request.body.mode),
  );

  app.delete(
    '/v1/tenants/:tenantId/users/:userId/mfa',
    {
      config: { auth: 'tenant', permission: 'mfa:reset' },
      schema: {
        tags,
        summary: "Reset a user's second factors",
        description: 'For a lost device: every factor and recovery code of the user is removed. You must hold every permission the user holds.',
        params: userParams,
        response: { 200: resetAnswer },
      },
    },
    async (request) => {
      await access.assertMayManage(request.params.tenantId, request.params.userId, heldPermissions(request));
      return mfa.reset(request.params.tenantId, request.params.userId);
    },
  );
};
