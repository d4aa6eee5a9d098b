import { toBuffer, type Queryable } from '../../platform/db/database.ts';
import type { EventBody } from './chain.ts';

/**
 * The tables of one chain's scope: a tenant's (`audit_*`, keyed by tenant_id) or the platform's
 * (`platform_audit_*`, keyed by realm 'platform'). Names come from these two constants only, never from
 * input, so every statement stays parameterised in what callers supply.
 */
export interface AuditTables {
  events: 'audit_events' | 'platform_audit_events';
  heads: 'audit_heads' | 'platform_audit_heads';
  checkpoints: 'audit_checkpoints' | 'platform_audit_checkpoints';
  subjectKeys: 'audit_subject_keys' | 'platform_audit_subject_keys';
  deliveries: 'audit_deliveries' | 'platform_audit_deliveries';
  scope: 'tenant_id' | 'realm';
}

export const tenantAuditTables: AuditTables = {
  events: 'audit_events',
  heads: 'audit_heads',
  checkpoints: 'audit_checkpoints',
  subjectKeys: 'audit_subject_keys',
  deliveries: 'audit_deliveries',
  scope: 'tenant_id',
};

export const platformAuditTables: AuditTables = {
  events: 'platform_audit_events',
  heads: 'platform_audit_heads',
  checkpoints: 'platform_audit_checkpoints',
  subjectKeys: 'platform_audit_subject_keys',
  deliveries: 'platform_audit_deliveries',
  scope: 'realm',
};

/** An event as stored (without its scope column). */
export interface EventRow {
  seq: number;
  id: string;
  occurred_at: Date;
  actor_kind: string;
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  request_id: string | null;
  session_id: string | null;
  detail: unknown;
  subject: string | null;
  pii: Buffer | null;
  prev_hash: Buffer;
  hash: Buffer;
}

export interface HeadRow {
  seq: number;
  hash: Buffer;
  retention_days: number | null;
  pruned_through: number;
}

export interface CheckpointRow {
  seq: number;
  hash: Buffer;
  kind: 'periodic' | 'retention';
  key_id: string;
  signature: Buffer;
  signed_at: Date;
}

// bigint columns arrive as strings (pg) or bigint (PGlite): ::float8 makes them numbers on both, exact to 2^53.
const eventColumns = `seq::float8 AS seq, id, occurred_at, actor_kind, actor_id, action, target_type, target_id, outcome, request_id, session_id,
  detail, subject, pii, prev_hash, hash`;

function normalizeEvent(row: EventRow): EventRow {
  return { ...row, pii: row.pii === null ? null : toBuffer(row.pii), prev_hash: toBuffer(row.prev_hash), hash: toBuffer(row.hash) };
}

export type NewEvent = Omit<EventBody, 'scope' | 'detail'> & {
  /** The canonical JSON text of the detail (what the body digest covers). */
  detail: string;
  /** SHA-256 of the canonical event body (everything but seq, id and prev_hash). */
  bodyDigest: Buffer;
};

const appendFunctions = { audit_events: 'bulwark_audit_append', platform_audit_events: 'bulwark_platform_audit_append' } as const;

/**
 * Appends an event through the chain's append function (migration 0009): id, seq and hash are decided there,
 * under the head's row lock. Deferred: the caller's transaction sends it with its COMMIT, and a failure fails
 * the transaction.
 */
export async function appendEvent(tx: Queryable, t: AuditTables, scope: string, event: NewEvent, labels: { chain: Buffer; genesis: Buffer }): Promise<void> {
  await tx.defer(`SELECT ${appendFunctions[t.events]}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, $15, $16)`, [
    scope,
    labels.genesis,
    labels.chain,
    event.bodyDigest,
    event.occurredAt,
    event.actorKind,
    event.actorId,
    event.action,
    event.targetType,
    event.targetId,
    event.outcome,
    event.requestId,
    event.sessionId,
    event.detail,
    event.subject,
    event.pii,
  ]);
}

export async function findHead(tx: Queryable, t: AuditTables, scope: string): Promise<HeadRow | undefined> {
  const { rows } = await tx.query<HeadRow>(
    `SELECT seq::float8 AS seq, hash, retention_days, pruned_through::float8 AS pruned_through FROM ${t.heads} WHERE ${t.scope} = $1`,
    [scope],
  );
  return rows[0] === undefined ? undefined : { ...rows[0], hash: toBuffer(rows[0].hash) };
}

