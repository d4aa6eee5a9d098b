import type { Queryable } from '../../platform/db/database.ts';

// --- legal holds ---

export interface HoldRow {
  id: string;
  name: string;
  reason: string;
  user_id: string | null;
  created_by: string;
  created_at: Date;
  released_by: string | null;
  released_at: Date | null;
}

const holdColumns = 'id, name, reason, user_id, created_by, created_at, released_by, released_at';

/** Inserts a hold; undefined when the id is taken (a collision: draw again). */
export async function insertHold(
  tx: Queryable,
  hold: { tenantId: string; id: string; name: string; reason: string; userId: string | null; createdBy: string; now: Date },
): Promise<HoldRow | undefined> {
  const { rows } = await tx.query<HoldRow>(
    `INSERT INTO legal_holds (tenant_id, id, name, reason, user_id, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT DO NOTHING RETURNING ${holdColumns}`,
    [hold.tenantId, hold.id, hold.name, hold.reason, hold.userId, hold.createdBy, hold.now],
  );
  return rows[0];
}

export async function findHold(tx: Queryable, tenantId: string, id: string, options: { forUpdate?: boolean } = {}): Promise<HoldRow | undefined> {
  const { rows } = await tx.query<HoldRow>(`SELECT ${holdColumns} FROM legal_holds WHERE tenant_id = $1 AND id = $2${options.forUpdate === true ? ' FOR UPDATE' : ''}`, [
    tenantId,
    id,
  ]);
  return rows[0];
}

/** Holds by id (keyset pages), released ones included. */
export async function listHolds(tx: Queryable, tenantId: string, after: string, limit: number): Promise<HoldRow[]> {
  const { rows } = await tx.query<HoldRow>(`SELECT ${holdColumns} FROM legal_holds WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, [tenantId, after, limit]);
  return rows;
}

/** Every hold that names the user, released ones included, oldest first. */
export async function holdsOfUser(tx: Queryable, tenantId: string, userId: string): Promise<HoldRow[]> {
  const { rows } = await tx.query<HoldRow>(`SELECT ${holdColumns} FROM legal_holds WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id`, [tenantId, userId]);
  return rows;
}

/** Holds in force over the tenant: every one, or (with `userId`) the tenant-wide ones and those on that user. */
export async function activeHolds(tx: Queryable, tenantId: string, userId?: string): Promise<HoldRow[]> {
  const { rows } = await tx.query<HoldRow>(
    `SELECT ${holdColumns} FROM legal_holds WHERE tenant_id = $1 AND released_at IS NULL AND ($2::text IS NULL OR user_id IS NULL OR user_id = $2)
      ORDER BY created_at, id`,
    [tenantId, userId ?? null],
  );
  return rows;
}

export async function releaseHold(tx: Queryable, tenantId: string, id: string, releasedBy: string, now: Date): Promise<HoldRow | undefined> {
  const { rows } = await tx.query<HoldRow>(
    `UPDATE legal_holds SET released_by = $3, released_at = $4 WHERE tenant_id = $1 AND id = $2 AND released_at IS NULL RETURNING ${holdColumns}`,
    [tenantId, id, releasedBy, now],
  );
  return rows[0];
}

// --- erasure requests ---

export interface ErasureRow {
  id: string;
  user_id: string;
  status: 'pending' | 'completed';
  reason: string | null;
  requested_by: string;
  requested_at: Date;
  held_by: string[];
  completed_at: Date | null;
  removed: Record<string, number> | null;
}

const erasureColumns = 'id, user_id, status, reason, requested_by, requested_at, held_by, completed_at, removed';

/**
 * Records a request: pending (with the holds that defer it) or completed at once (with what it removed).
 * Undefined when the id is taken, or when the user has a pending request already (the caller reads that one).
 */
export async function insertErasure(
  tx: Queryable,
  request: {
    tenantId: string;
    id: string;
    userId: string;
    reason: string | null;
    requestedBy: string;
    now: Date;
  } & ({ status: 'pending'; heldBy: string[] } | { status: 'completed'; removed: Record<string, number> }),
): Promise<ErasureRow | undefined> {
  const completed = request.status === 'completed';
  const { rows } = await tx.query<ErasureRow>(
    `INSERT INTO erasure_requests (tenant_id, id, user_id, status, reason, requested_by, requested_at, held_by, completed_at, removed)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) ON CONFLICT DO NOTHING RETURNING ${erasureColumns}`,
    [
      request.tenantId,
      request.id,
      request.userId,
      request.status,
      request.reason,
      request.requestedBy,
      request.now,
      completed ? [] : request.heldBy,
      completed ? request.now : null,
      completed ? JSON.stringify(request.removed) : null,
    ],
  );
  return rows[0];
}

export async function findPendingErasure(tx: Queryable, tenantId: string, userId: string): Promise<ErasureRow | undefined> {
  const { rows } = await tx.query<ErasureRow>(`SELECT ${erasureColumns} FROM erasure_requests WHERE tenant_id = $1 AND user_id = $2 AND status = 'pending' FOR UPDATE`, [
    tenantId,
    userId,
  ]);
  return rows[0];
}

/** A pending request's holds, brought up to date (asked again while still held). */
export async function setErasureHolds(tx: Queryable, tenantId: string, id: string, heldBy: string[]): Promise<ErasureRow> {
  const { rows } = await tx.query<ErasureRow>(`UPDATE erasure_requests SET held_by = $3 WHERE tenant_id = $1 AND id = $2 RETURNING ${erasureColumns}`, [tenantId, id, heldBy]);
  return rows[0] as ErasureRow;
}

export async function completeErasure(tx: Queryable, tenantId: string, id: string, removed: Record<string, number>, now: Date): Promise<ErasureRow> {
  const { rows } = await tx.query<ErasureRow>(
    `UPDATE erasure_requests SET status = 'completed', completed_at = $3, removed = $4::jsonb WHERE tenant_id = $1 AND id = $2 RETURNING ${erasureColumns}`,
    [tenantId, id, now, JSON.stringify(removed)],
  );
  return rows[0] as ErasureRow;
}

/** Requests by id (keyset pages). */
export async function listErasures(tx: Queryable, tenantId: string, after: string, limit: number): Promise<ErasureRow[]> {
  const { rows } = await tx.query<ErasureRow>(`SELECT ${erasureColumns} FROM erasure_requests WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, [tenantId, after, limit]);
  return rows;
}

