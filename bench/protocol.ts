/**
 * Messages and specs shared by the orchestrators (bench/run.ts, bench/auth.ts) and the server processes they
 * fork (bench/child.ts on their side, bench/servers.ts on the orchestrator's).
 */

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

/** Bulwark's server processes, for both the record read and the session check (bench/bulwark-app.ts). */
export interface BulwarkSpec {
  engine: Engine;
  /** PostgreSQL only: Bulwark migrates as the owner and serves as the login, like a production deployment. */
  database?: DatabaseUrls;
  poolMax: number;
  /** Keep the production rate limits (the noisy-neighbour bench); otherwise they are set out of reach. */
  productionLimits?: boolean;
}

/** The noisy-neighbour server: Bulwark's spec and tenant A's requests a second. */
export interface NoisySpec extends BulwarkSpec {
  limitA: number;
}

/** A tenant the noisy-neighbour bench loads: its key and its record's path. */
export interface NoisyTenant {
  tenantId: string;
  apiKey: string;
  path: string;
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

/**
 * What a server process tells the orchestrator. `ready` carries the port and what the server reports about
 * itself: the record bench's servers `{ seed }`, the authentication bench's `{ target }`.
 */
export type ChildMessage<Report extends object = object> =
  | ({ type: 'ready'; port: number } & Report)
  | { type: 'failed'; error: string }
  /** The server process's CPU time so far (user + system), in microseconds. */
  | { type: 'cpu'; micros: number };

export type ParentMessage = { type: 'stop' } | { type: 'cpu' };

/** The URL shape of Bulwark's record read; the baselines route the same path so routing costs the same. */
export function recordPath(seed: Seed): string {
  return `/v1/tenants/${seed.tenantId}/collections/${seed.collection}/records/${seed.recordId}`;
}

// ---------------------------------------------------------------------------------------------------
// The authentication benchmark's servers (bench/auth-bulwark-server.ts, bench/auth-better-auth-server.ts)

export type AuthServerName = 'bulwark' | 'better-auth';

export interface AuthBetterAuthSpec {
  /** Better Auth's own throwaway PostgreSQL database; it creates its tables there on start. */
  databaseUrl: string;
  poolMax: number;
}

/** The authenticated request to load, and what a correct answer names. */
export interface AuthTarget {
  path: string;
  headers: Record<string, string>;
  /** The user's e-mail address: the answer to the request must contain it. */
  email: string;
}
