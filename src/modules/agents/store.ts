import { type Queryable, toBuffer } from '../../platform/db/database.ts';

// --- pairing codes (tenant table; the platform scope may read them) ---

export interface PairingCodeRow {
  id: string;
  name_hint: string | null;
  expires_at: Date;
  created_at: Date;
}

/**
 * Stores a new code, or answers false when its id or its HMAC is taken (a collision: draw again). Expired
 * codes of the tenant go with each new one, so no sweeper is needed.
 */
export async function insertPairingCode(
  tx: Queryable,
  code: { tenantId: string; id: string; codeHmac: Buffer; nameHint: string | null; expiresAt: Date; now: Date },
): Promise<PairingCodeRow | undefined> {
  await tx.query('DELETE FROM agent_pairing_codes WHERE tenant_id = $1 AND expires_at <= $2', [code.tenantId, code.now]);
  const { rows } = await tx.query<PairingCodeRow>(
    `INSERT INTO agent_pairing_codes (tenant_id, id, code_hmac, name_hint, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT DO NOTHING RETURNING id, name_hint, expires_at, created_at`,
    [code.tenantId, code.id, code.codeHmac, code.nameHint, code.expiresAt, code.now],
  );
  return rows[0];
}

export async function countLivePairingCodes(tx: Queryable, tenantId: string, now: Date): Promise<number> {
  const { rows } = await tx.query<{ count: number }>('SELECT count(*)::int AS count FROM agent_pairing_codes WHERE tenant_id = $1 AND expires_at > $2', [tenantId, now]);
  return rows[0]?.count ?? 0;
}

/** Unexpired codes, by id (keyset pages). */
export async function listLivePairingCodes(tx: Queryable, tenantId: string, now: Date, after: string, limit: number): Promise<PairingCodeRow[]> {
  const { rows } = await tx.query<PairingCodeRow>(
    'SELECT id, name_hint, expires_at, created_at FROM agent_pairing_codes WHERE tenant_id = $1 AND expires_at > $2 AND id > $3 ORDER BY id LIMIT $4',
    [tenantId, now, after, limit],
  );
  return rows;
}

/** Withdraws every code of the tenant (expired ones too); answers how many were unexpired. */
export async function deletePairingCodes(tx: Queryable, tenantId: string, now: Date): Promise<number> {
  const { rows } = await tx.query<{ live: number }>(
    'WITH gone AS (DELETE FROM agent_pairing_codes WHERE tenant_id = $1 RETURNING expires_at) SELECT count(*) FILTER (WHERE expires_at > $2)::int AS live FROM gone',
    [tenantId, now],
  );
  return rows[0]?.live ?? 0;
}

/** The platform-scoped lookup of the pairing route: which tenant a code belongs to, expired or not. */
export async function findPairingCodeTenant(tx: Queryable, codeHmac: Buffer): Promise<{ tenant_id: string; id: string; expires_at: Date } | undefined> {
  const { rows } = await tx.query<{ tenant_id: string; id: string; expires_at: Date }>('SELECT tenant_id, id, expires_at FROM agent_pairing_codes WHERE code_hmac = $1', [codeHmac]);
  return rows[0];
}

/** Spends a code exactly once (delete and return), under its tenant's context, if it has not expired. */
export async function consumePairingCode(tx: Queryable, tenantId: string, codeHmac: Buffer, now: Date): Promise<PairingCodeRow | undefined> {
  const { rows } = await tx.query<PairingCodeRow>(
    'DELETE FROM agent_pairing_codes WHERE tenant_id = $1 AND code_hmac = $2 AND expires_at > $3 RETURNING id, name_hint, expires_at, created_at',
    [tenantId, codeHmac, now],
  );
  return rows[0];
}

// --- agents ---

export type Health = 'ok' | 'degraded' | 'down';

