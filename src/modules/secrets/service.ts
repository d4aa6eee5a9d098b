import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import type { TenantGate } from '../../platform/http/auth.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { type Actor, actAs } from '../../platform/http/request-context.ts';
import { newId } from '../../platform/ids.ts';
import { digestsEqual } from '../../platform/secret-compare.ts';
import type { AuditRecorder, AuditScope } from '../audit/service.ts';
import type { EnvelopeContext } from '../keys/envelope.ts';
import type { KeyringService, Reencryptor, TenantKeys } from '../keys/service.ts';
import { type PutSecretBody, type RegisterServiceBody, type SealedSecret, type SecretMetadata, type SecretSummary, type Service, secretValueMaxBytes } from './schemas.ts';
import { encBytes, isSealableKey, parseX25519PublicKey, sealedSecretFormat, sealingAlgorithm, sealSecret } from './sealing.ts';
import {
  activeServiceClash,
  countSecretCopiesByKeyVersion,
  countSecrets,
  deleteSecret,
  findActiveServices,
  findSecret,
  findSecretCopy,
  findService,
  findServiceCredential,
  insertSecretCopy,
  insertSecretVersion,
  insertService,
  listSecrets,
  listSecretVersions,
  listServices,
  lockStaleSecretCopies,
  nextSecretVersion,
  pruneSecretVersions,
  resealSecretCopy,
  retireService,
  type SecretRow,
  type ServiceRow,
  secretExists,
} from './store.ts';

const sha256 = (value: string) => createHash('sha256').update(value).digest();

/** `bwsv_<serviceId><secret>`: the prefix lets secret scanners find a leaked credential, the id makes the lookup one row. */
const credentialShape = /^bwsv_([0-9a-f]{12})([A-Za-z0-9_-]{43})$/;
const serviceCredentialPrefix = 'bwsv_';

/** Bounds on what one tenant keeps: secrets, and versions per secret (older ones are dropped on rotation). */
const maxSecretsPerTenant = 1000;
export const keptVersions = 10;

function toService(row: ServiceRow): Service {
  return {
    id: row.id,
    name: row.name,
    publicKey: row.public_key.toString('base64url'),
    status: row.retired_at === null ? 'active' : 'retired',
    createdAt: row.created_at.toISOString(),
    retiredAt: row.retired_at?.toISOString() ?? null,
  };
}

function invalid(message: string, errors: { path: string; message: string }[]): BulwarkError {
  return new BulwarkError('validation_failed', { message, extensions: { errors: errors.map((error) => ({ in: 'body', ...error })) } });
}

/**
 * The services that read secrets: registered by an operator with an X25519 public key, authenticated by a
 * credential of their own (stored as a SHA-256 hash, like API keys), retired when their key is lost or
 * replaced. Platform data: every statement runs in the platform scope, every change in the platform chain.
 */
export class ServiceRegistry {
  readonly #db: Database;
  readonly #audit: AuditRecorder;
  readonly #clock: Clock;

  constructor(db: Database, audit: AuditRecorder, clock: Clock) {
    this.#db = db;
    this.#audit = audit;
    this.#clock = clock;
  }

  async register(input: RegisterServiceBody): Promise<Service & { credential: string }> {
    // 1. Validate: a real X25519 key that HPKE can seal to (not a point of small order).
    const publicKey = parseX25519PublicKey(input.publicKey);
    if (publicKey === undefined || !(await isSealableKey(publicKey))) {
      throw invalid('publicKey is not an X25519 public key (base64url of 32 bytes, or an SPKI PEM).', [{ path: '/publicKey', message: 'must be an X25519 public key' }]);
    }
    const secret = randomBytes(32).toString('base64url');
    const id = newId();
    const created = await this.#db.withPlatform(async (tx) => {
      // 2. Preconditions: the name and the key are not an active service's.
      const clash = await activeServiceClash(tx, input.name, publicKey);
      if (clash.name) throw new BulwarkError('conflict', { message: `An active service is named ${input.name}; retire it first.` });
      if (clash.key) throw new BulwarkError('conflict', { message: 'An active service has this public key; each service needs a key of its own.' });
      // 3. Mutate and audit.
      const row = await insertService(tx, { id, name: input.name, publicKey, credentialHash: sha256(secret), now: this.#clock.now() });
      if (row === undefined) throw new BulwarkError('conflict', { message: 'Another registration took this name or key at the same time.' });
      await this.#audit.record(tx, 'platform', { action: 'service.register', target: { type: 'service', id }, detail: { name: input.name } });
      return row;
    });
    return { ...toService(created), credential: `${serviceCredentialPrefix}${id}${secret}` };
  }

