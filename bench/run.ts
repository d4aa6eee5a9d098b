/**
 * `npm run bench`: Bulwark's authenticated, tenant-scoped record read over HTTP against a bare Fastify
 * point select of the same row with the same driver, in the same run (DESIGN.md, "Performance targets":
 * ratio >= 0.50). Each server runs in its own process so the load generator never shares its event loop.
 *
 * Environment: BENCH_DURATION (measured seconds per scenario, default 8), BENCH_ROUNDS (the measured time
 * is split into this many alternating rounds, default 4), BENCH_WARMUP (seconds, default 2), BENCH_CONNECTIONS
 * (default 10), BENCH_ENGINES (default "postgres,pglite"), BENCH_DATABASE_URL (a PostgreSQL superuser URL;
 * default BULWARK_TEST_DATABASE_URL or the local server), BENCH_CPU_PROF=1 (a V8 CPU profile of every server
 * process in .bench/profiles/<scenario>-<engine>.cpuprofile, for chrome://inspect or speedscope).
 *
 * The run starts with the envelope encryption benchmark (bench/envelope.ts, in this process, before any
 * server starts) and ends with the authentication benchmark (bench/auth.ts: login, token and API-key
 * verification, the session check against Better Auth; its own settings are described there).
 * BENCH_ONLY=envelope, BENCH_ONLY=http, BENCH_ONLY=auth, BENCH_ONLY=audit or BENCH_ONLY=noisy runs one part
 * (bench/audit.ts: audited record writes against unaudited ones; bench/noisy.ts: a tenant's latency while
 * another floods at 10x its limit); BENCH_ENVELOPE_DURATION (measured seconds per envelope scenario, default 3).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import { loadConfig } from '../src/platform/config/config.ts';
import { migratePostgres } from '../src/platform/db/open.ts';
import { runAuthBench } from './auth.ts';
import { adminQuery, busyNote, cpuBusy, createThrowawayDatabase, positiveNumber, printTable, sum, withDatabase } from './common.ts';
import { runAuditBench } from './audit.ts';
import { runNoisyBench } from './noisy.ts';
import { envelopeBenchDefaults, printEnvelopeReport, runEnvelopeBench } from './envelope.ts';
import { type BaselineSpec, type BulwarkSpec, type DatabaseUrls, type Engine, recordPath, type Scenario, type Seed } from './protocol.ts';
import { type LoadStats, loadInRounds, loadStats, type LoadTarget, noLoadStats, prepareTarget, type RunningServer, startServer } from './servers.ts';

const target = 0.5;
const benchDir = import.meta.dirname;
const outputDir = resolve(benchDir, '..', '.bench');

const defaults = loadConfig({});
const settings = {
  durationSeconds: positiveNumber('BENCH_DURATION', 8),
  warmupSeconds: positiveNumber('BENCH_WARMUP', 2),
  // Enough to keep a pool of 10 busy; more would only queue in the server on 2 cores.
  connections: Math.round(positiveNumber('BENCH_CONNECTIONS', 10)),
  rounds: Math.round(positiveNumber('BENCH_ROUNDS', 4)),
  poolMax: defaults.databasePoolMax,
  appRole: defaults.databaseAppRole,
  engines: (process.env['BENCH_ENGINES'] ?? 'postgres,pglite').split(',').map((name) => name.trim()).filter((name) => name !== ''),
  cpuProfile: process.env['BENCH_CPU_PROF'] === '1',
};
const only = process.env['BENCH_ONLY'] ?? '';
const adminUrl = process.env['BENCH_DATABASE_URL'] ?? process.env['BULWARK_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

interface Measurement extends LoadStats {
  scenario: Scenario;
  engine: Engine;
  timeouts: number;
  failure?: string;
}

interface Ratio {
  engine: Engine;
  bulwark: number;
  bare: number;
  ratio: number;
  pass: boolean;
}

// ---------------------------------------------------------------------------------------------------
// Server processes

/** Cleanups still owed if the run is interrupted (Ctrl-C): running servers, the throwaway database. */
const pendingCleanups = new Set<() => Promise<void>>();

