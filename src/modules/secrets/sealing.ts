import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

/**
 * Sealing a secret to a service's X25519 public key with HPKE (RFC 9180), and opening it with the private
 * key. Shared by the server (seal only: it never holds a private key) and the SDK (open), so it depends on
 * nothing of the server.
 */

/** Base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM: the identifiers of RFC 9180 section 7. */
export const sealingAlgorithm = { mode: 'base', kemId: 0x0020, kdfId: 0x0001, aeadId: 0x0002 } as const;
export const sealedSecretFormat = 'bulwark.sealed-secret.v1';

/** The X25519 encapsulated key (`enc`) is the sender's ephemeral public key: 32 bytes (RFC 9180 section 7.1). */
export const encBytes = 32;
const x25519KeyBytes = 32;

/** What this module uses of an HPKE cipher suite; keys stay opaque handles. */
interface HpkeSuite {
  kem: { deserializePublicKey(key: Uint8Array): Promise<object>; deserializePrivateKey(key: Uint8Array): Promise<object> };
  seal(params: { recipientPublicKey: object; info: Uint8Array }, plaintext: Uint8Array, aad: Uint8Array): Promise<{ enc: ArrayBuffer; ct: ArrayBuffer }>;
  open(params: { recipientKey: object; enc: Uint8Array; info: Uint8Array }, ciphertext: Uint8Array, aad: Uint8Array): Promise<ArrayBuffer>;
}

// The package's declarations name WebCrypto's DOM types (CryptoKey, KeyUsage), which a Node-only build does
// not load, so they read as errors to the type checker: the suite is used through the view above.
const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() }) as unknown as HpkeSuite;

/** What a sealed copy is bound to: opening it as any other tenant, name, version or service fails. */
export interface SealBinding {
  tenantId: string;
  name: string;
  version: number;
  serviceId: string;
}

/**
 * The bytes given as both the HPKE `info` (bound into the key schedule) and the AEAD associated data: a JSON
 * array, unambiguous (no two bindings encode alike) and easy to rebuild in any language.
 */
export function bindingBytes(binding: SealBinding): Buffer {
  return Buffer.from(JSON.stringify([sealedSecretFormat, binding.tenantId, binding.name, binding.version, binding.serviceId]), 'utf8');
}

const base64urlKey = /^[A-Za-z0-9_-]{43}$/;
const spkiPem = /^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]{40,200}-----END PUBLIC KEY-----\s*$/;

/**
 * The raw 32 bytes of an X25519 public key given as base64url (unpadded, canonical) or as an SPKI PEM, or
 * undefined when it is neither. Only a PUBLIC KEY PEM is read: Node would derive a public key from a private
 * one, and a private key pasted here must not be taken (or kept) by the server.
 */
export function parseX25519PublicKey(text: string): Buffer | undefined {
  let key: KeyObject;
  try {
    if (spkiPem.test(text)) key = createPublicKey({ key: text, format: 'pem' });
    else if (base64urlKey.test(text) && Buffer.from(text, 'base64url').toString('base64url') === text) {
      key = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: text }, format: 'jwk' });
    } else return undefined;
  } catch {
    return undefined;
  }
  if (key.asymmetricKeyType !== 'x25519') return undefined;
  const { x } = key.export({ format: 'jwk' });
  return x === undefined ? undefined : Buffer.from(x, 'base64url');
}

/**
 * Whether HPKE can seal to the key. A point of small order makes the shared secret all zeros; DHKEM refuses
 * it (RFC 9180 section 7.1.4), so a trial encapsulation catches the keys no one could ever open for.
 */
export async function isSealableKey(publicKey: Buffer): Promise<boolean> {
  if (publicKey.length !== x25519KeyBytes) return false;
  try {
    await sealTo(publicKey, Buffer.alloc(0), Buffer.alloc(0));
    return true;
  } catch {
    return false;
  }
}

async function sealTo(publicKey: Buffer, plaintext: Uint8Array, binding: Buffer): Promise<{ enc: Buffer; ciphertext: Buffer }> {
  const recipientPublicKey = await suite.kem.deserializePublicKey(publicKey);
  const { enc, ct } = await suite.seal({ recipientPublicKey, info: binding }, plaintext, binding);
  return { enc: Buffer.from(enc), ciphertext: Buffer.from(ct) };
}

/** Seals `plaintext` to one service's raw X25519 public key, bound to `binding`. */
export async function sealSecret(publicKey: Buffer, plaintext: Uint8Array, binding: SealBinding): Promise<{ enc: Buffer; ciphertext: Buffer }> {
  return sealTo(publicKey, plaintext, bindingBytes(binding));
}

/** Why a sealed copy did not open. */
export class SealOpenError extends Error {
  readonly reason: 'wrong_key_type' | 'open_failed';

  constructor(reason: SealOpenError['reason'], message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = 'SealOpenError';
    this.reason = reason;
  }
}

/**
 * Opens a copy with the service's X25519 private key and the binding the caller expects. Any difference
 * (another key, tenant, name, version or service, or a changed byte) fails the AEAD check: `open_failed`.
 */
export async function openSecret(privateKey: KeyObject, sealed: { enc: Buffer; ciphertext: Buffer }, binding: SealBinding): Promise<Buffer> {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'x25519') throw new SealOpenError('wrong_key_type', 'the key is not an X25519 private key');
  const { d } = privateKey.export({ format: 'jwk' });
  const raw = Buffer.from(d ?? '', 'base64url');
  const info = bindingBytes(binding);
  try {
    const recipientKey = await suite.kem.deserializePrivateKey(raw);
    return Buffer.from(await suite.open({ recipientKey, enc: sealed.enc, info }, sealed.ciphertext, info));
  } catch (error) {
    throw new SealOpenError('open_failed', 'the sealed secret does not open with this key and binding', { cause: error });
  } finally {
    raw.fill(0);
  }
}

/** A new X25519 key pair for a service: the private key as PKCS#8 PEM, the public key as base64url (what registration takes). */
export function generateServiceKeyPair(): { privateKeyPem: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey: publicKey.export({ format: 'jwk' }).x ?? '' };
}
