import { toBuffer, type Queryable } from '../../platform/db/database.ts';

// --- services (platform scope) ---

export interface ServiceRow {
  id: string;
  name: string;
  public_key: Buffer;
  created_at: Date;
  retired_at: Date | null;
}

const serviceColumns = 'id, name, public_key, created_at, retired_at';

function normalizeService(row: ServiceRow): ServiceRow {
  return { ...row, public_key: toBuffer(row.public_key) };
}

/** Undefined when the id, or the name or key of an active service, is taken (a concurrent registration). */
export async function insertService(
  tx: Queryable,
  service: { id: string; name: string; publicKey: Buffer; credentialHash: Buffer; now: Date },
): Promise<ServiceRow | undefined> {
  const { rows } = await tx.query<ServiceRow>(
    `INSERT INTO services (id, name, public_key, credential_hash, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING ${serviceColumns}`,
    [service.id, service.name, service.publicKey, service.credentialHash, service.now],
  );
  return rows[0] === undefined ? undefined : normalizeService(rows[0]);
}

/** Which of the name and the key an active service already has. */
export async function activeServiceClash(tx: Queryable, name: string, publicKey: Buffer): Promise<{ name: boolean; key: boolean }> {
  const { rows } = await tx.query<{ name: boolean; key: boolean }>(
    'SELECT coalesce(bool_or(name = $1), false) AS name, coalesce(bool_or(public_key = $2), false) AS key FROM services WHERE retired_at IS NULL AND (name = $1 OR public_key = $2)',
    [name, publicKey],
  );
  return rows[0] ?? { name: false, key: false };
}

export async function findService(tx: Queryable, id: string): Promise<ServiceRow | undefined> {
  const { rows } = await tx.query<ServiceRow>(`SELECT ${serviceColumns} FROM services WHERE id = $1`, [id]);
  return rows[0] === undefined ? undefined : normalizeService(rows[0]);
}

export async function listServices(tx: Queryable, afterId: string, limit: number): Promise<ServiceRow[]> {
  const { rows } = await tx.query<ServiceRow>(`SELECT ${serviceColumns} FROM services WHERE id > $1 ORDER BY id LIMIT $2`, [afterId, limit]);
  return rows.map(normalizeService);
}

/** The active services among `ids`, with their keys. */
export async function findActiveServices(tx: Queryable, ids: readonly string[]): Promise<ServiceRow[]> {
  const { rows } = await tx.query<ServiceRow>(`SELECT ${serviceColumns} FROM services WHERE id = ANY($1::text[]) AND retired_at IS NULL`, [ids]);
  return rows.map(normalizeService);
}

/** Undefined when the service does not exist or is retired already. */
export async function retireService(tx: Queryable, id: string, now: Date): Promise<ServiceRow | undefined> {
  const { rows } = await tx.query<ServiceRow>(`UPDATE services SET retired_at = $2 WHERE id = $1 AND retired_at IS NULL RETURNING ${serviceColumns}`, [id, now]);
  return rows[0] === undefined ? undefined : normalizeService(rows[0]);
}

/** The credential check's read: only the authenticator uses it. */
export async function findServiceCredential(tx: Queryable, id: string): Promise<{ credentialHash: Buffer; retired: boolean } | undefined> {
  const { rows } = await tx.query<{ credential_hash: Buffer; retired: boolean }>('SELECT credential_hash, retired_at IS NOT NULL AS retired FROM services WHERE id = $1', [id]);
  const row = rows[0];
  return row === undefined ? undefined : { credentialHash: toBuffer(row.credential_hash), retired: row.retired };
}

// --- secrets (tenant scope) ---

export interface SecretVersionRow {
  version: number;
  created_at: Date;
  readers: string[];
}

export interface SecretRow {
  name: string;
  current_version: number;
  created_at: Date;
  updated_at: Date;
  /** The current version's readers. */
  readers: string[];
}

const currentReaders = `array(SELECT c.service_id FROM secret_copies c
    WHERE c.tenant_id = s.tenant_id AND c.name = s.name AND c.version = s.current_version ORDER BY c.service_id) AS readers`;

export async function secretExists(tx: Queryable, tenantId: string, name: string): Promise<boolean> {
  const { rows } = await tx.query('SELECT 1 FROM secrets WHERE tenant_id = $1 AND name = $2', [tenantId, name]);
  return rows.length > 0;
}

export async function countSecrets(tx: Queryable, tenantId: string): Promise<number> {
  const { rows } = await tx.query<{ count: number }>('SELECT count(*)::int AS count FROM secrets WHERE tenant_id = $1', [tenantId]);
  return rows[0]?.count ?? 0;
}

/**
 * Version 1 of a new secret, or the next version of an existing one, under the secret's row lock: concurrent
 * writes of one name get consecutive versions, never the same one.
 */
export async function nextSecretVersion(tx: Queryable, tenantId: string, name: string, now: Date): Promise<{ version: number; created: boolean }> {
  const { rows } = await tx.query<{ current_version: number }>(
    `INSERT INTO secrets (tenant_id, name, current_version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)
     ON CONFLICT (tenant_id, name) DO UPDATE SET current_version = secrets.current_version + 1, updated_at = $3
     RETURNING current_version`,
    [tenantId, name, now],
  );
  const version = rows[0]?.current_version ?? 0;
  return { version, created: version === 1 };
}

export async function insertSecretVersion(tx: Queryable, tenantId: string, name: string, version: number, now: Date): Promise<void> {
  await tx.query('INSERT INTO secret_versions (tenant_id, name, version, created_at) VALUES ($1, $2, $3, $4)', [tenantId, name, version, now]);
}

