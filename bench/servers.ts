/**
 * The orchestrator's side of the server processes (bench/child.ts is theirs), for the record bench
 * (bench/run.ts) and the authentication bench (bench/auth.ts): forking a server and waiting for it to be
 * ready, asking its CPU time, stopping it; and loading the servers over HTTP with autocannon, one at a time,
 * in alternating rounds.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { errorText, median, rotated, sum } from './common.ts';
import type { ChildMessage, ParentMessage } from './protocol.ts';

const benchDir = import.meta.dirname;

/** A server process that said it is ready: its port, what it reported (`Report`), its CPU time, its stop. */
export type RunningServer<Report extends object> = Report & {
  port: number;
  /** CPU time the server process has used so far, in microseconds. */
  cpuMicros(): Promise<number>;
  stop(): Promise<void>;
};

/**
 * Forks `script` (in bench/) with `spec` as its argument and waits for its `ready`; until it is stopped, its
 * stop is registered in `pendingCleanups` (Ctrl-C).
 */
export function startServer<Report extends object>(
  script: string,
  spec: object,
  options: { execArgv: string[]; pendingCleanups: Set<() => Promise<void>> },
): Promise<RunningServer<Report>> {
  const { pendingCleanups } = options;
  const child = fork(join(benchDir, script), [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: options.execArgv });
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
      const message = raw as ChildMessage<Report>;
      if (message.type !== 'ready') {
        fail(new Error(`${script}: ${message.type === 'failed' ? message.error : 'unexpected message before ready'}`));
        return;
      }
      clearTimeout(timer);
      child.off('exit', onExit);
      resolvePromise({
        ...message,
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

/** A running server under load; its rounds are summed into one measurement. */
export interface LoadTarget<Report extends object> {
  server: RunningServer<Report>;
  url: string;
  headers: Record<string, string>;
  rounds: autocannon.Result[];
  /** Server CPU time spent during the measured rounds, in microseconds. */
  cpuMicros: number;
  failure?: string;
}

/**
 * Starts a server and sends one request before the load: it must answer 200 with what `check` expects
 * (`check` throws otherwise), or the numbers would mean nothing. Either failing stops the server.
 */
export async function prepareTarget<Report extends object>(
  start: () => Promise<RunningServer<Report>>,
  request: (server: RunningServer<Report>) => { url: string; headers: Record<string, string> },
  check: (server: RunningServer<Report>, body: unknown, text: string) => void,
): Promise<{ target: LoadTarget<Report> } | { failure: string }> {
  let server: RunningServer<Report> | undefined;
  try {
    server = await start();
    const { url, headers } = request(server);
    const response = await fetch(url, { headers });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`expected 200, got ${response.status}: ${text.slice(0, 300)}`);
    check(server, JSON.parse(text), text);
    return { target: { server, url, headers, rounds: [], cpuMicros: 0 } };
  } catch (error) {
    await server?.stop();
    return { failure: errorText(error) };
  }
}

async function loadInto(target: LoadTarget<object>, seconds: number, connections: number, keep: boolean): Promise<void> {
  if (target.failure !== undefined) return;
  try {
    const cpuBefore = await target.server.cpuMicros();
    const result = await autocannon({ url: target.url, headers: target.headers, connections, duration: seconds });
    const cpuAfter = await target.server.cpuMicros();
    if (result.non2xx > 0 || result.errors > 0 || result['2xx'] === 0) {
      target.failure = `${result.non2xx} non-2xx responses, ${result.errors} errors (${result.timeouts} timeouts), ${result['2xx']} 2xx`;
    }
    if (keep) {
      target.rounds.push(result);
      target.cpuMicros += cpuAfter - cpuBefore;
    }
  } catch (error) {
    target.failure = errorText(error);
  }
}

export interface LoadTiming {
  warmupSeconds: number;
  /** Measured seconds per target, split into `rounds`. */
  seconds: number;
  rounds: number;
  connections: number;
}

/**
 * A warm-up, then the measured rounds: all servers stay up and the load alternates between them (in a
 * rotating order), so a burst of background load on a shared machine hits every target alike. Only one
 * server is under load at a time.
 */
export async function loadInRounds(targets: readonly LoadTarget<object>[], timing: LoadTiming): Promise<void> {
  process.stdout.write(', warming up');
  for (const target of targets) await loadInto(target, timing.warmupSeconds, timing.connections, false);
  const roundSeconds = timing.seconds / timing.rounds;
  for (let round = 0; round < timing.rounds; round += 1) {
    process.stdout.write(`, round ${round + 1}/${timing.rounds}`);
    for (const target of rotated(targets, round)) await loadInto(target, roundSeconds, timing.connections, true);
  }
}

export interface LoadStats {
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
}

export function loadStats(target: LoadTarget<object>): LoadStats {
  const { rounds } = target;
  const responses2xx = sum(rounds.map((round) => round['2xx']));
  const seconds = sum(rounds.map((round) => round.duration));
  return {
    // Successful responses over measured time: errors and non-2xx never count as throughput.
    requestsPerSecond: seconds > 0 ? responses2xx / seconds : 0,
    roundsRequestsPerSecond: rounds.map((round) => (round.duration > 0 ? round['2xx'] / round.duration : 0)),
    serverCpuMicrosPerRequest: responses2xx > 0 ? target.cpuMicros / responses2xx : 0,
    latencyP50Ms: median(rounds.map((round) => round.latency.p50)),
    latencyP99Ms: median(rounds.map((round) => round.latency.p99)),
    responses2xx,
    non2xx: sum(rounds.map((round) => round.non2xx)),
    errors: sum(rounds.map((round) => round.errors)),
  };
}

/** The numbers of a target that never ran. */
export function noLoadStats(): LoadStats {
  return { requestsPerSecond: 0, roundsRequestsPerSecond: [], serverCpuMicrosPerRequest: 0, latencyP50Ms: 0, latencyP99Ms: 0, responses2xx: 0, non2xx: 0, errors: 0 };
}
