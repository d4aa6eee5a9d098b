import type { Clock } from '../../platform/clock.ts';
import { constraintName, type Database, sqlState } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { retryWithNewId, withFreshId } from '../../platform/ids.ts';
import type { StoredRecord } from './schemas.ts';
import {
  deleteRecord,
  firstRecord,
  insertRecord,
  listRecordsSql,
  lockRecord,
  normalizeRows,
  type RecordRow,
  replaceRecord,
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

export class RecordsService {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #maxBytes: number;

  constructor(db: Database, clock: Clock, options: { recordMaxBytes: number }) {
    this.#db = db;
    this.#clock = clock;
    this.#maxBytes = options.recordMaxBytes;
  }

  async get(tenantId: string, collection: string, id: string): Promise<StoredRecord> {
    const { rows } = await this.#db.tenantQuery<RecordRow>(tenantId, selectRecordSql, [tenantId, collection, id]);
    const row = firstRecord(rows);
    if (!row) throw notFound();
    return this.#toRecord(collection, row);
  }

  async list(tenantId: string, collection: string, limit: number, cursor: string | undefined) {
    const after = decodeCursor(cursor);
    const { rows } = await this.#db.tenantQuery<RecordRow>(tenantId, listRecordsSql, [tenantId, collection, after, limit + 1]);
    return toPage(normalizeRows(rows), limit, (row) => this.#toRecord(collection, row));
  }

  async create(tenantId: string, collection: string, data: RecordData): Promise<StoredRecord> {
    const body = this.#encode(data);
    const now = this.#clock.now();
    const row = await this.#db.withTenant(tenantId, (tx) =>
      withFreshId(async (id) => {
        try {
          return await insertRecord(tx, { tenantId, collection, id, ...body, now });
        } catch (error) {
          if (sqlState(error) === '23505' && constraintName(error) === 'records_pkey') return retryWithNewId;
          throw error;
        }
      }),
    );
    return this.#toRecord(collection, row);
  }

  /** Creates or replaces a record under optimistic concurrency. */
  async put(
    tenantId: string,
    collection: string,
    id: string,
    data: RecordData,
    preconditions: Preconditions,
  ): Promise<{ record: StoredRecord; created: boolean }> {
    const body = this.#encode(data);
    const now = this.#clock.now();
    try {
      return await this.#db.withTenant(tenantId, async (tx) => {
        const current = await lockRecord(tx, tenantId, collection, id);
        if (preconditions.ifNoneMatch !== undefined && current !== undefined) {
          throw new BulwarkError('precondition_failed', { message: 'The record already exists (If-None-Match: *).' });
        }
        if (preconditions.ifMatch !== undefined && !ifMatchHolds(preconditions.ifMatch, current)) {
          throw new BulwarkError('precondition_failed', { message: 'The record does not match If-Match.' });
        }
        const values = { tenantId, collection, id, ...body, now };
        const row = current ? await replaceRecord(tx, values) : await insertRecord(tx, values);
        return { record: this.#toRecord(collection, row), created: current === undefined };
      });
    } catch (error) {
      // Two writers creating the same id at once: the loser sees the winner's row on retry.
      if (sqlState(error) === '23505') throw new BulwarkError('conflict', { message: 'The record was created concurrently; retry.' });
      throw error;
    }
  }

  async delete(tenantId: string, collection: string, id: string, preconditions: Preconditions): Promise<void> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const current = await lockRecord(tx, tenantId, collection, id);
      if (!current) throw notFound();
      if (preconditions.ifMatch !== undefined && !ifMatchHolds(preconditions.ifMatch, current)) {
        throw new BulwarkError('precondition_failed', { message: 'The record does not match If-Match.' });
      }
      await deleteRecord(tx, tenantId, collection, id);
    });
  }

  // The body column holds bytes so that the keys module can put the envelope ciphertext here.
  #encode(data: RecordData): { body: Buffer; bodyBytes: number } {
    const body = Buffer.from(JSON.stringify(data), 'utf8');
    if (body.length > this.#maxBytes) {
      throw new BulwarkError('payload_too_large', { message: `A record may hold at most ${this.#maxBytes} bytes of JSON.` });
    }
    return { body, bodyBytes: body.length };
  }

  #toRecord(collection: string, row: RecordRow): StoredRecord {
    return {
      id: row.id,
      collection,
      version: row.version,
      data: JSON.parse(row.body.toString('utf8')) as RecordData,
      createdAt: row.created_at.toISOString(),
      updatedAt: row.updated_at.toISOString(),
    };
  }
}
