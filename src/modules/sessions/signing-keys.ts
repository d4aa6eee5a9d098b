import { createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject, randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { type EnvelopeContext, EnvelopeError, open, seal } from '../keys/envelope.ts';
import type { RootKeyProvider, WrapContext } from '../keys/root/provider.ts';
import { rootKeyProblem } from '../keys/service.ts';
import {
  findActiveKey,
  findSealedPrivateKey,
  insertActiveKey,
  listVerificationKeys,
  lockSigningKeys,
  type NewSigningKey,
  retireKey,
  type SigningKeyRow,
} from './signing-keys-store.ts';

/**
 * The access-token signing keys: one Ed25519 key signs at a time; a rotation retires it (its private half
 * is destroyed at once) and its public half keeps verifying for the verification window. Every instance
 * shares the keys through the `signing_keys` table; only the instance's copy of the active private key is
 * ever in clear, in memory (a KeyObject: outside the JS heap, freed when collected, not zeroable from JS).
 */

/** The one algorithm Bulwark signs with and the only one its verifier accepts. */
export const signingAlgorithm = 'EdDSA';
/** The longest access-token lifetime any instance may be configured with (the window must cover it). */
export const maxAccessTokenTtlSeconds = 900;
/** Clock skew tolerated between instances for exp, nbf and iat. */
export const clockToleranceSeconds = 5;

export interface SigningKeyringOptions {
  /** The active key is replaced once it has signed for this long (checked when a token is issued). */
  rotateAfterMs: number;
  /**
   * An instance re-reads which key is active at most this long after it last did, before it signs: another
   * instance may have rotated. It is also how long an instance may go on signing with a key just retired.
   */
  refreshMs: number;
  /** An unknown `kid` reloads the public keys from the database at most this often (a random kid costs nothing). */
  unknownKidReloadMs: number;
  /** Told about a failed automatic rotation (the current key goes on signing). */
  onBackgroundError?: (error: unknown, message: string) => void;
}

export const defaultSigningKeyringOptions: Pick<SigningKeyringOptions, 'refreshMs' | 'unknownKidReloadMs'> = { refreshMs: 10_000, unknownKidReloadMs: 5_000 };

/**
 * How long a retired key keeps verifying: a token signed just before the retirement lives for up to the
 * longest lifetime; an instance that has not yet noticed the rotation signs for up to `refreshMs` more; and
 * a verifier's clock may lag by the tolerance.
 */
export function verificationWindowMs(options: Pick<SigningKeyringOptions, 'refreshMs'>): number {
  return (maxAccessTokenTtlSeconds + clockToleranceSeconds) * 1000 + options.refreshMs;
}

export interface VerificationKey {
  kid: string;
  key: KeyObject;
  /** The public JWK as the JWKS publishes it (kty, crv, x, kid, alg, use). */
  jwk: JsonWebKey;
  activatedAt: Date;
  retiredAt: Date | null;
}

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  activatedAt: Date;
}

const kidBytes = 12; // 16 base64url characters
const sealKeyBytes = 32;
const ed25519PublicKeyChars = 43; // 32 bytes, base64url without padding

// The private key is sealed in the envelope format under a random key of its own, bound to its row, and
// that key is wrapped by the root key under the signing-key purpose: a wrap made for a tenant data key (or
// any other purpose) never unwraps here, and a sealed key moved to another row does not open.
const sealContext = (kid: string): EnvelopeContext => ({ tenantId: 'platform', table: 'signing_keys', column: 'private_sealed', rowId: kid });
export const signingKeyWrapContext: WrapContext = { tenantId: 'platform', keyVersion: 1, purpose: 'signing-key' };

type RotationMode = 'force' | 'if-missing' | 'if-due';

