import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { EnvelopeError, open, seal } from './envelope.ts';
import { RootKeyError, type RootKeyProvider, type WrapContext } from './root/provider.ts';
import { VaultTransitRootKey } from './root/vault-transit.ts';
import { dataKeyBytes } from './root/wrap-context.ts';

/**
 * Customer-managed keys (BYOK). A tenant's data key is split into two shares, key = A xor B: the root
 * key wraps A, the customer's own KMS key wraps B. Each share alone is uniformly random and says nothing
 * about the key, so the data needs both, and a customer who revokes Bulwark's access to their KMS key
 * makes it unreadable until they restore it. What it does not do: keep a running platform from the data.
 * Bulwark holds the customer's KMS token (sealed under a root-wrapped key), so whoever holds the root key
 * and the database can use the token while the customer has not revoked it. Splitting an existing key
 * keeps it unchanged, so enabling or removing a customer key re-wraps two small values per version and
 * never touches the data.
 */

/** How Bulwark reaches the customer's KMS: a Vault / OpenBao transit key the customer controls. */
export interface CustomerKmsSettings {
  provider: 'vault-transit';
  address: string;
  token: string;
  mountPath: string;
  keyName: string;
  namespace: string | null;
}

/** What the API shows of the settings: everything but the token. */
export type CustomerKmsView = Omit<CustomerKmsSettings, 'token'> & { configuredAt: string };

const credentialsContext = (tenantId: string) => ({ tenantId, table: 'tenant_keyrings', column: 'customer_kms', rowId: tenantId });

/** The root wraps the key that seals the settings under its own purpose, never swappable with a data key. */
export const credentialsWrapContext = (tenantId: string): WrapContext => ({ tenantId, keyVersion: 1, purpose: 'customer-kms-credentials' });

export function sealCustomerKms(key: Buffer, tenantId: string, settings: CustomerKmsSettings): Buffer {
  const { provider, address, token, mountPath, keyName, namespace } = settings;
  const json = Buffer.from(JSON.stringify({ provider, address, token, mountPath, keyName, namespace }), 'utf8');
  try {
    return seal(key, 1, json, credentialsContext(tenantId));
  } finally {
    json.fill(0);
  }
}

export function openCustomerKms(key: Buffer, tenantId: string, sealed: Buffer): CustomerKmsSettings {
  let json: Buffer;
  try {
    json = open(sealed, credentialsContext(tenantId), (version) => (version === 1 ? key : undefined));
  } catch (error) {
    if (error instanceof EnvelopeError) throw new BulwarkError('data_integrity_failed', { cause: error, detail: `customer KMS settings: ${error.reason}` });
    throw error;
  }
  try {
    return JSON.parse(json.toString('utf8')) as CustomerKmsSettings;
  } finally {
    json.fill(0);
  }
}

/** Throws BulwarkError customer_key_rejected when the settings cannot describe a usable KMS. */
export function customerKmsProvider(settings: CustomerKmsSettings): RootKeyProvider {
  try {
    return new VaultTransitRootKey({
      address: settings.address,
      token: settings.token,
      mountPath: settings.mountPath,
      keyName: settings.keyName,
      ...(settings.namespace === null ? {} : { namespace: settings.namespace }),
    });
  } catch (error) {
    // The constructor's messages name the bad option, never the token.
    throw new BulwarkError('customer_key_rejected', { message: error instanceof Error ? error.message : 'Invalid customer KMS settings.' });
  }
}

/**
 * The operator decides which KMS origins tenants may point Bulwark at (the server makes requests to
 * them, so an open list would let a tenant probe the internal network). `*` allows any.
 */
export function assertOriginAllowed(address: string, allowedOrigins: readonly string[]): void {
  let origin: string;
  try {
    origin = new URL(address).origin;
  } catch {
    throw new BulwarkError('customer_key_rejected', { message: 'address must be a URL such as https://vault.example.com:8200.' });
  }
  if (allowedOrigins.includes('*') || allowedOrigins.includes(origin)) return;
  throw new BulwarkError('customer_key_rejected', {
    message:
      allowedOrigins.length === 0
        ? 'Customer-managed keys are not enabled on this platform (BULWARK_CUSTOMER_KMS_ALLOWED_ORIGINS is empty).'
        : `The KMS origin ${origin} is not among the origins this platform allows for customer-managed keys.`,
  });
}

/** A fresh buffer holding a xor b; the caller zeroes the inputs and, when done, the result. */
export function xorShares(a: Buffer, b: Buffer): Buffer {
  if (a.length !== dataKeyBytes || b.length !== dataKeyBytes) throw new TypeError('key shares must be 32 bytes');
  const out = Buffer.alloc(dataKeyBytes);
  for (let index = 0; index < dataKeyBytes; index += 1) out[index] = (a[index] as number) ^ (b[index] as number);
  return out;
}

/**
 * A customer KMS failure is the customer's to fix and must say so: unreachable is 503 (retry), anything
 * else (revoked token, disabled or deleted key, a share it no longer opens) is 423 until they restore it.
 */
export function customerKeyProblem(error: unknown): BulwarkError {
  if (error instanceof BulwarkError) return error;
  if (!(error instanceof RootKeyError)) return new BulwarkError('internal_error', { cause: error, detail: 'customer KMS call failed' });
  if (error.reason === 'unavailable') {
    return new BulwarkError('customer_key_unavailable', { cause: error, detail: error.message });
  }
  return new BulwarkError('customer_key_access_denied', { cause: error, detail: `${error.reason}: ${error.message}` });
}

/** For PUT: a KMS that does not work with these settings is bad input, whatever the reason. */
export function customerKeyRejected(error: unknown): BulwarkError {
  if (error instanceof BulwarkError) return error;
  const reason = error instanceof RootKeyError ? error.message : 'the KMS call failed';
  // The provider's messages carry the address, key name and Vault's own error text, never the token.
  return new BulwarkError('customer_key_rejected', { cause: error, message: `The customer KMS did not accept a test wrap: ${reason}` });
}
