/**
 * A root key provider wraps and unwraps tenant data keys. The root key itself never leaves the provider
 * (a local key file, an environment variable, or a KMS such as Vault/OpenBao transit). Bulwark stores only
 * wrapped data keys; destroying those (crypto-shredding) or losing the root key makes the data unreadable.
 */
export interface RootKeyProvider {
  readonly kind: 'local-file' | 'env' | 'vault-transit';
  /**
   * Wraps a 256-bit data key under the current root key version. The result is self-describing: it names
   * the provider and the root key version it was wrapped with, so `unwrap` needs nothing else.
   * `context` is bound to the wrapping (as associated data, or the KMS's equivalent), so a wrapped key
   * copied to another tenant or key version does not unwrap.
   */
  wrap(dataKey: Buffer, context: WrapContext): Promise<string>;
  /** Unwraps with whichever root key version the wrapped key names. Throws RootKeyError on any failure. */
  unwrap(wrapped: string, context: WrapContext): Promise<Buffer>;
  /** Creates a new root key version; new wraps use it, older versions keep unwrapping. */
  rotate(): Promise<RootKeyDescription>;
  describe(): Promise<RootKeyDescription>;
  /** Throws when the provider cannot be reached (used by /readyz). */
  ping(): Promise<void>;
}

export interface WrapContext {
  tenantId: string;
  /** The data key's own version within the tenant's keyring. */
  keyVersion: number;
  /**
   * What the wrapped key is for; default `data-key`. The key that seals a tenant's customer KMS
   * credentials is wrapped under another purpose, so the two wraps can never be swapped for each other.
   */
  purpose?: WrapPurpose;
}

export type WrapPurpose = 'data-key' | 'customer-kms-credentials' | 'lookup-key' | 'signing-key' | 'platform-key' | 'backup-key' | 'backup-escrow' | 'tls-ca';

export interface RootKeyDescription {
  kind: RootKeyProvider['kind'];
  /** A non-secret name for the root key (file path, env var name, KMS key name). */
  keyName: string;
  currentVersion: number;
  versions: { version: number; createdAt: string | null }[];
}

export type RootKeyErrorReason =
  | 'unavailable' // the KMS cannot be reached or answered 5xx
  | 'denied' // the KMS refused (revoked token, policy): the customer or operator must restore access
  | 'unknown_version' // the wrapped key names a root key version the provider does not have
  | 'corrupt' // malformed wrapped key, or authentication failed (wrong context, tampering)
  | 'unsupported'; // the operation is not possible with this provider (e.g. rotate an env key)

export class RootKeyError extends Error {
  readonly reason: RootKeyErrorReason;
  constructor(reason: RootKeyErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RootKeyError';
    this.reason = reason;
  }
}