/** BENCH_CPU_PROF=1: a V8 CPU profile of a server process, named after what it serves. */
function profileArgv(name: string): string[] {
  return settings.cpuProfile ? ['--cpu-prof', `--cpu-prof-dir=${join(outputDir, 'profiles')}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
}

type RecordServer = RunningServer<{ seed: Seed }>;

function startChild(script: string, spec: BulwarkSpec | BaselineSpec): Promise<RecordServer> {
  const scenario = 'scenario' in spec ? spec.scenario : 'bulwark';
  return startServer(script, spec, { execArgv: profileArgv(`${scenario}-${spec.engine}`), pendingCleanups });
}

// ---------------------------------------------------------------------------------------------------
// Load

function headersFor(scenario: Scenario, seed: Seed): Record<string, string> {
  if (scenario !== 'bulwark') return {};
  if (seed.apiKey === undefined) throw new Error('the Bulwark server reported no API key');
  return { authorization: `Bearer ${seed.apiKey}` };
}

/** A running server under load; its rounds are summed into one measurement. */
interface Target extends LoadTarget<{ seed: Seed }> {
  engine: Engine;
  scenario: Scenario;
}

function failed(engine: Engine, scenario: Scenario, failure: string): Measurement {
  return { scenario, engine, ...noLoadStats(), timeouts: 0, failure };
}

/** One request before the load: the server must answer 200 with the seeded record, or the numbers mean nothing. */
async function prepare(engine: Engine, scenario: Scenario, start: () => Promise<RecordServer>): Promise<Target | Measurement> {
  const prepared = await prepareTarget(
    start,
    (server) => ({ url: `http://127.0.0.1:${server.port}${recordPath(server.seed)}`, headers: headersFor(scenario, server.seed) }),
    (server, body, text) => {
      const { id, data } = body as { id?: unknown; data?: unknown };
      if (id !== server.seed.recordId || !isDeepStrictEqual(data, server.seed.data)) throw new Error(`unexpected body: ${text.slice(0, 300)}`);
    },
  );
  return 'failure' in prepared ? failed(engine, scenario, prepared.failure) : { ...prepared.target, engine, scenario };
}

function summarize(target: Target): Measurement {
  return {
    scenario: target.scenario,
    engine: target.engine,
    ...loadStats(target),
    timeouts: sum(target.rounds.map((round) => round.timeouts)),
    ...(target.failure === undefined ? {} : { failure: target.failure }),
  };
}

/**
 * All servers of an engine stay up and the load alternates between them in short rounds (in a rotating
 * order), so a burst of background load on a shared machine hits every scenario alike instead of skewing
 * the one that happened to run during it. Only one server is under load at a time.
 */
