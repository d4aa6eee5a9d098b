import { toBuffer, type Queryable } from '../../platform/db/database.ts';

export interface KeyringRow {
  current_version: number;
  min_decryption_version: number;
  rotation_period_days: number | null;
  rotation_encryptions: number | null;
  destroyed_at: Date | null;
  customer_kms_sealed: Buffer | null;
  customer_kms_wrapped_key: string | null;
  customer_kms_configured_at: Date | null;
  lookup_wrapped_key: string | null;
}

export interface KeyRow {
  version: number;
  /** The data key (or, with a customer key, its share A) wrapped by the root key; NULL once destroyed. */
  wrapped_key: string | null;
  /** Share B wrapped by the customer's KMS key; NULL without a customer key. */
  customer_wrapped_share: string | null;
  encryptions: number;
  created_at: Date;
  destroyed_at: Date | null;
}

// bigint columns come back as strings from pg and as bigint from PGlite: float8 is a number on both, and
// exact far beyond the 2^31 rotation limit.
const keyringSql = `SELECT current_version, min_decryption_version, rotation_period_days, rotation_encryptions::float8 AS rotation_encryptions,
  destroyed_at, customer_kms_sealed, customer_kms_wrapped_key, customer_kms_configured_at, lookup_wrapped_key
  FROM tenant_keyrings WHERE tenant_id = $1`;

export async function findKeyring(tx: Queryable, tenantId: string, options: { forUpdate?: boolean } = {}): Promise<KeyringRow | undefined> {
  const { rows } = await tx.query<KeyringRow>(`${keyringSql}${options.forUpdate ? ' FOR UPDATE' : ''}`, [tenantId]);
  const row = rows[0];
  return row === undefined ? undefined : { ...row, customer_kms_sealed: row.customer_kms_sealed === null ? null : toBuffer(row.customer_kms_sealed) };
}

export async function listKeys(tx: Queryable, tenantId: string): Promise<KeyRow[]> {
  const { rows } = await tx.query<KeyRow>(
    `SELECT version, wrapped_key, customer_wrapped_share, encryptions::float8 AS encryptions, created_at, destroyed_at
       FROM tenant_keys WHERE tenant_id = $1 ORDER BY version`,
    [tenantId],
  );
  return rows;
}

/** Inserts the keyring with its first key; false if another writer created it first. */
export async function insertKeyring(tx: Queryable, tenantId: string, wrappedKey: string, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query(
    `INSERT INTO tenant_keyrings (tenant_id, current_version, updated_at) VALUES ($1, 1, $2)
     ON CONFLICT (tenant_id) DO NOTHING`,
    [tenantId, now],
  );
  if (rowCount === 0) return false;
  await insertKey(tx, tenantId, 1, { wrappedKey, customerWrappedShare: null }, now);
  return true;
}

export async function insertKey(
  tx: Queryable,
  tenantId: string,
  version: number,
  wrapped: { wrappedKey: string; customerWrappedShare: string | null },
  now: Date,
): Promise<void> {
  await tx.query('INSERT INTO tenant_keys (tenant_id, version, wrapped_key, customer_wrapped_share, created_at) VALUES ($1, $2, $3, $4, $5)', [
    tenantId,
    version,
    wrapped.wrappedKey,
    wrapped.customerWrappedShare,
    now,
  ]);
}

export async function setCurrentVersion(tx: Queryable, tenantId: string, version: number, now: Date): Promise<void> {
  await tx.query('UPDATE tenant_keyrings SET current_version = $2, updated_at = $3 WHERE tenant_id = $1', [tenantId, version, now]);
}

export async function updateKeyringSettings(
  tx: Queryable,
  tenantId: string,
  settings: { minDecryptionVersion: number; rotationPeriodDays: number | null; rotationEncryptions: number | null },
  now: Date,
): Promise<void> {
  await tx.query(
    `UPDATE tenant_keyrings SET min_decryption_version = $2, rotation_period_days = $3, rotation_encryptions = $4, updated_at = $5
      WHERE tenant_id = $1`,
    [tenantId, settings.minDecryptionVersion, settings.rotationPeriodDays, settings.rotationEncryptions, now],
  );
}

/** Adds what one instance sealed with a version while it held the key in memory. */
export async function addEncryptions(tx: Queryable, tenantId: string, version: number, count: number): Promise<void> {
  await tx.query('UPDATE tenant_keys SET encryptions = encryptions + $3 WHERE tenant_id = $1 AND version = $2', [tenantId, version, count]);
}