/** Events in sequence order after `afterSeq` (and at most `upToSeq`), at most `limit`: the verifier's and the sinks' walk. */
export async function eventsAfter(tx: Queryable, t: AuditTables, scope: string, afterSeq: number, limit: number, upToSeq = Number.MAX_SAFE_INTEGER): Promise<EventRow[]> {
  const { rows } = await tx.query<EventRow>(
    `SELECT ${eventColumns} FROM ${t.events} WHERE ${t.scope} = $1 AND seq > $2 AND seq <= $4 ORDER BY seq LIMIT $3`,
    [scope, afterSeq, limit, upToSeq],
  );
  return rows.map(normalizeEvent);
}

/**
 * The head and every checkpoint, read by one statement (one snapshot): a checkpoint past the head is then
 * tampering, never a write that happened between two reads.
 */
export async function findHeadWithCheckpoints(tx: Queryable, t: AuditTables, scope: string): Promise<{ head: HeadRow | undefined; checkpoints: CheckpointRow[] }> {
  // JSON numbers: exact to 2^53, far past any chain's length. PGlite hands json back as text, pg parsed.
  const { rows } = await tx.query<{ head: { seq: number; hash: string; retention_days: number | null; pruned_through: number } | null; checkpoints: unknown }>(
    `SELECT (SELECT json_build_object('seq', h.seq, 'hash', encode(h.hash, 'hex'), 'retention_days', h.retention_days, 'pruned_through', h.pruned_through)
               FROM ${t.heads} h WHERE h.${t.scope} = $1) AS head,
            (SELECT coalesce(json_agg(json_build_object('seq', c.seq, 'hash', encode(c.hash, 'hex'), 'kind', c.kind, 'key_id', c.key_id,
                                                        'signature', encode(c.signature, 'hex'), 'signed_at', c.signed_at) ORDER BY c.seq), '[]'::json)
               FROM ${t.checkpoints} c WHERE c.${t.scope} = $1) AS checkpoints`,
    [scope],
  );
  const row = rows[0];
  const head = row?.head ?? undefined;
  const checkpoints = (typeof row?.checkpoints === 'string' ? JSON.parse(row.checkpoints) : (row?.checkpoints ?? [])) as {
    seq: number;
    hash: string;
    kind: 'periodic' | 'retention';
    key_id: string;
    signature: string;
    signed_at: string;
  }[];
  return {
    head: head === undefined ? undefined : { seq: head.seq, hash: Buffer.from(head.hash, 'hex'), retention_days: head.retention_days, pruned_through: head.pruned_through },
    checkpoints: checkpoints.map((checkpoint) => ({
      seq: checkpoint.seq,
      hash: Buffer.from(checkpoint.hash, 'hex'),
      kind: checkpoint.kind,
      key_id: checkpoint.key_id,
      signature: Buffer.from(checkpoint.signature, 'hex'),
      signed_at: new Date(checkpoint.signed_at),
    })),
  };
}

export interface EventFilter {
  from?: Date | undefined;
  to?: Date | undefined;
  actorKind?: string | undefined;
  actorId?: string | undefined;
  action?: string | undefined;
  /** Actions under a prefix: `user` matches `user.create`, `user.password.set`, ... */
  actionPrefix?: string | undefined;
  targetType?: string | undefined;
  targetId?: string | undefined;
  outcome?: string | undefined;
  requestId?: string | undefined;
}

/** The filter as SQL conditions on parameters numbered after the first `taken`. */
function filterSql(filter: EventFilter, taken: number): { where: string; params: unknown[] } {
  const conditions: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    conditions.push(sql.replace('?', `$${params.length + taken}`));
  };
  if (filter.from !== undefined) add('occurred_at >= ?', filter.from);
  if (filter.to !== undefined) add('occurred_at < ?', filter.to);
  if (filter.actorKind !== undefined) add('actor_kind = ?', filter.actorKind);
  if (filter.actorId !== undefined) add('actor_id = ?', filter.actorId);
  if (filter.action !== undefined) add('action = ?', filter.action);
  // Actions hold only [a-z0-9.-] (the schema's pattern), so the prefix carries no LIKE wildcard.
  if (filter.actionPrefix !== undefined) add('action LIKE ?', `${filter.actionPrefix}.%`);
  if (filter.targetType !== undefined) add('target_type = ?', filter.targetType);
  if (filter.targetId !== undefined) add('target_id = ?', filter.targetId);
  if (filter.outcome !== undefined) add('outcome = ?', filter.outcome);
  if (filter.requestId !== undefined) add('request_id = ?', filter.requestId);
  return { where: conditions.map((condition) => ` AND ${condition}`).join(''), params };
}

