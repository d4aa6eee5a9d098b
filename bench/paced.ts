/**
 * Open-loop load for the noisy-neighbour bench: one request every 1/rate seconds, each sent at its time
 * whether or not the earlier ones answered (a closed loop would slow down with the server and hide its
 * queueing), each timed on its own.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

export interface PacedTarget {
  port: number;
  path: string;
  apiKey: string;
}

export interface PacedResult {
  /** Milliseconds, of the requests answered 200. */
  latencies: number[];
  statuses: Record<number, number>;
  errors: number;
  seconds: number;
}

export async function paced(target: PacedTarget, rate: number, seconds: number, maxSockets: number): Promise<PacedResult> {
  const agent = new Agent({ keepAlive: true, maxSockets });
  const result: PacedResult = { latencies: [], statuses: {}, errors: 0, seconds };
  const headers = { authorization: `Bearer ${target.apiKey}` };
  const one = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const outgoing = request({ host: '127.0.0.1', port: target.port, path: target.path, agent, headers }, (response) => {
        response.resume();
        response.once('end', () => {
          const status = response.statusCode ?? 0;
          result.statuses[status] = (result.statuses[status] ?? 0) + 1;
          if (status === 200) result.latencies.push(performance.now() - started);
          resolve();
        });
      });
      outgoing.once('error', () => {
        result.errors += 1;
        resolve();
      });
      outgoing.end();
    });
  const interval = 1000 / rate;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  try {
    for (let index = 0; index * interval < seconds * 1000; index += 1) {
      const wait = start + index * interval - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      pending.push(one());
    }
    await Promise.all(pending);
  } finally {
    agent.destroy();
  }
  return result;
}
