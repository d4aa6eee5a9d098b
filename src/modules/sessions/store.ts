import type { Queryable } from '../../platform/db/database.ts';
import { retryWithNewId } from '../../platform/ids.ts';
import type { ApiKey } from './schemas.ts';

// --- API keys (tenant table) ---

interface ApiKeyRow {
  id: string;
  name: string;
  scopes: string[];
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

const columns = 'id, name, scopes, created_at, expires_at, revoked_at, last_used_at';

function toApiKey(row: ApiKeyRow): ApiKey {
  return {
    id: row.id,
    name: row.name,
    scopes: row.scopes,
    createdAt: row.created_at.toISOString(),
    expiresAt: row.expires_at?.toISOString() ?? null,
    revokedAt: row.revoked_at?.toISOString() ?? null,
    lastUsedAt: row.last_used_at?.toISOString() ?? null,
  };
}

/** Inserts a key, or answers retryWithNewId when the id is taken (ON CONFLICT keeps the transaction usable). */
export async function insertApiKey(
  tx: Queryable,
  key: { tenantId: string; id: string; name: string; scopes: readonly string[]; secretHash: Buffer; expiresAt: Date | null; now: Date },
): Promise<ApiKey | typeof retryWithNewId> {
  const { rows } = await tx.query<ApiKeyRow>(
    `INSERT INTO api_keys (tenant_id, id, name, scopes, secret_hash, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, id) DO NOTHING RETURNING ${columns}`,
    [key.tenantId, key.id, key.name, [...key.scopes], key.secretHash, key.now, key.expiresAt],
  );
  return rows[0] ? toApiKey(rows[0]) : retryWithNewId;
}

export const listApiKeysSql = `SELECT ${columns} FROM api_keys WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`;

export function toApiKeys(rows: ApiKeyRow[]): ApiKey[] {
  return rows.map(toApiKey);
}

export async function revokeApiKey(tx: Queryable, tenantId: string, id: string, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query(
    'UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3) WHERE tenant_id = $1 AND id = $2',
    [tenantId, id, now],
  );
  return rowCount > 0;
}

/** Credential read: only the authenticator uses it; listings never select the hash. */
export const apiKeyCredentialSql =
  'SELECT secret_hash, scopes, expires_at, revoked_at, last_used_at FROM api_keys WHERE tenant_id = $1 AND id = $2';

export interface ApiKeyCredentialRow {
  secret_hash: Uint8Array;
  scopes: string[];
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

export const touchApiKeySql = 'UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < $3)';