export class SigningKeyring {
  readonly #db: Database;
  readonly #rootKeys: RootKeyProvider;
  readonly #clock: Clock;
  readonly #options: SigningKeyringOptions;
  readonly #windowMs: number;
  #keys = new Map<string, VerificationKey>();
  /** The active key as of the last load. */
  #activeKid: string | undefined;
  /** This instance's copy of the signing key: the only private key in clear, and only in memory. */
  #active: SigningKey | undefined;
  /** Clock time at which the last successful load started (what it saw was true at least then). */
  #loadedAt = Number.NEGATIVE_INFINITY;
  /**
   * Clock time of the last reload an unknown kid caused, successful or not. Only those count towards the
   * limit: if the periodic refresh counted, a busy instance would refuse a freshly rotated kid for up to
   * `unknownKidReloadMs` after half of all rotations.
   */
  #unknownKidReloadAt = Number.NEGATIVE_INFINITY;
  /** After a failed automatic rotation: no new attempt before this clock time. */
  #rotationRetryAt = Number.NEGATIVE_INFINITY;
  #loading: Promise<void> | undefined;
  /** Loads and rotations run one at a time, so a slow load never overwrites what a rotation just set. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(db: Database, rootKeys: RootKeyProvider, clock: Clock, options: SigningKeyringOptions) {
    this.#db = db;
    this.#rootKeys = rootKeys;
    this.#clock = clock;
    this.#options = options;
    this.#windowMs = verificationWindowMs(options);
  }

  /** Loads the keys and creates the first signing key if there is none (or rotates one that is due). */
  async init(): Promise<void> {
    await this.#exclusive(async () => {
      await this.#load();
      await this.#syncActive();
      if (this.#active !== undefined && this.#isDue(this.#active)) {
        await this.#rotateNow('if-due');
        await this.#syncActive();
      }
    });
  }

  /** The key to sign with now: re-read from the database when stale, created when missing, rotated when due. */
  async signingKey(): Promise<SigningKey> {
    if (this.#active === undefined || this.#clock.now().getTime() - this.#loadedAt >= this.#options.refreshMs) await this.#reload();
    if (this.#activeKid === undefined || this.#active?.kid !== this.#activeKid) await this.#exclusive(() => this.#syncActive());
    const now = this.#clock.now().getTime();
    if (this.#active !== undefined && this.#isDue(this.#active) && now >= this.#rotationRetryAt) {
      try {
        await this.#exclusive(async () => {
          await this.#rotateNow('if-due');
          await this.#syncActive();
        });
      } catch (error) {
        // Rotation is hygiene: while the root key provider or the database refuses it, the current key,
        // still valid, goes on signing, and the rotation is retried later rather than on every token.
        this.#rotationRetryAt = now + this.#options.refreshMs;
        this.#options.onBackgroundError?.(error, 'signing key rotation failed; the current key goes on signing');
      }
    }
    if (this.#active === undefined) throw new BulwarkError('internal_error', { detail: 'no active signing key' });
    return this.#active;
  }

  /** The key of `kid` if it is active or retired within its verification window; in memory only. */
  verificationKey(kid: string): VerificationKey | undefined {
    const key = this.#keys.get(kid);
    if (key === undefined) return undefined;
    if (key.retiredAt !== null && key.retiredAt.getTime() + this.#windowMs <= this.#clock.now().getTime()) return undefined;
    return key;
  }

  /**
   * `verificationKey`, and for a kid this instance does not know, one reload of the public keys (another
   * instance may have rotated), at most once per `unknownKidReloadMs` whatever the kids asked for.
   */
  async findVerificationKey(kid: string): Promise<VerificationKey | undefined> {
    const known = this.verificationKey(kid);
    if (known !== undefined || this.#keys.has(kid)) return known;
    if (this.#loading !== undefined) {
      // A load already under way may have started before the rotation that made this kid: wait, then decide.
      await this.#loading;
      if (this.#keys.has(kid)) return this.verificationKey(kid);
    }
    const now = this.#clock.now().getTime();
    if (now - this.#unknownKidReloadAt < this.#options.unknownKidReloadMs) return undefined;
    this.#unknownKidReloadAt = now;
    await this.#reload();
    return this.verificationKey(kid);
  }

  /** Replaces the signing key now; the old one retires and keeps verifying for the window. */
  async rotate(): Promise<{ kid: string }> {
    return this.#exclusive(async () => {
      await this.#rotateNow('force');
      await this.#syncActive();
      if (this.#active === undefined) throw new BulwarkError('internal_error', { detail: 'no active signing key after a rotation' });
      return { kid: this.#active.kid };
    });
  }

  /** The public JWKs of the active key and of the retired keys still within their window, newest first. */
  async jwks(): Promise<JsonWebKey[]> {
    if (this.#clock.now().getTime() - this.#loadedAt >= this.#options.refreshMs) {
      try {
        await this.#reload();
      } catch (error) {
        // Public keys a few seconds stale beat no JWKS while the database is away; init() loaded them once.
        if (this.#keys.size === 0) throw error;
        this.#options.onBackgroundError?.(error, 'signing keys could not be reloaded; the JWKS answers from memory');
      }
    }
    const keys: JsonWebKey[] = [];
    for (const { kid } of this.#keys.values()) {
      const key = this.verificationKey(kid);
      if (key !== undefined) keys.push({ ...key.jwk });
    }
    return keys;
  }

  #isDue(key: SigningKey): boolean {
    return key.activatedAt.getTime() + this.#options.rotateAfterMs <= this.#clock.now().getTime();
  }

  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** One load at a time per instance: concurrent callers share it. */
  #reload(): Promise<void> {
    this.#loading ??= this.#exclusive(() => this.#load()).finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  /**
   * Reads the public keys and which one is active. Never touches private material: a verifier that meets an
   * unknown kid reloads through here, and needs neither the root key provider nor the private half. Run exclusively.
   */
  async #load(): Promise<void> {
    const startedAt = this.#clock.now().getTime();
    const rows = await this.#db.withPlatform((tx) => listVerificationKeys(tx, new Date(startedAt - this.#windowMs)));
    const keys = new Map<string, VerificationKey>();
    for (const row of rows) keys.set(row.kid, verificationKeyOf(row));
    this.#keys = keys;
    this.#activeKid = rows.find((row) => row.retired_at === null)?.kid;
    this.#loadedAt = startedAt;
  }

  /**
   * Makes the in-memory signing key the one the database says is active: unseals it when it changed (another
   * instance rotated), creates one when there is none. Run exclusively.
   */
  async #syncActive(): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const kid = this.#activeKid;
      if (kid === undefined) {
        await this.#rotateNow('if-missing');
      } else if (this.#active?.kid === kid) {
        return;
      } else {
        const unsealed = await this.#unseal(kid);
        if (unsealed !== undefined) {
          this.#active = unsealed;
          return;
        }
        // Retired (and destroyed) by another instance since the load: look again.
        await this.#load();
      }
    }
    throw new BulwarkError('internal_error', { detail: 'the active signing key kept changing while it was loaded' });
  }

  async #unseal(kid: string): Promise<SigningKey | undefined> {
    const published = this.#keys.get(kid);
    const stored = await this.#db.withPlatform((tx) => findSealedPrivateKey(tx, kid));
    if (stored === undefined || published === undefined) return undefined;
    let sealKey: Buffer;
    try {
      sealKey = await this.#rootKeys.unwrap(stored.wrappedKey, signingKeyWrapContext);
    } catch (error) {
      throw rootKeyProblem(error);
    }
    let der: Buffer;
    try {
      der = open(stored.sealed, sealContext(kid), (version) => (version === 1 ? sealKey : undefined));
    } catch (error) {
      if (error instanceof EnvelopeError) throw integrityProblem(`signing key ${kid}: sealed private key ${error.reason}`, error);
      throw error;
    } finally {
      sealKey.fill(0);
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } catch (error) {
      throw integrityProblem(`signing key ${kid}: the private key does not parse`, error);
    } finally {
      der.fill(0);
    }
    // A private half that does not match the published public half would sign tokens nobody can verify.
    if (privateKey.asymmetricKeyType !== 'ed25519' || createPublicKey(privateKey).export({ format: 'jwk' }).x !== published.jwk.x) {
      throw integrityProblem(`signing key ${kid}: the private key does not match the public key`);
    }
    return { kid, privateKey, activatedAt: published.activatedAt };
  }

  /**
   * Creates a key and makes it the signing key, retiring the active one, under a fleet-wide lock; with
   * `if-missing` / `if-due` only when still needed once the lock is held (another instance may have just
   * done it). Then reloads; the caller syncs the active key. Run exclusively.
   */
  async #rotateNow(mode: RotationMode): Promise<void> {
    // Key generation and the root-key wrap (a KMS call) happen before the transaction: no lock waits on them.
    const prepared = await this.#prepareKey();
    const now = this.#clock.now();
    const created = await this.#db.withPlatform(async (tx) => {
      await lockSigningKeys(tx);
      const active = await findActiveKey(tx);
      if (mode === 'if-missing' && active !== undefined) return false;
      if (mode === 'if-due' && active !== undefined && active.activated_at.getTime() + this.#options.rotateAfterMs > now.getTime()) return false;
      if (active !== undefined) await retireKey(tx, active.kid, now);
      await insertActiveKey(tx, prepared.row, now);
      return true;
    });
    // The new private key is already in memory: nothing to unwrap.
    if (created) this.#active = { kid: prepared.row.kid, privateKey: prepared.privateKey, activatedAt: now };
    await this.#load();
  }

  async #prepareKey(): Promise<{ row: NewSigningKey; privateKey: KeyObject }> {
    const kid = randomBytes(kidBytes).toString('base64url');
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const sealKey = randomBytes(sealKeyBytes);
    try {
      const privateSealed = seal(sealKey, 1, der, sealContext(kid));
      let privateWrappedKey: string;
      try {
        privateWrappedKey = await this.#rootKeys.wrap(sealKey, signingKeyWrapContext);
      } catch (error) {
        throw rootKeyProblem(error);
      }
      const { kty, crv, x } = publicKey.export({ format: 'jwk' });
      return { row: { kid, alg: signingAlgorithm, publicJwk: { kty, crv, x }, privateSealed, privateWrappedKey }, privateKey };
    } finally {
      sealKey.fill(0);
      der.fill(0);
    }
  }
}

function integrityProblem(detail: string, cause?: unknown): BulwarkError {
  return new BulwarkError('data_integrity_failed', { detail, cause });
}

/** The public key of a stored row, checked to be exactly an Ed25519 public JWK. */
function verificationKeyOf(row: SigningKeyRow): VerificationKey {
  const stored = row.public_jwk;
  if (
    row.alg !== signingAlgorithm ||
    typeof stored !== 'object' ||
    stored === null ||
    !('kty' in stored && stored.kty === 'OKP') ||
    !('crv' in stored && stored.crv === 'Ed25519') ||
    !('x' in stored && typeof stored.x === 'string' && stored.x.length === ed25519PublicKeyChars)
  ) {
    throw integrityProblem(`signing key ${row.kid}: the stored public key is not an Ed25519 JWK`);
  }
  const jwk: JsonWebKey = { kty: 'OKP', crv: 'Ed25519', x: stored.x, kid: row.kid, alg: signingAlgorithm, use: 'sig' };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: stored.x }, format: 'jwk' });
  } catch (error) {
    throw integrityProblem(`signing key ${row.kid}: the stored public key does not parse`, error);
  }
  return { kid: row.kid, key, jwk, activatedAt: row.activated_at, retiredAt: row.retired_at };
}
