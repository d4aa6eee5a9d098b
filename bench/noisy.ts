/**
 * `BENCH_ONLY=noisy`: the noisy neighbour (DESIGN.md, "Performance targets": one tenant flooding at 10x its
 * limit moves another tenant's p99 latency by under 20%). One Bulwark server process with its production
 * limits; tenant A is held to BENCH_NOISY_LIMIT requests a second and floods at ten times that; tenant B
 * reads a record at a steady BENCH_NOISY_RATE a second. B's latencies are measured with and without the
 * flood, in alternating rounds.
 *
 * Both loads are paced (bench/paced.ts: open loop, each request timed on its own): B's from the main
 * thread, A's flood from a worker thread, so the two load generators do not wait on each other's event loop. Both share the machine with the server and
 * PostgreSQL, as a real neighbour would share the server.
 *
 * Environment: BENCH_NOISY_SECONDS (measured seconds per condition, default 12, in 4 rounds), BENCH_NOISY_LIMIT
 * (A's requests a second, default 100), BENCH_NOISY_RATE (B's requests a second, default 100), BENCH_ENGINES.
 */
import { fork } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { type BenchContext, busyNote, cpuBusy, errorText, positiveNumber, printTable, rotated, sum, withDatabase } from './common.ts';
import type { FloodOrder } from './noisy-flood.ts';
import { paced, type PacedResult } from './paced.ts';
import type { DatabaseUrls, Engine, NoisySpec, NoisyTenant } from './protocol.ts';
import { type RunningServer, startServer } from './servers.ts';

export const noisyTarget = { maxP99Increase: 0.2 } as const;

export type NoisyBenchContext = BenchContext;

/**
 * `B with A at its limit` separates what A's admitted requests cost B from what its refused excess costs.
 * `B, the flood elsewhere` is the machine's share: the same flood aimed at a bare 429 server in another
 * process (bench/noisy-sink.ts), so only the load generator and a busy neighbour process touch B. The target
 * compares the flood with B alone.
 */
type Condition = 'B alone' | 'B with A at its limit' | 'B with A flooding' | 'B, the flood elsewhere';

interface Latencies {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  requests: number;
  failures: number;
}

interface ConditionResult extends Latencies {
  condition: Condition;
  flood?: { sentPerSecond: number; okPerSecond: number; throttledPerSecond: number; other: number; errors: number };
}

interface EngineResult {
  engine: Engine;
  failure?: string;
  conditions: ConditionResult[];
  p99Increase?: number;
  /** Flooding against A at its limit: what the 429s themselves cost B. */
  p99IncreaseOverLimit?: number;
  /** The flood aimed at the bare sink against B alone: what the machine's shared cores cost B. */
  machineP99Increase?: number;
  pass?: boolean;
}

const settings = () => {
  const limitA = Math.round(positiveNumber('BENCH_NOISY_LIMIT', 100));
  return {
    seconds: positiveNumber('BENCH_NOISY_SECONDS', 12),
    rounds: 4,
    limitA,
    floodRate: limitA * 10,
    rateB: positiveNumber('BENCH_NOISY_RATE', 100),
  };
};

type NoisyServer = RunningServer<{ tenants: { a: NoisyTenant; b: NoisyTenant } }>;

function flood(server: NoisyServer, order: Pick<FloodOrder, 'requestsPerSecond' | 'seconds'>, port = server.port): Promise<PacedResult> {
  const { a } = server.tenants;
  const worker = new Worker(new URL('./noisy-flood.ts', import.meta.url), { workerData: { ...order, port, path: a.path, apiKey: a.apiKey } satisfies FloodOrder });
  return new Promise((resolve, reject) => {
    worker.once('message', (report: PacedResult) => resolve(report));
    worker.once('error', reject);
  });
}

async function startSink(): Promise<{ port: number; stop: () => void }> {
  const child = fork(new URL('./noisy-sink.ts', import.meta.url));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message: { port: number }) => resolve(message.port));
    child.once('error', reject);
  });
  return { port, stop: () => child.kill() };
}