export interface AgentRow {
  id: string;
  name: string;
  status: 'active' | 'revoked';
  public_key_type: 'ed25519' | 'x25519';
  public_key: Buffer;
  bus_kind: 'nats' | 'http';
  paired_at: Date;
  last_seen_at: Date | null;
  stale: boolean;
  health: Health | null;
  health_message: string | null;
  health_changed_at: Date | null;
  stats: Record<string, number> | null;
  stats_at: Date | null;
  revoked_at: Date | null;
  certificate_serial: string | null;
  certificate_not_after: Date | null;
}

const agentColumns =
  'id, name, status, public_key_type, public_key, bus_kind, paired_at, last_seen_at, stale, health, health_message, health_changed_at, stats, stats_at, revoked_at, certificate_serial, certificate_not_after';

function normalizeAgent(row: AgentRow): AgentRow {
  return { ...row, public_key: toBuffer(row.public_key) };
}

export async function insertAgent(
  tx: Queryable,
  agent: {
    tenantId: string;
    id: string;
    name: string;
    tokenHash: Buffer;
    publicKey: { type: 'ed25519' | 'x25519'; key: Buffer };
    bus: { kind: 'nats' | 'http'; userKey: string | null };
    now: Date;
  },
): Promise<AgentRow | undefined> {
  const { rows } = await tx.query<AgentRow>(
    `INSERT INTO agents (tenant_id, id, name, status, token_hash, public_key_type, public_key, bus_kind, bus_user_key, paired_at)
     VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING ${agentColumns}`,
    [agent.tenantId, agent.id, agent.name, agent.tokenHash, agent.publicKey.type, agent.publicKey.key, agent.bus.kind, agent.bus.userKey, agent.now],
  );
  return rows[0] === undefined ? undefined : normalizeAgent(rows[0]);
}

