import { toBuffer, type Queryable } from '../../platform/db/database.ts';

export interface RecordRow {
  collection: string;
  id: string;
  version: number;
  /** The sealed envelope, or plain JSON when key_version is null (written before encryption at rest). */
  body: Buffer;
  key_version: number | null;
  /** Bytes of the record's JSON, as counted against the tenant's quota. */
  body_bytes: number;
  created_at: Date;
  updated_at: Date;
}

const columns = 'collection, id, version, body, key_version, body_bytes, created_at, updated_at';

function normalize(row: RecordRow): RecordRow {
  return { ...row, body: toBuffer(row.body) };
}

// Every statement names tenant_id although RLS already filters by it: the planner uses the primary key,
// and a dropped policy would still not mix tenants. RLS is the guarantee, the filter is the fast path.

export const selectRecordSql = `SELECT ${columns} FROM records WHERE tenant_id = $1 AND collection = $2 AND id = $3`;

export function firstRecord(rows: RecordRow[]): RecordRow | undefined {
  return rows[0] ? normalize(rows[0]) : undefined;
}

export interface SealedRecord {
  tenantId: string;
  collection: string;
  id: string;
  body: Buffer;
  bodyBytes: number;
  keyVersion: number;
  now: Date;
}

export async function lockRecord(tx: Queryable, tenantId: string, collection: string, id: string): Promise<RecordRow | undefined> {
  const { rows } = await tx.query<RecordRow>(`${selectRecordSql} FOR UPDATE`, [tenantId, collection, id]);
  return firstRecord(rows);
}

/** Inserts a record; undefined when the id is taken (ON CONFLICT keeps a transaction usable). */
export async function insertRecord(tx: Queryable, record: SealedRecord): Promise<RecordRow | undefined> {
  const { rows } = await tx.query<RecordRow>(
    `INSERT INTO records (tenant_id, collection, id, version, body, body_bytes, key_version, created_at, updated_at)
     VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $7) ON CONFLICT (tenant_id, collection, id) DO NOTHING RETURNING ${columns}`,
    recordParams(record),
  );
  return firstRecord(rows);
}

function recordParams(record: SealedRecord): unknown[] {
  return [record.tenantId, record.collection, record.id, record.body, record.bodyBytes, record.keyVersion, record.now];
}

export async function replaceRecord(tx: Queryable, record: SealedRecord): Promise<RecordRow> {
  const { rows } = await tx.query<RecordRow>(
    `UPDATE records SET body = $4, body_bytes = $5, key_version = $6, version = version + 1, updated_at = $7
      WHERE tenant_id = $1 AND collection = $2 AND id = $3 RETURNING ${columns}`,
    recordParams(record),
  );
  return normalize(rows[0] as RecordRow);
}

export async function deleteRecord(tx: Queryable, tenantId: string, collection: string, id: string): Promise<void> {
  await tx.query('DELETE FROM records WHERE tenant_id = $1 AND collection = $2 AND id = $3', [tenantId, collection, id]);
}

export const listRecordsSql = `SELECT ${columns} FROM records
  WHERE tenant_id = $1 AND collection = $2 AND id > $3 ORDER BY id LIMIT $4`;

/** Every collection of the tenant, keyset-paged by (collection, id): the tenant export. */
export const exportRecordsSql = `SELECT ${columns} FROM records
  WHERE tenant_id = $1 AND (collection, id) > ($2, $3) ORDER BY collection, id LIMIT $4`;

export function normalizeRows(rows: RecordRow[]): RecordRow[] {
  return rows.map(normalize);
}

/**
 * Rows the re-encryption job still has to move, locked so concurrent jobs and writers do not collide.
 * Unsealed rows (key_version NULL) are not among them: sealing one would launder content Bulwark never wrote.
 */
export async function lockStaleRecords(tx: Queryable, tenantId: string, current: number, minDecryption: number, limit: number): Promise<RecordRow[]> {
  const { rows } = await tx.query<RecordRow>(
    `SELECT ${columns} FROM records
      WHERE tenant_id = $1 AND key_version < $2 AND key_version >= $3
      ORDER BY collection, id LIMIT $4 FOR UPDATE SKIP LOCKED`,
    [tenantId, current, minDecryption, limit],
  );
  return normalizeRows(rows);
}

/** Re-sealed body only: re-encryption is not a change of content, so version and updated_at stay. */
export async function resealRecord(tx: Queryable, tenantId: string, row: { collection: string; id: string; body: Buffer; keyVersion: number }): Promise<void> {
  await tx.query('UPDATE records SET body = $4, key_version = $5 WHERE tenant_id = $1 AND collection = $2 AND id = $3', [
    tenantId,
    row.collection,
    row.id,
    row.body,
    row.keyVersion,
  ]);
}

/** Records per data key version (NULL: stored unsealed, a tamper signal): the re-encryption progress. */
export async function countRecordsByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
  const { rows } = await tx.query<{ key_version: number | null; count: number }>(
    'SELECT key_version, count(*)::int AS count FROM records WHERE tenant_id = $1 GROUP BY key_version ORDER BY key_version NULLS FIRST',
    [tenantId],
  );
  return rows;
}
