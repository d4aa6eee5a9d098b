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
 * BENCH_ONLY=envelope, BENCH_ONLY=http or BENCH_ONLY=auth runs one part; BENCH_ENVELOPE_DURATION (measured
 * seconds per envelope scenario, default 3).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { loadConfig } from '../src/platform/config/config.ts';
import { migratePostgres } from '../src/platform/db/open.ts';
import { runAuthBench } from './auth.ts';
import { envelopeBenchDefaults, printEnvelopeReport, runEnvelopeBench } from './envelope.ts';
import { type BaselineSpec, type BulwarkSpec, type ChildMessage, type DatabaseUrls, type Engine, type ParentMessage, recordPath, type Scenario, type Seed } from './protocol.ts';

const target = 0.5;
const benchDir = import.meta.dirname;
const outputDir = resolve(benchDir, '..', '.bench');

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number (got ${JSON.stringify(raw)})`);
  return value;
}

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

interface Measurement {
  scenario: Scenario;
  engine: Engine;
  requestsPerSecond: number;
  /** Per round, to show how steady the machine was. */
  roundsRequestsPerSecond: number[];
  /**
   * CPU time of the server process per successful response. Unlike throughput it barely moves with
   * background load, so it shows where a gap comes from: the Node process or the database.
   */
  serverCpuMicrosPerRequest: number;
  /** Medians over the rounds. */
  latencyP50Ms: number;
  latencyP99Ms: number;
  responses2xx: number;
  non2xx: number;
  errors: number;
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

interface RunningChild {
  port: number;
  seed: Seed;
  /** CPU time the server process has used so far, in microseconds. */
  cpuMicros(): Promise<number>;
  stop(): Promise<void>;
}

/** Cleanups still owed if the run is interrupted (Ctrl-C): running servers, the throwaway database. */
const pendingCleanups = new Set<() => Promise<void>>();

/** BENCH_CPU_PROF=1: a V8 CPU profile of a server process, named after what it serves. */
function profileArgv(name: string): string[] {
  return settings.cpuProfile ? ['--cpu-prof', `--cpu-prof-dir=${join(outputDir, 'profiles')}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
}

function startChild(script: string, spec: BulwarkSpec | BaselineSpec): Promise<RunningChild> {
  const scenario = 'scenario' in spec ? spec.scenario : 'bulwark';
  const execArgv = profileArgv(`${scenario}-${spec.engine}`);
  const child = fork(join(benchDir, script), [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  const stop = () => stopChild(child);
  pendingCleanups.add(stop);
  return new Promise((resolvePromise, reject) => {
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      pendingCleanups.delete(stop);
      child.kill('SIGKILL');
      reject(error);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      fail(new Error(`${script} exited before it was ready (${signal ?? `code ${code ?? '?'}`})`));
    };
    const timer = setTimeout(() => {
      fail(new Error(`${script} was not ready within 60 s`));
    }, 60_000);
    child.once('exit', onExit);
    child.once('message', (raw) => {
      const message = raw as ChildMessage;
      if (message.type !== 'ready') {
        fail(new Error(`${script}: ${message.type === 'failed' ? message.error : 'unexpected message before ready'}`));
        return;
      }
      clearTimeout(timer);
      child.off('exit', onExit);
      resolvePromise({
        port: message.port,
        seed: message.seed,
        cpuMicros: () => askCpu(child),
        stop: async () => {
          pendingCleanups.delete(stop);
          await stop();
        },
      });
    });
  });
}

function askCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const onExit = () => {
      reject(new Error('the server exited'));
    };
    child.once('exit', onExit);
    child.once('message', (raw) => {
      child.off('exit', onExit);
      const message = raw as ChildMessage;
      if (message.type === 'cpu') resolvePromise(message.micros);
      else reject(new Error(`unexpected message ${message.type}`));
    });
    const ask: ParentMessage = { type: 'cpu' };
    child.send(ask);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolvePromise) => child.once('exit', () => resolvePromise()));
  const stop: ParentMessage = { type: 'stop' };
  // On Ctrl-C the terminal signals the children too and their IPC channel may already be gone.
  if (child.connected) child.send(stop, (error) => error && child.kill('SIGTERM'));
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------------
// Load

