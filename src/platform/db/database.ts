/**
 * The storage contract every module's store is written against. Two engines implement it: PGlite
 * (embedded, default) and PostgreSQL through `pg`. Both run the same migrations and the same SQL.
 */
export interface QueryResult<Row> {
  rows: Row[];
  rowCount: number;
}

export interface Queryable {
  query<Row = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<Row>>;
  /**
   * A statement whose result nobody needs: on PostgreSQL it is sent and not waited for, so it travels with
   * the COMMIT in one write (one round trip less while its locks are held); its failure still fails the
   * transaction, which then reports it instead of committing. On PGlite it simply runs. Use it for the last
   * statements of a transaction (the audit event).
   */
  defer(sql: string, params?: readonly unknown[]): Promise<void>;
}

/** A dedicated connection (see `Database.session`). */
export interface DbSession {
  /** Throws when the connection is gone: its session-level locks went with it. */
  query<Row = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<Row>>;
  /** Ends the session. On PostgreSQL the connection (its own, beside the pool) is closed: its locks end with it. */
  release(): Promise<void>;
}

/** The row-level-security context of one transaction. */
export type DbContext = { tenantId: string } | { scope: 'platform' };

export interface Database {
  readonly engine: 'pglite' | 'postgres';
  /**
   * One statement in its own transaction under a tenant's RLS context. On PostgreSQL the transaction
   * and the context are pipelined with the statement, so a tenant-scoped read costs one round trip.
   */
  tenantQuery<Row = Record<string, unknown>>(tenantId: string, sql: string, params?: readonly unknown[]): Promise<QueryResult<Row>>;
  /** A transaction under a tenant's RLS context (`set_config(..., true)`: it ends with the transaction). */
  withTenant<T>(tenantId: string, work: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * A transaction in the platform scope: operator-wide reads across tenants and tenant management.
   * RLS still applies; tenant tables accept writes only under a tenant context.
   */
  withPlatform<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * A read-only platform transaction on one consistent snapshot (REPEATABLE READ): what a backup reads.
   * The work may switch the RLS context inside it (each tenant's rows are read under that tenant's context).
   */
  withSnapshot<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * A connection of its own, held until released, for what belongs to a session rather than a transaction:
   * the background jobs' leadership (session-level advisory locks, `leader.ts`). No RLS context is ever set
   * on it, so no tenant or platform row is visible through it; it is for lock functions only.
   */
  session(): Promise<DbSession>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export const setContextSql =
  "SELECT set_config('app.tenant_id', $1, true), set_config('app.scope', $2, true)";

/**
 * Adds a tenant context to a platform transaction that just created the tenant, so the same transaction
 * can write the tenant's first rows (its keyring) under that tenant's policies.
 */
export async function enterTenantContext(tx: Queryable, tenantId: string): Promise<void> {
  await tx.query("SELECT set_config('app.tenant_id', $1, true)", [tenantId]);
}

export function contextParams(context: DbContext): [string, string] {
  return 'tenantId' in context ? [context.tenantId, ''] : ['', context.scope];
}

/** PostgreSQL's bytea arrives as Buffer from `pg` and as Uint8Array from PGlite. */
export function toBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError('expected a bytea value');
}

/** SQLSTATE of a driver error, from either engine. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

export function constraintName(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'constraint' in error && typeof error.constraint === 'string') {
    return error.constraint;
  }
  return undefined;
}