/** Filtered events, newest first, before `beforeSeq` (keyset pagination). */
export async function queryEvents(tx: Queryable, t: AuditTables, scope: string, filter: EventFilter, beforeSeq: number, limit: number): Promise<EventRow[]> {
  const { where, params } = filterSql(filter, 3);
  const { rows } = await tx.query<EventRow>(
    `SELECT ${eventColumns} FROM ${t.events} WHERE ${t.scope} = $1 AND seq < $2${where} ORDER BY seq DESC LIMIT $3`,
    [scope, beforeSeq, limit, ...params],
  );
  return rows.map(normalizeEvent);
}

/** Filtered events, oldest first, after `afterSeq`: the export's batches. */
export async function exportEvents(tx: Queryable, t: AuditTables, scope: string, filter: EventFilter, afterSeq: number, limit: number): Promise<EventRow[]> {
  const { where, params } = filterSql(filter, 3);
  const { rows } = await tx.query<EventRow>(
    `SELECT ${eventColumns} FROM ${t.events} WHERE ${t.scope} = $1 AND seq > $2${where} ORDER BY seq LIMIT $3`,
    [scope, afterSeq, limit, ...params],
  );
  return rows.map(normalizeEvent);
}

/**
 * The events about one person, oldest first, after `afterSeq`: those they did (actor), those done to them
 * (target of their kind), and those whose personal data is sealed under their key (a failed login naming them).
 */
export async function eventsAbout(
  tx: Queryable,
  t: AuditTables,
  scope: string,
  person: { kind: string; id: string; subject: string },
  afterSeq: number,
  limit: number,
): Promise<EventRow[]> {
  const { rows } = await tx.query<EventRow>(
    `SELECT ${eventColumns} FROM ${t.events}
      WHERE ${t.scope} = $1 AND seq > $2 AND ((actor_kind = $3 AND actor_id = $4) OR (target_type = $3 AND target_id = $4) OR subject = $5)
      ORDER BY seq LIMIT $6`,
    [scope, afterSeq, person.kind, person.id, person.subject, limit],
  );
  return rows.map(normalizeEvent);
}

