import { createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { CacheInvalidations } from '../../platform/invalidation.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import {
  assertOriginAllowed,
  credentialsWrapContext,
  customerKeyProblem,
  customerKeyRejected,
  type CustomerKmsSettings,
  type CustomerKmsView,
  customerKmsProvider,
  openCustomerKms,
  sealCustomerKms,
  xorShares,
} from './customer-key.ts';
import { EnvelopeError, type EnvelopeContext, open, seal } from './envelope.ts';
import { type RootKeyDescription, RootKeyError, type RootKeyProvider, type WrapContext } from './root/provider.ts';
import {
  addEncryptions,
  destroyKeys,
  findKeyring,
  insertKey,
  insertKeyring,
  type KeyringRow,
  type KeyRow,
  listKeyringTenants,
  listKeys,
  markKeyringDestroyed,
  replaceCustomerKmsWrappedKey,
  replaceKeyParts,
  replaceLookupWrappedKey,
  replaceWrappedKey,
  setCurrentVersion,
  setCustomerKms,
  setLookupKeyIfMissing,
  updateKeyringSettings,
} from './store.ts';

const dataKeyBytes = 32;
const dayMs = 86_400_000;
/**
 * Encryptions per data key version before it rotates, whatever a tenant sets: AES-GCM with random 96-bit
 * nonces is bounded at 2^32 invocations per key (NIST SP 800-38D 8.3); half leaves room for counts that
 * lag (instances report when they drop a key from memory) and for a crash that loses a cache lifetime's.
 */
export const maxEncryptionsPerKey = 2 ** 31;

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
  /**
   * Keyed hash (HMAC-SHA256) of a lookup value, e.g. a normalised e-mail address, under the tenant's lookup
   * key: equal values hash alike, so a unique index and a search work without storing the value in clear.
   */
  lookupHash(value: string): Buffer;
}

type InvalidCiphertextCode = 'invalid_ciphertext' | 'data_integrity_failed';

/**
 * Unwrapped keys with a lifetime: they are dropped once the cache has let go of them and no caller holds a
 * lease. A lease on an already dropped keyring is refused, and the caller loads the keys again.
 *
 * The keys are KeyObjects, not Buffers: Node 24 makes AES-GCM with a Buffer key about 3x slower (see
 * EnvelopeKey in envelope.ts; bench/envelope.ts measures both). A KeyObject's bytes live in native memory
 * that JS cannot zero; Node frees them with OPENSSL_clear_free (cleansed) when the collector reclaims the
 * object, which dropping it here makes possible. The unwrapped Buffers are zeroed as soon as the
 * KeyObjects exist.
 */
class LoadedKeyring implements TenantKeys {
  readonly current: number;
  readonly minDecryption: number;
  readonly #keys: Map<number, KeyObject>;
  #lookupKey: KeyObject | undefined;
  readonly #sealBudget: number;
  readonly #onDropped: (sealed: number) => void;
  #cached: boolean;
  #leases = 0;
  #dropped = false;
  #sealed = 0;
  #stale = false;

  /**
   * `sealBudget`: seals left on the current version before count-based rotation is due. `onDropped`
   * receives how many seals this copy made, to be added to the stored count.
   */
  constructor(
    keyring: { current: number; minDecryption: number; keys: Map<number, KeyObject>; lookupKey: KeyObject; sealBudget: number },
    cached: boolean,
    onDropped: (sealed: number) => void,
  ) {
    this.current = keyring.current;
    this.minDecryption = keyring.minDecryption;
    this.#keys = keyring.keys;
    this.#lookupKey = keyring.lookupKey;
    this.#sealBudget = keyring.sealBudget;
    this.#cached = cached;
    this.#onDropped = onDropped;
  }

  seal(plaintext: Buffer, context: EnvelopeContext): { ciphertext: Buffer; keyVersion: number } {
    const key = this.#keys.get(this.current);
    if (key === undefined) throw new BulwarkError('internal_error', { detail: 'current data key missing from the keyring' });
    const ciphertext = seal(key, this.current, plaintext, context);
    this.#sealed += 1;
    return { ciphertext, keyVersion: this.current };
  }