function headersFor(scenario: Scenario, seed: Seed): Record<string, string> {
  if (scenario !== 'bulwark') return {};
  if (seed.apiKey === undefined) throw new Error('the Bulwark server reported no API key');
  return { authorization: `Bearer ${seed.apiKey}` };
}

/** One request before the load: the server must answer 200 with the seeded record, or the numbers mean nothing. */
async function verify(url: string, headers: Record<string, string>, seed: Seed): Promise<void> {
  const response = await fetch(url, { headers });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`expected 200, got ${response.status}: ${text.slice(0, 300)}`);
  const body = JSON.parse(text) as { id?: unknown; data?: unknown };
  if (body.id !== seed.recordId || !isDeepStrictEqual(body.data, seed.data)) throw new Error(`unexpected body: ${text.slice(0, 300)}`);
}

function load(target: Target, seconds: number): Promise<autocannon.Result> {
  return autocannon({ url: target.url, headers: target.headers, connections: settings.connections, duration: seconds });
}

/** A running server under load; its rounds are summed into one measurement. */
interface Target {
  engine: Engine;
  scenario: Scenario;
  child: RunningChild;
  url: string;
  headers: Record<string, string>;
  rounds: autocannon.Result[];
  /** Server CPU time spent during the measured rounds, in microseconds. */
  cpuMicros: number;
  failure?: string;
}

function failed(engine: Engine, scenario: Scenario, error: unknown): Measurement {
  const failure = error instanceof Error ? error.message : String(error);
  return { scenario, engine, requestsPerSecond: 0, roundsRequestsPerSecond: [], serverCpuMicrosPerRequest: 0, latencyP50Ms: 0, latencyP99Ms: 0, responses2xx: 0, non2xx: 0, errors: 0, timeouts: 0, failure };
}

async function prepare(engine: Engine, scenario: Scenario, start: () => Promise<RunningChild>): Promise<Target | Measurement> {
  let child: RunningChild | undefined;
  try {
    child = await start();
    const url = `http://127.0.0.1:${child.port}${recordPath(child.seed)}`;
    const headers = headersFor(scenario, child.seed);
    await verify(url, headers, child.seed);
    return { engine, scenario, child, url, headers, rounds: [], cpuMicros: 0 };
  } catch (error) {
    await child?.stop();
    return failed(engine, scenario, error);
  }
}

async function loadInto(target: Target, seconds: number, keep: boolean): Promise<void> {
  if (target.failure !== undefined) return;
  try {
    const cpuBefore = await target.child.cpuMicros();
    const result = await load(target, seconds);
    const cpuAfter = await target.child.cpuMicros();
    if (result.non2xx > 0 || result.errors > 0 || result['2xx'] === 0) {
      target.failure = `${result.non2xx} non-2xx responses, ${result.errors} errors (${result.timeouts} timeouts), ${result['2xx']} 2xx`;
    }
    if (keep) {
      target.rounds.push(result);
      target.cpuMicros += cpuAfter - cpuBefore;
    }
  } catch (error) {
    target.failure = error instanceof Error ? error.message : String(error);
  }
}

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};
const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);

