import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { RootKeyError, type WrapContext } from './provider.ts';
import { assertDataKey, dataKeyBytes, isRootVersion, wrapAad } from './wrap-context.ts';

/** The `<kind>` of `bwrk:<kind>:v<N>:<payload>` for the providers that hold their root keys in process. */
export type AesWrapKind = 'local' | 'env';

export const rootKeyBytes = 32;
const nonceBytes = 12;
const tagBytes = 16;
const payloadBytes = nonceBytes + dataKeyBytes + tagBytes;
// base64url without padding of exactly 60 bytes is 80 characters.
const wrappedPattern = /^bwrk:(?:local|env):v([1-9][0-9]{0,9}):([A-Za-z0-9_-]{80})$/;

/**
 * AES-256-GCM wrapping under a set of versioned root keys: the highest version wraps, every version
 * unwraps. Output: `bwrk:<kind>:v<version>:<base64url(nonce(12) | ciphertext(32) | tag(16))>`, with the
 * wrap context (tenant, data key version) as associated data. The keys live in KeyObjects, so they sit
 * outside the JS heap and never show up when an object is logged or inspected.
 */
export class AesRootKeyring {
  readonly kind: AesWrapKind;
  readonly currentVersion: number;
  readonly #keys: ReadonlyMap<number, KeyObject>;

  /** Copies the keys; the caller zeroes its buffers afterwards. */
  constructor(kind: AesWrapKind, keys: ReadonlyMap<number, Buffer>) {
    if (keys.size === 0) throw new TypeError('a root keyring needs at least one key');
    const objects = new Map<number, KeyObject>();
    for (const [version, key] of keys) {
      if (!isRootVersion(version)) throw new TypeError('root key versions are integers from 1 to 4294967295');
      if (key.length !== rootKeyBytes) throw new TypeError(`root keys are ${rootKeyBytes} bytes`);
      objects.set(version, createSecretKey(key));
    }
    this.kind = kind;
    this.#keys = objects;
    this.currentVersion = Math.max(...objects.keys());
  }

  has(version: number): boolean {
    return this.#keys.has(version);
  }

  wrap(dataKey: Buffer, context: WrapContext): string {
    assertDataKey(dataKey);
    const aad = wrapAad(context);
    const key = this.#keys.get(this.currentVersion);
    if (key === undefined) throw new Error('unreachable: the current root key version is in the keyring');
    const nonce = randomBytes(nonceBytes);
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: tagBytes });
    cipher.setAAD(aad);
    const payload = Buffer.concat([nonce, cipher.update(dataKey), cipher.final(), cipher.getAuthTag()]);
    return `bwrk:${this.kind}:v${this.currentVersion}:${payload.toString('base64url')}`;
  }

  /** The root key version a wrapped key names, or a RootKeyError('corrupt') when it is not one of ours. */
  versionOf(wrapped: string): number {
    return parseWrapped(this.kind, wrapped).version;
  }

  unwrap(wrapped: string, context: WrapContext): Buffer {
    const aad = wrapAad(context);
    const { version, payload } = parseWrapped(this.kind, wrapped);
    const key = this.#keys.get(version);
    if (key === undefined) {
      throw new RootKeyError('unknown_version', `the wrapped key names root key version ${version}, which this ${this.kind} root key does not have`);
    }
    const decipher = createDecipheriv('aes-256-gcm', key, payload.subarray(0, nonceBytes), { authTagLength: tagBytes });
    decipher.setAAD(aad);
    decipher.setAuthTag(payload.subarray(nonceBytes + dataKeyBytes));
    const plain = decipher.update(payload.subarray(nonceBytes, nonceBytes + dataKeyBytes));
    try {
      decipher.final();
    } catch (error) {
      plain.fill(0);
      throw new RootKeyError('corrupt', 'the wrapped key does not authenticate: it was altered, or it belongs to another tenant or data key version', { cause: error });
    }
    // A non-pooled copy the caller may zero without touching a shared slab.
    const dataKey = Buffer.alloc(dataKeyBytes);
    plain.copy(dataKey);
    plain.fill(0);
    return dataKey;
  }
}

function parseWrapped(kind: AesWrapKind, wrapped: string): { version: number; payload: Buffer } {
  if (typeof wrapped !== 'string') throw new RootKeyError('corrupt', 'malformed wrapped key: not a string');
  const wrappedKind = /^bwrk:([a-z-]{1,20}):/.exec(wrapped)?.[1];
  if (wrappedKind !== undefined && wrappedKind !== kind) {
    throw new RootKeyError('corrupt', `the key was wrapped by the "${wrappedKind}" root key provider, not "${kind}"`);
  }
  const match = wrappedPattern.exec(wrapped);
  if (match === null) throw new RootKeyError('corrupt', `malformed wrapped key: expected bwrk:${kind}:v<version>:<80 base64url characters>`);
  const [, versionText = '', encoded = ''] = match;
  const version = Number(versionText);
  const payload = Buffer.from(encoded, 'base64url');
  if (!isRootVersion(version) || payload.length !== payloadBytes || payload.toString('base64url') !== encoded) {
    throw new RootKeyError('corrupt', 'malformed wrapped key: bad version or payload encoding');
  }
  return { version, payload };
}
