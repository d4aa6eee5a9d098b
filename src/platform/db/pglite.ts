import { PGlite, type Transaction } from '@electric-sql/pglite';
import { contextParams, type Database, type DbContext, type Queryable, type QueryResult, setContextSql } from './database.ts';

/**
 * Embedded engine: PostgreSQL compiled to WASM, in-process, one connection. `openPgliteDatabase` drops
 * the session to the app role with SET ROLE after migrating, so RLS applies to every query.
 */
export function wrapPglite(db: PGlite): Database {
  function transaction<T>(context: DbContext, work: (tx: Queryable) => Promise<T>): Promise<T> {
    return db.transaction(async (tx) => {
      await tx.query(setContextSql, contextParams(context));
      return work(queryable(tx));
    });
  }

  return {
    engine: 'pglite',
    tenantQuery: (tenantId, sql, params) => transaction({ tenantId }, (tx) => tx.query(sql, params)),
    withTenant: (tenantId, work) => transaction({ tenantId }, work),
    withPlatform: (work) => transaction({ scope: 'platform' }, work),
    async ping() {
      await db.query('SELECT 1');
    },
    async close() {
      if (!db.closed) await db.close();
    },
  };
}

export function queryable(target: PGlite | Transaction): Queryable {
  return {
    async query<Row>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<Row>> {
      const result = await target.query<Row>(sql, params as unknown[]);
      const isRead = /^\s*(select|with)\b/i.test(sql) && result.affectedRows === 0;
      return { rows: result.rows, rowCount: isRead ? result.rows.length : (result.affectedRows ?? result.rows.length) };
    },
  };
}