function summarize(target: Target): Measurement {
  const { rounds } = target;
  const responses2xx = sum(rounds.map((round) => round['2xx']));
  const seconds = sum(rounds.map((round) => round.duration));
  return {
    scenario: target.scenario,
    engine: target.engine,
    // Successful responses over measured time: errors and non-2xx never count as throughput.
    requestsPerSecond: seconds > 0 ? responses2xx / seconds : 0,
    roundsRequestsPerSecond: rounds.map((round) => (round.duration > 0 ? round['2xx'] / round.duration : 0)),
    serverCpuMicrosPerRequest: responses2xx > 0 ? target.cpuMicros / responses2xx : 0,
    latencyP50Ms: median(rounds.map((round) => round.latency.p50)),
    latencyP99Ms: median(rounds.map((round) => round.latency.p99)),
    responses2xx,
    non2xx: sum(rounds.map((round) => round.non2xx)),
    errors: sum(rounds.map((round) => round.errors)),
    timeouts: sum(rounds.map((round) => round.timeouts)),
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
    if ('child' in prepared) targets.push(prepared);
    else measurements.push(prepared);
  };
  try {
    process.stdout.write(`  ${engine}: starting servers`);
    // Bulwark seeds the tenant, the API key and the record; the baselines read that same row.
    const bulwark = await prepare(engine, 'bulwark', () => startChild('bulwark-server.ts', base));
    add(bulwark);
    if (!('child' in bulwark)) return measurements;
    const { tenantId, collection, recordId, data } = bulwark.child.seed;
    const baselines: BaselineSpec['scenario'][] = engine === 'postgres' ? ['bare', 'pipelined-rls', 'naive-rls'] : ['bare'];
    for (const scenario of baselines) {
      const spec: BaselineSpec = { ...base, scenario, appRole: settings.appRole, seed: { tenantId, collection, recordId, data } };
      add(await prepare(engine, scenario, () => startChild('baseline-server.ts', spec)));
    }

    process.stdout.write(', warming up');
    // Warm-up: JIT, connection pools, Bulwark's API-key and tenant-status caches, PostgreSQL's caches.
    for (const target of targets) await loadInto(target, settings.warmupSeconds, false);
    const roundSeconds = settings.durationSeconds / settings.rounds;
    for (let round = 0; round < settings.rounds; round += 1) {
      process.stdout.write(`, round ${round + 1}/${settings.rounds}`);
      const order = [...targets.slice(round % targets.length), ...targets.slice(0, round % targets.length)];
      for (const target of order) await loadInto(target, roundSeconds, true);
    }
    measurements.push(...targets.map(summarize));
    const order: readonly Scenario[] = ['bulwark', 'bare', 'pipelined-rls', 'naive-rls'];
    return measurements.sort((a, b) => order.indexOf(a.scenario) - order.indexOf(b.scenario));
  } finally {
    console.log('');
    for (const target of targets) await target.child.stop();
  }
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL throwaway database

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query(sql);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A throwaway database, migrated, and a throwaway login role that is a member of the app role: Bulwark
 * refuses (in production) to serve through a login that could RESET ROLE past row-level security.
 */
async function createBenchDatabase(): Promise<{ urls: DatabaseUrls; drop: () => Promise<void> } | { unavailable: string }> {
  const name = `bulwark_bench_${randomBytes(6).toString('hex')}`;
  try {
    await adminQuery(`CREATE DATABASE ${name}`);
  } catch (error) {
    return { unavailable: `PostgreSQL unreachable at ${new URL(adminUrl).host} (${(error as Error).message})` };
  }
  const drop = async () => {
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await adminQuery(`DROP ROLE IF EXISTS ${name}`);
  };
  const owner = new URL(adminUrl);
  owner.pathname = `/${name}`;
  const login = new URL(owner);
  login.username = name;
  login.password = '';
  try {
    // Migrating here (Bulwark's own migrator) creates the app role, which the login must join before Bulwark connects.
    await migratePostgres(owner.toString(), settings.appRole);
    await adminQuery(`CREATE ROLE ${name} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE ${pg.escapeIdentifier(settings.appRole)}`);
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
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  const line = (row: readonly string[]) =>
    row.map((cell, column) => (column >= 2 && column <= 7 ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0))).join('  ');
  console.log('');
  for (const [index, row] of rows.entries()) {
    console.log(`  ${line(row)}`);
    if (index === 0) console.log(`  ${widths.map((width) => '-'.repeat(width)).join('  ')}`);
  }
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

/** The fraction of all CPU time spent busy over the next `ms` milliseconds. */
async function cpuBusy(ms: number): Promise<number> {
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
  if (busyBefore > 0.2) notes.push(`other processes kept the CPUs ${(busyBefore * 100).toFixed(0)}% busy just before the run: numbers are noisy.`);
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
    pendingCleanups.add(database.drop);
    try {
      measurements.push(...(await runEngine('postgres', database.urls)));
    } finally {
      pendingCleanups.delete(database.drop);
      await database.drop();
    }
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
  if (only !== '' && only !== 'envelope' && only !== 'http' && only !== 'auth') throw new Error(`BENCH_ONLY accepts envelope, http or auth (got ${JSON.stringify(only)})`);
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
      cpuBusy,
    });
    results['auth'] = auth.results;
    failed ||= auth.failed;
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
