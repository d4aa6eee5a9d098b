import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Redis } from 'ioredis';
import type { Clock } from '../../platform/clock.ts';
import type { Config } from '../../platform/config/config.ts';
import type { RateLimitStoreProbe } from '../health/routes.ts';
import { RateLimiter } from './rate-limiter.ts';
import { MemoryRateStore, RedisRateStore } from './rate-store.ts';

export interface OpenedRateLimiter {
  limiter: RateLimiter;
  /** Redis for readiness, when it holds the buckets. */
  probe: RateLimitStoreProbe | undefined;
}

const memoryMaxKeys = 200_000;
const logEveryMs = 10_000;

/**
 * The rate limiter of the configuration: buckets in Redis when `BULWARK_REDIS_URL` is set (with this
 * process's memory as the `local` fallback), else in memory. The Redis client fails fast instead of
 * queueing: no offline queue, no retries per command, a command timeout; it reconnects in the background.
 */
export async function openRateLimiter(
  config: Pick<Config, 'redisUrl' | 'redisTimeoutMs' | 'rateLimitRedisFailure' | 'redisTlsCaFile' | 'redisTlsCertFile' | 'redisTlsKeyFile'>,
  clock: Clock,
  report: { warn(message: string, error?: unknown): void; storeError(): void; degradedDecision(mode: string): void },
): Promise<OpenedRateLimiter> {
  const memory = new MemoryRateStore(clock, { maxKeys: memoryMaxKeys });
  const options = {
    failureMode: config.rateLimitRedisFailure,
    retryStoreAfterMs: 1_000,
    onStoreError: throttled(clock, (error: unknown) => report.warn('rate-limit store (Redis) failed; limiting by BULWARK_RATE_LIMIT_REDIS_FAILURE', error), () => report.storeError()),
    onDegradedDecision: (mode: string) => report.degradedDecision(mode),
  };
  if (config.redisUrl === undefined) return { limiter: new RateLimiter(memory, memory, clock, options), probe: undefined };

  const redis = new Redis(config.redisUrl, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: config.redisTimeoutMs,
    connectTimeout: 2_000,
    retryStrategy: (attempt) => Math.min(attempt * 250, 2_000),
    ...redisTls(config),
  });
  // ioredis reports every failed (re)connection as an event; without a listener it would crash the process.
  const connectionError = throttled(clock, (error: unknown) => report.warn('Redis connection failed; retrying', error), () => undefined);
  redis.on('error', connectionError);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2_000);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return {
    limiter: new RateLimiter(new RedisRateStore(redis, { prefix: 'bulwark:rl:' }), memory, clock, options),
    probe: {
      ping: async () => {
        await redis.ping();
      },
      required: config.rateLimitRedisFailure === 'closed',
    },
  };
}

/**
 * TLS for a `rediss://` URL: the configured CA and client certificate, the certificate checked against the
 * URL's host (Node's check, which ioredis leaves on) and that name sent for SNI when it is not an address.
 */
function redisTls(config: Pick<Config, 'redisUrl' | 'redisTlsCaFile' | 'redisTlsCertFile' | 'redisTlsKeyFile'>): { tls?: ConnectionOptions } {
  if (config.redisUrl === undefined || !/^rediss:/i.test(config.redisUrl)) return {};
  const host = new URL(config.redisUrl).hostname.replace(/^\[(.+)\]$/, '$1');
  return {
    tls: {
      rejectUnauthorized: true,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ...(config.redisTlsCaFile === undefined ? {} : { ca: config.redisTlsCaFile.pem }),
      ...(config.redisTlsCertFile === undefined || config.redisTlsKeyFile === undefined ? {} : { cert: config.redisTlsCertFile.pem, key: config.redisTlsKeyFile.pem }),
    },
  };
}

/** `count` on every call, `log` at most every few seconds: a Redis outage must not flood the logs. */
function throttled(clock: Clock, log: (error: unknown) => void, count: () => void): (error: unknown) => void {
  let lastMs = -Infinity;
  return (error) => {
    count();
    const now = clock.now().getTime();
    if (now - lastMs < logEveryMs) return;
    lastMs = now;
    log(error);
  };
}