/** B's reads: paced on the main thread. */
function readsOfB(server: NoisyServer, rate: number, seconds: number): Promise<PacedResult> {
  return paced({ port: server.port, ...server.tenants.b }, rate, seconds, 16);
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)] ?? 0;
}

function latencies(samples: readonly number[], failures: number): Latencies {
  const sorted = [...samples].sort((x, y) => x - y);
  return { p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99), maxMs: sorted.at(-1) ?? 0, requests: sorted.length, failures };
}

async function runEngine(engine: Engine, database: DatabaseUrls | undefined, context: NoisyBenchContext, timing: ReturnType<typeof settings>): Promise<EngineResult> {
  const spec: NoisySpec = { engine, poolMax: context.poolMax, productionLimits: true, limitA: timing.limitA, ...(database === undefined ? {} : { database }) };
  let server: NoisyServer | undefined;
  const sink = await startSink();
  try {
    server = await startServer<{ tenants: { a: NoisyTenant; b: NoisyTenant } }>('noisy-server.ts', spec, {
      execArgv: context.profileArgv(`noisy-${engine}`),
      pendingCleanups: context.pendingCleanups,
    });
    const phaseSeconds = timing.seconds / timing.rounds;
    const floodOrder = (seconds: number, requestsPerSecond = timing.floodRate) => ({ requestsPerSecond, seconds });
    // Warm-up: both paths (B's reads, A's refusals) compiled and cached before anything is measured.
    process.stdout.write(', warming up');
    await Promise.all([readsOfB(server, timing.rateB, 2), flood(server, floodOrder(2))]);

    const conditions: Condition[] = ['B alone', 'B with A at its limit', 'B with A flooding', 'B, the flood elsewhere'];
    const samples = Object.fromEntries(conditions.map((condition) => [condition, { latencies: [] as number[], failures: 0, floods: [] as PacedResult[] }])) as Record<
      Condition,
      { latencies: number[]; failures: number; floods: PacedResult[] }
    >;
    const rateOfA: Record<Condition, number | undefined> = {
      'B alone': undefined,
      'B with A at its limit': timing.limitA,
      'B with A flooding': timing.floodRate,
      'B, the flood elsewhere': timing.floodRate,
    };
    for (let round = 0; round < timing.rounds; round += 1) {
      process.stdout.write(`, round ${round + 1}/${timing.rounds}`);
      for (const condition of rotated(conditions, round)) {
        const collected = samples[condition];
        // A's load runs a little longer on both ends, so B is measured only while A is at full rate.
        const rate = rateOfA[condition];
        const flooding = rate === undefined ? undefined : flood(server, floodOrder(phaseSeconds + 1, rate), condition === 'B, the flood elsewhere' ? sink.port : server.port);
        if (flooding !== undefined) await new Promise((resolve) => setTimeout(resolve, 500));
        const reads = await readsOfB(server, timing.rateB, phaseSeconds);
        if (flooding !== undefined) collected.floods.push(await flooding);
        collected.latencies.push(...reads.latencies);
        collected.failures += reads.errors + sum(Object.entries(reads.statuses).map(([status, count]) => (status === '200' ? 0 : count)));
      }
    }
    const results: ConditionResult[] = conditions.map((condition) => {
      const { floods } = samples[condition];
      const seconds = sum(floods.map((report) => report.seconds));
      return {
        condition,
        ...latencies(samples[condition].latencies, samples[condition].failures),
        ...(floods.length === 0
          ? {}
          : {
              flood: {
                sentPerSecond: sum(floods.map((report) => sum(Object.values(report.statuses)) + report.errors)) / seconds,
                okPerSecond: sum(floods.map((report) => report.statuses[200] ?? 0)) / seconds,
                throttledPerSecond: sum(floods.map((report) => report.statuses[429] ?? 0)) / seconds,
                other: sum(floods.map((report) => sum(Object.entries(report.statuses).map(([status, count]) => (status === '200' || status === '429' ? 0 : count))))),
                errors: sum(floods.map((report) => report.errors)),
              },
            }),
      };
    });
    const [alone, atLimit, flooded, elsewhere] = results;
    const increase = (over: ConditionResult | undefined, base: ConditionResult | undefined) => (base !== undefined && over !== undefined && base.p99Ms > 0 ? over.p99Ms / base.p99Ms - 1 : undefined);
    const p99Increase = increase(flooded, alone);
    const p99IncreaseOverLimit = increase(flooded, atLimit);
    const machineP99Increase = increase(elsewhere, alone);
    const failures = sum(results.map((result) => result.failures + (result.flood?.other ?? 0) + (result.flood?.errors ?? 0)));
    return {
      engine,
      conditions: results,
      ...(p99Increase === undefined ? {} : { p99Increase, pass: p99Increase < noisyTarget.maxP99Increase }),
      ...(p99IncreaseOverLimit === undefined ? {} : { p99IncreaseOverLimit }),
      ...(machineP99Increase === undefined ? {} : { machineP99Increase }),
      ...(failures > 0 ? { failure: `${failures} failed requests or answers other than 200 and 429` } : {}),
    };
  } catch (error) {
    return { engine, conditions: [], failure: errorText(error) };
  } finally {
    await server?.stop();
    sink.stop();
  }
}