/** Events matching the filter. */
export async function countEvents(tx: Queryable, t: AuditTables, scope: string, filter: EventFilter): Promise<number> {
  const { where, params } = filterSql(filter, 1);
  const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::float8 AS n FROM ${t.events} WHERE ${t.scope} = $1${where}`, [scope, ...params]);
  return rows[0]?.n ?? 0;
}

/** Counts by action, actor and outcome over the filter (the 10,000 largest groups). */
export async function summarize(tx: Queryable, t: AuditTables, scope: string, filter: EventFilter): Promise<{ action: string; actor_kind: string; actor_id: string | null; outcome: string; count: number }[]> {
  const { where, params } = filterSql(filter, 1);
  const { rows } = await tx.query<{ action: string; actor_kind: string; actor_id: string | null; outcome: string; count: number }>(
    `SELECT action, actor_kind, actor_id, outcome, count(*)::int AS count FROM ${t.events} WHERE ${t.scope} = $1${where}
      GROUP BY action, actor_kind, actor_id, outcome ORDER BY count(*) DESC, action, actor_kind, actor_id, outcome LIMIT 10000`,
    [scope, ...params],
  );
  return rows;
}

// --- checkpoints ---

export async function listCheckpoints(tx: Queryable, t: AuditTables, scope: string): Promise<CheckpointRow[]> {
  // Newest last; for the API's list and the verifier (which reads them with the head, findHeadWithCheckpoints).
  const { rows } = await tx.query<CheckpointRow>(
    `SELECT seq::float8 AS seq, hash, kind, key_id, signature, signed_at FROM ${t.checkpoints} WHERE ${t.scope} = $1 ORDER BY seq`,
    [scope],
  );
  return rows.map((row) => ({ ...row, hash: toBuffer(row.hash), signature: toBuffer(row.signature) }));
}

export async function lastCheckpointSeq(tx: Queryable, t: AuditTables, scope: string): Promise<number> {
  const { rows } = await tx.query<{ seq: number | null }>(`SELECT max(seq)::float8 AS seq FROM ${t.checkpoints} WHERE ${t.scope} = $1`, [scope]);
  return rows[0]?.seq ?? 0;
}

export async function insertCheckpoint(tx: Queryable, t: AuditTables, scope: string, checkpoint: CheckpointRow): Promise<void> {
  await tx.query(
    `INSERT INTO ${t.checkpoints} (${t.scope}, seq, hash, kind, key_id, signature, signed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (${t.scope}, seq) DO NOTHING`,
    [scope, checkpoint.seq, checkpoint.hash, checkpoint.kind, checkpoint.key_id, checkpoint.signature, checkpoint.signed_at],
  );
}

/** The hash of one event (for a checkpoint at that seq). */
export async function eventHash(tx: Queryable, t: AuditTables, scope: string, seq: number): Promise<Buffer | undefined> {
  const { rows } = await tx.query<{ hash: Uint8Array }>(`SELECT hash FROM ${t.events} WHERE ${t.scope} = $1 AND seq = $2`, [scope, seq]);
  return rows[0] === undefined ? undefined : toBuffer(rows[0].hash);
}

// --- retention ---

export async function setRetention(tx: Queryable, t: AuditTables, scope: string, days: number | null): Promise<void> {
  await tx.query(`UPDATE ${t.heads} SET retention_days = $2 WHERE ${t.scope} = $1`, [scope, days]);
}

/**
 * The newest seq older than `days` (what may be pruned), or 0. Aged by the database's clock, as the delete
 * policy (retention_only) is: the two agree on what is old enough.
 */
export async function lastSeqOlderThan(tx: Queryable, t: AuditTables, scope: string, days: number): Promise<number> {
  const { rows } = await tx.query<{ seq: number | null }>(
    `SELECT max(seq)::float8 AS seq FROM ${t.events} WHERE ${t.scope} = $1 AND occurred_at < now() - make_interval(days => $2)`,
    [scope, days],
  );
  return rows[0]?.seq ?? 0;
}

/** Moves the boundary and deletes the events at or below it; returns how many went. */
export async function pruneThrough(tx: Queryable, t: AuditTables, scope: string, seq: number): Promise<number> {
  await tx.query(`UPDATE ${t.heads} SET pruned_through = greatest(pruned_through, $2) WHERE ${t.scope} = $1`, [scope, seq]);
  const { rowCount } = await tx.query(`DELETE FROM ${t.events} WHERE ${t.scope} = $1 AND seq <= $2`, [scope, seq]);
  return rowCount;
}

/** Creates the chain's head with its genesis hash unless it exists (settings before the first event). */
export async function ensureHead(tx: Queryable, t: AuditTables, scope: string, genesis: Buffer): Promise<void> {
  await tx.query(`INSERT INTO ${t.heads} (${t.scope}, seq, hash, prev_hash) VALUES ($1, 0, $2, $2) ON CONFLICT DO NOTHING`, [scope, genesis]);
}

/** Scopes with retention set (for the pruning sweep); platform scope reads every tenant's head. */
export async function scopesWithRetention(tx: Queryable, t: AuditTables): Promise<{ scope: string; retention_days: number }[]> {
  const { rows } = await tx.query<{ scope: string; retention_days: number }>(
    `SELECT ${t.scope} AS scope, retention_days FROM ${t.heads} WHERE retention_days IS NOT NULL ORDER BY 1`,
  );
  return rows;
}

/** Scopes whose head is past their last checkpoint (for the checkpoint sweep). */
export async function scopesNeedingCheckpoint(tx: Queryable, t: AuditTables, limit: number): Promise<{ scope: string; seq: number }[]> {
  const { rows } = await tx.query<{ scope: string; seq: number }>(
    `SELECT h.${t.scope} AS scope, h.seq::float8 AS seq FROM ${t.heads} h
      WHERE h.seq > coalesce((SELECT max(c.seq) FROM ${t.checkpoints} c WHERE c.${t.scope} = h.${t.scope}), 0)
      ORDER BY 1 LIMIT $1`,
    [limit],
  );
  return rows;
}

// --- subject keys ---

export interface SubjectKeyRow {
  generation: number;
  /** Null once the subject was forgotten (its personal data erased). */
  sealed_key: Buffer | null;
  key_version: number | null;
}

export async function findSubjectKey(tx: Queryable, t: AuditTables, scope: string, subject: string): Promise<SubjectKeyRow | undefined> {
  const { rows } = await tx.query<SubjectKeyRow>(
    `SELECT generation, sealed_key, key_version FROM ${t.subjectKeys} WHERE ${t.scope} = $1 AND subject = $2`,
    [scope, subject],
  );
  const row = rows[0];
  return row === undefined ? undefined : { ...row, sealed_key: row.sealed_key === null ? null : toBuffer(row.sealed_key) };
}

/**
 * Stores a new key for the subject: the first (generation 1), or the next after an erasure. Does nothing
 * when the subject already has a live key (another instance was first); the caller reads back which won.
 */
export async function storeSubjectKey(
  tx: Queryable,
  t: AuditTables,
  scope: string,
  subject: string,
  sealed: { key: Buffer; keyVersion: number; generation: number },
  now: Date,
): Promise<void> {
  await tx.query(
    `INSERT INTO ${t.subjectKeys} (${t.scope}, subject, generation, sealed_key, key_version, created_at) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (${t.scope}, subject) DO UPDATE SET generation = excluded.generation, sealed_key = excluded.sealed_key,
       key_version = excluded.key_version, created_at = excluded.created_at, erased_at = NULL
     WHERE ${t.subjectKeys}.sealed_key IS NULL AND ${t.subjectKeys}.generation = excluded.generation - 1`,
    [scope, subject, sealed.generation, sealed.key, sealed.keyVersion, now],
  );
}

/** Destroys the subject's key, keeping its generation (the next key is the one after it). */
export async function eraseSubjectKey(tx: Queryable, t: AuditTables, scope: string, subject: string, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE ${t.subjectKeys} SET sealed_key = NULL, key_version = NULL, erased_at = $3 WHERE ${t.scope} = $1 AND subject = $2 AND sealed_key IS NOT NULL`,
    [scope, subject, now],
  );
  return rowCount > 0;
}

