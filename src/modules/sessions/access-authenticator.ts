import type { Authenticator, Principal } from '../../platform/http/auth.ts';
import type { OperatorsService } from '../operators/service.ts';
import { type LoginSessionService, platformScope } from './login-sessions.ts';
import type { TokenService } from './tokens.ts';

/**
 * Bearer access tokens (JWTs) for the auth hook: a valid signature and claims, and a session that is still
 * live (not logged out or revoked; cached briefly, so a revocation reaches every instance within that window).
 * An operator's token also needs the operator to be active; its role is read per request (cached likewise).
 */
export class AccessTokenAuthenticator implements Authenticator {
  readonly #tokens: TokenService;
  readonly #userSessions: LoginSessionService;
  readonly #operatorSessions: LoginSessionService;
  readonly #operators: OperatorsService;

  constructor(tokens: TokenService, realms: { userSessions: LoginSessionService; operatorSessions: LoginSessionService; operators: OperatorsService }) {
    this.#tokens = tokens;
    this.#userSessions = realms.userSessions;
    this.#operatorSessions = realms.operatorSessions;
    this.#operators = realms.operators;
  }

  accepts(token: string): boolean {
    return this.#tokens.accepts(token);
  }

  async authenticate(token: string): Promise<Principal | null> {
    const claims = await this.#tokens.verifyAccessToken(token);
    if (claims === null) return null;
    if (claims.kind === 'user') {
      if (claims.tenantId === null || !(await this.#userSessions.isLive(claims.tenantId, claims.sid))) return null;
      return { kind: 'user', id: claims.sub, tenantId: claims.tenantId, sessionId: claims.sid };
    }
    if (!(await this.#operatorSessions.isLive(platformScope, claims.sid))) return null;
    const standing = await this.#operators.standing(claims.sub);
    if (standing?.status !== 'active') return null;
    return { kind: 'operator', id: claims.sub, sessionId: claims.sid, role: standing.role };
  }
}
