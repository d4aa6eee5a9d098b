import { randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import { isId, newId } from '../../platform/ids.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { RootKeyProvider } from '../keys/root/provider.ts';
import type { OffboardingStorage } from '../tenancy/offboarding.ts';
import {
  archiveFormat,
  countRows,
  type Manifest,
  manifestMacValid,
  manifestObject,
  openSegment,
  parseManifest,
  platformObject,
  type SegmentEntry,
  sealSegment,
  sha256Hex,
  signManifest,
  tenantObject,
} from './archive.ts';
import { backupsToPrune, type RetentionPolicy } from './retention.ts';
import { assertValidSchedule, dueSlot } from './schedule.ts';
import { currentSchemaVersion, type RestoreReport, type RestoreTarget, restoreInto } from './restore.ts';
import { confirmedOffboardings, readSnapshot, type TableRows } from './snapshot.ts';
import type { ObjectStore } from './storage.ts';

export interface BackupSummary {
  id: string;
  createdAt: string;
  kind: Manifest['kind'];
  slot: string | null;
  engine: Manifest['engine'];
  schemaVersion: number;
  tenants: number;
  rows: number;
  bytes: number;
  regions: string[];
}

export type SegmentStatus = 'ok' | 'shredded' | 'missing' | 'corrupt';

export interface VerifyReport {
  id: string;
  ok: boolean;
  manifest: 'ok' | 'corrupt';
  segments: { name: string; region: string; status: SegmentStatus; rows: number }[];
}

/** A backup opened for restore: every readable segment decrypted; tenants whose escrow key is gone are listed. */
export interface OpenedBackup {
  manifest: Manifest;
  platform: TableRows;
  tenants: Map<string, { region: string; tables: TableRows }>;
  shredded: { tenantId: string; region: string }[];
}

export interface BackupOptions {
  /** One store per configured region; the first region's also keeps the manifests and platform segments. */
  stores: ReadonlyMap<string, ObjectStore>;
  regions: readonly string[];
  retention: RetentionPolicy;
  /** Cron expression (UTC) or `off`. */
  schedule: string;
}

const escrowFormat = 'bulwark-backup-escrow/v1';
const escrowPrefix = (tenantId: string) => `escrow/${tenantId}/`;

/**
 * Encrypted backups: take, list, verify, open for restore, prune by retention, and the per-tenant key
 * escrow that lets offboarding shred a tenant out of every backup at once.
 */
export class BackupService implements OffboardingStorage {
  readonly #db: Database;
  readonly #rootKeys: RootKeyProvider;
  readonly #audit: AuditRecorder;
  readonly #clock: Clock;
  readonly #options: BackupOptions;
  readonly #homeRegion: string;
  // A tenant's escrow key is created once per process at a time: two backups starting together share it.
  readonly #escrowCreations = new Map<string, Promise<{ keyId: string; key: Buffer }>>();

  constructor(db: Database, rootKeys: RootKeyProvider, audit: AuditRecorder, clock: Clock, options: BackupOptions) {
    const home = options.regions[0];
    if (home === undefined) throw new Error('backups need at least one region');
    for (const region of options.regions) if (!options.stores.has(region)) throw new Error(`no backup store for region ${region}`);
    // A typo in the schedule fails the start, not the first missed backup.
    if (options.schedule !== 'off') assertValidSchedule(options.schedule);
    this.#db = db;
    this.#rootKeys = rootKeys;
    this.#audit = audit;
    this.#clock = clock;
    this.#options = options;
    this.#homeRegion = home;
  }

  /** Non-secret locations, per region, for operators. */
  locations(): Record<string, string> {
    return Object.fromEntries([...this.#options.stores].map(([region, store]) => [region, store.location]));
  }

  async create(kind: Manifest['kind'] = 'on-demand', slot: Date | null = null): Promise<BackupSummary> {
    const id = newId();
    const createdAt = this.#clock.now();
    const snapshot = await readSnapshot(this.#db);
    const backupKey = randomBytes(32);
    const written: { region: string; object: string }[] = [];
    try {
      const wrappedKey = await this.#rootKeys.wrap(backupKey, { tenantId: `backup/${id}`, keyVersion: 1, purpose: 'backup-key' });
      const segments: SegmentEntry[] = [];
      const put = async (region: string, object: string, body: Buffer) => {
        await this.#store(region).put(object, body);
        written.push({ region, object });
      };
      const platformBody = sealSegment(backupKey, id, 'platform', null, snapshot.platform);
      await put(this.#homeRegion, platformObject(id), platformBody);
      segments.push({ name: 'platform', tenantId: null, region: this.#homeRegion, object: platformObject(id), sha256: sha256Hex(platformBody), bytes: platformBody.length, rows: countRows(snapshot.platform) });
      for (const [tenantId, { region, tables }] of snapshot.tenants) {
        const escrow = await this.#escrowKey(tenantId, region);
        const name = `tenant/${tenantId}/${escrow.keyId}`;
        const body = sealSegment(escrow.key, id, name, tenantId, tables);
        const object = tenantObject(id, tenantId);
        await put(region, object, body);
        segments.push({ name, tenantId, region, object, sha256: sha256Hex(body), bytes: body.length, rows: countRows(tables) });
      }
      // An offboarding confirmed while this backup ran shreds its tenant after the snapshot: that tenant's escrow
      // key, made or found just now, must not outlive the confirm's own shredding (which may have run already).
      for (const tenantId of await confirmedOffboardings(this.#db, [...snapshot.tenants.keys()])) {
        await this.shredTenant(tenantId, snapshot.tenants.get(tenantId)?.region ?? this.#homeRegion);
      }
      const manifest = signManifest(backupKey, {
        format: archiveFormat,
        id,
        createdAt: createdAt.toISOString(),
        kind,
        slot: slot?.toISOString() ?? null,
        engine: this.#db.engine,
        schemaVersion: currentSchemaVersion(),
        wrappedKey,
        segments,
      });
      // Written last: a backup without its manifest is not listed, so a failed run leaves no half backup behind.
      await put(this.#homeRegion, manifestObject(id), Buffer.from(JSON.stringify(manifest, null, 2), 'utf8'));
      const summary = summarize(manifest);
      await this.#audit.recordAlone('platform', {
        action: 'backup.create',
        target: { type: 'backup', id },
        detail: { kind, slot: manifest.slot, tenants: summary.tenants, rows: summary.rows, bytes: summary.bytes, regions: summary.regions },
      });
      return summary;
    } catch (error) {
      await this.#removeObjects(written);
      throw error;
    } finally {
      backupKey.fill(0);
    }
  }

  async list(): Promise<BackupSummary[]> {
    const manifests = await this.#manifests();
    return manifests.map(summarize).sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? 1 : -1));
  }

  async get(id: string): Promise<BackupSummary> {
    return summarize(await this.#manifest(id));
  }

  /** Decrypts every segment and checks its checksum and row count; a tenant shredded since is reported, not failed. */
  async verify(id: string): Promise<VerifyReport> {
    const manifest = await this.#manifest(id);
    const { report } = await this.#open(manifest);
    await this.#audit.recordAlone('platform', {
      action: 'backup.verify',
      target: { type: 'backup', id },
      outcome: report.ok ? 'success' : 'failure',
      detail: { segments: report.segments.length, failed: report.segments.filter((segment) => segment.status === 'missing' || segment.status === 'corrupt').map((segment) => segment.name) },
    });
    return report;
  }

  /** Everything a restore needs, decrypted; refuses a backup that does not verify. */
  async openForRestore(id: string): Promise<OpenedBackup> {
    const manifest = await this.#manifest(id);
    const { report, opened } = await this.#open(manifest);
    if (!report.ok) {
      throw new BulwarkError('backup_corrupt', { extensions: { segments: report.segments.filter((segment) => segment.status === 'missing' || segment.status === 'corrupt').map((segment) => segment.name) } });
    }
    return opened;
  }

  /**
   * Verifies, then restores into the target `connect` reaches as its owner (opened only once the backup
   * verified, closed after); audited with where it went.
   */
  async restore(id: string, connect: () => Promise<RestoreTarget>, options: { appRole: string; force: boolean }): Promise<RestoreReport & { location: string }> {
    const opened = await this.openForRestore(id);
    const target = await connect();
    let report: RestoreReport;
    try {
      report = await restoreInto(target.session, options.appRole, opened, options);
    } finally {
      await target.close();
    }
    await this.#audit.recordAlone('platform', {
      action: 'backup.restore',
      target: { type: 'backup', id },
      detail: { target: target.description, forced: options.force, rows: report.rows, tenantsRestored: report.tenantsRestored, tenantsShredded: report.tenantsShredded.length },
    });
    return { ...report, location: target.description };
  }

  /** Prunes what the retention policy does not keep, from every region; audited with the ids. */
  async prune(): Promise<{ pruned: string[]; kept: number }> {
    const manifests = await this.#manifests();
    const { prune, keep } = backupsToPrune(
      manifests.map((manifest) => ({ id: manifest.id, createdAt: new Date(manifest.createdAt) })),
      this.#clock.now(),
      this.#options.retention,
    );
    if (prune.length === 0) return { pruned: [], kept: keep.length };
    const pruned = prune.map((backup) => backup.id).sort();
    // Fail-closed: the event comes first, so nothing is pruned unaudited.
    await this.#audit.recordAlone('platform', { action: 'backup.prune', detail: { pruned, kept: keep.length, policy: { ...this.#options.retention } } });
    for (const id of pruned) {
      // The manifest goes first: a prune stopped half way leaves unlisted objects, never a listed backup with holes.
      await this.#store(this.#homeRegion).delete(manifestObject(id));
      for (const [, store] of this.#options.stores) {
        for (const object of await store.list(`backups/${id}/`)) await store.delete(object);
      }
    }
    return { pruned, kept: keep.length };
  }

  /**
   * The scheduler's tick: the most recent due slot since `since` is claimed in the database (once across
   * every instance), backed up, then retention runs. Answers the backup, or undefined when nothing was due or
   * another instance had the slot.
   */
  async runDue(since: Date): Promise<BackupSummary | undefined> {
    if (this.#options.schedule === 'off') return undefined;
    const slot = dueSlot(this.#options.schedule, this.#clock.now(), since);
    if (slot === undefined) return undefined;
    const claimed = await this.#db.withPlatform(async (tx) =>
      (await tx.query('INSERT INTO backup_runs (slot, claimed_at) VALUES ($1, $2) ON CONFLICT (slot) DO NOTHING', [slot, this.#clock.now()])).rowCount === 1,
    );
    if (!claimed) return undefined;
    let backup: BackupSummary;
    try {
      backup = await this.create('scheduled', slot);
    } catch (error) {
      await this.#finishRun(slot, null, 'failed');
      await this.#audit.recordAlone('platform', { action: 'backup.create', outcome: 'failure', detail: { kind: 'scheduled', slot: slot.toISOString() } }).catch(() => undefined);
      throw error;
    }
    await this.#finishRun(slot, backup.id, 'done');
    await this.prune();
    return backup;
  }

  // --- offboarding ---

  /** Destroys the tenant's escrow keys (every backup segment of it becomes unreadable) and deletes its segments. */
  async shredTenant(tenantId: string, region: string): Promise<{ escrowKeyDestroyed: boolean; objectsDeleted: number }> {
    const store = this.#store(region);
    this.#escrowCreations.delete(tenantId);
    let escrowKeyDestroyed = false;
    for (const object of await store.list(escrowPrefix(tenantId))) escrowKeyDestroyed = (await store.delete(object)) || escrowKeyDestroyed;
    let objectsDeleted = 0;
    const suffix = `/tenants/${tenantId}.bin`;
    for (const object of await store.list('backups/')) {
      if (object.endsWith(suffix) && (await store.delete(object))) objectsDeleted += 1;
    }
    return { escrowKeyDestroyed, objectsDeleted };
  }

  async archiveAudit(tenantId: string, region: string, content: Buffer): Promise<string> {
    const object = `archive/${tenantId}/audit-${this.#clock.now().toISOString().replace(/[:.]/g, '-')}.ndjson`;
    const store = this.#store(region);
    await store.put(object, content);
    return `${store.location.replace(/\/$/, '')}/${object}`;
  }

  // --- internals ---

  #store(region: string): ObjectStore {
    const store = this.#options.stores.get(region);
    if (store === undefined) throw new Error(`no backup store for region ${region}`);
    return store;
  }

  async #manifests(): Promise<Manifest[]> {
    const store = this.#store(this.#homeRegion);
    const objects = (await store.list('backups/')).filter((object) => object.endsWith('/manifest.json'));
    const manifests: Manifest[] = [];
    for (const object of objects) {
      const body = await store.get(object);
      if (body === undefined) continue;
      try {
        manifests.push(parseManifest(body));
      } catch {
        // Not ours, or damaged: verify names it; listing skips it rather than failing every listing.
      }
    }
    return manifests;
  }

  async #manifest(id: string): Promise<Manifest> {
    const body = await this.#store(this.#homeRegion).get(manifestObject(id));
    if (body === undefined) throw notFound();
    try {
      return parseManifest(body);
    } catch {
      throw new BulwarkError('backup_corrupt', { extensions: { segments: ['manifest'] } });
    }
  }

  async #open(manifest: Manifest): Promise<{ report: VerifyReport; opened: OpenedBackup }> {
    const backupKey = await this.#rootKeys.unwrap(manifest.wrappedKey, { tenantId: `backup/${manifest.id}`, keyVersion: 1, purpose: 'backup-key' });
    const report: VerifyReport = { id: manifest.id, ok: true, manifest: 'ok', segments: [] };
    const opened: OpenedBackup = { manifest, platform: {}, tenants: new Map(), shredded: [] };
    try {
      if (!manifestMacValid(backupKey, manifest)) {
        return { report: { ...report, ok: false, manifest: 'corrupt' }, opened };
      }
      for (const segment of manifest.segments) {
        const status = await this.#openSegment(manifest, segment, backupKey, opened);
        report.segments.push({ name: segment.name, region: segment.region, status, rows: segment.rows });
        if (status === 'missing' || status === 'corrupt') report.ok = false;
      }
      return { report, opened };
    } finally {
      backupKey.fill(0);
    }
  }

  async #openSegment(manifest: Manifest, segment: SegmentEntry, backupKey: Buffer, opened: OpenedBackup): Promise<SegmentStatus> {
    // A region no longer configured: its part of the backup cannot be reached from here.
    const store = this.#options.stores.get(segment.region);
    if (store === undefined) return 'missing';
    let key = backupKey;
    if (segment.tenantId !== null) {
      const keyId = segment.name.split('/')[2] ?? '';
      const escrow = await this.#escrowKeyById(segment.tenantId, segment.region, keyId);
      if (escrow === undefined) {
        opened.shredded.push({ tenantId: segment.tenantId, region: segment.region });
        return 'shredded';
      }
      key = escrow;
    }
    const body = await store.get(segment.object);
    if (body === undefined) return 'missing';
    if (sha256Hex(body) !== segment.sha256 || body.length !== segment.bytes) return 'corrupt';
    let tables: TableRows;
    try {
      tables = openSegment(key, manifest.id, segment.name, segment.tenantId, body);
    } catch {
      return 'corrupt';
    }
    if (countRows(tables) !== segment.rows) return 'corrupt';
    if (segment.tenantId === null) opened.platform = tables;
    else opened.tenants.set(segment.tenantId, { region: segment.region, tables });
    return 'ok';
  }

  /** The tenant's current escrow key, made when none exists. */
  async #escrowKey(tenantId: string, region: string): Promise<{ keyId: string; key: Buffer }> {
    const store = this.#store(region);
    const existing = (await store.list(escrowPrefix(tenantId)))[0];
    if (existing !== undefined) {
      const keyId = existing.slice(escrowPrefix(tenantId).length, -'.key'.length);
      const key = await this.#escrowKeyById(tenantId, region, keyId);
      if (key !== undefined) return { keyId, key };
    }
    let creation = this.#escrowCreations.get(tenantId);
    if (creation === undefined) {
      creation = this.#createEscrowKey(tenantId, store);
      this.#escrowCreations.set(tenantId, creation);
      creation.finally(() => this.#escrowCreations.delete(tenantId)).catch(() => undefined);
    }
    return creation;
  }

  /**
   * A new key never replaces another: each has its own random id (and object), and each segment names the
   * one that sealed it, so two instances creating one at once lose nothing.
   */
  async #createEscrowKey(tenantId: string, store: ObjectStore): Promise<{ keyId: string; key: Buffer }> {
    const keyId = newId();
    const key = randomBytes(32);
    const wrapped = await this.#rootKeys.wrap(key, { tenantId, keyVersion: 1, purpose: 'backup-escrow' });
    await store.put(`${escrowPrefix(tenantId)}${keyId}.key`, Buffer.from(JSON.stringify({ format: escrowFormat, tenantId, keyId, wrapped }), 'utf8'));
    return { keyId, key };
  }

  async #escrowKeyById(tenantId: string, region: string, keyId: string): Promise<Buffer | undefined> {
    if (!isId(keyId)) return undefined;
    const body = await this.#store(region).get(`${escrowPrefix(tenantId)}${keyId}.key`);
    if (body === undefined) return undefined;
    const { format, wrapped } = JSON.parse(body.toString('utf8')) as { format?: string; wrapped?: string };
    if (format !== escrowFormat || typeof wrapped !== 'string') throw new Error(`escrow key ${keyId} of a tenant is malformed`);
    return this.#rootKeys.unwrap(wrapped, { tenantId, keyVersion: 1, purpose: 'backup-escrow' });
  }

  async #removeObjects(objects: readonly { region: string; object: string }[]): Promise<void> {
    for (const { region, object } of objects) await this.#store(region).delete(object).catch(() => undefined);
  }

  async #finishRun(slot: Date, backupId: string | null, status: 'done' | 'failed'): Promise<void> {
    await this.#db.withPlatform((tx) => tx.query('UPDATE backup_runs SET backup_id = $2, status = $3, finished_at = $4 WHERE slot = $1', [slot, backupId, status, this.#clock.now()]));
  }
}

function summarize(manifest: Manifest): BackupSummary {
  return {
    id: manifest.id,
    createdAt: manifest.createdAt,
    kind: manifest.kind,
    slot: manifest.slot,
    engine: manifest.engine,
    schemaVersion: manifest.schemaVersion,
    tenants: manifest.segments.filter((segment) => segment.tenantId !== null).length,
    rows: manifest.segments.reduce((sum, segment) => sum + segment.rows, 0),
    bytes: manifest.segments.reduce((sum, segment) => sum + segment.bytes, 0),
    regions: [...new Set(manifest.segments.map((segment) => segment.region))].sort(),
  };
}