export async function countSubjectKeysByVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
  const { rows } = await tx.query<{ key_version: number | null; count: number }>(
    'SELECT key_version, count(*)::int AS count FROM audit_subject_keys WHERE tenant_id = $1 AND sealed_key IS NOT NULL GROUP BY key_version ORDER BY key_version',
    [tenantId],
  );
  return rows;
}

export async function lockStaleSubjectKeys(tx: Queryable, tenantId: string, current: number, minDecryption: number, limit: number): Promise<{ subject: string; sealed_key: Buffer }[]> {
  const { rows } = await tx.query<{ subject: string; sealed_key: Uint8Array }>(
    `SELECT subject, sealed_key FROM audit_subject_keys WHERE tenant_id = $1 AND key_version < $2 AND key_version >= $3
      ORDER BY subject LIMIT $4 FOR UPDATE SKIP LOCKED`,
    [tenantId, current, minDecryption, limit],
  );
  return rows.map((row) => ({ subject: row.subject, sealed_key: toBuffer(row.sealed_key) }));
}

export async function resealSubjectKey(tx: Queryable, tenantId: string, subject: string, sealed: { key: Buffer; keyVersion: number }): Promise<void> {
  await tx.query('UPDATE audit_subject_keys SET sealed_key = $3, key_version = $4 WHERE tenant_id = $1 AND subject = $2', [tenantId, subject, sealed.key, sealed.keyVersion]);
}

// --- delivery cursors ---

export async function deliveryCursor(tx: Queryable, t: AuditTables, scope: string, sink: string): Promise<number | undefined> {
  const { rows } = await tx.query<{ seq: number }>(`SELECT seq::float8 AS seq FROM ${t.deliveries} WHERE ${t.scope} = $1 AND sink = $2`, [scope, sink]);
  return rows[0]?.seq;
}

export async function advanceDelivery(tx: Queryable, t: AuditTables, scope: string, sink: string, seq: number, now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO ${t.deliveries} (${t.scope}, sink, seq, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (${t.scope}, sink) DO UPDATE SET seq = greatest(${t.deliveries}.seq, excluded.seq), updated_at = excluded.updated_at`,
    [scope, sink, seq, now],
  );
}
