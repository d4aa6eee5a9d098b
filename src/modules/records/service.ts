import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { retryWithNewId, withFreshId } from '../../platform/ids.ts';
import type { EnvelopeContext } from '../keys/envelope.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { QuotaGuard } from '../limits/service.ts';
import type { KeyringService, Reencryptor, TenantKeys } from '../keys/service.ts';
import type { StoredRecord } from './schemas.ts';
import {
  countRecordsByKeyVersion,
  deleteRecord,
  firstRecord,
  insertRecord,
  exportRecordsSql,
  listRecordsSql,
  lockRecord,
  lockStaleRecords,
  normalizeRows,
  type RecordRow,
  replaceRecord,
  resealRecord,
  type SealedRecord,
  selectRecordSql,
} from './store.ts';

export interface Preconditions {
  ifMatch?: string | undefined;
  ifNoneMatch?: string | undefined;
}

type RecordData = Record<string, unknown>;

export function etagOf(version: number): string {
  return `"${version}"`;
}

/** RFC 9110 If-Match with strong comparison: `*` or a list of quoted versions. */
function ifMatchHolds(header: string, current: RecordRow | undefined): boolean {
  if (current === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim() === etagOf(current.version));
}

/** The associated data of a record body: a body copied to another row, collection or tenant fails to open. */
function bodyContext(tenantId: string, collection: string, id: string): EnvelopeContext {
  return { tenantId, table: 'records', column: 'body', rowId: `${collection}/${id}` };
}

/**
 * JSON records in named collections. Bodies are sealed with the tenant's current data key before any
 * transaction starts (a key load may need its own connection) and opened after the read returns.
 */
export class RecordsService implements Reencryptor {
  readonly name = 'records';
  readonly #db: Database;
  readonly #keyring: KeyringService;
  readonly #clock: Clock;
  readonly #maxBytes: number;
  readonly #audit: AuditRecorder;

  readonly #quotas: QuotaGuard;

  constructor(db: Database, keyring: KeyringService, audit: AuditRecorder, quotas: QuotaGuard, clock: Clock, options: { recordMaxBytes: number }) {
    this.#db = db;
    this.#quotas = quotas;
    this.#keyring = keyring;
    this.#audit = audit;
    this.#clock = clock;
    this.#maxBytes = options.recordMaxBytes;
    keyring.registerReencryptor(this);
  }

  async get(tenantId: string, collection: string, id: string): Promise<StoredRecord> {
    const { rows } = await this.#db.tenantQuery<RecordRow>(tenantId, selectRecordSql, [tenantId, collection, id]);
    const row = firstRecord(rows);
    if (!row) throw notFound();
    return this.#toRecord(tenantId, row);
  }

  async list(tenantId: string, collection: string, limit: number, cursor: string | undefined) {
    const after = decodeCursor(cursor);
    const { rows } = await this.#db.tenantQuery<RecordRow>(tenantId, listRecordsSql, [tenantId, collection, after, limit + 1]);
    const page = toPage(normalizeRows(rows), limit, (row) => row);
    const items = await this.#keyring.withKeys(tenantId, (keys) => page.items.map((row) => toRecord(row, plaintextOf(keys, tenantId, row))));
    return { items, nextCursor: page.nextCursor };
  }

  /** Every record of the tenant, decrypted, in pages (each read in its own short transaction): the tenant export. */
  async *exportAll(tenantId: string, pageSize = 200): AsyncGenerator<StoredRecord[]> {
    let after = { collection: '', id: '' };
    for (;;) {
      const { rows } = await this.#db.tenantQuery<RecordRow>(tenantId, exportRecordsSql, [tenantId, after.collection, after.id, pageSize]);
      const page = normalizeRows(rows);
      if (page.length === 0) return;
      yield await this.#keyring.withKeys(tenantId, (keys) => page.map((row) => toRecord(row, plaintextOf(keys, tenantId, row))));
      const last = page[page.length - 1];
      if (last === undefined || page.length < pageSize) return;
      after = { collection: last.collection, id: last.id };
    }
  }

