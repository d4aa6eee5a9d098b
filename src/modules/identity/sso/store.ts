import { toBuffer, type Queryable } from '../../../platform/db/database.ts';

export type SsoProtocol = 'oidc' | 'saml' | 'ldap';

export interface RoleMapping {
  group: string;
  role: string;
}

export interface ConnectionRow {
  id: string;
  protocol: SsoProtocol;
  name: string;
  enabled: boolean;
  config: Record<string, unknown>;
  secret: Buffer | null;
  key_version: number | null;
  role_mappings: RoleMapping[];
  jit_provisioning: boolean;
  link_by_email: boolean;
  created_at: Date;
  updated_at: Date;
}

const connectionColumns = 'id, protocol, name, enabled, config, secret, key_version, role_mappings, jit_provisioning, link_by_email, created_at, updated_at';

function normalizeConnection(row: ConnectionRow): ConnectionRow {
  return { ...row, secret: row.secret === null ? null : toBuffer(row.secret) };
}

export interface ConnectionFields {
  name: string;
  enabled: boolean;
  config: Record<string, unknown>;
  secret: { ciphertext: Buffer; keyVersion: number } | null;
  roleMappings: readonly RoleMapping[];
  jitProvisioning: boolean;
  linkByEmail: boolean;
}

/** The fields as statement parameters, in the order both statements below number them ($3 on). */
function fieldParameters(fields: ConnectionFields): unknown[] {
  return [
    fields.name,
    fields.enabled,
    JSON.stringify(fields.config),
    fields.secret?.ciphertext ?? null,
    fields.secret?.keyVersion ?? null,
    JSON.stringify(fields.roleMappings),
    fields.jitProvisioning,
    fields.linkByEmail,
  ];
}

export async function insertConnection(tx: Queryable, tenantId: string, id: string, protocol: SsoProtocol, fields: ConnectionFields, now: Date): Promise<ConnectionRow | undefined> {
  const { rows } = await tx.query<ConnectionRow>(
    `INSERT INTO sso_connections (tenant_id, id, name, enabled, config, secret, key_version, role_mappings, jit_provisioning, link_by_email, protocol, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9, $10, $11, $12, $12) ON CONFLICT DO NOTHING RETURNING ${connectionColumns}`,
    [tenantId, id, ...fieldParameters(fields), protocol, now],
  );
  return rows[0] === undefined ? undefined : normalizeConnection(rows[0]);
}

export async function updateConnection(tx: Queryable, tenantId: string, id: string, fields: ConnectionFields, now: Date): Promise<ConnectionRow> {
  const { rows } = await tx.query<ConnectionRow>(
    `UPDATE sso_connections SET name = $3, enabled = $4, config = $5::jsonb, secret = $6, key_version = $7, role_mappings = $8::jsonb,
       jit_provisioning = $9, link_by_email = $10, updated_at = $11
     WHERE tenant_id = $1 AND id = $2 RETURNING ${connectionColumns}`,
    [tenantId, id, ...fieldParameters(fields), now],
  );
  return normalizeConnection(rows[0] as ConnectionRow);
}

export async function findConnection(tx: Queryable, tenantId: string, id: string, options: { forUpdate?: boolean } = {}): Promise<ConnectionRow | undefined> {
  const { rows } = await tx.query<ConnectionRow>(`SELECT ${connectionColumns} FROM sso_connections WHERE tenant_id = $1 AND id = $2${options.forUpdate ? ' FOR UPDATE' : ''}`, [
    tenantId,
    id,
  ]);
  return rows[0] === undefined ? undefined : normalizeConnection(rows[0]);
}

export async function listConnections(tx: Queryable, tenantId: string): Promise<ConnectionRow[]> {
  const { rows } = await tx.query<ConnectionRow>(`SELECT ${connectionColumns} FROM sso_connections WHERE tenant_id = $1 ORDER BY created_at, id LIMIT 1000`, [tenantId]);
  return rows.map(normalizeConnection);
}

export async function countConnections(tx: Queryable, tenantId: string): Promise<number> {
  const { rows } = await tx.query<{ count: number }>('SELECT count(*)::int AS count FROM sso_connections WHERE tenant_id = $1', [tenantId]);
  return rows[0]?.count ?? 0;
}

/** Enabled connections, besides `except` (the one about to go). */
export async function countEnabledConnections(tx: Queryable, tenantId: string, except: string | undefined): Promise<number> {
  const { rows } = await tx.query<{ count: number }>('SELECT count(*)::int AS count FROM sso_connections WHERE tenant_id = $1 AND enabled AND id IS DISTINCT FROM $2', [
    tenantId,
    except ?? null,
  ]);
  return rows[0]?.count ?? 0;
}

