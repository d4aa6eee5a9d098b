import { randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import { EnvelopeError, type EnvelopeContext, open, seal } from './envelope.ts';
import { type RootKeyDescription, RootKeyError, type RootKeyProvider } from './root/provider.ts';
import {
  countRecordsByKeyVersion,
  destroyKeys,
  findKeyring,
  insertKey,
  insertKeyring,
  type KeyringRow,
  type KeyRow,
  listKeyringTenants,
  listKeys,
  markKeyringDestroyed,
  replaceWrappedKey,
  setCurrentVersion,
  updateKeyringSettings,
} from './store.ts';

const dataKeyBytes = 32;
const dayMs = 86_400_000;

/** A tenant's unwrapped data keys, usable synchronously: what a store needs to seal and open its columns. */
export interface TenantKeys {
  readonly current: number;
  readonly minDecryption: number;
  /** Seals with the current version; the envelope names the version, the caller stores it alongside. */
  seal(plaintext: Buffer, context: EnvelopeContext): { ciphertext: Buffer; keyVersion: number };
  /**
   * Opens a ciphertext of this tenant. `onInvalid` decides the error for a ciphertext that fails
   * authentication: a caller-supplied one (transit) is the caller's mistake, a stored one is tampering.
   */
  open(ciphertext: Buffer, context: EnvelopeContext, onInvalid: InvalidCiphertextCode): Buffer;
}

type InvalidCiphertextCode = 'invalid_ciphertext' | 'data_integrity_failed';

/**
 * Unwrapped keys with a lifetime: the bytes are zeroed once the cache has let go of them and no caller
 * holds a lease. A lease on an already zeroed keyring is refused, and the caller loads the keys again.
 */
class LoadedKeyring implements TenantKeys {
  readonly current: number;
  readonly minDecryption: number;
  readonly #keys: Map<number, Buffer>;
  #cached: boolean;
  #leases = 0;
  #zeroed = false;

  constructor(current: number, minDecryption: number, keys: Map<number, Buffer>, cached: boolean) {
    this.current = current;
    this.minDecryption = minDecryption;
    this.#keys = keys;
    this.#cached = cached;
  }

  seal(plaintext: Buffer, context: EnvelopeContext): { ciphertext: Buffer; keyVersion: number } {
    const key = this.#keys.get(this.current);
    if (key === undefined) throw new BulwarkError('internal_error', { detail: 'current data key missing from the keyring' });
    return { ciphertext: seal(key, this.current, plaintext, context), keyVersion: this.current };
  }

  open(ciphertext: Buffer, context: EnvelopeContext, onInvalid: InvalidCiphertextCode): Buffer {
    try {
      return open(ciphertext, context, (version) => {
        if (version < this.minDecryption) throw new BulwarkError('key_version_retired');
        const key = this.#keys.get(version);
        if (key === undefined) throw new BulwarkError(version > this.current ? onInvalid : 'key_version_retired');
        return key;
      });
    } catch (error) {
      if (error instanceof EnvelopeError) throw new BulwarkError(onInvalid, { cause: error, detail: `envelope: ${error.reason}` });
      throw error;
    }
  }

  lease(): boolean {
    if (this.#zeroed) return false;
    this.#leases += 1;
    return true;
  }

  release(): void {
    this.#leases -= 1;
    this.#zeroIfUnused();
  }

  evicted(): void {
    this.#cached = false;
    this.#zeroIfUnused();
  }

  #zeroIfUnused(): void {
    if (this.#cached || this.#leases > 0 || this.#zeroed) return;
    this.#zeroed = true;
    for (const key of this.#keys.values()) key.fill(0);
  }
}

export interface KeyVersionInfo {
  version: number;
  state: 'current' | 'active' | 'retired' | 'destroyed';
  createdAt: string;
  destroyedAt: string | null;
  records: number;
}

export interface KeyringInfo {
  currentVersion: number;
  minDecryptionVersion: number;
  rotationPeriodDays: number | null;
  destroyedAt: string | null;
  versions: KeyVersionInfo[];
  /** Records still written before encryption at rest (plain JSON), to be moved forward by re-encryption. */
  unencryptedRecords: number;
}

/**
 * A store whose rows are sealed with the tenant's data keys registers here, so re-encryption after a
 * rotation reaches every encrypted column without the keys module knowing the tables.
 */
export interface Reencryptor {
  readonly name: string;
  /**
   * Re-seals up to `limit` rows sealed below `keys.current` (and at or above `keys.minDecryption`, the
   * versions that still open) or not sealed at all; returns how many it moved.
   */
  reencryptBatch(tenantId: string, keys: TenantKeys, limit: number): Promise<number>;
}

export interface KeyringOptions {
  cacheTtlMs: number;
  cacheMaxTenants: number;
}

/**
 * Tenant data keys: 256-bit, versioned, stored only wrapped by the root key provider. One version encrypts
 * (the current one); every version from `minDecryptionVersion` up decrypts. Unwrapped keys are cached
 * briefly and zeroed when they leave the cache; callers use them synchronously right after the lookup, so
 * an eviction never pulls a key out from under a running seal or open.
 */
export class KeyringService {
  readonly #db: Database;
  readonly #provider: RootKeyProvider;
  readonly #clock: Clock;
  readonly #cache: TtlCache<LoadedKeyring>;
  readonly #caching: boolean;
  readonly #loading = new Map<string, Promise<LoadedKeyring>>();
  readonly #reencryptors: Reencryptor[] = [];
  readonly #jobs = new Map<string, Promise<number>>();

  constructor(db: Database, provider: RootKeyProvider, clock: Clock, options: KeyringOptions) {
    this.#db = db;
    this.#provider = provider;
    this.#clock = clock;
    this.#caching = options.cacheTtlMs > 0;
    this.#cache = new TtlCache(options.cacheTtlMs, options.cacheMaxTenants, clock, (keyring) => keyring.evicted());
  }

  async describeRoot(): Promise<RootKeyDescription> {
    try {
      return await this.#provider.describe();
    } catch (error) {
      throw rootKeyProblem(error);
    }
  }

  registerReencryptor(reencryptor: Reencryptor): void {
    this.#reencryptors.push(reencryptor);
  }

  /** Creates the tenant's keyring with version 1, inside the caller's transaction (tenant context set). */
  async createKeyring(tx: Queryable, tenantId: string): Promise<void> {
    const key = randomBytes(dataKeyBytes);
    try {
      await insertKeyring(tx, tenantId, await this.#wrap(key, tenantId, 1), this.#clock.now());
    } finally {
      key.fill(0);
    }
  }

  /**
   * Runs `use` with the tenant's unwrapped keys, which stay intact until it settles. Stores call this
   * before opening a transaction (a key load may need a connection of its own) and seal or open inside.
   */
  async withKeys<T>(tenantId: string, use: (keys: TenantKeys) => T | Promise<T>): Promise<T> {
    for (;;) {
      const keyring = await this.#unwrapped(tenantId);
      if (!keyring.lease()) continue;
      try {
        return await use(keyring);
      } finally {
        keyring.release();
      }
    }
  }

  seal(tenantId: string, plaintext: Buffer, context: EnvelopeContext): Promise<{ ciphertext: Buffer; keyVersion: number }> {
    return this.withKeys(tenantId, (keys) => keys.seal(plaintext, context));
  }

  open(tenantId: string, ciphertext: Buffer, context: EnvelopeContext, onInvalid: InvalidCiphertextCode): Promise<Buffer> {
    return this.withKeys(tenantId, (keys) => keys.open(ciphertext, context, onInvalid));
  }

  /** The current version, after any due automatic rotation. */
  currentVersion(tenantId: string): Promise<number> {
    return this.withKeys(tenantId, (keys) => keys.current);
  }

  async describe(tenantId: string): Promise<KeyringInfo> {
    const { keyring, keys, counts } = await this.#db.withTenant(tenantId, async (tx) => ({
      keyring: await this.#requireKeyring(tx, tenantId),
      keys: await listKeys(tx, tenantId),
      counts: await countRecordsByKeyVersion(tx, tenantId),
    }));
    const recordsAt = (version: number | null) => counts.find((row) => row.key_version === version)?.count ?? 0;
    return {
      currentVersion: keyring.current_version,
      minDecryptionVersion: keyring.min_decryption_version,
      rotationPeriodDays: keyring.rotation_period_days,
      destroyedAt: keyring.destroyed_at?.toISOString() ?? null,
      versions: keys.map((key) => ({
        version: key.version,
        state: versionState(key, keyring),
        createdAt: key.created_at.toISOString(),
        destroyedAt: key.destroyed_at?.toISOString() ?? null,
        records: recordsAt(key.version),
      })),
      unencryptedRecords: recordsAt(null),
    };
  }

  /** New version for new writes; older versions keep decrypting. */
  async rotate(tenantId: string): Promise<KeyringInfo> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const keyring = await this.#requireKeyring(tx, tenantId, { forUpdate: true });
      await this.#addVersion(tx, tenantId, keyring.current_version + 1);
    });
    this.#cache.delete(tenantId);
    return this.describe(tenantId);
  }

  async configure(
    tenantId: string,
    settings: { minDecryptionVersion?: number | undefined; rotationPeriodDays?: number | null | undefined; force?: boolean | undefined },
  ): Promise<KeyringInfo> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const keyring = await this.#requireKeyring(tx, tenantId, { forUpdate: true });
      const minDecryptionVersion = settings.minDecryptionVersion ?? keyring.min_decryption_version;
      if (minDecryptionVersion > keyring.current_version) {
        throw new BulwarkError('validation_failed', { message: `minDecryptionVersion cannot exceed the current version (${keyring.current_version}).` });
      }
      if (minDecryptionVersion > keyring.min_decryption_version && settings.force !== true) {
        const stranded = (await countRecordsByKeyVersion(tx, tenantId))
          .filter((row) => row.key_version !== null && row.key_version < minDecryptionVersion)
          .reduce((sum, row) => sum + row.count, 0);
        if (stranded > 0) {
          throw new BulwarkError('conflict', {
            message: `${stranded} records still use versions below ${minDecryptionVersion}; re-encrypt first or pass force: true.`,
          });
        }
      }
      const rotationPeriodDays = settings.rotationPeriodDays === undefined ? keyring.rotation_period_days : settings.rotationPeriodDays;
      await updateKeyringSettings(tx, tenantId, { minDecryptionVersion, rotationPeriodDays }, this.#clock.now());
    });
    this.#cache.delete(tenantId);
    return this.describe(tenantId);
  }

  /** Destroys the key material of retired versions (below minDecryptionVersion). Irreversible. */
  async trim(tenantId: string): Promise<{ trimmedVersions: number[] }> {
    const trimmedVersions = await this.#db.withTenant(tenantId, async (tx) => {
      const keyring = await this.#requireKeyring(tx, tenantId, { forUpdate: true });
      return destroyKeys(tx, tenantId, keyring.min_decryption_version, this.#clock.now());
    });
    this.#cache.delete(tenantId);
    return { trimmedVersions };
  }

  /**
   * Crypto-shredding: destroys every data key version of the tenant. Each ciphertext sealed with them, in
   * the database or any copy (backups, exports of ciphertext), becomes permanently undecryptable.
   */
  async destroy(tenantId: string): Promise<{ destroyedVersions: number[]; destroyedAt: string }> {
    const now = this.#clock.now();
    const destroyedVersions = await this.#db.withTenant(tenantId, async (tx) => {
      await this.#requireKeyring(tx, tenantId, { forUpdate: true, allowDestroyed: true });
      const versions = await destroyKeys(tx, tenantId, null, now);
      await markKeyringDestroyed(tx, tenantId, now);
      return versions;
    });
    this.#cache.delete(tenantId);
    return { destroyedVersions, destroyedAt: now.toISOString() };
  }

  /**
   * Rotates the root key and re-wraps every tenant's data keys under the new root version. Data is not
   * touched: the data keys themselves do not change.
   */
  async rotateRoot(): Promise<{ rootVersion: number; tenants: number; keysRewrapped: number }> {
    const description = await this.#provider.rotate().catch((error: unknown) => {
      throw rootKeyProblem(error);
    });
    const tenants = await this.#db.withPlatform(listKeyringTenants);
    let keysRewrapped = 0;
    for (const tenantId of tenants) {
      keysRewrapped += await this.#db.withTenant(tenantId, async (tx) => {
        let count = 0;
        for (const row of await listKeys(tx, tenantId)) {
          if (row.wrapped_key === null) continue;
          const key = await this.#unwrap(row.wrapped_key, tenantId, row.version);
          try {
            await replaceWrappedKey(tx, tenantId, row.version, await this.#wrap(key, tenantId, row.version));
          } finally {
            key.fill(0);
          }
          count += 1;
        }
        return count;
      });
    }
    return { rootVersion: description.currentVersion, tenants: tenants.length, keysRewrapped };
  }

  /**
   * Moves every registered store's rows of this tenant to the current key version, in batches, in the
   * background. Returns at once; progress shows in `describe` (records per version). One job per tenant.
   */
  startReencryption(tenantId: string, batchSize = 200): { started: boolean } {
    if (this.#jobs.has(tenantId)) return { started: false };
    const job = this.reencrypt(tenantId, batchSize).finally(() => this.#jobs.delete(tenantId));
    job.catch(() => undefined);
    this.#jobs.set(tenantId, job);
    return { started: true };
  }

  isReencrypting(tenantId: string): boolean {
    return this.#jobs.has(tenantId);
  }

  /** Re-encrypts to completion; returns the number of rows moved. */
  async reencrypt(tenantId: string, batchSize = 200): Promise<number> {
    return this.withKeys(tenantId, async (keys) => {
      let moved = 0;
      for (const reencryptor of this.#reencryptors) {
        for (;;) {
          const batch = await reencryptor.reencryptBatch(tenantId, keys, batchSize);
          moved += batch;
          if (batch < batchSize) break;
        }
      }
      return moved;
    });
  }

  /** Drops unwrapped keys from memory (all tenants): after a KMS revocation, or on shutdown. */
  forgetUnwrappedKeys(): void {
    this.#cache.clear();
  }

  async #unwrapped(tenantId: string): Promise<LoadedKeyring> {
    // Without a cache every caller gets keys of its own, zeroed as soon as its use settles.
    if (!this.#caching) return this.#load(tenantId);
    const cached = this.#cache.get(tenantId);
    if (cached !== undefined) return cached;
    let loading = this.#loading.get(tenantId);
    if (loading === undefined) {
      loading = this.#load(tenantId).finally(() => this.#loading.delete(tenantId));
      this.#loading.set(tenantId, loading);
    }
    return loading;
  }

  async #load(tenantId: string): Promise<LoadedKeyring> {
    let { keyring, keys } = await this.#read(tenantId);
    if (keyring === undefined) {
      // Tenants created before the keys module get their keyring on first use.
      await this.#db.withTenant(tenantId, (tx) => this.createKeyring(tx, tenantId));
      ({ keyring, keys } = await this.#read(tenantId));
    }
    if (keyring === undefined) throw new BulwarkError('not_found');
    if (keyring.destroyed_at !== null) throw new BulwarkError('keys_destroyed');
    if (this.#rotationDue(keyring, keys)) {
      await this.rotate(tenantId);
      ({ keyring, keys } = await this.#read(tenantId));
      if (keyring === undefined) throw new BulwarkError('not_found');
    }
    const unwrapped = new Map<number, Buffer>();
    try {
      for (const row of keys) {
        if (row.wrapped_key === null || row.version < keyring.min_decryption_version) continue;
        unwrapped.set(row.version, await this.#unwrap(row.wrapped_key, tenantId, row.version));
      }
    } catch (error) {
      for (const key of unwrapped.values()) key.fill(0);
      throw error;
    }
    const loaded = new LoadedKeyring(keyring.current_version, keyring.min_decryption_version, unwrapped, this.#caching);
    if (this.#caching) this.#cache.set(tenantId, loaded);
    return loaded;
  }

  #read(tenantId: string): Promise<{ keyring: KeyringRow | undefined; keys: KeyRow[] }> {
    return this.#db.withTenant(tenantId, async (tx) => ({ keyring: await findKeyring(tx, tenantId), keys: await listKeys(tx, tenantId) }));
  }

  #rotationDue(keyring: KeyringRow, keys: KeyRow[]): boolean {
    if (keyring.rotation_period_days === null) return false;
    const current = keys.find((key) => key.version === keyring.current_version);
    return current !== undefined && this.#clock.now().getTime() - current.created_at.getTime() >= keyring.rotation_period_days * dayMs;
  }

  async #requireKeyring(
    tx: Queryable,
    tenantId: string,
    options: { forUpdate?: boolean; allowDestroyed?: boolean } = {},
  ): Promise<KeyringRow> {
    let keyring = await findKeyring(tx, tenantId, options);
    if (keyring === undefined) {
      await this.createKeyring(tx, tenantId);
      keyring = await findKeyring(tx, tenantId, options);
    }
    if (keyring === undefined) throw new BulwarkError('not_found');
    if (keyring.destroyed_at !== null && options.allowDestroyed !== true) throw new BulwarkError('keys_destroyed');
    return keyring;
  }

  async #addVersion(tx: Queryable, tenantId: string, version: number): Promise<void> {
    const key = randomBytes(dataKeyBytes);
    try {
      const now = this.#clock.now();
      await insertKey(tx, tenantId, version, await this.#wrap(key, tenantId, version), now);
      await setCurrentVersion(tx, tenantId, version, now);
    } finally {
      key.fill(0);
    }
  }

  async #wrap(key: Buffer, tenantId: string, keyVersion: number): Promise<string> {
    try {
      return await this.#provider.wrap(key, { tenantId, keyVersion });
    } catch (error) {
      throw rootKeyProblem(error);
    }
  }

  async #unwrap(wrapped: string, tenantId: string, keyVersion: number): Promise<Buffer> {
    try {
      return await this.#provider.unwrap(wrapped, { tenantId, keyVersion });
    } catch (error) {
      throw rootKeyProblem(error);
    }
  }
}

function versionState(key: KeyRow, keyring: KeyringRow): KeyVersionInfo['state'] {
  if (key.wrapped_key === null) return 'destroyed';
  if (key.version === keyring.current_version) return 'current';
  return key.version < keyring.min_decryption_version ? 'retired' : 'active';
}

/** A KMS refusal is the customer's or operator's decision, an outage is transient: neither is a 500. */
export function rootKeyProblem(error: unknown): BulwarkError {
  if (!(error instanceof RootKeyError)) return new BulwarkError('internal_error', { cause: error, detail: 'root key provider failed' });
  switch (error.reason) {
    case 'unavailable':
      return new BulwarkError('key_provider_unavailable', { cause: error, detail: error.message });
    case 'denied':
      return new BulwarkError('key_access_denied', { cause: error, detail: error.message });
    case 'unsupported':
      // The provider's message says what to do instead (e.g. add a version to BULWARK_ROOT_KEY); it holds no key material.
      return new BulwarkError('conflict', { cause: error, message: error.message });
    default:
      return new BulwarkError('data_integrity_failed', { cause: error, detail: `wrapped data key: ${error.reason}` });
  }
}