/** Every request naming the user, oldest first. */
export async function erasuresOfUser(tx: Queryable, tenantId: string, userId: string): Promise<ErasureRow[]> {
  const { rows } = await tx.query<ErasureRow>(`SELECT ${erasureColumns} FROM erasure_requests WHERE tenant_id = $1 AND user_id = $2 ORDER BY requested_at, id`, [tenantId, userId]);
  return rows;
}

/** Users with a pending request (the release of a hold looks for what it may now run). */
export async function pendingErasureUsers(tx: Queryable, tenantId: string): Promise<string[]> {
  const { rows } = await tx.query<{ user_id: string }>("SELECT user_id FROM erasure_requests WHERE tenant_id = $1 AND status = 'pending' ORDER BY requested_at, id", [tenantId]);
  return rows.map((row) => row.user_id);
}

// --- the inventory ---

export interface AnnotationRow {
  table: string;
  column: string;
  type: string;
  comment: string;
  tenant_scoped: boolean;
}

/**
 * The `pii:` comments on columns of the public schema, from the catalog (pg_description): the annotations
 * the migrations put there. Catalogs are readable by every role; no tenant data is read.
 */
export async function piiAnnotations(tx: Queryable): Promise<AnnotationRow[]> {
  const { rows } = await tx.query<AnnotationRow>(
    `SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type, d.description AS comment,
            EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND NOT t.attisdropped) OR c.relname = 'tenants' AS tenant_scoped
       FROM pg_description d
       JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
      WHERE n.nspname = 'public' AND d.objsubid > 0 AND NOT a.attisdropped AND d.description LIKE 'pii:%'
      ORDER BY c.relname, a.attnum`,
  );
  return rows;
}