export async function runNoisyBench(context: NoisyBenchContext): Promise<{ results: Record<string, unknown>; failed: boolean }> {
  const timing = settings();
  console.log(
    `Noisy-neighbour benchmark: tenant A limited to ${timing.limitA} requests/s and flooding at ${timing.floodRate}/s; tenant B reading at ${timing.rateB}/s; ` +
      `${timing.seconds} s measured per condition in ${timing.rounds} rounds`,
  );
  const busy = await cpuBusy(1_000);
  const notes = busyNote(busy);
  const results: EngineResult[] = [];
  for (const engine of context.engines) {
    process.stdout.write(`  ${engine}: starting`);
    if (engine === 'pglite') {
      results.push(await runEngine('pglite', undefined, context, timing));
    } else {
      const database = await context.createBulwarkDatabase();
      if ('unavailable' in database) {
        notes.push(`${database.unavailable}; PostgreSQL skipped.`);
        process.stdout.write(' skipped\n');
        continue;
      }
      results.push(await withDatabase(context.pendingCleanups, database, () => runEngine('postgres', database.urls, context, timing)));
    }
    process.stdout.write('\n');
  }

  const rows = [['engine', 'condition', 'B p50 ms', 'B p99 ms', 'B max ms', 'B reads', 'A sent/s', 'A 200/s', 'A 429/s']];
  for (const result of results) {
    for (const condition of result.conditions) {
      rows.push([
        result.engine,
        condition.condition,
        condition.p50Ms.toFixed(2),
        condition.p99Ms.toFixed(2),
        condition.maxMs.toFixed(1),
        String(condition.requests),
        condition.flood === undefined ? '' : condition.flood.sentPerSecond.toFixed(0),
        condition.flood === undefined ? '' : condition.flood.okPerSecond.toFixed(0),
        condition.flood === undefined ? '' : condition.flood.throttledPerSecond.toFixed(0),
      ]);
    }
  }
  printTable(rows, (column) => column >= 2);
  console.log('');
  for (const result of results) {
    if (result.failure !== undefined) console.log(`  ${result.engine}: FAILED: ${result.failure}`);
    if (result.p99Increase !== undefined) {
      console.log(
        `  ${result.engine}: B's p99 moved ${(result.p99Increase * 100).toFixed(1)}% under the flood (target: under ${noisyTarget.maxP99Increase * 100}%) ${result.pass === true ? 'PASS' : 'MISS'}`,
      );
    }
    if (result.p99IncreaseOverLimit !== undefined) {
      console.log(`  ${result.engine}: against A at its limit, the flood's refused excess moved B's p99 ${(result.p99IncreaseOverLimit * 100).toFixed(1)}%`);
    }
    if (result.machineP99Increase !== undefined) {
      console.log(`  ${result.engine}: the same flood aimed at a bare 429 server in another process moved B's p99 ${(result.machineP99Increase * 100).toFixed(1)}% (the machine's share)`);
    }
  }
  for (const note of notes) console.log(`  Note: ${note}`);
  return { results: { settings: timing, target: noisyTarget, cpuBusyBefore: busy, engines: results }, failed: results.some((result) => result.failure !== undefined) };
}
