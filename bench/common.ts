/** Small helpers every part of `npm run bench` uses: settings, statistics, tables, throwaway databases. */
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import pg from 'pg';
import type { DatabaseUrls, Engine } from './protocol.ts';

/** A positive number from the environment, or `fallback` when unset. */
export function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number (got ${JSON.stringify(raw)})`);
  return value;
}

export const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

export const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};

export const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);

/**
 * The order of a round: every round starts one later, so paired scenarios alternate and a burst of background
 * load hits each alike instead of skewing the one that happened to run during it.
 */
export function rotated<T>(items: readonly T[], round: number): T[] {
  return [...items.slice(round % items.length), ...items.slice(0, round % items.length)];
}

/** Prints a table, indented, its header underlined; `rightAligned` columns are padded on the left. */
export function printTable(rows: readonly (readonly string[])[], rightAligned: (column: number) => boolean): void {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  const line = (row: readonly string[]) => row.map((cell, column) => (rightAligned(column) ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0))).join('  ');
  console.log('');
  for (const [index, row] of rows.entries()) {
    console.log(`  ${line(row)}`);
    if (index === 0) console.log(`  ${widths.map((width) => '-'.repeat(width)).join('  ')}`);
  }
}

/** The fraction of all CPU time spent busy over the next `ms` milliseconds. */
export async function cpuBusy(ms: number): Promise<number> {
  const totals = () => {
    let idle = 0;
    let all = 0;
    for (const { times } of cpus()) {
      idle += times.idle;
      all += times.user + times.nice + times.sys + times.irq + times.idle;
    }
    return { idle, all };
  };
  const before = totals();
  await new Promise((resolvePromise) => setTimeout(resolvePromise, ms));
  const after = totals();
  const all = after.all - before.all;
  return all > 0 ? 1 - (after.idle - before.idle) / all : 0;
}

/** The note every part adds when the machine was already busy before it started. */
export function busyNote(busy: number): string[] {
  return busy > 0.2 ? [`other processes kept the CPUs ${(busy * 100).toFixed(0)}% busy just before the run: numbers are noisy.`] : [];
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL throwaway databases

export async function adminQuery(adminUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query(sql);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What bench/run.ts shares with a part that runs servers: the engines, how it makes a migrated throwaway database, and its Ctrl-C cleanups. */
export interface BenchContext {
  engines: readonly Engine[];
  poolMax: number;
  createBulwarkDatabase: () => Promise<{ urls: DatabaseUrls; drop: () => Promise<void> } | { unavailable: string }>;
  pendingCleanups: Set<() => Promise<void>>;
  /** `--cpu-prof` arguments for a server process (BENCH_CPU_PROF=1), or none. */
  profileArgv: (name: string) => string[];
}

export interface ThrowawayDatabase {
  name: string;
  /** The database, as the admin user. */
  url: URL;
  drop: () => Promise<void>;
}

/** An empty database named `<prefix>_<random>` on the admin URL's server, or why there is none. */
export async function createThrowawayDatabase(adminUrl: string, prefix: string): Promise<ThrowawayDatabase | { unavailable: string }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  try {
    await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
  } catch (error) {
    return { unavailable: `PostgreSQL unreachable at ${new URL(adminUrl).host} (${errorText(error)})` };
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { name, url, drop: () => adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/** Runs `use` with a throwaway database (or why there is none), its drop registered as a Ctrl-C cleanup meanwhile. */
export async function withDatabase<Made extends { drop: () => Promise<void> }, Result>(
  pendingCleanups: Set<() => Promise<void>>,
  made: Made | { unavailable: string },
  use: (database: Made | { unavailable: string }) => Promise<Result>,
): Promise<Result> {
  if ('unavailable' in made) return use(made);
  pendingCleanups.add(made.drop);
  try {
    return await use(made);
  } finally {
    pendingCleanups.delete(made.drop);
    await made.drop();
  }
}
