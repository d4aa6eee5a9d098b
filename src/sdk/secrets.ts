import { createPrivateKey, type KeyObject } from 'node:crypto';
import { encBytes, openSecret, SealOpenError, sealedSecretFormat, sealingAlgorithm } from '../modules/secrets/sealing.ts';

/** What a service expects of a copy: the binding it checks, not the one the copy claims. */
export interface ExpectedSecret {
  tenantId: string;
  name: string;
  /** The service's own id. */
  serviceId: string;
  /** A version the caller asked for; a copy of any other version is refused. */
  version?: number;
}

/**
 * Why a sealed secret was refused: `malformed` (not a sealed copy of this format and suite), `mismatch` (for
 * another tenant, name, service or version than expected), `wrong_key` (not an X25519 private key),
 * `open_failed` (another service's key, or a copy whose bytes or binding were changed).
 */
export class SealedSecretError extends Error {
  readonly code: 'malformed' | 'mismatch' | 'wrong_key' | 'open_failed';

  constructor(code: SealedSecretError['code'], message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = 'SealedSecretError';
    this.code = code;
  }
}

const base64url = /^[A-Za-z0-9_-]+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function bytesOf(value: unknown, member: string): Buffer {
  if (typeof value !== 'string' || !base64url.test(value)) throw new SealedSecretError('malformed', `${member} is not base64url`);
  return Buffer.from(value, 'base64url');
}

function privateKeyOf(key: KeyObject | string): KeyObject {
  try {
    const object = typeof key === 'string' ? createPrivateKey({ key, format: 'pem' }) : key;
    if (object.type === 'private' && object.asymmetricKeyType === 'x25519') return object;
  } catch (error) {
    throw new SealedSecretError('wrong_key', 'the private key is not a PEM the service key pair was written as', { cause: error });
  }
  throw new SealedSecretError('wrong_key', 'the private key is not an X25519 private key');
}

/**
 * Opens a secret sealed to this service: the JSON answer of `GET /v1/services/{serviceId}/secrets/{tenantId}/{name}`,
 * with the service's X25519 private key (the PEM `bulwark service keygen` wrote, or a KeyObject). The copy opens
 * only for the tenant, name and service given in `expected` (and its own version): a copy moved to another
 * tenant, name, version or service, or altered in any byte, is refused. Bulwark itself cannot do this: it never
 * holds the private key.
 *
 * @example
 * ```ts
 * const response = await fetch(`${bulwarkUrl}/v1/services/${serviceId}/secrets/${tenantId}/aws-credentials`, {
 *   headers: { authorization: `Bearer ${process.env.BULWARK_SERVICE_CREDENTIAL}` },
 * });
 * const value = await openSealedSecret(await response.json(), readFileSync('service-private-key.pem', 'utf8'), {
 *   tenantId,
 *   name: 'aws-credentials',
 *   serviceId,
 * });
 * ```
 */
export async function openSealedSecret(sealed: unknown, privateKey: KeyObject | string, expected: ExpectedSecret): Promise<string> {
  if (sealed === null || typeof sealed !== 'object') throw new SealedSecretError('malformed', 'not a sealed secret');
  const copy = sealed as Record<string, unknown>;
  const algorithm = copy['algorithm'] as Record<string, unknown> | null | undefined;
  if (
    copy['format'] !== sealedSecretFormat ||
    typeof algorithm !== 'object' ||
    algorithm === null ||
    algorithm['mode'] !== sealingAlgorithm.mode ||
    algorithm['kemId'] !== sealingAlgorithm.kemId ||
    algorithm['kdfId'] !== sealingAlgorithm.kdfId ||
    algorithm['aeadId'] !== sealingAlgorithm.aeadId
  ) {
    throw new SealedSecretError('malformed', `not a ${sealedSecretFormat} copy of the HPKE suite this SDK opens`);
  }
  const version = copy['version'];
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) throw new SealedSecretError('malformed', 'version is not a positive integer');
  const enc = bytesOf(copy['enc'], 'enc');
  const ciphertext = bytesOf(copy['ciphertext'], 'ciphertext');
  if (enc.length !== encBytes) throw new SealedSecretError('malformed', `enc is not ${encBytes} bytes`);
  // The claims are checked only to explain a refusal early; the binding that decides is built from `expected`.
  for (const member of ['tenantId', 'name', 'serviceId'] as const) {
    if (copy[member] !== expected[member]) throw new SealedSecretError('mismatch', `the copy is for another ${member}`);
  }
  if (expected.version !== undefined && version !== expected.version) throw new SealedSecretError('mismatch', 'the copy is of another version');
  const key = privateKeyOf(privateKey);
  let plaintext: Buffer;
  try {
    plaintext = await openSecret(key, { enc, ciphertext }, { tenantId: expected.tenantId, name: expected.name, version, serviceId: expected.serviceId });
  } catch (error) {
    if (error instanceof SealOpenError && error.reason === 'wrong_key_type') throw new SealedSecretError('wrong_key', error.message, { cause: error });
    throw new SealedSecretError('open_failed', 'the copy does not open with this key for this tenant, name, version and service', { cause: error });
  }
  try {
    return utf8.decode(plaintext);
  } catch (error) {
    throw new SealedSecretError('malformed', 'the opened value is not UTF-8', { cause: error });
  } finally {
    plaintext.fill(0);
  }
}
