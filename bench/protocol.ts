/** Messages and specs shared by the orchestrator (bench/run.ts) and the server processes it forks. */

export type Engine = 'postgres' | 'pglite';

export type Scenario = 'bulwark' | 'bare' | 'pipelined-rls' | 'naive-rls';

/** The row every scenario reads, and for `bulwark` the tenant API key that may read it. */
export interface Seed {
  tenantId: string;
  collection: string;
  recordId: string;
  data: Record<string, unknown>;
  apiKey?: string;
}

/** PostgreSQL only: the throwaway database as its owner, and as a dedicated login that is a member of the app role. */
export interface DatabaseUrls {
  owner: string;
  login: string;
}

export interface BulwarkSpec {
  engine: Engine;
  /** Bulwark migrates as the owner and serves as the login, like a production deployment. */
  database?: DatabaseUrls;
  poolMax: number;
}

export interface BaselineSpec {
  engine: Engine;
  scenario: Exclude<Scenario, 'bulwark'>;
  /** PostgreSQL only: the database Bulwark migrated and seeded (`bare` uses the owner, the RLS scenarios the login). */
  database?: DatabaseUrls;
  appRole: string;
  poolMax: number;
  /** PGlite has no shared database between processes, so the baseline inserts the same row itself. */
  seed: Seed;
}

export type ChildMessage =
  | { type: 'ready'; port: number; seed: Seed }
  | { type: 'failed'; error: string }
  /** The server process's CPU time so far (user + system), in microseconds. */
  | { type: 'cpu'; micros: number };

export type ParentMessage = { type: 'stop' } | { type: 'cpu' };

/** The URL shape of Bulwark's record read; the baselines route the same path so routing costs the same. */
export function recordPath(seed: Seed): string {
  return `/v1/tenants/${seed.tenantId}/collections/${seed.collection}/records/${seed.recordId}`;
}
