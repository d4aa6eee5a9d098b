/**
 * `BENCH_ONLY=audit`: audited record writes against the same writes without the audit trail, in one run
 * (issue #5: at least 5,000 audited writes/s on PostgreSQL with the hash chain intact, and the ratio).
 *
 * In process, so the numbers are the write path's (service, keyring, database), not HTTP's. Both sides use the
 * app's own RecordsService on the same database, keyring and tenants; the unaudited one gets a recorder that
 * writes nothing (only the bench builds one: the app has no switch to turn auditing off). Writes go to one
 * tenant (every writer on one chain, so on its head's row lock) and spread over several tenants (a chain each).
 * After the run every chain is verified.
 *
 * Environment: BENCH_AUDIT_SECONDS (measured seconds per scenario, default 3), BENCH_AUDIT_CONCURRENCY
 * (writes in flight, default 16), BENCH_AUDIT_TENANTS (tenants of the spread scenario, default 8), and
 * BENCH_ENGINES, BENCH_WARMUP as elsewhere.
 */
import { randomBytes } from 'node:crypto';
import type { AuditRecorder } from '../src/modules/audit/service.ts';
import { RecordsService } from '../src/modules/records/service.ts';
import { systemClock } from '../src/platform/clock.ts';
import { openBenchApp } from './bulwark-app.ts';
import { type BenchContext, busyNote, cpuBusy, positiveNumber, printTable, withDatabase } from './common.ts';
import { measureRounds, type Rates, ratesOf, subject } from './measure.ts';
import type { DatabaseUrls, Engine } from './protocol.ts';
import { benchRecord } from './record.ts';

export const auditTarget = { auditedWritesPerSecond: 5_000 } as const;

export type AuditBenchContext = Omit<BenchContext, 'profileArgv'>;

type Scenario = 'audited, 1 tenant' | 'unaudited, 1 tenant' | 'audited, spread' | 'unaudited, spread';

interface EngineResult {
  engine: Engine;
  failure?: string;
  measurements: (Rates & { scenario: Scenario })[];
  /** The chains after the run: every one verified, and how many events they hold. */
  chains?: { verified: number; broken: number; events: number };
}

const settings = () => ({
  seconds: positiveNumber('BENCH_AUDIT_SECONDS', 3),
  warmupSeconds: positiveNumber('BENCH_WARMUP', 1),
  rounds: 4,
  concurrency: Math.round(positiveNumber('BENCH_AUDIT_CONCURRENCY', 16)),
  tenants: Math.round(positiveNumber('BENCH_AUDIT_TENANTS', 8)),
});

/** Writes nothing: the baseline's recorder. */
const noAudit: AuditRecorder = {
  record: async () => undefined,
  recordAlone: async () => undefined,
};

async function runEngine(engine: Engine, database: DatabaseUrls | undefined, poolMax: number, timing: ReturnType<typeof settings>): Promise<EngineResult> {
  const bench = await openBenchApp({ engine, poolMax, ...(database === undefined ? {} : { database }) });
  try {
    const { app, db, config } = bench;
    const { tenancy, records, keyring, audit, limits } = app.services;
    // The same quota checks as the audited service: only the audit trail differs.
    const unaudited = new RecordsService(db, keyring, noAudit, limits, systemClock, { recordMaxBytes: config.recordMaxBytes });
    const tenants: string[] = [];
    for (let index = 0; index < timing.tenants; index += 1) tenants.push((await tenancy.create({ name: `Audit bench ${index + 1}` })).id);
    const [hot = ''] = tenants;
    const write = (service: RecordsService, tenantOf: (worker: number) => string) => async (worker: number) => {
      await service.create(tenantOf(worker), 'bench', { ...benchRecord, nonce: randomBytes(4).toString('hex') });
    };
    const spread = (worker: number) => tenants[worker % tenants.length] ?? hot;
    const subjects = [
      subject('audited, 1 tenant', { sync: false, concurrency: timing.concurrency, run: write(records, () => hot) }),
      subject('unaudited, 1 tenant', { sync: false, concurrency: timing.concurrency, run: write(unaudited, () => hot) }),
      subject('audited, spread', { sync: false, concurrency: timing.concurrency, run: write(records, spread) }),
      subject('unaudited, spread', { sync: false, concurrency: timing.concurrency, run: write(unaudited, spread) }),
    ];
    await measureRounds(`  ${engine}, record writes with ${timing.concurrency} in flight, rounds`, subjects, timing);
    let verified = 0;
    let broken = 0;
    let events = 0;
    for (const tenantId of tenants) {
      const report = await audit.verify({ tenantId });
      if (report.ok) verified += 1;
      else broken += 1;
      events += report.eventsChecked;
    }
    return { engine, measurements: subjects.map((entry) => ({ scenario: entry.name, ...ratesOf(entry) })), chains: { verified, broken, events } };
  } catch (error) {
    return { engine, measurements: [], failure: error instanceof Error ? error.message : String(error) };
  } finally {
    await bench.app.close();
    await bench.db.close();
  }
}

