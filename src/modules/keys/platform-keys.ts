import { createHmac, createPrivateKey, createSecretKey, hkdfSync, type KeyObject, randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { EnvelopeError, open, seal } from './envelope.ts';
import type { RootKeyProvider, WrapContext } from './root/provider.ts';
import { dataKeyBytes } from './root/wrap-context.ts';
import { rootKeyProblem } from './service.ts';
import { findPlatformKey, insertPlatformKey, listPlatformKeys, replacePlatformKey } from './platform-keys-store.ts';

/** The names of platform keys; each is one row of `platform_keys`. */
export type PlatformKeyName = 'operators' | 'audit' | 'agents';

/** Where a platform-sealed value lives: bound into the envelope's associated data, as for tenant columns. */
export interface PlatformSealContext {
  table: string;
  column: string;
  rowId: string;
}

/**
 * A platform key in use: seals and opens columns of platform tables (the envelope format, tenant field
 * `platform`) and computes lookup hashes. Both sub-keys come from the one stored key through HKDF with
 * distinct labels, so the HMAC key never encrypts and the encryption key never hashes.
 */
export class PlatformKey {
  readonly #sealKey: KeyObject;
  readonly #lookupKey: KeyObject;
  readonly #signingKey: KeyObject;

  constructor(master: Buffer) {
    this.#sealKey = deriveKey(master, 'bulwark/platform-key/seal/v1');
    this.#lookupKey = deriveKey(master, 'bulwark/platform-key/lookup/v1');
    this.#signingKey = deriveEd25519(master, 'bulwark/platform-key/ed25519/v1');
  }

  /** An Ed25519 key derived from the platform key (its 32-byte seed by HKDF): signs, e.g. audit checkpoints. */
  get signingKey(): KeyObject {
    return this.#signingKey;
  }

  seal(plaintext: Buffer, context: PlatformSealContext): Buffer {
    return seal(this.#sealKey, 1, plaintext, { tenantId: 'platform', ...context });
  }

  /** Opens a sealed value; a tampered or moved ciphertext is a data integrity failure (500), never plaintext. */
  open(ciphertext: Buffer, context: PlatformSealContext): Buffer {
    try {
      return open(ciphertext, { tenantId: 'platform', ...context }, (version) => (version === 1 ? this.#sealKey : undefined));
    } catch (error) {
      if (error instanceof EnvelopeError) throw new BulwarkError('data_integrity_failed', { cause: error, detail: `${context.table}.${context.column}: ${error.reason}` });
      throw error;
    }
  }

  /** HMAC-SHA256 of a lookup value (a normalised e-mail address, say). */
  lookupHash(value: string): Buffer {
    return createHmac('sha256', this.#lookupKey).update(value, 'utf8').digest();
  }
}

function deriveKey(master: Buffer, label: string): KeyObject {
  const bytes = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), label, 32));
  try {
    return createSecretKey(bytes);
  } finally {
    bytes.fill(0);
  }
}

// PKCS#8 of an Ed25519 private key is this fixed prefix and the 32-byte seed (RFC 8410, section 7).
const ed25519Pkcs8Prefix = Buffer.from('302e020100300506032b657004220420', 'hex');

function deriveEd25519(master: Buffer, label: string): KeyObject {
  const seed = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), label, 32));
  const der = Buffer.concat([ed25519Pkcs8Prefix, seed]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    seed.fill(0);
    der.fill(0);
  }
}

const wrapContext = (name: PlatformKeyName): WrapContext => ({ tenantId: `platform/${name}`, keyVersion: 1, purpose: 'platform-key' });

/**
 * Keys of the platform itself, for platform data that must not sit in clear (operator e-mail addresses).
 * Each is 256 random bits, created on first use, stored only wrapped by the root key (purpose
 * `platform-key`, its name bound into the wrap so two platform keys cannot be swapped), and unwrapped once
 * per instance: the derived KeyObjects stay in memory for the life of the process, like the signing key.
 */
export class PlatformKeys {
  readonly #db: Database;
  readonly #rootKeys: RootKeyProvider;
  readonly #clock: Clock;
  readonly #loaded = new Map<PlatformKeyName, Promise<PlatformKey>>();

  constructor(db: Database, rootKeys: RootKeyProvider, clock: Clock) {
    this.#db = db;
    this.#rootKeys = rootKeys;
    this.#clock = clock;
  }

  get(name: PlatformKeyName): Promise<PlatformKey> {
    let loading = this.#loaded.get(name);
    if (loading === undefined) {
      loading = this.#load(name);
      // A failure (the KMS is down) is not remembered: the next request tries again.
      loading.catch(() => this.#loaded.delete(name));
      this.#loaded.set(name, loading);
    }
    return loading;
  }

  /** Re-wraps every platform key under the root key's current version (part of a root rotation). */
  async rewrapUnderRoot(): Promise<number> {
    return this.#db.withPlatform(async (tx) => {
      const rows = await listPlatformKeys(tx);
      for (const row of rows) {
        const context = wrapContext(row.name as PlatformKeyName);
        const key = await this.#unwrap(row.wrapped_key, context);
        try {
          await replacePlatformKey(tx, row.name, await this.#wrap(key, context));
        } finally {
          key.fill(0);
        }
      }
      return rows.length;
    });
  }

  async #load(name: PlatformKeyName): Promise<PlatformKey> {
    const context = wrapContext(name);
    let wrapped = await this.#db.withPlatform((tx) => findPlatformKey(tx, name));
    if (wrapped === undefined) {
      const fresh = randomBytes(dataKeyBytes);
      try {
        const candidate = await this.#wrap(fresh, context);
        wrapped = await this.#db.withPlatform(async (tx) => {
          await insertPlatformKey(tx, name, candidate, this.#clock.now());
          return findPlatformKey(tx, name);
        });
      } finally {
        fresh.fill(0);
      }
      if (wrapped === undefined) throw new BulwarkError('internal_error', { detail: `platform key ${name} was not stored` });
    }
    const master = await this.#unwrap(wrapped, context);
    try {
      return new PlatformKey(master);
    } finally {
      master.fill(0);
    }
  }

  async #wrap(key: Buffer, context: WrapContext): Promise<string> {
    try {
      return await this.#rootKeys.wrap(key, context);
    } catch (error) {
      throw rootKeyProblem(error);
    }
  }

  async #unwrap(wrapped: string, context: WrapContext): Promise<Buffer> {
    try {
      return await this.#rootKeys.unwrap(wrapped, context);
    } catch (error) {
      throw rootKeyProblem(error);
    }
  }
}
