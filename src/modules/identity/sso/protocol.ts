/**
 * What every SSO protocol adapter (OIDC, SAML 2.0, LDAP) hands the SSO service: a verified identity at the
 * identity provider. The adapters speak their protocol and check everything it asks to be checked; linking
 * the identity to a user, provisioning, role mapping, replay bookkeeping and sessions are the service's.
 */
export interface ExternalIdentity {
  /** The provider's stable id of the person: OIDC `sub`, SAML NameID, the LDAP entry's DN (or entryUUID). */
  subject: string;
  email: string | undefined;
  /** Whether the provider vouches for the address (OIDC `email_verified`; SAML and LDAP: the directory's own). */
  emailVerified: boolean;
  givenName: string | undefined;
  familyName: string | undefined;
  /** Group names as the provider states them (OIDC claim, SAML attribute, LDAP group entries' name attribute). */
  groups: string[];
}

/**
 * A refusal by the peer or by a check of the protocol (bad signature, wrong audience, expired, state or nonce
 * mismatch...). `reason` is a short stable word for the audit trail and logs; it never holds a token,
 * an assertion or a password. The service answers such a refusal as `sso_failed` (401).
 */
export class SsoProtocolError extends Error {
  readonly reason: string;

  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SsoProtocolError';
    this.reason = reason;
  }
}

/** The provider could not be reached or answered garbage: the service answers `sso_provider_unavailable` (502). */
export class SsoProviderUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SsoProviderUnavailableError';
  }
}