export async function runAuditBench(context: AuditBenchContext): Promise<{ results: unknown; failed: boolean }> {
  const timing = settings();
  console.log(
    `Audit benchmark: record writes in process, ${timing.warmupSeconds} s warm-up + ${timing.seconds} s per scenario in ${timing.rounds} rounds, ` +
      `${timing.concurrency} in flight, spread over ${timing.tenants} tenants; engines ${context.engines.join(', ')}`,
  );
  const busyBefore = await cpuBusy(1_000);
  const results: EngineResult[] = [];
  for (const engine of context.engines) {
    if (engine === 'pglite') {
      results.push(await runEngine('pglite', undefined, context.poolMax, timing));
      continue;
    }
    results.push(
      await withDatabase(context.pendingCleanups, await context.createBulwarkDatabase(), async (database) =>
        'unavailable' in database ? { engine, measurements: [], failure: database.unavailable } : runEngine('postgres', database.urls, context.poolMax, timing),
      ),
    );
  }

  const rows: string[][] = [['scenario', 'engine', 'writes/s', 'rounds min-max', 'us/write', 'CPU us/write']];
  for (const result of results) {
    for (const m of result.measurements) {
      rows.push([
        m.scenario,
        result.engine,
        m.opsPerSecond.toFixed(0),
        `${Math.min(...m.roundsOpsPerSecond).toFixed(0)}-${Math.max(...m.roundsOpsPerSecond).toFixed(0)}`,
        m.microsPerOp.toFixed(0),
        m.cpuMicrosPerOp.toFixed(0),
      ]);
    }
  }
  printTable(rows, (column) => column >= 2);
  console.log('');
  console.log(`  Audit (DESIGN.md target: >= ${auditTarget.auditedWritesPerSecond} audited writes/s on PostgreSQL, chains intact; ratio for information):`);
  let failed = false;
  for (const result of results) {
    if (result.failure !== undefined) {
      console.log(`    ${result.engine}  FAILED: ${result.failure}`);
      failed = true;
      continue;
    }
    const rate = (scenario: Scenario) => result.measurements.find((m) => m.scenario === scenario)?.opsPerSecond ?? 0;
    for (const where of ['1 tenant', 'spread'] as const) {
      const audited = rate(`audited, ${where}`);
      const bare = rate(`unaudited, ${where}`);
      const verdict = result.engine !== 'postgres' ? 'info' : audited >= auditTarget.auditedWritesPerSecond ? 'PASS' : 'FAIL';
      console.log(`    ${result.engine.padEnd(8)}  ${where.padEnd(8)}  ${audited.toFixed(0)} audited vs ${bare.toFixed(0)} unaudited writes/s = ${(audited / bare).toFixed(3)}   ${verdict}`);
    }
    const chains = result.chains;
    if (chains !== undefined) {
      console.log(`    ${result.engine.padEnd(8)}  chains: ${chains.verified} verified, ${chains.broken} broken, ${chains.events} events checked`);
      if (chains.broken > 0) failed = true;
    }
  }
  for (const note of busyNote(busyBefore)) console.log(`    ${note}`);
  return { results: { cpuBusyBefore: busyBefore, settings: timing, target: auditTarget, engines: results }, failed };
}