  lookupHash(value: string): Buffer {
    if (this.#lookupKey === undefined) throw new BulwarkError('internal_error', { detail: 'lookup key used after the keyring was dropped' });
    return createHmac('sha256', this.#lookupKey).update(value, 'utf8').digest();
  }

  /**
   * The next caller loads the keys again: the current version has sealed its budget (the load rotates), or a
   * stored ciphertext named a version newer than these keys (another instance rotated, and this copy missed
   * the invalidation: the bus was down).
   */
  get outdated(): boolean {
    return this.#stale || this.#sealed >= this.#sealBudget;
  }

  open(ciphertext: Buffer, context: EnvelopeContext, onInvalid: InvalidCiphertextCode): Buffer {
    try {
      return open(ciphertext, context, (version) => {
        if (version < this.minDecryption) throw new BulwarkError('key_version_retired');
        const key = this.#keys.get(version);
        if (key === undefined && version > this.current) {
          // Only stored data marks the copy outdated: a caller's ciphertext (transit) could force a reload a call.
          if (onInvalid === 'data_integrity_failed') this.#stale = true;
          throw new BulwarkError(onInvalid);
        }
        if (key === undefined) throw new BulwarkError('key_version_retired');
        return key;
      });
    } catch (error) {
      if (error instanceof EnvelopeError) throw new BulwarkError(onInvalid, { cause: error, detail: `envelope: ${error.reason}` });
      throw error;
    }
  }

  lease(): boolean {
    if (this.#dropped) return false;
    this.#leases += 1;
    return true;
  }

  release(): void {
    this.#leases -= 1;
    this.#dropIfUnused();
  }

  evicted(): void {
    this.#cached = false;
    this.#dropIfUnused();
  }

  #dropIfUnused(): void {
    if (this.#cached || this.#leases > 0 || this.#dropped) return;
    this.#dropped = true;
    this.#keys.clear();
    this.#lookupKey = undefined;
    this.#onDropped(this.#sealed);
  }
}

export interface KeyVersionInfo {
  version: number;
  state: 'current' | 'active' | 'retired' | 'destroyed';
  createdAt: string;
  destroyedAt: string | null;
  records: number;
  sealedRows: number;
  encryptions: number;
}

export interface KeyringInfo {
  currentVersion: number;
  minDecryptionVersion: number;
  rotationPeriodDays: number | null;
  /** The tenant's own count limit; null: the platform limit. */
  rotationEncryptions: number | null;
  /** The count at which the current version rotates (the tenant's limit capped by the platform's). */
  effectiveRotationEncryptions: number;
  customerManaged: boolean;
  destroyedAt: string | null;
  versions: KeyVersionInfo[];
  /** Records stored unsealed (key_version NULL): never written by Bulwark, refused on read; a tamper signal. */
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
  /** Sealed rows per key version (NULL: rows stored unsealed): progress, and what retiring would strand. */
  countByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]>;
}

export interface KeyringOptions {
  cacheTtlMs: number;
  cacheMaxTenants: number;
  /** Origins tenants may use for customer-managed keys; empty: none, `*`: any. */
  customerKmsAllowedOrigins?: readonly string[];
  /** Failures of background work (re-encryption jobs, encryption counts); the default drops them. */
  onBackgroundError?: (error: unknown, message: string) => void;
  /** Platform keys, re-wrapped with the tenant keys by a root rotation. */
  platformKeys?: { rewrapUnderRoot(): Promise<number> };
  /** Records every change to a keyring in the transaction that makes it (the audit module). */
  audit: AuditRecorder;
  /**
   * Tells the other instances about keyring changes, at once (without it: this instance only, and the others
   * keep sealing under the previous version until their entry expires).
   */
  invalidations?: CacheInvalidations;
}

/**
 * Tenant data keys: 256-bit, versioned, stored only wrapped by the root key provider. One version encrypts
 * (the current one); every version from `minDecryptionVersion` up decrypts. Unwrapped keys are cached
 * briefly (bounded) and dropped when they leave the cache; a caller holds a lease while it uses them, so
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
  readonly #platformKeys: KeyringOptions['platformKeys'];
  readonly #audit: AuditRecorder;
  readonly #jobs = new Map<string, Promise<number>>();
  /** Encryption counts on their way to the database, per tenant; a load waits for its tenant's. */
  readonly #countWrites = new Map<string, Promise<void>>();
  readonly #allowedOrigins: readonly string[];
  readonly #onBackgroundError: (error: unknown, message: string) => void;
  readonly #sweeper: NodeJS.Timeout | undefined;
  readonly #invalidations: CacheInvalidations;

  constructor(db: Database, provider: RootKeyProvider, clock: Clock, options: KeyringOptions) {
    this.#db = db;
    this.#provider = provider;
    this.#clock = clock;
    this.#caching = options.cacheTtlMs > 0;
    this.#cache = new TtlCache(options.cacheTtlMs, options.cacheMaxTenants, clock, (keyring) => keyring.evicted());
    this.#allowedOrigins = options.customerKmsAllowedOrigins ?? [];
    this.#onBackgroundError = options.onBackgroundError ?? (() => undefined);
    this.#platformKeys = options.platformKeys;
    this.#audit = options.audit;
    this.#invalidations = options.invalidations ?? new CacheInvalidations();
    this.#invalidations.on('tenant-keys', ({ tenantId }) => {
      this.#cache.delete(tenantId);
      // A load in flight read the keyring before the change: callers from now on wait for a fresh one.
      this.#loading.delete(tenantId);
    });
    // Expired entries are dropped on a timer too, not only when next looked up: an idle tenant's keys
    // leave memory (and its encryption count is stored) within about one TTL.
    if (this.#caching) {
      this.#sweeper = setInterval(() => this.#cache.evictExpired(), Math.max(1000, Math.min(options.cacheTtlMs, 30_000)));
      this.#sweeper.unref();
    }
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

