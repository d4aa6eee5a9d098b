/**
 * In-process measurement, for the envelope bench (bench/envelope.ts) and the in-process part of the
 * authentication bench (bench/auth.ts): an operation run back to back (sync ones in batches, async ones
 * by `concurrency` workers) for a while, its wall-clock and CPU time, in alternating rounds.
 */
import { performance } from 'node:perf_hooks';
import { rotated } from './common.ts';

export interface Subject<Name extends string = string> {
  name: Name;
  /** Operations in flight at once (async operations only). */
  concurrency: number;
  /** A sync operation runs in batches, so clock reads stay out of the measurement. */
  sync: boolean;
  /** One operation by `worker` (0 .. concurrency - 1); throws when the answer is wrong. */
  run: (worker: number) => void | Promise<void>;
  /** Warm-up operations, not measured; counters such as cache hits include them. */
  warmupOperations: number;
  operations: number;
  milliseconds: number;
  cpuMicros: number;
  /** Operations per second, per round. */
  rounds: number[];
}

export function subject<Name extends string>(name: Name, parts: Pick<Subject, 'sync' | 'run'> & { concurrency?: number }): Subject<Name> {
  return { name, concurrency: parts.concurrency ?? 1, sync: parts.sync, run: parts.run, warmupOperations: 0, operations: 0, milliseconds: 0, cpuMicros: 0, rounds: [] };
}

/** Runs the subject for about `milliseconds`; returns the operations done and the time they took. */
async function runFor(subject: Subject, milliseconds: number): Promise<{ operations: number; milliseconds: number; cpuMicros: number }> {
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const deadline = start + milliseconds;
  let operations = 0;
  if (subject.sync) {
    // Batches keep the clock reads out of the measurement; a batch of 4 KiB envelope round trips takes ~1 ms.
    do {
      for (let index = 0; index < 32; index += 1) void subject.run(0);
      operations += 32;
    } while (performance.now() < deadline);
  } else {
    const worker = async (id: number) => {
      do {
        await subject.run(id);
        operations += 1;
      } while (performance.now() < deadline);
    };
    await Promise.all(Array.from({ length: subject.concurrency }, (_, id) => worker(id)));
  }
  const elapsed = performance.now() - start;
  const cpu = process.cpuUsage(cpuBefore);
  return { operations, milliseconds: elapsed, cpuMicros: cpu.user + cpu.system };
}

export interface MeasureTiming {
  warmupSeconds: number;
  /** Measured seconds per subject, split into `rounds`. */
  seconds: number;
  rounds: number;
}

/** Warm-up, then the subjects in alternating rounds (in a rotating order); `label` is printed as it goes. */
export async function measureRounds(label: string, subjects: readonly Subject[], timing: MeasureTiming): Promise<void> {
  process.stdout.write(`${label}: warming up`);
  for (const subject of subjects) subject.warmupOperations += (await runFor(subject, timing.warmupSeconds * 1000)).operations;
  const roundMilliseconds = (timing.seconds * 1000) / timing.rounds;
  for (let round = 0; round < timing.rounds; round += 1) {
    process.stdout.write(`, ${round + 1}`);
    for (const subject of rotated(subjects, round)) {
      const done = await runFor(subject, roundMilliseconds);
      subject.operations += done.operations;
      subject.milliseconds += done.milliseconds;
      subject.cpuMicros += done.cpuMicros;
      subject.rounds.push((done.operations * 1000) / done.milliseconds);
    }
  }
  console.log('');
}

export interface Rates {
  opsPerSecond: number;
  roundsOpsPerSecond: number[];
  /** Wall-clock time of one operation (with `concurrency` in flight). */
  microsPerOp: number;
  /**
   * This process's CPU time per operation, all threads (Argon2id runs on the libuv pool); a database
   * server's is not in it. Unlike throughput it barely moves when other processes compete for the cores,
   * so it shows whether a low ratio is the code or the machine.
   */
  cpuMicrosPerOp: number;
  operations: number;
  seconds: number;
}

export function ratesOf(subject: Subject): Rates {
  return {
    opsPerSecond: (subject.operations * 1000) / subject.milliseconds,
    roundsOpsPerSecond: subject.rounds,
    microsPerOp: (subject.milliseconds * 1000 * subject.concurrency) / subject.operations,
    cpuMicrosPerOp: subject.cpuMicros / subject.operations,
    operations: subject.operations,
    seconds: subject.milliseconds / 1000,
  };
}
