import { type ChildProcess, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './ports.ts';

/**
 * The limits tests run against a real Redis: BULWARK_TEST_REDIS_URL (default: the local server). With
 * BULWARK_REQUIRE_SERVICES=1 (CI) an unreachable Redis fails the run instead of skipping. Tests that take
 * Redis down start a private `redis-server` on a free port instead, so the shared one stays up.
 */
export const testRedisUrl = process.env['BULWARK_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

async function pingable(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 10_000, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

const redisProblem = (await pingable(testRedisUrl)) ? undefined : `Redis unreachable at ${new URL(testRedisUrl).host}`;
if (redisProblem !== undefined && process.env['BULWARK_REQUIRE_SERVICES'] === '1') {
  throw new Error(`BULWARK_REQUIRE_SERVICES=1 but ${redisProblem}`);
}

/** `skip` option for node:test. */
export function redisSkip(): string | false {
  return redisProblem ?? false;
}

export interface PrivateRedis {
  url: string;
  /** Stops the server as a crash would (SIGKILL); `start` brings it back on the same port. */
  kill(): Promise<void>;
  start(): Promise<void>;
}

/** A `redis-server` of the test's own, in memory only, on a free loopback port. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const url = `redis://127.0.0.1:${port}`;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    for (let attempt = 0; ; attempt += 1) {
      if (await pingable(url)) return;
      if (attempt > 50) throw new Error(`redis-server on port ${port} did not come up`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const kill = async () => {
    const running = child;
    if (running === undefined || running.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGKILL');
    });
  };
  await start();
  return { url, kill, start };
}
