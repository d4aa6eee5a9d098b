import pg from 'pg';
import { contextParams, type Database, type DbContext, type Queryable, type QueryResult, setContextSql } from './database.ts';

export interface PostgresOptions {
  url: string;
  appRole: string;
  poolMax: number;
}

/**
 * PostgreSQL engine. Connections start with `role=<app role>` as a startup parameter, so a connection
 * that cannot take the role is refused instead of silently running as its (possibly privileged) login
 * user. The pool runs in pipeline mode: BEGIN, the RLS context, the statements and COMMIT are written
 * back to back, and a tenant-scoped read costs one round trip instead of four.
 */
export function openPostgres(options: PostgresOptions): Database {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolMax,
    options: `-c role=${options.appRole}`,
    pipeline: true,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 5_000,
  });
  // An idle client losing its server must not crash the process; the next checkout reconnects.
  pool.on('error', () => undefined);

  async function transaction<T>(context: DbContext, work: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await pool.connect();
    let connectionLost = false;
    try {
      const opened = Promise.all([client.query('BEGIN'), client.query(setContextSql, contextParams(context))]);
      opened.catch(() => undefined);
      try {
        const result = await work(queryable(client));
        await opened;
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {
          connectionLost = true;
        });
        throw error;
      }
    } finally {
      client.release(connectionLost);
    }
  }

  return {
    engine: 'postgres',
    async tenantQuery<Row>(tenantId: string, sql: string, params: readonly unknown[] = []): Promise<QueryResult<Row>> {
      const client = await pool.connect();
      let connectionLost = false;
      try {
        const statements = [
          client.query('BEGIN'),
          client.query(setContextSql, contextParams({ tenantId })),
          client.query(sql, params as unknown[]),
          // After a failed statement PostgreSQL answers COMMIT with ROLLBACK, so the connection stays clean.
          client.query('COMMIT'),
        ];
        const settled = await Promise.allSettled(statements);
        const failure = settled.find((outcome) => outcome.status === 'rejected');
        if (failure) throw failure.reason;
        const result = (settled[2] as PromiseFulfilledResult<pg.QueryResult>).value;
        return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
      } catch (error) {
        if (isConnectionError(error)) connectionLost = true;
        throw error;
      } finally {
        client.release(connectionLost);
      }
    },
    withTenant: (tenantId, work) => transaction({ tenantId }, work),
    withPlatform: (work) => transaction({ scope: 'platform' }, work),
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await pool.end();
    },
  };
}

function queryable(client: pg.PoolClient): Queryable {
  return {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- implements the generic Queryable.query
    async query<Row>(sql: string, params: readonly unknown[] = []) {
      const result = await client.query(sql, params as unknown[]);
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
    },
  };
}

/**
 * Whether the connection must not go back to the pool: anything but an error the server reported
 * while the session stayed usable (connection exceptions 08xxx and shutdowns 57Pxx end the session).
 */
function isConnectionError(error: unknown): boolean {
  if (!(error instanceof pg.DatabaseError)) return true;
  const code = error.code ?? '';
  return code.startsWith('08') || code.startsWith('57P');
}