  async create(tenantId: string, collection: string, data: RecordData): Promise<StoredRecord> {
    const json = this.#serialize(data);
    const row = await withFreshId(async (id) => {
      const sealed = await this.#seal(tenantId, collection, id, json);
      return this.#db.withTenant(tenantId, async (tx) => {
        const inserted = await insertRecord(tx, sealed);
        if (inserted === undefined) return retryWithNewId;
        await this.#quotas.reserveRecords(tx, tenantId, { records: 1, bytes: sealed.bodyBytes });
        await this.#audit.record(tx, { tenantId }, recordEvent('record.create', inserted));
        return inserted;
      });
    });
    return this.#toRecord(tenantId, row, json);
  }

  /** Creates or replaces a record under optimistic concurrency. */
  async put(
    tenantId: string,
    collection: string,
    id: string,
    data: RecordData,
    preconditions: Preconditions,
  ): Promise<{ record: StoredRecord; created: boolean }> {
    const json = this.#serialize(data);
    const sealed = await this.#seal(tenantId, collection, id, json);
    const { row, created } = await this.#db.withTenant(tenantId, async (tx) => {
      const current = await lockRecord(tx, tenantId, collection, id);
      if (preconditions.ifNoneMatch !== undefined && current !== undefined) {
        throw new BulwarkError('precondition_failed', { message: 'The record already exists (If-None-Match: *).' });
      }
      if (preconditions.ifMatch !== undefined && !ifMatchHolds(preconditions.ifMatch, current)) {
        throw new BulwarkError('precondition_failed', { message: 'The record does not match If-Match.' });
      }
      if (current) {
        const replaced = await replaceRecord(tx, sealed);
        await this.#quotas.reserveRecords(tx, tenantId, { records: 0, bytes: sealed.bodyBytes - current.body_bytes });
        await this.#audit.record(tx, { tenantId }, recordEvent('record.replace', replaced));
        return { row: replaced, created: false };
      }
      const inserted = await insertRecord(tx, sealed);
      // Another writer created the same id between our lock attempt and the insert.
      if (!inserted) throw new BulwarkError('conflict', { message: 'The record was created concurrently; retry.' });
      await this.#quotas.reserveRecords(tx, tenantId, { records: 1, bytes: sealed.bodyBytes });
      await this.#audit.record(tx, { tenantId }, recordEvent('record.create', inserted));
      return { row: inserted, created: true };
    });
    return { record: await this.#toRecord(tenantId, row, json), created };
  }

  async delete(tenantId: string, collection: string, id: string, preconditions: Preconditions): Promise<void> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const current = await lockRecord(tx, tenantId, collection, id);
      if (!current) throw notFound();
      if (preconditions.ifMatch !== undefined && !ifMatchHolds(preconditions.ifMatch, current)) {
        throw new BulwarkError('precondition_failed', { message: 'The record does not match If-Match.' });
      }
      await deleteRecord(tx, tenantId, collection, id);
      await this.#quotas.reserveRecords(tx, tenantId, { records: -1, bytes: -current.body_bytes });
      await this.#audit.record(tx, { tenantId }, recordEvent('record.delete', current));
    });
  }

  countByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
    return countRecordsByKeyVersion(tx, tenantId);
  }

  async reencryptBatch(tenantId: string, keys: TenantKeys, limit: number): Promise<number> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const rows = await lockStaleRecords(tx, tenantId, keys.current, keys.minDecryption, limit);
      for (const row of rows) {
        const { ciphertext, keyVersion } = keys.seal(plaintextOf(keys, tenantId, row), bodyContext(tenantId, row.collection, row.id));
        await resealRecord(tx, tenantId, { collection: row.collection, id: row.id, body: ciphertext, keyVersion });
      }
      return rows.length;
    });
  }

  #serialize(data: RecordData): Buffer {
    const json = Buffer.from(JSON.stringify(data), 'utf8');
    if (json.length > this.#maxBytes) {
      throw new BulwarkError('payload_too_large', { message: `A record may hold at most ${this.#maxBytes} bytes of JSON.` });
    }
    return json;
  }

  async #seal(tenantId: string, collection: string, id: string, json: Buffer): Promise<SealedRecord> {
    const { ciphertext, keyVersion } = await this.#keyring.seal(tenantId, json, bodyContext(tenantId, collection, id));
    return { tenantId, collection, id, body: ciphertext, bodyBytes: json.length, keyVersion, now: this.#clock.now() };
  }

  async #toRecord(tenantId: string, row: RecordRow, knownJson?: Buffer): Promise<StoredRecord> {
    return toRecord(row, knownJson ?? (await this.#keyring.withKeys(tenantId, (keys) => plaintextOf(keys, tenantId, row))));
  }
}

/**
 * Bulwark writes every body sealed. A row without a key version holds a body it did not write (plain
 * JSON put there behind its back, or restored from a dump of another system): serving it would let whoever
 * can write the database replace a sealed body with any content, so it is refused like a bad tag.
 */
function plaintextOf(keys: TenantKeys, tenantId: string, row: RecordRow): Buffer {
  if (row.key_version === null) throw new BulwarkError('data_integrity_failed', { detail: 'record body stored without encryption (key_version NULL)' });
  return keys.open(row.body, bodyContext(tenantId, row.collection, row.id), 'data_integrity_failed');
}

function recordEvent(action: 'record.create' | 'record.replace' | 'record.delete', row: RecordRow) {
  return { action, target: { type: 'record', id: `${row.collection}/${row.id}` }, detail: { collection: row.collection, version: row.version } };
}

function toRecord(row: RecordRow, json: Buffer): StoredRecord {
  return {
    id: row.id,
    collection: row.collection,
    version: row.version,
    data: JSON.parse(json.toString('utf8')) as RecordData,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}