export async function listAgents(tx: Queryable, tenantId: string, after: string, limit: number): Promise<AgentRow[]> {
  const { rows } = await tx.query<AgentRow>(`SELECT ${agentColumns} FROM agents WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, [tenantId, after, limit]);
  return rows.map(normalizeAgent);
}

export async function findAgent(tx: Queryable, tenantId: string, id: string, options: { forUpdate?: boolean } = {}): Promise<AgentRow | undefined> {
  const { rows } = await tx.query<AgentRow>(`SELECT ${agentColumns} FROM agents WHERE tenant_id = $1 AND id = $2${options.forUpdate === true ? ' FOR UPDATE' : ''}`, [tenantId, id]);
  return rows[0] === undefined ? undefined : normalizeAgent(rows[0]);
}

/** Revokes an active agent; answers its bus user key (null: the HTTP gateway), or undefined when it is not active. */
export async function revokeAgent(tx: Queryable, tenantId: string, id: string, now: Date): Promise<{ bus_user_key: string | null } | undefined> {
  const { rows } = await tx.query<{ bus_user_key: string | null }>(
    "UPDATE agents SET status = 'revoked', revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND status = 'active' RETURNING bus_user_key",
    [tenantId, id, now],
  );
  return rows[0];
}

/** Credential read: only the token check uses it; listings never select the hash. */
export const agentCredentialSql = 'SELECT token_hash, status FROM agents WHERE tenant_id = $1 AND id = $2';

export interface AgentCredentialRow {
  token_hash: Uint8Array;
  status: 'active' | 'revoked';
}

/**
 * Credential read of the certificate path: the agent's status and paired key, and its tenant's CA
 * certificate (null: the tenant has none), in one statement.
 */
export const agentCertificateCredentialSql = `SELECT a.status, a.public_key_type, a.public_key, ca.certificate AS authority
  FROM agents a LEFT JOIN agent_certificate_authorities ca ON ca.tenant_id = a.tenant_id
 WHERE a.tenant_id = $1 AND a.id = $2`;

export interface AgentCertificateCredentialRow {
  status: 'active' | 'revoked';
  public_key_type: 'ed25519' | 'x25519';
  public_key: Uint8Array;
  authority: Uint8Array | null;
}

/** The last certificate issued to the agent (shown in its listing). */
export async function setAgentCertificate(tx: Queryable, tenantId: string, id: string, certificate: { serialNumber: string; notAfter: Date }): Promise<void> {
  await tx.query('UPDATE agents SET certificate_serial = $3, certificate_not_after = $4 WHERE tenant_id = $1 AND id = $2', [tenantId, id, certificate.serialNumber, certificate.notAfter]);
}

// --- agent certificate authorities (one per tenant) ---

export interface AuthorityRow {
  certificate: Buffer;
  private_key: Buffer;
  key_version: number;
}

export async function findAuthority(tx: Queryable, tenantId: string): Promise<AuthorityRow | undefined> {
  const { rows } = await tx.query<AuthorityRow>('SELECT certificate, private_key, key_version FROM agent_certificate_authorities WHERE tenant_id = $1', [tenantId]);
  const row = rows[0];
  return row === undefined ? undefined : { certificate: toBuffer(row.certificate), private_key: toBuffer(row.private_key), key_version: row.key_version };
}

/**
 * Stores a tenant's new CA unless it has one: a racing creation waits on the primary key and inserts
 * nothing; answers whether this one was stored (else the caller reads the winner's).
 */
export async function insertAuthority(
  tx: Queryable,
  authority: { tenantId: string; certificate: Buffer; sealed: { ciphertext: Buffer; keyVersion: number }; notAfter: Date; now: Date },
): Promise<boolean> {
  const { rowCount } = await tx.query(
    `INSERT INTO agent_certificate_authorities (tenant_id, certificate, private_key, key_version, not_after, created_at) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (tenant_id) DO NOTHING`,
    [authority.tenantId, authority.certificate, authority.sealed.ciphertext, authority.sealed.keyVersion, authority.notAfter, authority.now],
  );
  return rowCount === 1;
}

export async function countAuthoritiesByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
  const { rows } = await tx.query<{ key_version: number | null; count: number }>(
    'SELECT key_version, count(*)::int AS count FROM agent_certificate_authorities WHERE tenant_id = $1 GROUP BY key_version',
    [tenantId],
  );
  return rows;
}

/** The CA key, locked, if it is sealed below the current version (and still opens). */
export async function lockStaleAuthority(tx: Queryable, tenantId: string, current: number, minDecryption: number): Promise<Buffer | undefined> {
  const { rows } = await tx.query<{ private_key: Buffer }>(
    'SELECT private_key FROM agent_certificate_authorities WHERE tenant_id = $1 AND key_version < $2 AND key_version >= $3 FOR UPDATE SKIP LOCKED',
    [tenantId, current, minDecryption],
  );
  return rows[0] === undefined ? undefined : toBuffer(rows[0].private_key);
}

export async function resealAuthority(tx: Queryable, tenantId: string, sealed: { ciphertext: Buffer; keyVersion: number }): Promise<void> {
  await tx.query('UPDATE agent_certificate_authorities SET private_key = $2, key_version = $3 WHERE tenant_id = $1', [tenantId, sealed.ciphertext, sealed.keyVersion]);
}

/** A report's row, locked: the agent must be active; its health and stale flag as they were before the report. */
export async function lockActiveAgent(tx: Queryable, tenantId: string, id: string): Promise<{ health: Health | null; stale: boolean } | undefined> {
  const { rows } = await tx.query<{ health: Health | null; stale: boolean }>(
    "SELECT health, stale FROM agents WHERE tenant_id = $1 AND id = $2 AND status = 'active' FOR UPDATE",
    [tenantId, id],
  );
  return rows[0];
}

/** Any report: the agent was heard from now, so it is not stale. */
export async function markSeen(tx: Queryable, tenantId: string, id: string, now: Date): Promise<void> {
  await tx.query('UPDATE agents SET last_seen_at = greatest(coalesce(last_seen_at, $3), $3), stale = false WHERE tenant_id = $1 AND id = $2', [tenantId, id, now]);
}

export async function setHealth(tx: Queryable, tenantId: string, id: string, health: { status: Health; message: string | null; changed: boolean }, now: Date): Promise<void> {
  await tx.query(
    `UPDATE agents SET health = $3, health_message = $4, health_changed_at = CASE WHEN $5::boolean THEN $6 ELSE health_changed_at END
     WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id, health.status, health.message, health.changed, now],
  );
}