  async #sealedRowCounts(tx: Queryable, tenantId: string): Promise<{ store: string; rows: { key_version: number | null; count: number }[] }[]> {
    const counts = [];
    for (const reencryptor of this.#reencryptors) counts.push({ store: reencryptor.name, rows: await reencryptor.countByKeyVersion(tx, tenantId) });
    return counts;
  }

  /** Creates the tenant's keyring with version 1, inside the caller's transaction (tenant context set). */
  async createKeyring(tx: Queryable, tenantId: string): Promise<void> {
    const key = randomBytes(dataKeyBytes);
    try {
      await insertKeyring(tx, tenantId, await this.#wrap(key, { tenantId, keyVersion: 1 }), this.#clock.now());
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
    // This instance's seal counts on their way to the database are part of the answer.
    await this.#countWrites.get(tenantId);
    const { keyring, keys, counts } = await this.#db.withTenant(tenantId, async (tx) => ({
      keyring: await this.#requireKeyring(tx, tenantId),
      keys: await listKeys(tx, tenantId),
      counts: await this.#sealedRowCounts(tx, tenantId),
    }));
    const countAt = (store: string | undefined, version: number | null) =>
      counts
        .filter((count) => store === undefined || count.store === store)
        .reduce((sum, count) => sum + (count.rows.find((row) => row.key_version === version)?.count ?? 0), 0);
    const recordsAt = (version: number | null) => countAt('records', version);
    return {
      currentVersion: keyring.current_version,
      minDecryptionVersion: keyring.min_decryption_version,
      rotationPeriodDays: keyring.rotation_period_days,
      rotationEncryptions: keyring.rotation_encryptions,
      effectiveRotationEncryptions: encryptionLimit(keyring),
      customerManaged: keyring.customer_kms_sealed !== null,
      destroyedAt: keyring.destroyed_at?.toISOString() ?? null,
      versions: keys.map((key) => ({
        version: key.version,
        state: versionState(key, keyring),
        createdAt: key.created_at.toISOString(),
        destroyedAt: key.destroyed_at?.toISOString() ?? null,
        records: recordsAt(key.version),
        sealedRows: countAt(undefined, key.version),
        encryptions: key.encryptions,
      })),
      unencryptedRecords: recordsAt(null),
    };
  }

  /** New version for new writes; older versions keep decrypting. */
  async rotate(tenantId: string): Promise<KeyringInfo> {
    await this.#db.withTenant(tenantId, async (tx) => {
      await this.#addVersion(tx, tenantId, await this.#requireKeyring(tx, tenantId, { forUpdate: true }), 'requested');
    });
    this.forget(tenantId);
    return this.describe(tenantId);
  }

  async configure(
    tenantId: string,
    settings: {
      minDecryptionVersion?: number | undefined;
      rotationPeriodDays?: number | null | undefined;
      rotationEncryptions?: number | null | undefined;
      force?: boolean | undefined;
    },
  ): Promise<KeyringInfo> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const keyring = await this.#requireKeyring(tx, tenantId, { forUpdate: true });
      const minDecryptionVersion = settings.minDecryptionVersion ?? keyring.min_decryption_version;
      if (minDecryptionVersion > keyring.current_version) {
        throw new BulwarkError('validation_failed', { message: `minDecryptionVersion cannot exceed the current version (${keyring.current_version}).` });
      }
      if (minDecryptionVersion > keyring.min_decryption_version && settings.force !== true) {
        const stranded = (await this.#sealedRowCounts(tx, tenantId))
          .flatMap((count) => count.rows)
          .filter((row) => row.key_version !== null && row.key_version < minDecryptionVersion)
          .reduce((sum, row) => sum + row.count, 0);
        if (stranded > 0) {
          throw new BulwarkError('conflict', {
            message: `${stranded} stored items still use versions below ${minDecryptionVersion}; re-encrypt first or pass force: true.`,
          });
        }
      }
      const rotationPeriodDays = settings.rotationPeriodDays === undefined ? keyring.rotation_period_days : settings.rotationPeriodDays;
      const rotationEncryptions = settings.rotationEncryptions === undefined ? keyring.rotation_encryptions : settings.rotationEncryptions;
      await updateKeyringSettings(tx, tenantId, { minDecryptionVersion, rotationPeriodDays, rotationEncryptions }, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, {
        action: 'keys.settings.update',
        target: { type: 'keyring', id: tenantId },
        detail: { minDecryptionVersion, rotationPeriodDays, rotationEncryptions, forced: settings.force === true },
      });
    });
    this.forget(tenantId);
    return this.describe(tenantId);
  }

  /** Destroys the key material of retired versions (below minDecryptionVersion). Irreversible. */
  async trim(tenantId: string): Promise<{ trimmedVersions: number[] }> {
    const trimmedVersions = await this.#db.withTenant(tenantId, async (tx) => {
      const keyring = await this.#requireKeyring(tx, tenantId, { forUpdate: true });
      const destroyed = await destroyKeys(tx, tenantId, keyring.min_decryption_version, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, { action: 'keys.trim', target: { type: 'keyring', id: tenantId }, detail: { trimmedVersions: destroyed } });
      return destroyed;
    });
    this.forget(tenantId);
    return { trimmedVersions };
  }

  /**
   * Crypto-shredding: destroys every data key version of the tenant. Each ciphertext sealed with them
   * becomes permanently undecryptable, wherever it was copied, provided no copy of the wrapped keys
   * survives where the root key can reach it: a database backup taken before this still holds them (the
   * backups issue keeps key material out of data backups).
   */
  async destroy(tenantId: string): Promise<{ destroyedVersions: number[]; destroyedAt: string }> {
    const now = this.#clock.now();
    const destroyedVersions = await this.#db.withTenant(tenantId, (tx) => this.destroyWithin(tx, tenantId, now));
    this.forget(tenantId);
    return { destroyedVersions, destroyedAt: now.toISOString() };
  }

  /**
   * `destroy` inside the caller's transaction (tenant context set), so the shredding commits with the rest
   * of it (offboarding: with the purge and its audit event). Call `forget` once it committed.
   */
  async destroyWithin(tx: Queryable, tenantId: string, now: Date): Promise<number[]> {
    await this.#requireKeyring(tx, tenantId, { forUpdate: true, allowDestroyed: true });
    const versions = await destroyKeys(tx, tenantId, null, now);
    await markKeyringDestroyed(tx, tenantId, now);
    return versions;
  }

  /**
   * Drops the tenant's unwrapped keys from this and every other instance's memory, after a change to its
   * keyring committed: the next seal anywhere loads the current version.
   */
  forget(tenantId: string): void {
    this.#invalidations.invalidate({ kind: 'tenant-keys', tenantId });
  }

  /**
   * Rotates the root key and re-wraps every tenant's data keys under the new root version. Data is not
   * touched: the data keys themselves do not change. A provider that cannot add a version itself (env:
   * the operator adds one to the variable and restarts) is not rotated, but the re-wrap still moves every
   * key to its current version, which is how such a rotation completes.
   */
  async rotateRoot(): Promise<{ rootVersion: number; rotated: boolean; tenants: number; keysRewrapped: number; platformKeysRewrapped: number }> {
    // The rotation spans one transaction per tenant, so its event cannot share one: it is written first, and
    // nothing is rotated unless it was (fail-closed). A rotation that stops half way is run again.
    const before = await this.describeRoot();
    await this.#audit.recordAlone('platform', { action: 'root-key.rotate', target: { type: 'root-key', id: before.keyName }, detail: { fromVersion: before.currentVersion } });
    let rotated = true;
    const description = await this.#provider.rotate().catch((error: unknown) => {
      if (!(error instanceof RootKeyError && error.reason === 'unsupported')) throw rootKeyProblem(error);
      rotated = false;
      return this.describeRoot();
    });
    const tenants = await this.#db.withPlatform(listKeyringTenants);
    let keysRewrapped = 0;
    for (const tenantId of tenants) {
      keysRewrapped += await this.#db.withTenant(tenantId, async (tx) => {
        let count = 0;
        // With a customer key, wrapped_key holds share A: the customer's KMS is not needed here.
        for (const row of await listKeys(tx, tenantId)) {
          if (row.wrapped_key === null) continue;
          const context = { tenantId, keyVersion: row.version };
          await replaceWrappedKey(tx, tenantId, row.version, await this.#rewrapUnderRoot(row.wrapped_key, context));
          count += 1;
        }
        const keyring = await findKeyring(tx, tenantId);
        if (keyring?.lookup_wrapped_key != null) {
          await replaceLookupWrappedKey(tx, tenantId, await this.#rewrapUnderRoot(keyring.lookup_wrapped_key, lookupWrapContext(tenantId)));
        }
        if (keyring?.customer_kms_wrapped_key != null) {
          const context = credentialsWrapContext(tenantId);
          await replaceCustomerKmsWrappedKey(tx, tenantId, await this.#rewrapUnderRoot(keyring.customer_kms_wrapped_key, context));
        }
        return count;
      });
    }
    const platformKeysRewrapped = (await this.#platformKeys?.rewrapUnderRoot()) ?? 0;
    return { rootVersion: description.currentVersion, rotated, tenants: tenants.length, keysRewrapped, platformKeysRewrapped };
  }

  /**
   * Moves every registered store's rows of this tenant to the current key version, in batches, in the
   * background. Returns at once; progress shows in `describe` (records per version). One job per tenant.
   */
  async startReencryption(tenantId: string, batchSize = 200): Promise<{ started: boolean }> {
    if (this.#jobs.has(tenantId)) return { started: false };
    await this.#audit.recordAlone({ tenantId }, { action: 'keys.reencrypt', target: { type: 'keyring', id: tenantId } });
    if (this.#jobs.has(tenantId)) return { started: false };
    const job = this.reencrypt(tenantId, batchSize).finally(() => this.#jobs.delete(tenantId));
    job.catch((error: unknown) => this.#onBackgroundError(error, 're-encryption job failed'));
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

  /** On shutdown: drops the keys and waits for their encryption counts to reach the database. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.forgetUnwrappedKeys();
    await Promise.all(this.#countWrites.values());
  }

  /** The tenant's customer KMS settings, without the token; 404 when it has none. */
  async customerKey(tenantId: string): Promise<CustomerKmsView> {
    const keyring = await this.#db.withTenant(tenantId, (tx) => this.#requireKeyring(tx, tenantId));
    if (keyring.customer_kms_sealed === null || keyring.customer_kms_configured_at === null) {
      throw new BulwarkError('not_found', { message: 'This tenant has no customer-managed key.' });
    }
    const { provider, address, mountPath, keyName, namespace } = await this.#customerKmsSettings(tenantId, keyring);
    return { provider, address, mountPath, keyName, namespace, configuredAt: keyring.customer_kms_configured_at.toISOString() };
  }

  /**
   * Puts the tenant's data keys under a customer-managed key (or moves them to another one): after a
   * test wrap proves the KMS works, every live version is split anew into a root share and a customer
   * share. The data keys, and so the data, do not change. Changing keys needs the previous KMS to work.
   */
  async setCustomerKey(tenantId: string, settings: CustomerKmsSettings): Promise<CustomerKmsView> {
    assertOriginAllowed(settings.address, this.#allowedOrigins);
    const next = customerKmsProvider(settings);
    await probe(next, tenantId).catch((error: unknown) => {
      throw customerKeyRejected(error);
    });
    await this.#db.withTenant(tenantId, async (tx) => {
      const keyring = await this.#requireKeyring(tx, tenantId, { forUpdate: true });
      await this.#resplitAll(tx, tenantId, keyring, next);
      const sealingKey = randomBytes(dataKeyBytes);
      try {
        const sealed = sealCustomerKms(sealingKey, tenantId, settings);
        await setCustomerKms(tx, tenantId, { sealed, wrappedKey: await this.#wrap(sealingKey, credentialsWrapContext(tenantId)) }, this.#clock.now());
      } finally {
        sealingKey.fill(0);
      }
      // The settings name the customer's KMS; the token is never part of an event.
      await this.#audit.record(tx, { tenantId }, {
        action: 'keys.customer-key.set',
        target: { type: 'keyring', id: tenantId },
        detail: { provider: settings.provider, address: settings.address, mountPath: settings.mountPath, keyName: settings.keyName, namespace: settings.namespace },
      });
    });
    this.forget(tenantId);
    return this.customerKey(tenantId);
  }

  /** Back to root-only wrapping: needs the customer's KMS to work one last time. */
  async removeCustomerKey(tenantId: string): Promise<void> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const keyring = await this.#requireKeyring(tx, tenantId, { forUpdate: true });
      if (keyring.customer_kms_sealed === null) throw new BulwarkError('not_found', { message: 'This tenant has no customer-managed key.' });
      await this.#resplitAll(tx, tenantId, keyring, undefined);
      await setCustomerKms(tx, tenantId, null, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, { action: 'keys.customer-key.remove', target: { type: 'keyring', id: tenantId } });
    });
    this.forget(tenantId);
  }

  async #unwrapped(tenantId: string): Promise<LoadedKeyring> {
    // Without a cache every caller gets keys of its own, dropped as soon as its use settles.
    if (!this.#caching) return this.#load(tenantId);
    const cached = this.#cache.get(tenantId);
    if (cached !== undefined && !cached.outdated) return cached;
    if (cached !== undefined) this.#cache.delete(tenantId);
    let loading = this.#loading.get(tenantId);
    if (loading === undefined) {
      const load = this.#load(tenantId).finally(() => {
        if (this.#loading.get(tenantId) === load) this.#loading.delete(tenantId);
      });
      this.#loading.set(tenantId, load);
      loading = load;
    }
    return loading;
  }

  async #load(tenantId: string): Promise<LoadedKeyring> {
    let since = this.#cache.mark();
    await this.#countWrites.get(tenantId);
    let { keyring, keys } = await this.#read(tenantId);
    if (keyring === undefined) {
      // Tenants created before the keys module get their keyring on first use.
      await this.#db.withTenant(tenantId, (tx) => this.createKeyring(tx, tenantId));
      ({ keyring, keys } = await this.#read(tenantId));
    }
    if (keyring === undefined) throw new BulwarkError('not_found');
    if (keyring.destroyed_at !== null) throw new BulwarkError('keys_destroyed');
    if (this.#rotationDue(keyring, keys)) {
      await this.#rotateIfDue(tenantId);
      // The rotation invalidated the entry itself; what is read from here on is after it.
      since = this.#cache.mark();
      ({ keyring, keys } = await this.#read(tenantId));
      if (keyring === undefined) throw new BulwarkError('not_found');
    }
    const lookupKey = await this.#lookupKey(tenantId, keyring);
    const unwrapped = new Map<number, KeyObject>();
    const customer = await this.#customerKms(tenantId, keyring);
    for (const row of keys) {
      if (row.wrapped_key === null || row.version < keyring.min_decryption_version) continue;
      const key = await this.#unwrapVersion(tenantId, row, row.wrapped_key, customer);
      try {
        unwrapped.set(row.version, createSecretKey(key));
      } finally {
        key.fill(0);
      }
    }
    const current = keyring.current_version;
    const sealedSoFar = keys.find((row) => row.version === current)?.encryptions ?? 0;
    const loaded = new LoadedKeyring(
      { current, minDecryption: keyring.min_decryption_version, keys: unwrapped, lookupKey, sealBudget: encryptionLimit(keyring) - sealedSoFar },
      this.#caching,
      (sealed) => this.#recordEncryptions(tenantId, current, sealed),
    );
    // Not kept if the keyring was invalidated meanwhile (it may predate the change): the copy is dropped, and
    // a caller whose lease it then refuses loads again.
    if (this.#caching && !this.#cache.set(tenantId, loaded, since)) loaded.evicted();
    return loaded;
  }

  /** The tenant's lookup key, created on first use (tenants from before it get one then). */
  async #lookupKey(tenantId: string, keyring: KeyringRow): Promise<KeyObject> {
    let wrapped = keyring.lookup_wrapped_key;
    if (wrapped === null) {
      const fresh = randomBytes(dataKeyBytes);
      try {
        const candidate = await this.#wrap(fresh, lookupWrapContext(tenantId));
        wrapped = await this.#db.withTenant(tenantId, async (tx) => {
          await setLookupKeyIfMissing(tx, tenantId, candidate);
          return (await findKeyring(tx, tenantId))?.lookup_wrapped_key ?? null;
        });
      } finally {
        fresh.fill(0);
      }
      if (wrapped === null) throw new BulwarkError('keys_destroyed');
    }
    const key = await this.#unwrap(wrapped, lookupWrapContext(tenantId));
    try {
      return createSecretKey(key);
    } finally {
      key.fill(0);
    }
  }

  /** Adds a copy's seal count to the stored one, in order per tenant, off the request path. */
  #recordEncryptions(tenantId: string, version: number, sealed: number): void {
    if (sealed === 0) return;
    const previous = this.#countWrites.get(tenantId) ?? Promise.resolve();
    const write = previous
      .then(() => this.#db.withTenant(tenantId, (tx) => addEncryptions(tx, tenantId, version, sealed)))
      .catch((error: unknown) => this.#onBackgroundError(error, 'could not record data key encryptions'))
      .finally(() => {
        if (this.#countWrites.get(tenantId) === write) this.#countWrites.delete(tenantId);
      });
    this.#countWrites.set(tenantId, write);
  }

  /** Rotation on age or count, decided again under the lock so that concurrent loads rotate once. */
  async #rotateIfDue(tenantId: string): Promise<void> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const keyring = await this.#requireKeyring(tx, tenantId, { forUpdate: true });
      if (this.#rotationDue(keyring, await listKeys(tx, tenantId))) await this.#addVersion(tx, tenantId, keyring, 'automatic');
    });
    this.forget(tenantId);
  }

  /** The data key of one version: the root's unwrap, xor the customer's share when there is one. */
  async #unwrapVersion(tenantId: string, row: KeyRow, wrappedKey: string, customer: RootKeyProvider | undefined): Promise<Buffer> {
    const context = { tenantId, keyVersion: row.version };
    const rootPart = await this.#unwrap(wrappedKey, context);
    if (row.customer_wrapped_share === null) return rootPart;
    try {
      if (customer === undefined) throw new BulwarkError('data_integrity_failed', { detail: 'a customer key share without customer KMS settings' });
      const share = await customer.unwrap(row.customer_wrapped_share, context).catch((error: unknown) => {
        throw customerKeyProblem(error);
      });
      try {
        return xorShares(rootPart, share);
      } finally {
        share.fill(0);
      }
    } finally {
      rootPart.fill(0);
    }
  }

  /** Wraps a data key for storage: whole under the root, or as a root share and a customer share. */
  async #wrapParts(
    context: WrapContext,
    dataKey: Buffer,
    customer: RootKeyProvider | undefined,
  ): Promise<{ wrappedKey: string; customerWrappedShare: string | null }> {
    if (customer === undefined) return { wrappedKey: await this.#wrap(dataKey, context), customerWrappedShare: null };
    const customerShare = randomBytes(dataKeyBytes);
    const rootShare = xorShares(dataKey, customerShare);
    try {
      const customerWrappedShare = await customer.wrap(customerShare, context).catch((error: unknown) => {
        throw customerKeyProblem(error);
      });
      return { wrappedKey: await this.#wrap(rootShare, context), customerWrappedShare };
    } finally {
      customerShare.fill(0);
      rootShare.fill(0);
    }
  }

  /** Re-wraps every live version for `next` (a customer key, or none): same data keys, new shares. */
  async #resplitAll(tx: Queryable, tenantId: string, keyring: KeyringRow, next: RootKeyProvider | undefined): Promise<void> {
    const previous = await this.#customerKms(tenantId, keyring);
    for (const row of await listKeys(tx, tenantId)) {
      if (row.wrapped_key === null) continue;
      const key = await this.#unwrapVersion(tenantId, row, row.wrapped_key, previous);
      try {
        await replaceKeyParts(tx, tenantId, row.version, await this.#wrapParts({ tenantId, keyVersion: row.version }, key, next));
      } finally {
        key.fill(0);
      }
    }
  }

  async #customerKms(tenantId: string, keyring: KeyringRow): Promise<RootKeyProvider | undefined> {
    if (keyring.customer_kms_sealed === null) return undefined;
    return customerKmsProvider(await this.#customerKmsSettings(tenantId, keyring));
  }

  async #customerKmsSettings(tenantId: string, keyring: KeyringRow): Promise<CustomerKmsSettings> {
    if (keyring.customer_kms_sealed === null || keyring.customer_kms_wrapped_key === null) {
      throw new BulwarkError('internal_error', { detail: 'customer KMS settings are incomplete' });
    }
    const sealingKey = await this.#unwrap(keyring.customer_kms_wrapped_key, credentialsWrapContext(tenantId));
    try {
      return openCustomerKms(sealingKey, tenantId, keyring.customer_kms_sealed);
    } finally {
      sealingKey.fill(0);
    }
  }

  async #rewrapUnderRoot(wrapped: string, context: WrapContext): Promise<string> {
    const key = await this.#unwrap(wrapped, context);
    try {
      return await this.#wrap(key, context);
    } finally {
      key.fill(0);
    }
  }

  #read(tenantId: string): Promise<{ keyring: KeyringRow | undefined; keys: KeyRow[] }> {
    return this.#db.withTenant(tenantId, async (tx) => ({ keyring: await findKeyring(tx, tenantId), keys: await listKeys(tx, tenantId) }));
  }

  #rotationDue(keyring: KeyringRow, keys: KeyRow[]): boolean {
    const current = keys.find((key) => key.version === keyring.current_version);
    if (current === undefined) return false;
    if (current.encryptions >= encryptionLimit(keyring)) return true;
    return keyring.rotation_period_days !== null && this.#clock.now().getTime() - current.created_at.getTime() >= keyring.rotation_period_days * dayMs;
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

  /** A new current version; under a customer key its customer share is wrapped by the customer's KMS. */
  async #addVersion(tx: Queryable, tenantId: string, keyring: KeyringRow, trigger: 'requested' | 'automatic'): Promise<void> {
    const version = keyring.current_version + 1;
    const customer = await this.#customerKms(tenantId, keyring);
    const key = randomBytes(dataKeyBytes);
    try {
      const now = this.#clock.now();
      await insertKey(tx, tenantId, version, await this.#wrapParts({ tenantId, keyVersion: version }, key, customer), now);
      await setCurrentVersion(tx, tenantId, version, now);
    } finally {
      key.fill(0);
    }
    // An automatic rotation happens in whatever request loaded the keys; it is the system's act, not the caller's.
    await this.#audit.record(tx, { tenantId }, {
      action: 'keys.rotate',
      target: { type: 'keyring', id: tenantId },
      detail: { version, trigger },
      ...(trigger === 'automatic' ? { actor: { kind: 'system', id: null } } : {}),
    });
  }

  async #wrap(key: Buffer, context: WrapContext): Promise<string> {
    try {
      return await this.#provider.wrap(key, context);
    } catch (error) {
      throw rootKeyProblem(error);
    }
  }

  async #unwrap(wrapped: string, context: WrapContext): Promise<Buffer> {
    try {
      return await this.#provider.unwrap(wrapped, context);
    } catch (error) {
      throw rootKeyProblem(error);
    }
  }
}

const lookupWrapContext = (tenantId: string): WrapContext => ({ tenantId, keyVersion: 1, purpose: 'lookup-key' });

function encryptionLimit(keyring: KeyringRow): number {
  return Math.min(keyring.rotation_encryptions ?? maxEncryptionsPerKey, maxEncryptionsPerKey);
}

/** A test wrap and unwrap of a throwaway key: the KMS is reachable, the token works, the key exists. */
async function probe(provider: RootKeyProvider, tenantId: string): Promise<void> {
  const key = randomBytes(dataKeyBytes);
  const context = { tenantId, keyVersion: 1 };
  let back: Buffer | undefined;
  try {
    back = await provider.unwrap(await provider.wrap(key, context), context);
    if (!timingSafeEqual(back, key)) throw new RootKeyError('corrupt', 'the KMS did not return the key it wrapped');
  } finally {
    key.fill(0);
    back?.fill(0);
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
