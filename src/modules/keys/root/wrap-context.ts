import type { WrapContext, WrapPurpose } from './provider.ts';

/** Data keys are AES-256 keys: every provider wraps exactly 32 bytes and refuses anything else. */
export const dataKeyBytes = 32;

const maxTenantIdBytes = 255;
const maxKeyVersion = 0xffff_ffff;

// Every field is length-prefixed behind a domain label, so no two distinct contexts share an encoding
// ("ab" + version 1 can never equal "a" + something), and a wrap made for another purpose under the same
// root key never authenticates as a Bulwark data-key wrap.
const domainLabels: Record<WrapPurpose, Buffer> = {
  'data-key': Buffer.from('bulwark/root-key-wrap/v1', 'utf8'),
  'customer-kms-credentials': Buffer.from('bulwark/root-key-wrap/customer-kms-credentials/v1', 'utf8'),
  'lookup-key': Buffer.from('bulwark/root-key-wrap/lookup-key/v1', 'utf8'),
  'signing-key': Buffer.from('bulwark/root-key-wrap/signing-key/v1', 'utf8'),
  'platform-key': Buffer.from('bulwark/root-key-wrap/platform-key/v1', 'utf8'),
  'backup-key': Buffer.from('bulwark/root-key-wrap/backup-key/v1', 'utf8'),
  'backup-escrow': Buffer.from('bulwark/root-key-wrap/backup-escrow/v1', 'utf8'),
  'tls-ca': Buffer.from('bulwark/root-key-wrap/tls-ca/v1', 'utf8'),
};

/**
 * The associated data that binds a wrapped data key to its tenant and key version. All three providers
 * use the same bytes (AES-GCM AAD locally, Vault transit `associated_data` remotely):
 * `u32be(len(label)) | label | u32be(len(tenantId)) | tenantId (UTF-8) | u32be(keyVersion)`, where the
 * label names the purpose (`bulwark/root-key-wrap/v1` for data keys).
 */
export function wrapAad(context: WrapContext): Buffer {
  assertWrapContext(context);
  const domainLabel = domainLabels[context.purpose ?? 'data-key'];
  const tenant = Buffer.from(context.tenantId, 'utf8');
  const aad = Buffer.alloc(4 + domainLabel.length + 4 + tenant.length + 4);
  let offset = aad.writeUInt32BE(domainLabel.length, 0);
  offset += domainLabel.copy(aad, offset);
  offset = aad.writeUInt32BE(tenant.length, offset);
  offset += tenant.copy(aad, offset);
  aad.writeUInt32BE(context.keyVersion, offset);
  return aad;
}

/** A malformed context is a programming error, not a key failure: it throws TypeError, never RootKeyError. */
export function assertWrapContext(context: WrapContext): void {
  const { tenantId, keyVersion } = context;
  if (typeof tenantId !== 'string' || tenantId.length === 0 || Buffer.byteLength(tenantId, 'utf8') > maxTenantIdBytes) {
    throw new TypeError(`wrap context: tenantId must be a non-empty string of at most ${maxTenantIdBytes} bytes`);
  }
  if (!Number.isInteger(keyVersion) || keyVersion < 1 || keyVersion > maxKeyVersion) {
    throw new TypeError(`wrap context: keyVersion must be an integer from 1 to ${maxKeyVersion}`);
  }
  if (context.purpose !== undefined && !Object.hasOwn(domainLabels, context.purpose)) {
    throw new TypeError('wrap context: unknown purpose');
  }
}

export function assertDataKey(dataKey: Buffer): void {
  if (!Buffer.isBuffer(dataKey) || dataKey.length !== dataKeyBytes) {
    throw new TypeError(`data key must be a Buffer of exactly ${dataKeyBytes} bytes`);
  }
}

/** Root key versions are positive integers small enough for every provider (Vault uses Go ints). */
export function isRootVersion(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= maxKeyVersion;
}

/**
 * Decodes canonical base64 (standard alphabet, padded) only: `Buffer.from(x, 'base64')` silently skips
 * invalid characters, so a typo in a key would otherwise yield a different, shorter key.
 */
export function decodeCanonicalBase64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  const decoded = Buffer.from(text, 'base64');
  if (decoded.toString('base64') !== text) {
    decoded.fill(0);
    return undefined;
  }
  return decoded;
}

/**
 * The provider kind and root key version a wrapped data key names, without unwrapping it (for status
 * reports and for picking the keys a root rotation must rewrap); undefined when it is not a wrapped key.
 */
export function wrappedRootVersion(wrapped: string): { kind: 'local-file' | 'env' | 'vault-transit'; version: number } | undefined {
  const match = /^bwrk:(?:(local|env):v([1-9][0-9]{0,9}):|vault:vault:v([1-9][0-9]{0,9}):)/.exec(wrapped);
  if (match === null) return undefined;
  const version = Number(match[2] ?? match[3]);
  if (!isRootVersion(version)) return undefined;
  const kind = match[1] === 'local' ? 'local-file' : match[1] === 'env' ? 'env' : 'vault-transit';
  return { kind, version };
}