export async function insertSecretCopy(
  tx: Queryable,
  tenantId: string,
  copy: { name: string; version: number; serviceId: string; sealed: { ciphertext: Buffer; keyVersion: number } },
): Promise<void> {
  await tx.query('INSERT INTO secret_copies (tenant_id, name, version, service_id, sealed, key_version) VALUES ($1, $2, $3, $4, $5, $6)', [
    tenantId,
    copy.name,
    copy.version,
    copy.serviceId,
    copy.sealed.ciphertext,
    copy.sealed.keyVersion,
  ]);
}

/** Drops the versions below `keepFrom` (their copies go with them). */
export async function pruneSecretVersions(tx: Queryable, tenantId: string, name: string, keepFrom: number): Promise<void> {
  await tx.query('DELETE FROM secret_versions WHERE tenant_id = $1 AND name = $2 AND version < $3', [tenantId, name, keepFrom]);
}

export async function findSecret(tx: Queryable, tenantId: string, name: string): Promise<SecretRow | undefined> {
  const { rows } = await tx.query<SecretRow>(
    `SELECT s.name, s.current_version, s.created_at, s.updated_at, ${currentReaders} FROM secrets s WHERE s.tenant_id = $1 AND s.name = $2`,
    [tenantId, name],
  );
  return rows[0];
}

/** Newest first. */
export async function listSecretVersions(tx: Queryable, tenantId: string, name: string): Promise<SecretVersionRow[]> {
  const { rows } = await tx.query<SecretVersionRow>(
    `SELECT v.version, v.created_at,
            array(SELECT c.service_id FROM secret_copies c WHERE c.tenant_id = v.tenant_id AND c.name = v.name AND c.version = v.version ORDER BY c.service_id) AS readers
       FROM secret_versions v WHERE v.tenant_id = $1 AND v.name = $2 ORDER BY v.version DESC`,
    [tenantId, name],
  );
  return rows;
}

export async function listSecrets(tx: Queryable, tenantId: string, afterName: string, limit: number): Promise<SecretRow[]> {
  const { rows } = await tx.query<SecretRow>(
    `SELECT s.name, s.current_version, s.created_at, s.updated_at, ${currentReaders} FROM secrets s WHERE s.tenant_id = $1 AND s.name > $2 ORDER BY s.name LIMIT $3`,
    [tenantId, afterName, limit],
  );
  return rows;
}

/** Every version and copy goes with the secret; undefined when there was none. */
export async function deleteSecret(tx: Queryable, tenantId: string, name: string): Promise<{ currentVersion: number } | undefined> {
  const { rows } = await tx.query<{ current_version: number }>('DELETE FROM secrets WHERE tenant_id = $1 AND name = $2 RETURNING current_version', [tenantId, name]);
  return rows[0] === undefined ? undefined : { currentVersion: rows[0].current_version };
}

export interface SecretCopyRow {
  version: number;
  sealed: Buffer;
  created_at: Date;
}

/** A service's copy of one version, or of the current one when `version` is undefined. */
export async function findSecretCopy(tx: Queryable, tenantId: string, name: string, serviceId: string, version: number | undefined): Promise<SecretCopyRow | undefined> {
  const { rows } = await tx.query<SecretCopyRow>(
    `SELECT c.version, c.sealed, v.created_at
       FROM secret_copies c
       JOIN secret_versions v ON v.tenant_id = c.tenant_id AND v.name = c.name AND v.version = c.version
       JOIN secrets s ON s.tenant_id = c.tenant_id AND s.name = c.name
      WHERE c.tenant_id = $1 AND c.name = $2 AND c.service_id = $3 AND c.version = coalesce($4::int, s.current_version)`,
    [tenantId, name, serviceId, version ?? null],
  );
  const row = rows[0];
  return row === undefined ? undefined : { ...row, sealed: toBuffer(row.sealed) };
}

export async function countSecretCopiesByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
  const { rows } = await tx.query<{ key_version: number | null; count: number }>(
    'SELECT key_version, count(*)::int AS count FROM secret_copies WHERE tenant_id = $1 GROUP BY key_version',
    [tenantId],
  );
  return rows;
}

export interface StaleCopyRow {
  name: string;
  version: number;
  service_id: string;
  sealed: Buffer;
}

export async function lockStaleSecretCopies(tx: Queryable, tenantId: string, current: number, minDecryption: number, limit: number): Promise<StaleCopyRow[]> {
  const { rows } = await tx.query<StaleCopyRow>(
    `SELECT name, version, service_id, sealed FROM secret_copies WHERE tenant_id = $1 AND key_version < $2 AND key_version >= $3
      ORDER BY name, version, service_id LIMIT $4 FOR UPDATE SKIP LOCKED`,
    [tenantId, current, minDecryption, limit],
  );
  return rows.map((row) => ({ ...row, sealed: toBuffer(row.sealed) }));
}

export async function resealSecretCopy(tx: Queryable, tenantId: string, row: StaleCopyRow, sealed: { ciphertext: Buffer; keyVersion: number }): Promise<void> {
  await tx.query('UPDATE secret_copies SET sealed = $5, key_version = $6 WHERE tenant_id = $1 AND name = $2 AND version = $3 AND service_id = $4', [
    tenantId,
    row.name,
    row.version,
    row.service_id,
    sealed.ciphertext,
    sealed.keyVersion,
  ]);
}