async function runEngine(engine: Engine, database: DatabaseUrls | undefined): Promise<Measurement[]> {
  const base = { engine, poolMax: settings.poolMax, ...(database === undefined ? {} : { database }) };
  const targets: Target[] = [];
  const measurements: Measurement[] = [];
  const add = (prepared: Target | Measurement) => {
    if ('server' in prepared) targets.push(prepared);
    else measurements.push(prepared);
  };
  try {
    process.stdout.write(`  ${engine}: starting servers`);
    // Bulwark seeds the tenant, the API key and the record; the baselines read that same row.
    const bulwark = await prepare(engine, 'bulwark', () => startChild('bulwark-server.ts', base));
    add(bulwark);
    if (!('server' in bulwark)) return measurements;
    const { tenantId, collection, recordId, data } = bulwark.server.seed;
    const baselines: BaselineSpec['scenario'][] = engine === 'postgres' ? ['bare', 'pipelined-rls', 'naive-rls'] : ['bare'];
    for (const scenario of baselines) {
      const spec: BaselineSpec = { ...base, scenario, appRole: settings.appRole, seed: { tenantId, collection, recordId, data } };
      add(await prepare(engine, scenario, () => startChild('baseline-server.ts', spec)));
    }

    // Warm-up: JIT, connection pools, Bulwark's API-key and tenant-status caches, PostgreSQL's caches.
    await loadInRounds(targets, { warmupSeconds: settings.warmupSeconds, seconds: settings.durationSeconds, rounds: settings.rounds, connections: settings.connections });
    measurements.push(...targets.map(summarize));
    const order: readonly Scenario[] = ['bulwark', 'bare', 'pipelined-rls', 'naive-rls'];
    return measurements.sort((a, b) => order.indexOf(a.scenario) - order.indexOf(b.scenario));
  } finally {
    console.log('');
    for (const target of targets) await target.server.stop();
  }
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL throwaway database

/**
 * A throwaway database, migrated, and a throwaway login role that is a member of the app role: Bulwark
 * refuses (in production) to serve through a login that could RESET ROLE past row-level security.
 */
async function createBenchDatabase(): Promise<{ urls: DatabaseUrls; drop: () => Promise<void> } | { unavailable: string }> {
  const database = await createThrowawayDatabase(adminUrl, 'bulwark_bench');
  if ('unavailable' in database) return database;
  const { name, url: owner } = database;
  const drop = async () => {
    await database.drop();
    await adminQuery(adminUrl, `DROP ROLE IF EXISTS ${name}`);
  };
  const login = new URL(owner);
  login.username = name;
  login.password = '';
  try {
    // Migrating here (Bulwark's own migrator) creates the app role, which the login must join before Bulwark connects.
    await migratePostgres(owner.toString(), settings.appRole);
    await adminQuery(adminUrl, `CREATE ROLE ${name} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE ${pg.escapeIdentifier(settings.appRole)}`);
  } catch (error) {
    await drop();
    throw error;
  }
  return { urls: { owner: owner.toString(), login: login.toString() }, drop };
}

// ---------------------------------------------------------------------------------------------------
// Report

function ratiosOf(measurements: readonly Measurement[]): Ratio[] {
  const ratios: Ratio[] = [];
  for (const engine of ['postgres', 'pglite'] as const) {
    const find = (scenario: Scenario) => measurements.find((m) => m.engine === engine && m.scenario === scenario && m.failure === undefined);
    const bulwark = find('bulwark');
    const bare = find('bare');
    if (!bulwark || !bare) continue;
    const ratio = bulwark.requestsPerSecond / bare.requestsPerSecond;
    ratios.push({ engine, bulwark: bulwark.requestsPerSecond, bare: bare.requestsPerSecond, ratio, pass: ratio >= target });
  }
  return ratios;
}

function printReport(measurements: readonly Measurement[], ratios: readonly Ratio[], notes: readonly string[]): void {
  const rows = [
    ['scenario', 'engine', 'req/s', 'rounds min-max', 'p50 ms', 'p99 ms', 'server CPU us/req', 'vs bare', 'status'],
    ...measurements.map((m) => {
      const bare = measurements.find((other) => other.engine === m.engine && other.scenario === 'bare' && other.failure === undefined);
      const relative = m.failure === undefined && bare ? (m.requestsPerSecond / bare.requestsPerSecond).toFixed(2) : '-';
      const spread = `${Math.min(...m.roundsRequestsPerSecond).toFixed(0)}-${Math.max(...m.roundsRequestsPerSecond).toFixed(0)}`;
      return m.failure === undefined
        ? [m.scenario, m.engine, m.requestsPerSecond.toFixed(0), spread, m.latencyP50Ms.toFixed(1), m.latencyP99Ms.toFixed(1), m.serverCpuMicrosPerRequest.toFixed(0), relative, 'ok']
        : [m.scenario, m.engine, '-', '-', '-', '-', '-', '-', 'FAILED'];
    }),
  ];
  printTable(rows, (column) => column >= 2 && column <= 7);
  console.log('');
  console.log(`  Bulwark / bare throughput (DESIGN.md target >= ${target.toFixed(2)}):`);
  if (ratios.length === 0) console.log('    no ratio: a scenario failed');
  for (const r of ratios) {
    console.log(`    ${r.engine.padEnd(8)}  ${r.bulwark.toFixed(0)} / ${r.bare.toFixed(0)} req/s = ${r.ratio.toFixed(3)}  ${r.pass ? 'PASS' : 'BELOW'}`);
  }
  const pipelined = measurements.find((m) => m.engine === 'postgres' && m.scenario === 'pipelined-rls' && m.failure === undefined);
  const naive = measurements.find((m) => m.engine === 'postgres' && m.scenario === 'naive-rls' && m.failure === undefined);
  if (pipelined && naive) {
    console.log('');
    console.log(
      `  Tenant-scoped read without HTTP security, PostgreSQL: pipelined (1 round trip) ${pipelined.requestsPerSecond.toFixed(0)} req/s` +
        ` vs awaited BEGIN/set_config/SELECT/COMMIT (4 round trips) ${naive.requestsPerSecond.toFixed(0)} req/s` +
        ` = ${(pipelined.requestsPerSecond / naive.requestsPerSecond).toFixed(2)}x`,
    );
  }
  for (const m of measurements) {
    if (m.failure !== undefined) console.log(`  FAILED ${m.engine} / ${m.scenario}: ${m.failure}`);
  }
  for (const note of notes) console.log(`  Note: ${note}`);
}

// ---------------------------------------------------------------------------------------------------

function selectedEngines(): Engine[] {
  const engines = settings.engines.filter((name): name is Engine => name === 'postgres' || name === 'pglite');
  if (engines.length !== settings.engines.length) throw new Error(`BENCH_ENGINES accepts postgres and pglite (got ${settings.engines.join(',')})`);
  return engines;
}

/** The record read over HTTP: its part of results.json, and whether a scenario failed. */
async function runHttp(): Promise<{ results: Record<string, unknown>; failed: boolean }> {
  const engines = selectedEngines();
  console.log(
    `Bulwark record read benchmark: ${settings.connections} connections, ${settings.warmupSeconds} s warm-up + ` +
      `${settings.durationSeconds} s measured per scenario in ${settings.rounds} rounds; pool max ${settings.poolMax}; Node ${process.version}; ${cpus().length} CPUs`,
  );

  const notes: string[] = [];
  // The server, PostgreSQL and the load generator already share the cores; anything else running skews the numbers.
  const busyBefore = await cpuBusy(1_000);
  notes.push(...busyNote(busyBefore));
  const measurements: Measurement[] = [];
  let postgresUnavailable: string | undefined;
  for (const engine of engines) {
    if (engine === 'pglite') {
      measurements.push(...(await runEngine('pglite', undefined)));
      continue;
    }
    const database = await createBenchDatabase();
    if ('unavailable' in database) {
      postgresUnavailable = database.unavailable;
      notes.push(`${database.unavailable}; PostgreSQL scenarios skipped, PGlite only.`);
      continue;
    }
    measurements.push(...(await withDatabase(pendingCleanups, database, () => runEngine('postgres', database.urls))));
  }

  const ratios = ratiosOf(measurements);
  printReport(measurements, ratios, notes);

  const results = {
    cpuBusyBefore: busyBefore,
    settings,
    postgres: postgresUnavailable === undefined ? { available: engines.includes('postgres') } : { available: false, reason: postgresUnavailable },
    target,
    measurements,
    ratios,
  };
  return { results, failed: measurements.some((m) => m.failure !== undefined) };
}

async function main(): Promise<number> {
  const parts = ['envelope', 'http', 'auth', 'audit', 'noisy'];
  if (only !== '' && !parts.includes(only)) throw new Error(`BENCH_ONLY accepts ${parts.join(', ')} (got ${JSON.stringify(only)})`);
  const results: Record<string, unknown> = { generatedAt: new Date().toISOString(), node: process.version, cpus: cpus().length };
  let failed = false;
  if (only === '' || only === 'envelope') {
    const envelopeSettings = { ...envelopeBenchDefaults, durationSeconds: positiveNumber('BENCH_ENVELOPE_DURATION', envelopeBenchDefaults.durationSeconds) };
    console.log(
      `Envelope encryption benchmark: ${envelopeSettings.payloadBytes}-byte payloads, ${envelopeSettings.warmupSeconds} s warm-up + ` +
        `${envelopeSettings.durationSeconds} s measured per scenario in ${envelopeSettings.rounds} rounds; Node ${process.version}`,
    );
    const envelope = await runEnvelopeBench(envelopeSettings);
    printEnvelopeReport(envelope);
    results['envelope'] = envelope;
    if (only === '') console.log('');
  }
  if (only === '' || only === 'http') {
    const http = await runHttp();
    Object.assign(results, http.results);
    failed = http.failed;
    if (only === '') console.log('');
  }
  if (only === '' || only === 'auth') {
    const auth = await runAuthBench({
      engines: selectedEngines(),
      adminUrl,
      poolMax: settings.poolMax,
      createBulwarkDatabase: createBenchDatabase,
      pendingCleanups,
      profileArgv,
    });
    results['auth'] = auth.results;
    failed ||= auth.failed;
    if (only === '') console.log('');
  }
  if (only === '' || only === 'audit') {
    const audit = await runAuditBench({ engines: selectedEngines(), poolMax: settings.poolMax, createBulwarkDatabase: createBenchDatabase, pendingCleanups });
    results['audit'] = audit.results;
    failed ||= audit.failed;
    if (only === '') console.log('');
  }
  if (only === '' || only === 'noisy') {
    const noisy = await runNoisyBench({ engines: selectedEngines(), poolMax: settings.poolMax, createBulwarkDatabase: createBenchDatabase, pendingCleanups, profileArgv });
    results['noisy'] = noisy.results;
    failed ||= noisy.failed;
  }

  mkdirSync(outputDir, { recursive: true });
  const resultsPath = join(outputDir, 'results.json');
  writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\n  Results written to ${relative(process.cwd(), resultsPath)}`);
  // A ratio below target is a finding, not a failure; a scenario that errored or answered non-200 is.
  return failed ? 1 : 0;
}

process.once('SIGINT', () => {
  void (async () => {
    for (const cleanup of [...pendingCleanups].reverse()) await cleanup().catch(() => undefined);
    process.exit(130);
  })();
});

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
