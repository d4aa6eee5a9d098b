import { Type } from 'typebox';
import type { Database } from '../../platform/db/database.ts';
import type { RootKeyProvider } from '../keys/root/provider.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';

const tags = ['health'];
const probeTimeoutMs = 2_000;

/** Redis, when it holds the rate-limit buckets: required for readiness only when limits fail closed without it. */
export interface RateLimitStoreProbe {
  ping(): Promise<void>;
  required: boolean;
}

/** The NATS bus, when the app runs on one: its connection must be up for the instance to be ready. */
export interface BusProbe {
  ping(): Promise<void>;
}

export const healthRoutes: RoutePlugin<{ db: Database; rootKeys: RootKeyProvider; rateLimitStore: RateLimitStoreProbe | undefined; bus: BusProbe | undefined }> = async (
  app,
  { db, rootKeys, rateLimitStore, bus },
) => {
  app.get(
    '/healthz',
    {
      // Probes are never rate limited: a throttled probe would take a healthy instance out of rotation.
      config: { auth: 'public', rateLimit: 'exempt' },
      schema: { tags, summary: 'Liveness', description: 'The process is up and serving HTTP.', response: { 200: Type.Object({ status: Type.Literal('ok') }) } },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { auth: 'public', rateLimit: 'exempt' },
      schema: {
        tags,
        summary: 'Readiness',
        description:
          'Ready when the database and the root key provider answer, and with NATS configured (`bus` in `checks`) when the NATS connection is up. With Redis configured, `rateLimitStore` reports it; it decides readiness only when `BULWARK_RATE_LIMIT_REDIS_FAILURE=closed`. 503 otherwise.',
        response: {
          200: Type.Object({
            status: Type.Literal('ready'),
            checks: Type.Object({
              database: Type.Literal('ok'),
              rootKey: Type.Literal('ok'),
              bus: Type.Optional(Type.Literal('ok')),
              rateLimitStore: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('unavailable')])),
            }),
          }),
        },
      },
    },
    async () => {
      const outcome = (probe: PromiseSettledResult<unknown>) => (probe.status === 'fulfilled' ? ('ok' as const) : ('unavailable' as const));
      const [database, rootKey, store, busPing] = await Promise.allSettled([
        withTimeout(db.ping(), probeTimeoutMs),
        withTimeout(rootKeys.ping(), probeTimeoutMs),
        rateLimitStore === undefined ? Promise.resolve() : withTimeout(rateLimitStore.ping(), probeTimeoutMs),
        bus === undefined ? Promise.resolve() : withTimeout(bus.ping(), probeTimeoutMs),
      ]);
      const checks = {
        database: outcome(database),
        rootKey: outcome(rootKey),
        ...(bus === undefined ? {} : { bus: outcome(busPing) }),
        ...(rateLimitStore === undefined ? {} : { rateLimitStore: outcome(store) }),
      };
      if (
        checks.database !== 'ok' ||
        checks.rootKey !== 'ok' ||
        (bus !== undefined && checks.bus !== 'ok') ||
        (rateLimitStore?.required === true && checks.rateLimitStore !== 'ok')
      ) {
        throw new BulwarkError('service_unavailable', { detail: `readiness: ${JSON.stringify(checks)}`, extensions: { checks } });
      }
      const ready = { database: 'ok' as const, rootKey: 'ok' as const, ...(bus === undefined ? {} : { bus: 'ok' as const }) };
      return { status: 'ready' as const, checks: { ...ready, ...(checks.rateLimitStore === undefined ? {} : { rateLimitStore: checks.rateLimitStore }) } };
    },
  );
};

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