  async list(limit: number, cursor: string | undefined): Promise<{ items: Service[]; nextCursor: string | null }> {
    const after = decodeCursor(cursor);
    const rows = await this.#db.withPlatform((tx) => listServices(tx, after, limit + 1));
    return toPage(rows, limit, toService);
  }

  async get(id: string): Promise<Service> {
    const row = await this.#db.withPlatform((tx) => findService(tx, id));
    if (row === undefined) throw notFound();
    return toService(row);
  }

  /** The credential stops working at once (it is checked against the database on every read). */
  async retire(id: string): Promise<Service> {
    const row = await this.#db.withPlatform(async (tx) => {
      const retired = await retireService(tx, id, this.#clock.now());
      if (retired !== undefined) await this.#audit.record(tx, 'platform', { action: 'service.retire', target: { type: 'service', id }, detail: { name: retired.name } });
      return retired;
    });
    if (row === undefined) throw notFound();
    return toService(row);
  }

  /** The service id a credential proves, or null (malformed, unknown, wrong secret, retired). */
  async authenticate(token: string): Promise<string | null> {
    const match = credentialShape.exec(token);
    if (!match) return null;
    const [, id = '', secret = ''] = match;
    const stored = await this.#db.withPlatform((tx) => findServiceCredential(tx, id));
    if (stored === undefined || !digestsEqual(sha256(secret), stored.credentialHash) || stored.retired) return null;
    return id;
  }

  /**
   * The public keys of `ids`, each an active service; otherwise validation_failed naming the readers that are
   * not (unknown and retired alike, so a tenant learns nothing about other services).
   */
  async sealingKeys(ids: readonly string[]): Promise<Map<string, Buffer>> {
    const rows = await this.#db.withPlatform((tx) => findActiveServices(tx, ids));
    const keys = new Map(rows.map((row) => [row.id, row.public_key]));
    const missing = ids.flatMap((id, index) => (keys.has(id) ? [] : [{ path: `/readers/${index}`, message: 'must be a registered, active service' }]));
    if (missing.length > 0) throw invalid('Every reader must be a registered, active service.', missing);
    return keys;
  }
}

/** What reading a secret needs of the audit trail: the read recorded, with the service's personal data (its address) sealed. */
export interface SecretsAudit extends AuditRecorder {
  prepareSubject(scope: AuditScope, actor: Actor): Promise<void>;
}

/** The tenant-key layer of a copy is bound to its row. */
function copyContext(tenantId: string, name: string, version: number, serviceId: string): EnvelopeContext {
  return { tenantId, table: 'secret_copies', column: 'sealed', rowId: `${name}:${version}:${serviceId}` };
}

function encodeNameCursor(name: string): string {
  return Buffer.from(`v1:${name}`).toString('base64url');
}

const cursorName = /^v1:([a-z][a-z0-9_.-]{0,62})$/;
function decodeNameCursor(cursor: string | undefined): string {
  if (cursor === undefined) return '';
  const name = cursorName.exec(Buffer.from(cursor, 'base64url').toString('utf8'))?.[1];
  if (name === undefined) throw new BulwarkError('invalid_cursor');
  return name;
}

function toSummary(row: SecretRow): SecretSummary {
  return { name: row.name, currentVersion: row.current_version, readers: [...row.readers], createdAt: row.created_at.toISOString(), updatedAt: row.updated_at.toISOString() };
}