/** Replaces both wrapped parts of a live version (enabling, changing or removing a customer key). */
export async function replaceKeyParts(
  tx: Queryable,
  tenantId: string,
  version: number,
  wrapped: { wrappedKey: string; customerWrappedShare: string | null },
): Promise<void> {
  await tx.query(
    'UPDATE tenant_keys SET wrapped_key = $3, customer_wrapped_share = $4 WHERE tenant_id = $1 AND version = $2 AND wrapped_key IS NOT NULL',
    [tenantId, version, wrapped.wrappedKey, wrapped.customerWrappedShare],
  );
}

/** Stores (or, with nulls, removes) the sealed customer KMS connection. */
export async function setCustomerKms(
  tx: Queryable,
  tenantId: string,
  kms: { sealed: Buffer; wrappedKey: string } | null,
  now: Date,
): Promise<void> {
  await tx.query(
    `UPDATE tenant_keyrings SET customer_kms_sealed = $2, customer_kms_wrapped_key = $3, customer_kms_configured_at = $4, updated_at = $5
      WHERE tenant_id = $1`,
    [tenantId, kms?.sealed ?? null, kms?.wrappedKey ?? null, kms === null ? null : now, now],
  );
}

/** Stores the tenant's lookup key unless another writer stored one first (the caller re-reads). */
export async function setLookupKeyIfMissing(tx: Queryable, tenantId: string, wrappedKey: string): Promise<void> {
  await tx.query('UPDATE tenant_keyrings SET lookup_wrapped_key = $2 WHERE tenant_id = $1 AND lookup_wrapped_key IS NULL AND destroyed_at IS NULL', [
    tenantId,
    wrappedKey,
  ]);
}

/** Re-wraps the lookup key (root key rotation). */
export async function replaceLookupWrappedKey(tx: Queryable, tenantId: string, wrappedKey: string): Promise<void> {
  await tx.query('UPDATE tenant_keyrings SET lookup_wrapped_key = $2 WHERE tenant_id = $1 AND lookup_wrapped_key IS NOT NULL', [tenantId, wrappedKey]);
}

/** Re-wraps the key that seals the customer KMS connection (root key rotation). */
export async function replaceCustomerKmsWrappedKey(tx: Queryable, tenantId: string, wrappedKey: string): Promise<void> {
  await tx.query('UPDATE tenant_keyrings SET customer_kms_wrapped_key = $2 WHERE tenant_id = $1 AND customer_kms_wrapped_key IS NOT NULL', [
    tenantId,
    wrappedKey,
  ]);
}

export async function replaceWrappedKey(tx: Queryable, tenantId: string, version: number, wrappedKey: string): Promise<void> {
  await tx.query('UPDATE tenant_keys SET wrapped_key = $3 WHERE tenant_id = $1 AND version = $2 AND wrapped_key IS NOT NULL', [
    tenantId,
    version,
    wrappedKey,
  ]);
}

/** Deletes key material for good: versions below `belowVersion` (trim), or all of them (shredding). */
export async function destroyKeys(tx: Queryable, tenantId: string, belowVersion: number | null, now: Date): Promise<number[]> {
  const { rows } = await tx.query<{ version: number }>(
    `UPDATE tenant_keys SET wrapped_key = NULL, customer_wrapped_share = NULL, destroyed_at = $3
      WHERE tenant_id = $1 AND wrapped_key IS NOT NULL AND ($2::int IS NULL OR version < $2::int)
      RETURNING version`,
    [tenantId, belowVersion, now],
  );
  return rows.map((row) => row.version).sort((a, b) => a - b);
}

/** Shredding also drops the sealed customer KMS connection: nothing is left to reach it with. */
export async function markKeyringDestroyed(tx: Queryable, tenantId: string, now: Date): Promise<void> {
  await tx.query(
    `UPDATE tenant_keyrings SET destroyed_at = $2, updated_at = $2,
            customer_kms_sealed = NULL, customer_kms_wrapped_key = NULL, customer_kms_configured_at = NULL,
            lookup_wrapped_key = NULL
      WHERE tenant_id = $1`,
    [tenantId, now],
  );
}

/** Platform scope: every tenant that has a keyring (for root key rotation). */
export async function listKeyringTenants(tx: Queryable): Promise<string[]> {
  const { rows } = await tx.query<{ tenant_id: string }>('SELECT tenant_id FROM tenant_keyrings WHERE destroyed_at IS NULL ORDER BY tenant_id');
  return rows.map((row) => row.tenant_id);
}
