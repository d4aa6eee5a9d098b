import type { Authenticator, Principal } from '../../platform/http/auth.ts';
import type { TokenService } from './tokens.ts';
import type { UserSessionService } from './user-sessions.ts';

/**
 * Bearer access tokens (JWTs) for the auth hook: a valid signature and claims, and a session that is still
 * live (not logged out or revoked; cached briefly, so a revocation reaches every instance within that window).
 */
export class AccessTokenAuthenticator implements Authenticator {
  readonly #tokens: TokenService;
  readonly #sessions: UserSessionService;

  constructor(tokens: TokenService, sessions: UserSessionService) {
    this.#tokens = tokens;
    this.#sessions = sessions;
  }

  accepts(token: string): boolean {
    return this.#tokens.accepts(token);
  }

  async authenticate(token: string): Promise<Principal | null> {
    const claims = await this.#tokens.verifyAccessToken(token);
    if (claims === null || claims.kind !== 'user' || claims.tenantId === null) return null;
    if (!(await this.#sessions.isLive(claims.tenantId, claims.sid))) return null;
    return { kind: 'user', id: claims.sub, tenantId: claims.tenantId, sessionId: claims.sid };
  }
}