export async function setStats(tx: Queryable, tenantId: string, id: string, stats: Record<string, number>, now: Date): Promise<void> {
  await tx.query('UPDATE agents SET stats = $3::jsonb, stats_at = $4 WHERE tenant_id = $1 AND id = $2', [tenantId, id, JSON.stringify(stats), now]);
}

/** The stale sweep's scan, in the platform scope: active agents not yet stale, silent since before `silentSince`. */
export async function findSilentAgents(tx: Queryable, silentSince: Date, limit: number): Promise<{ tenant_id: string; id: string }[]> {
  const { rows } = await tx.query<{ tenant_id: string; id: string }>(
    "SELECT tenant_id, id FROM agents WHERE status = 'active' AND NOT stale AND coalesce(last_seen_at, paired_at) < $1 ORDER BY coalesce(last_seen_at, paired_at) LIMIT $2",
    [silentSince, limit],
  );
  return rows;
}

/** Marks one agent stale under its tenant's context, if it is still silent (a report may have come in since the scan). */
export async function markStale(tx: Queryable, tenantId: string, id: string, silentSince: Date): Promise<{ last_seen_at: Date | null } | undefined> {
  const { rows } = await tx.query<{ last_seen_at: Date | null }>(
    "UPDATE agents SET stale = true WHERE tenant_id = $1 AND id = $2 AND status = 'active' AND NOT stale AND coalesce(last_seen_at, paired_at) < $3 RETURNING last_seen_at",
    [tenantId, id, silentSince],
  );
  return rows[0];
}

// --- pairing throttle (platform table) ---

/**
 * Reserves one pairing check for a source address, in its own statement: the count goes up before the code
 * is looked up, so parallel guesses each need a reservation, and the row lock serialises them. A window
 * older than `windowMs` starts again at 1. Answers the count including this one, or the end of the window
 * when the address has spent its budget (nothing is counted then).
 */
export async function reservePairingAttempt(
  tx: Queryable,
  sourceHmac: Buffer,
  now: Date,
  window: { ms: number; maxFailures: number },
): Promise<{ attempts: number } | { blockedUntil: Date }> {
  const { rows } = await tx.query<{ failures: number }>(
    `INSERT INTO agent_pairing_throttles AS t (source_hmac, failures, window_started_at) VALUES ($1, 1, $2)
     ON CONFLICT (source_hmac) DO UPDATE SET
       failures = CASE WHEN t.window_started_at <= $2::timestamptz - make_interval(secs => $3::double precision / 1000) THEN 1 ELSE t.failures + 1 END,
       window_started_at = CASE WHEN t.window_started_at <= $2::timestamptz - make_interval(secs => $3::double precision / 1000) THEN $2 ELSE t.window_started_at END
     WHERE t.failures < $4 OR t.window_started_at <= $2::timestamptz - make_interval(secs => $3::double precision / 1000)
     RETURNING failures`,
    [sourceHmac, now, window.ms, window.maxFailures],
  );
  if (rows[0] !== undefined) return { attempts: rows[0].failures };
  const found = await tx.query<{ window_started_at: Date }>('SELECT window_started_at FROM agent_pairing_throttles WHERE source_hmac = $1', [sourceHmac]);
  const started = found.rows[0]?.window_started_at ?? now;
  return { blockedUntil: new Date(started.getTime() + window.ms) };
}

/** A right code gives its reservation back: only failures count. */
export async function releasePairingAttempt(tx: Queryable, sourceHmac: Buffer): Promise<void> {
  await tx.query('UPDATE agent_pairing_throttles SET failures = greatest(failures - 1, 0) WHERE source_hmac = $1', [sourceHmac]);
}

/** Windows that ended hold nothing worth keeping. */
export async function pruneThrottles(tx: Queryable, before: Date): Promise<number> {
  const { rowCount } = await tx.query('DELETE FROM agent_pairing_throttles WHERE window_started_at < $1', [before]);
  return rowCount;
}