/**
 * Write-only secrets (DESIGN.md invariant 7). A write seals the value to each reader's X25519 public key with
 * HPKE, bound to tenant, name, version and reader, and keeps only the sealed copies (each sealed once more with
 * the tenant's data key, so offboarding shreds them). The server holds no private key: nothing here, nor any
 * route, can turn a copy back into the value. Adding a reader therefore means writing the value again.
 */
export class SecretsService implements Reencryptor {
  readonly name = 'secret-copies';
  readonly #db: Database;
  readonly #keyring: KeyringService;
  readonly #audit: SecretsAudit;
  readonly #registry: ServiceRegistry;
  readonly #tenants: TenantGate;
  readonly #clock: Clock;

  constructor(db: Database, keyring: KeyringService, audit: SecretsAudit, dependencies: { registry: ServiceRegistry; tenants: TenantGate }, clock: Clock) {
    this.#db = db;
    this.#keyring = keyring;
    this.#audit = audit;
    this.#registry = dependencies.registry;
    this.#tenants = dependencies.tenants;
    this.#clock = clock;
    keyring.registerReencryptor(this);
  }

  /** Creates version 1, or the next version (rotation); the value lives only until the copies are sealed. */
  async put(tenantId: string, name: string, input: PutSecretBody): Promise<{ secret: SecretMetadata; created: boolean }> {
    // 1. Validate: the value's size in bytes, and every reader an active service.
    if (Buffer.byteLength(input.value, 'utf8') > secretValueMaxBytes) {
      throw invalid(`The value is over ${secretValueMaxBytes} bytes of UTF-8.`, [{ path: '/value', message: `must be at most ${secretValueMaxBytes} bytes of UTF-8` }]);
    }
    const keys = await this.#registry.sealingKeys(input.readers);
    const value = Buffer.from(input.value, 'utf8');
    try {
      return await this.#keyring.withKeys(tenantId, (tenantKeys) =>
        this.#db.withTenant(tenantId, async (tx) => {
          // 2. Preconditions: room for a new secret.
          if (!(await secretExists(tx, tenantId, name)) && (await countSecrets(tx, tenantId)) >= maxSecretsPerTenant) {
            throw new BulwarkError('conflict', { message: `A tenant has at most ${maxSecretsPerTenant} secrets.` });
          }
          // 3. Mutate: the next version under the secret's row lock, one copy per reader.
          const now = this.#clock.now();
          const { version, created } = await nextSecretVersion(tx, tenantId, name, now);
          await insertSecretVersion(tx, tenantId, name, version, now);
          const copies = await Promise.all(
            input.readers.map(async (serviceId) => {
              const sealed = await sealSecret(keys.get(serviceId) ?? Buffer.alloc(0), value, { tenantId, name, version, serviceId });
              return { serviceId, sealed: tenantKeys.seal(Buffer.concat([sealed.enc, sealed.ciphertext]), copyContext(tenantId, name, version, serviceId)) };
            }),
          );
          for (const copy of copies) await insertSecretCopy(tx, tenantId, { name, version, ...copy });
          await pruneSecretVersions(tx, tenantId, name, version - keptVersions + 1);
          // 4. Audit: never the value.
          await this.#audit.record(tx, { tenantId }, { action: 'secret.put', target: { type: 'secret', id: name }, detail: { version, readers: [...input.readers].sort(), created } });
          return { secret: await this.#metadata(tx, tenantId, name), created };
        }),
      );
    } finally {
      value.fill(0);
    }
  }

  async list(tenantId: string, limit: number, cursor: string | undefined): Promise<{ items: SecretSummary[]; nextCursor: string | null }> {
    const after = decodeNameCursor(cursor);
    const rows = await this.#db.withTenant(tenantId, (tx) => listSecrets(tx, tenantId, after, limit + 1));
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return { items: page.map(toSummary), nextCursor: rows.length > limit && last !== undefined ? encodeNameCursor(last.name) : null };
  }

  async get(tenantId: string, name: string): Promise<SecretMetadata> {
    return this.#db.withTenant(tenantId, (tx) => this.#metadata(tx, tenantId, name));
  }

  async delete(tenantId: string, name: string): Promise<void> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const deleted = await deleteSecret(tx, tenantId, name);
      if (deleted === undefined) throw notFound();
      await this.#audit.record(tx, { tenantId }, { action: 'secret.delete', target: { type: 'secret', id: name }, detail: { currentVersion: deleted.currentVersion } });
    });
  }

  /**
   * A reader's own sealed copy, for its credential only: a missing or bad credential answers 401; another
   * service's path, an unknown tenant, secret or version, or a secret the service does not read answers 404
   * alike, so nothing exists for a caller that is not a reader. Every answered read is audited in the
   * tenant's chain (fail-closed: no event, no answer); a refused one by an authenticated service too.
   */
  async readSealed(authorization: string | undefined, request: { serviceId: string; tenantId: string; name: string; version: number | undefined }): Promise<SealedSecret> {
    const { serviceId, tenantId, name, version } = request;
    // 1. Authenticate: the service's own credential, checked against the database (a retired one fails at once).
    if (authorization === undefined) throw new BulwarkError('unauthenticated', { headers: { 'www-authenticate': 'Bearer' } });
    const token = /^Bearer ([\x21-\x7e]{1,4096})$/i.exec(authorization)?.[1];
    const caller = token === undefined ? null : await this.#registry.authenticate(token);
    if (caller === null) throw new BulwarkError('invalid_credentials', { headers: { 'www-authenticate': 'Bearer error="invalid_token"' } });
    const actor: Actor = { kind: 'service', id: caller };
    actAs(actor);
    // 2. Authorize: a service reads under its own path only.
    if (caller !== serviceId) throw notFound();
    const status = await this.#tenants.status(tenantId);
    if (status === null || status === 'deleted') throw notFound();
    // 3. Load the copy; a refusal is recorded where the tenant sees it.
    const scope = { tenantId };
    await this.#audit.prepareSubject(scope, actor);
    const target = { type: 'secret', id: name };
    const row = await this.#db.withTenant(tenantId, (tx) => findSecretCopy(tx, tenantId, name, serviceId, version));
    if (row === undefined) {
      await this.#audit.recordAlone(scope, { action: 'secret.read', outcome: 'failure', actor, target, detail: { version: version ?? null, reason: 'no_copy' } });
      throw notFound();
    }
    // Only a reader learns that the tenant is suspended.
    if (status !== 'active') throw new BulwarkError('tenant_suspended');
    const opened = await this.#keyring.withKeys(tenantId, (keys) => keys.open(row.sealed, copyContext(tenantId, name, row.version, serviceId), 'data_integrity_failed'));
    // 4. Audit, then answer.
    await this.#audit.recordAlone(scope, { action: 'secret.read', actor, target, detail: { version: row.version } });
    return {
      format: sealedSecretFormat,
      tenantId,
      name,
      version: row.version,
      serviceId,
      algorithm: sealingAlgorithm,
      enc: opened.subarray(0, encBytes).toString('base64url'),
      ciphertext: opened.subarray(encBytes).toString('base64url'),
      createdAt: row.created_at.toISOString(),
    };
  }

  async countByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
    return countSecretCopiesByKeyVersion(tx, tenantId);
  }

  /** Moves the tenant-key layer to the current key version; the HPKE copy inside is untouched (and unopenable here). */
  async reencryptBatch(tenantId: string, keys: TenantKeys, limit: number): Promise<number> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const rows = await lockStaleSecretCopies(tx, tenantId, keys.current, keys.minDecryption, limit);
      for (const row of rows) {
        const context = copyContext(tenantId, row.name, row.version, row.service_id);
        await resealSecretCopy(tx, tenantId, row, keys.seal(keys.open(row.sealed, context, 'data_integrity_failed'), context));
      }
      return rows.length;
    });
  }

  async #metadata(tx: Queryable, tenantId: string, name: string): Promise<SecretMetadata> {
    const row = await findSecret(tx, tenantId, name);
    if (row === undefined) throw notFound();
    const versions = await listSecretVersions(tx, tenantId, name);
    return {
      ...toSummary(row),
      versions: versions.map((entry) => ({ version: entry.version, createdAt: entry.created_at.toISOString(), readers: [...entry.readers] })),
    };
  }
}