export async function deleteConnection(tx: Queryable, tenantId: string, id: string): Promise<boolean> {
  const { rowCount } = await tx.query('DELETE FROM sso_connections WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
  return rowCount > 0;
}

export async function countConnectionsByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
  const { rows } = await tx.query<{ key_version: number | null; count: number }>(
    'SELECT key_version, count(*)::int AS count FROM sso_connections WHERE tenant_id = $1 AND secret IS NOT NULL GROUP BY key_version',
    [tenantId],
  );
  return rows;
}

export async function lockStaleConnectionSecrets(tx: Queryable, tenantId: string, current: number, minDecryption: number, limit: number): Promise<{ id: string; secret: Buffer }[]> {
  const { rows } = await tx.query<{ id: string; secret: Buffer }>(
    'SELECT id, secret FROM sso_connections WHERE tenant_id = $1 AND key_version < $2 AND key_version >= $3 ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED',
    [tenantId, current, minDecryption, limit],
  );
  return rows.map((row) => ({ id: row.id, secret: toBuffer(row.secret) }));
}

/** Re-sealed secret only: not a change of the connection, so updated_at stays. */
export async function resealConnectionSecret(tx: Queryable, tenantId: string, id: string, sealed: { ciphertext: Buffer; keyVersion: number }): Promise<void> {
  await tx.query('UPDATE sso_connections SET secret = $3, key_version = $4 WHERE tenant_id = $1 AND id = $2', [tenantId, id, sealed.ciphertext, sealed.keyVersion]);
}

// --- linked identities ---

export async function findLinkedUser(tx: Queryable, tenantId: string, connectionId: string, subjectHmac: Buffer): Promise<string | undefined> {
  const { rows } = await tx.query<{ user_id: string }>('SELECT user_id FROM sso_identities WHERE tenant_id = $1 AND connection_id = $2 AND subject_hmac = $3', [
    tenantId,
    connectionId,
    subjectHmac,
  ]);
  return rows[0]?.user_id;
}

export async function linkIdentity(tx: Queryable, tenantId: string, connectionId: string, subjectHmac: Buffer, userId: string, now: Date): Promise<void> {
  await tx.query('INSERT INTO sso_identities (tenant_id, connection_id, subject_hmac, user_id, created_at) VALUES ($1, $2, $3, $4, $5)', [
    tenantId,
    connectionId,
    subjectHmac,
    userId,
    now,
  ]);
}

/** The identities linked to a user, with their connection (metadata only: never the subject or its hash). */
export async function listUserIdentities(
  tx: Queryable,
  tenantId: string,
  userId: string,
): Promise<{ connection_id: string; protocol: SsoProtocol; name: string; created_at: Date; last_login_at: Date | null }[]> {
  const { rows } = await tx.query<{ connection_id: string; protocol: SsoProtocol; name: string; created_at: Date; last_login_at: Date | null }>(
    `SELECT i.connection_id, c.protocol, c.name, i.created_at, i.last_login_at
       FROM sso_identities i JOIN sso_connections c ON c.tenant_id = i.tenant_id AND c.id = i.connection_id
      WHERE i.tenant_id = $1 AND i.user_id = $2 ORDER BY i.created_at, i.connection_id`,
    [tenantId, userId],
  );
  return rows;
}

export async function stampIdentityLogin(tx: Queryable, tenantId: string, connectionId: string, subjectHmac: Buffer, now: Date): Promise<void> {
  await tx.query('UPDATE sso_identities SET last_login_at = $4 WHERE tenant_id = $1 AND connection_id = $2 AND subject_hmac = $3', [tenantId, connectionId, subjectHmac, now]);
}

// --- redirect flows ---

