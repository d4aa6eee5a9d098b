import { createHash } from 'node:crypto';
import pg from 'pg';
import { postgresClientConfig, type PostgresTlsFiles } from './postgres-tls.ts';
import { TenantSlots } from './tenant-slots.ts';
import { contextParams, type Database, type DbContext, type DbSession, type Queryable, type QueryResult, setContextSql } from './database.ts';

export interface PostgresOptions {
  /** Its `sslmode` decides TLS (see postgres-tls.ts). */
  url: string;
  tls?: PostgresTlsFiles;
  appRole: string;
  poolMax: number;
  /** The most connections one tenant's transactions hold at once (see TenantSlots). */
  tenantMaxConnections: number;
  /** `statement_timeout` of every connection; 0 for none. */
  statementTimeoutMs: number;
}

/**
 * PostgreSQL engine. Connections start with `role=<app role>` as a startup parameter, so a connection
 * that cannot take the role is refused instead of silently running as its (possibly privileged) login
 * user. The pool runs in pipeline mode: BEGIN, the RLS context, the statements and COMMIT are written
 * back to back in one socket write, and a tenant-scoped read costs one round trip instead of four.
 * Statements are named, so each connection parses a statement once and then only binds it.
 */
export function openPostgres(options: PostgresOptions): Database {
  const connectionTimeoutMillis = 5_000;
  const pool = new pg.Pool({
    ...postgresClientConfig(options.url, options.tls),
    max: options.poolMax,
    options: `-c role=${options.appRole}`,
    pipeline: true,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis,
    // A runaway statement is cancelled and its transaction rolled back; one left open is ended by the server.
    ...(options.statementTimeoutMs > 0
      ? { statement_timeout: options.statementTimeoutMs, idle_in_transaction_session_timeout: options.statementTimeoutMs * 6 }
      : {}),
  });
  const slots = new TenantSlots({ max: options.tenantMaxConnections, waitMs: connectionTimeoutMillis });
  // An idle client losing its server must not crash the process; the next checkout reconnects.
  pool.on('error', () => undefined);

  async function transaction<T>(context: DbContext, work: (tx: Queryable) => Promise<T>): Promise<T> {
    return 'tenantId' in context ? slots.around(context.tenantId, () => transactionOnPool(context, work)) : transactionOnPool(context, work);
  }

  async function transactionOnPool<T>(context: DbContext, work: (tx: Queryable) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    const client = await pool.connect();
    let connectionLost = false;
    try {
      // BEGIN and the context go out with the work's first statements, in one write.
      const deferred: Promise<unknown>[] = [];
      const tx = queryable(client, deferred);
      const opened = Promise.all([tx.query(begin), tx.query(setContextSql, contextParams(context))]);
      opened.catch(() => undefined);
      try {
        const result = await work(tx);
        await opened;
        // Deferred statements went out just before; after one failed, PostgreSQL answers COMMIT with ROLLBACK,
        // so their outcomes (awaited after the COMMIT's) decide whether this committed.
        const commit = corked(client, () => client.query('COMMIT'));
        const outcomes = await Promise.allSettled(deferred);
        await commit;
        const failed = outcomes.find((outcome) => outcome.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
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
    tenantQuery: <Row>(tenantId: string, sql: string, params: readonly unknown[] = []) => slots.around(tenantId, () => tenantQueryOnPool<Row>(tenantId, sql, params)),
    withTenant: (tenantId, work) => transaction({ tenantId }, work),
    withPlatform: (work) => transaction({ scope: 'platform' }, work),
    withSnapshot: (work) => transactionOnPool({ scope: 'platform' }, work, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'),
    // Outside the pool: holding one of its connections for good would starve a small pool (down to none at 1).
    session: () => dedicatedSession({ ...postgresClientConfig(options.url, options.tls), options: `-c role=${options.appRole}`, connectionTimeoutMillis }),
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await pool.end();
    },
  };

  async function tenantQueryOnPool<Row>(tenantId: string, sql: string, params: readonly unknown[]): Promise<QueryResult<Row>> {
    const client = await pool.connect();
    let connectionLost = false;
    try {
      const statements = corked(client, () => [
        client.query('BEGIN'),
        client.query(prepared(setContextSql, contextParams({ tenantId }))),
        client.query(prepared(sql, params)),
        // After a failed statement PostgreSQL answers COMMIT with ROLLBACK, so the connection stays clean.
        client.query('COMMIT'),
      ]);
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
  }
}

/**
 * A connection of its own, beside the pool (one more than BULWARK_DATABASE_POOL_MAX per instance while held),
 * with the pool's TLS and role. Released, it is closed: session state such as advisory locks ends with it.
 */
async function dedicatedSession(config: pg.ClientConfig): Promise<DbSession> {
  const client = new pg.Client(config);
  // A lost connection is reported as an event too: unhandled, it would end the process. Queries then fail.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
  let released = false;
  return {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- implements the generic DbSession.query
    async query<Row>(sql: string, params: readonly unknown[] = []) {
      const result = await client.query(sql, params as unknown[]);
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
    },
    async release() {
      if (released) return;
      released = true;
      await client.end().catch(() => undefined);
    },
  };
}

/**
 * A transaction's statements. Statements issued in the same tick (`Promise.all` of independent ones) go
 * out in one socket write: the socket is corked at the first and uncorked once the tick's synchronous code
 * is done. Measured on a login (two transactions of three to four statements each): one writev per batch
 * instead of one per statement took a quarter of the main thread's time in socket writes away.
 */
function queryable(client: pg.PoolClient, deferred: Promise<unknown>[]): Queryable {
  const socket = socketOf(client);
  let batching = false;
  const send = (sql: string, params: readonly unknown[]) => {
    if (socket !== undefined && !batching) {
      batching = true;
      socket.cork();
      queueMicrotask(() => {
        batching = false;
        socket.uncork();
      });
    }
    return client.query(params.length > 0 ? prepared(sql, params) : sql);
  };
  return {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- implements the generic Queryable.query
    async query<Row>(sql: string, params: readonly unknown[] = []) {
      const result = await send(sql, params);
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
    },
    async defer(sql: string, params: readonly unknown[] = []) {
      const pending = send(sql, params);
      // Observed by the transaction at its end; until then a rejection must not count as unhandled.
      pending.catch(() => undefined);
      deferred.push(pending);
    },
  };
}

const statementNames = new Map<string, string>();

/**
 * A named statement: parsed once per connection, then only bound. Bulwark's SQL texts are constants, so
 * the set of names is small and fixed; the name is derived from the text so equal texts share it.
 */
function prepared(text: string, values: readonly unknown[]): pg.QueryConfig {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `bw_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return { name, text, values: values as unknown[] };
}

/**
 * pg writes each protocol message (Parse, Bind, Describe, Execute, Sync) with its own socket write;
 * corking the socket while a batch is queued sends it in one. The socket is pg's internal
 * `connection.stream`: if a pg release moves it, this degrades to uncorked writes, never to wrong results.
 */
function corked<T>(client: pg.PoolClient, issue: () => T): T {
  const socket = socketOf(client);
  socket?.cork();
  try {
    return issue();
  } finally {
    socket?.uncork();
  }
}

function socketOf(client: pg.PoolClient): { cork(): void; uncork(): void } | undefined {
  const stream = (client as unknown as { connection?: { stream?: { cork?: unknown; uncork?: unknown } } }).connection?.stream;
  return typeof stream?.cork === 'function' && typeof stream.uncork === 'function' ? (stream as { cork(): void; uncork(): void }) : undefined;
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
