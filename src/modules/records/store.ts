import { toBuffer, type Queryable } from '../../platform/db/database.ts';

export interface RecordRow {
  id: string;
  version: number;
  body: Buffer;
  created_at: Date;
  updated_at: Date;
}

const columns = 'id, version, body, created_at, updated_at';

function normalize(row: RecordRow): RecordRow {
  return { ...row, body: toBuffer(row.body) };
}

// Every statement names tenant_id although RLS already filters by it: the planner uses the primary key,
// and a dropped policy would still not mix tenants. RLS is the guarantee, the filter is the fast path.

export const selectRecordSql = `SELECT ${columns} FROM records WHERE tenant_id = $1 AND collection = $2 AND id = $3`;

export function firstRecord(rows: RecordRow[]): RecordRow | undefined {
  return rows[0] ? normalize(rows[0]) : undefined;
}

export async function lockRecord(tx: Queryable, tenantId: string, collection: string, id: string): Promise<RecordRow | undefined> {
  const { rows } = await tx.query<RecordRow>(`${selectRecordSql} FOR UPDATE`, [tenantId, collection, id]);
  return firstRecord(rows);
}

export async function insertRecord(
  tx: Queryable,
  record: { tenantId: string; collection: string; id: string; body: Buffer; bodyBytes: number; now: Date },
): Promise<RecordRow> {
  const { rows } = await tx.query<RecordRow>(
    `INSERT INTO records (tenant_id, collection, id, version, body, body_bytes, created_at, updated_at)
     VALUES ($1, $2, $3, 1, $4, $5, $6, $6) RETURNING ${columns}`,
    [record.tenantId, record.collection, record.id, record.body, record.bodyBytes, record.now],
  );
  return normalize(rows[0] as RecordRow);
}

export async function replaceRecord(
  tx: Queryable,
  record: { tenantId: string; collection: string; id: string; body: Buffer; bodyBytes: number; now: Date },
): Promise<RecordRow> {
  const { rows } = await tx.query<RecordRow>(
    `UPDATE records SET body = $4, body_bytes = $5, version = version + 1, updated_at = $6
      WHERE tenant_id = $1 AND collection = $2 AND id = $3 RETURNING ${columns}`,
    [record.tenantId, record.collection, record.id, record.body, record.bodyBytes, record.now],
  );
  return normalize(rows[0] as RecordRow);
}

export async function deleteRecord(tx: Queryable, tenantId: string, collection: string, id: string): Promise<void> {
  await tx.query('DELETE FROM records WHERE tenant_id = $1 AND collection = $2 AND id = $3', [tenantId, collection, id]);
}

export const listRecordsSql = `SELECT ${columns} FROM records
  WHERE tenant_id = $1 AND collection = $2 AND id > $3 ORDER BY id LIMIT $4`;

export function normalizeRows(rows: RecordRow[]): RecordRow[] {
  return rows.map(normalize);
}