export async function insertFlow(
  tx: Queryable,
  flow: { tenantId: string; id: string; connectionId: string; stateHash: Buffer; sealed: { ciphertext: Buffer; keyVersion: number }; expiresAt: Date; now: Date },
): Promise<boolean> {
  // Spent and expired flows of the connection go with each new one: no sweeper needed.
  await tx.query('DELETE FROM sso_flows WHERE tenant_id = $1 AND connection_id = $2 AND (expires_at <= $3 OR consumed_at IS NOT NULL)', [flow.tenantId, flow.connectionId, flow.now]);
  const { rowCount } = await tx.query(
    `INSERT INTO sso_flows (tenant_id, id, connection_id, state_hash, sealed, key_version, expires_at, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
    [flow.tenantId, flow.id, flow.connectionId, flow.stateHash, flow.sealed.ciphertext, flow.sealed.keyVersion, flow.expiresAt, flow.now],
  );
  return rowCount > 0;
}

/** Spends the flow behind a state: once, before it expires, for this connection only. */
export async function consumeFlow(tx: Queryable, tenantId: string, connectionId: string, stateHash: Buffer, now: Date): Promise<{ id: string; sealed: Buffer } | undefined> {
  const { rows } = await tx.query<{ id: string; sealed: Buffer }>(
    `UPDATE sso_flows SET consumed_at = $4
     WHERE tenant_id = $1 AND connection_id = $2 AND state_hash = $3 AND consumed_at IS NULL AND expires_at > $4
     RETURNING id, sealed`,
    [tenantId, connectionId, stateHash, now],
  );
  return rows[0] === undefined ? undefined : { id: rows[0].id, sealed: toBuffer(rows[0].sealed) };
}

/** Records a SAML assertion id until it expires; false when it was seen already (a replay). */
export async function rememberAssertion(tx: Queryable, tenantId: string, connectionId: string, assertionHash: Buffer, expiresAt: Date, now: Date): Promise<boolean> {
  await tx.query('DELETE FROM sso_assertions WHERE tenant_id = $1 AND connection_id = $2 AND expires_at <= $3', [tenantId, connectionId, now]);
  const { rowCount } = await tx.query(
    'INSERT INTO sso_assertions (tenant_id, connection_id, assertion_hash, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
    [tenantId, connectionId, assertionHash, expiresAt],
  );
  return rowCount > 0;
}

// --- e-mail domains ---

export interface DomainRow {
  domain: string;
  verification_token: string;
  connection_id: string | null;
  verified_at: Date | null;
  created_at: Date;
}

const domainColumns = 'domain, verification_token, connection_id, verified_at, created_at';

export async function insertDomain(tx: Queryable, tenantId: string, domain: string, token: string, connectionId: string | null, now: Date): Promise<DomainRow | undefined> {
  const { rows } = await tx.query<DomainRow>(
    `INSERT INTO tenant_domains (tenant_id, domain, verification_token, connection_id, created_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT DO NOTHING RETURNING ${domainColumns}`,
    [tenantId, domain, token, connectionId, now],
  );
  return rows[0];
}

export async function listDomains(tx: Queryable, tenantId: string): Promise<DomainRow[]> {
  const { rows } = await tx.query<DomainRow>(`SELECT ${domainColumns} FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain LIMIT 1000`, [tenantId]);
  return rows;
}

export async function findDomain(tx: Queryable, tenantId: string, domain: string): Promise<DomainRow | undefined> {
  const { rows } = await tx.query<DomainRow>(`SELECT ${domainColumns} FROM tenant_domains WHERE tenant_id = $1 AND domain = $2 FOR UPDATE`, [tenantId, domain]);
  return rows[0];
}

export async function countDomains(tx: Queryable, tenantId: string): Promise<number> {
  const { rows } = await tx.query<{ count: number }>('SELECT count(*)::int AS count FROM tenant_domains WHERE tenant_id = $1', [tenantId]);
  return rows[0]?.count ?? 0;
}

export async function markDomainVerified(tx: Queryable, tenantId: string, domain: string, now: Date): Promise<DomainRow> {
  const { rows } = await tx.query<DomainRow>(`UPDATE tenant_domains SET verified_at = $3 WHERE tenant_id = $1 AND domain = $2 RETURNING ${domainColumns}`, [tenantId, domain, now]);
  return rows[0] as DomainRow;
}

export async function setDomainConnection(tx: Queryable, tenantId: string, domain: string, connectionId: string | null): Promise<DomainRow> {
  const { rows } = await tx.query<DomainRow>(`UPDATE tenant_domains SET connection_id = $3 WHERE tenant_id = $1 AND domain = $2 RETURNING ${domainColumns}`, [tenantId, domain, connectionId]);
  return rows[0] as DomainRow;
}

export async function deleteDomain(tx: Queryable, tenantId: string, domain: string): Promise<boolean> {
  const { rowCount } = await tx.query('DELETE FROM tenant_domains WHERE tenant_id = $1 AND domain = $2', [tenantId, domain]);
  return rowCount > 0;
}

/** Home-realm discovery, in the platform scope: the tenant (and connection) that verified the domain. */
export async function findVerifiedDomain(tx: Queryable, domain: string): Promise<{ tenant_id: string; connection_id: string | null } | undefined> {
  const { rows } = await tx.query<{ tenant_id: string; connection_id: string | null }>(
    'SELECT tenant_id, connection_id FROM tenant_domains WHERE domain = $1 AND verified_at IS NOT NULL',
    [domain],
  );
  return rows[0];
}
