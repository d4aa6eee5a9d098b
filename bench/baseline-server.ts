/**
 * The baselines Bulwark is measured against: a minimal Fastify app doing the same point select of the
 * same row, with no authentication, no validation and no extra headers.
 *   bare           one plain query as the owner (superuser: RLS does not apply).
 *   pipelined-rls  Bulwark's own tenant-scoped path (BEGIN, set_config, SELECT, COMMIT pipelined in one
 *                  round trip) as Bulwark's login and app role, without the HTTP security: isolates the
 *                  cost of the RLS transaction from the cost of authentication and validation.
 *   naive-rls      the same four statements awaited one by one: what the pipelined path avoids.
 */
import { PGlite } from '@electric-sql/pglite';
import Fastify from 'fastify';
import pg from 'pg';
import { type AdminSession, migrate } from '../src/platform/db/migrate.ts';
import { contextParams, setContextSql, toBuffer } from '../src/platform/db/database.ts';
import { queryable } from '../src/platform/db/pglite.ts';
import { openPostgres } from '../src/platform/db/postgres.ts';
import { type RecordRow, selectRecordSql } from '../src/modules/records/store.ts';
import { insertTenant } from '../src/modules/tenancy/store.ts';
import { runChild, specArgument } from './child.ts';
import type { BaselineSpec, DatabaseUrls, Seed } from './protocol.ts';

interface Reader {
  read(tenantId: string, collection: string, id: string): Promise<RecordRow | undefined>;
  close(): Promise<void>;
}

/**
 * Bulwark's seeded row holds an envelope; the baselines read plain JSON (key_version NULL) as a server
 * without encryption at rest would, from a twin row in a sibling collection of the same tenant.
 */
const plainCollection = (collection: string) => `${collection}-plain`;
const insertPlainRecordSql = `INSERT INTO records (tenant_id, collection, id, version, body, body_bytes, created_at, updated_at)
  VALUES ($1, $2, $3, 1, $4, $5, $6, $6) ON CONFLICT DO NOTHING`;

function plainRecordParams(seed: Seed): unknown[] {
  const body = Buffer.from(JSON.stringify(seed.data), 'utf8');
  return [seed.tenantId, plainCollection(seed.collection), seed.recordId, body, body.length, new Date()];
}

async function seedPlainRecord(seed: Seed, database: DatabaseUrls): Promise<void> {
  const client = new pg.Client({ connectionString: database.owner });
  await client.connect();
  try {
    await client.query(insertPlainRecordSql, plainRecordParams(seed));
  } finally {
    await client.end();
  }
}

function postgresReader(spec: BaselineSpec, database: DatabaseUrls): Reader {
  if (spec.scenario === 'pipelined-rls') {
    const db = openPostgres({ url: database.login, appRole: spec.appRole, poolMax: spec.poolMax, tenantMaxConnections: spec.poolMax, statementTimeoutMs: 0 });
    return {
      read: async (tenantId, collection, id) =>
        (await db.tenantQuery<RecordRow>(tenantId, selectRecordSql, [tenantId, collection, id])).rows[0],
      close: () => db.close(),
    };
  }
  if (spec.scenario === 'naive-rls') {
    // Like Bulwark's pool, the session takes the RLS-bound app role at connection start.
    const pool = new pg.Pool({ connectionString: database.login, max: spec.poolMax, options: `-c role=${spec.appRole}` });
    return {
      async read(tenantId, collection, id) {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await client.query(setContextSql, contextParams({ tenantId }));
          const { rows } = await client.query<RecordRow>(selectRecordSql, [tenantId, collection, id]);
          await client.query('COMMIT');
          return rows[0];
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        } finally {
          client.release();
        }
      },
      close: () => pool.end(),
    };
  }
  const pool = new pg.Pool({ connectionString: database.owner, max: spec.poolMax });
  return {
    read: async (tenantId, collection, id) => (await pool.query<RecordRow>(selectRecordSql, [tenantId, collection, id])).rows[0],
    close: () => pool.end(),
  };
}

/** PGlite is in-process: migrate the same schema and insert the seed row as its bootstrap superuser. */
async function pgliteReader(seed: Seed, appRole: string): Promise<Reader> {
  const pglite = await PGlite.create('memory://');
  const admin: AdminSession = {
    exec: async (sql) => {
      await pglite.exec(sql);
    },
    query: async <Row>(sql: string, params: readonly unknown[] = []) => (await pglite.query<Row>(sql, params as unknown[])).rows,
  };
  await migrate(admin, appRole);
  const tx = queryable(pglite);
  const now = new Date();
  await insertTenant(tx, { id: seed.tenantId, name: 'Bench tenant', region: 'local', now });
  await tx.query(insertPlainRecordSql, plainRecordParams(seed));
  return {
    read: async (tenantId, collection, id) => (await pglite.query<RecordRow>(selectRecordSql, [tenantId, collection, id])).rows[0],
    close: () => pglite.close(),
  };
}

runChild(async () => {
  const spec = specArgument() as BaselineSpec;
  const { database } = spec;
  let reader: Reader;
  if (spec.engine === 'pglite') {
    if (spec.scenario !== 'bare') throw new Error(`${spec.scenario} is a PostgreSQL scenario`);
    reader = await pgliteReader(spec.seed, spec.appRole);
  } else {
    if (database === undefined) throw new Error('database URLs are required for PostgreSQL');
    await seedPlainRecord(spec.seed, database);
    reader = postgresReader(spec, database);
  }

  const app = Fastify({ logger: false });
  app.get<{ Params: { tenantId: string; collection: string; recordId: string } }>(
    '/v1/tenants/:tenantId/collections/:collection/records/:recordId',
    async (request, reply) => {
      const { tenantId, collection, recordId } = request.params;
      const row = await reader.read(tenantId, plainCollection(collection), recordId);
      if (row === undefined) return reply.code(404).send({ error: 'not found' });
      // The body column holds bytes: decoding it is the least any server returning the row as JSON must do.
      return {
        id: row.id,
        version: row.version,
        data: JSON.parse(toBuffer(row.body).toString('utf8')) as unknown,
        createdAt: row.created_at.toISOString(),
        updatedAt: row.updated_at.toISOString(),
      };
    },
  );
  return { app, report: { seed: spec.seed }, close: () => reader.close() };
});
