import type { Database, Queryable } from '../../platform/db/database.ts';
import { escapeIdentifier } from 'pg';
import { offboardedTenantName } from '../tenancy/store.ts';

/** One table's rows as PostgreSQL renders them with to_jsonb (bytea as `\x..` hex, timestamps ISO). */
export type TableRows = Record<string, Record<string, unknown>[]>;

/**
 * A logical copy of the whole database, read in one snapshot transaction. A tenant's rows (every table
 * with a `tenant_id` column, and its own `tenants` row) are read under that tenant's RLS context, so even
 * the backup never reads one tenant's rows through another's; the rest is the platform's.
 */
export interface Snapshot {
  platform: TableRows;
  tenants: Map<string, { region: string; tables: TableRows }>;
}

export interface TableLayout {
  /** Every table of the public schema except the migration bookkeeping, parents before children. */
  ordered: string[];
  tenantTables: Set<string>;
}

/** Not data: the restore target's own migrations write it. */
const excludedTables = new Set(['schema_migrations']);

/**
 * The tables and their foreign-key order, from the catalog: a table added by a later migration is backed
 * up and restored without touching this code.
 */
export async function tableLayout(query: <Row>(sql: string) => Promise<Row[]>): Promise<TableLayout> {
  const tables = await query<{ name: string; tenant_scoped: boolean }>(
    `SELECT c.relname AS name,
            (c.relname = 'tenants' OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)) AS tenant_scoped
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
      ORDER BY c.relname`,
  );
  const edges = await query<{ child: string; parent: string }>(
    `SELECT child.relname AS child, parent.relname AS parent
       FROM pg_constraint k
       JOIN pg_class child ON child.oid = k.conrelid
       JOIN pg_class parent ON parent.oid = k.confrelid
       JOIN pg_namespace n ON n.oid = child.relnamespace
      WHERE k.contype = 'f' AND n.nspname = 'public' AND child.oid <> parent.oid`,
  );
  const names = tables.map((row) => row.name).filter((name) => !excludedTables.has(name));
  const parents = new Map(names.map((name) => [name, new Set<string>()]));
  for (const { child, parent } of edges) parents.get(child)?.add(parent);
  const ordered: string[] = [];
  const placed = new Set<string>();
  while (ordered.length < names.length) {
    const ready = names.filter((name) => !placed.has(name) && [...(parents.get(name) ?? [])].every((parent) => placed.has(parent) || !parents.has(parent)));
    if (ready.length === 0) throw new Error('the schema has a foreign-key cycle; the backup cannot order its tables');
    for (const name of ready) {
      ordered.push(name);
      placed.add(name);
    }
  }
  return { ordered, tenantTables: new Set(tables.filter((row) => row.tenant_scoped).map((row) => row.name)) };
}

const setTenantSql = "SELECT set_config('app.tenant_id', $1, true), set_config('app.scope', '', true)";
const setPlatformSql = "SELECT set_config('app.tenant_id', '', true), set_config('app.scope', 'platform', true)";

/** A table's rows in a stable order (by their JSON text), so two copies compare row by row. */
export function selectRowsSql(table: string): string {
  const name = escapeIdentifier(table);
  return `SELECT to_jsonb(t) AS row FROM ${name} t ORDER BY to_jsonb(t)::text`;
}

export async function readSnapshot(db: Database): Promise<Snapshot> {
  return db.withSnapshot(async (tx) => {
    const layout = await tableLayout(async <Row>(sql: string) => (await tx.query<Row>(sql)).rows);
    const tenants = await tx.query<{ id: string; region: string; status: string; shredding: boolean }>(`SELECT t.id, t.region, t.status, ${offboardingConfirmed} AS shredding FROM tenants t ORDER BY t.id`);
    const platform: TableRows = {};
    for (const table of layout.ordered) {
      if (!layout.tenantTables.has(table)) platform[table] = await rowsOf(tx, table);
    }
    // An offboarded tenant has nothing left but its scrubbed row, kept so its id is never reused: that row is
    // the platform's, and no escrow key is made for it again. A tenant whose offboarding is confirmed is being
    // destroyed: only a bare row of it goes in (its offboarding record names it), none of its data.
    const gone = tenants.rows.filter((tenant) => tenant.status === 'deleted' || tenant.shredding);
    if (gone.length > 0) {
      const rows = await tx.query<{ row: Record<string, unknown> }>('SELECT to_jsonb(t) AS row FROM tenants t WHERE id = ANY($1::text[]) ORDER BY id', [gone.map((tenant) => tenant.id)]);
      platform['tenants'] = rows.rows.map(({ row }) => (row['status'] === 'deleted' ? row : { ...row, name: offboardedTenantName, status: 'deleted' }));
    }
    const byTenant = new Map<string, { region: string; tables: TableRows }>();
    for (const tenant of tenants.rows) {
      if (tenant.status === 'deleted' || tenant.shredding) continue;
      await tx.query(setTenantSql, [tenant.id]);
      const tables: TableRows = {};
      for (const table of layout.ordered) {
        if (!layout.tenantTables.has(table)) continue;
        const rows = await rowsOf(tx, table);
        // RLS already limits the read to this tenant; the filter guards a table whose policy would not.
        tables[table] = rows.filter((row) => (table === 'tenants' ? row['id'] : row['tenant_id']) === tenant.id);
      }
      byTenant.set(tenant.id, { region: tenant.region, tables });
    }
    await tx.query(setPlatformSql);
    return { platform, tenants: byTenant };
  });
}

async function rowsOf(tx: Queryable, table: string): Promise<Record<string, unknown>[]> {
  const { rows } = await tx.query<{ row: Record<string, unknown> }>(selectRowsSql(table));
  return rows.map((row) => row.row);
}

export const contextSql = { tenant: setTenantSql, platform: setPlatformSql };

/** Whether the offboarding of tenant `t` is confirmed (the tenancy module's bookkeeping): it is being destroyed. */
const offboardingConfirmed = 'EXISTS (SELECT 1 FROM tenant_offboardings o WHERE o.tenant = t.id AND o.confirmed_at IS NOT NULL)';

/** Of these tenants, those whose offboarding was confirmed (read now, outside any snapshot). */
export async function confirmedOffboardings(db: Database, tenantIds: readonly string[]): Promise<string[]> {
  if (tenantIds.length === 0) return [];
  const { rows } = await db.withPlatform((tx) =>
    tx.query<{ id: string }>(`SELECT t.id FROM tenants t WHERE t.id = ANY($1::text[]) AND (t.status = 'deleted' OR ${offboardingConfirmed})`, [tenantIds]),
  );
  return rows.map((row) => row.id);
}
