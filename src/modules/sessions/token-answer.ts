import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { AccessService } from '../access/service.ts';
import type { OperatorsService } from '../operators/service.ts';
import type { IssuedRefresh } from './login-sessions.ts';
import type { TokenService } from './tokens.ts';

export interface TokenAnswer {
  tokenType: 'Bearer';
  accessToken: string;
  expiresIn: number;
  refreshToken: string;
  refreshExpiresAt: string;
  sessionId: string;
}

/**
 * The answer of every way in (password, second factor, SSO, refresh): an access token for the started
 * session next to its refresh token. `roles` informs the client; each request re-checks them (cached for
 * BULWARK_AUTH_CACHE_TTL_MS).
 */
export function tokenAnswerer(services: { tokens: TokenService; access: AccessService; operators: OperatorsService }) {
  const { tokens, access, operators } = services;
  const operatorRoles = async (operatorId: string) => {
    const standing = await operators.standing(operatorId);
    if (standing?.status !== 'active') throw new BulwarkError('invalid_credentials');
    return [standing.role];
  };
  return async (issued: IssuedRefresh, realm: 'user' | 'operator'): Promise<TokenAnswer> => {
    const token =
      realm === 'user'
        ? await tokens.issueAccessToken({
            sub: issued.principalId,
            tenantId: issued.scope,
            sid: issued.sessionId,
            roles: await access.roleNamesOf(issued.scope, issued.principalId),
            ver: 1,
            kind: 'user',
          })
        : await tokens.issueAccessToken({ sub: issued.principalId, tenantId: null, sid: issued.sessionId, roles: await operatorRoles(issued.principalId), ver: 1, kind: 'operator' });
    return {
      tokenType: 'Bearer',
      accessToken: token.token,
      expiresIn: token.expiresIn,
      refreshToken: issued.refreshToken,
      refreshExpiresAt: issued.refreshExpiresAt.toISOString(),
      sessionId: issued.sessionId,
    };
  };
}
