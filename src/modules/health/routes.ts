import { Type } from 'typebox';
import type { Database } from '../../platform/db/database.ts';
import type { RootKeyProvider } from '../keys/root/provider.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';

const tags = ['health'];
const probeTimeoutMs = 2_000;

export const healthRoutes: RoutePlugin<{ db: Database; rootKeys: RootKeyProvider }> = async (app, { db, rootKeys }) => {
  app.get(
    '/healthz',
    {
      config: { auth: 'public' },
      schema: { tags, summary: 'Liveness', description: 'The process is up and serving HTTP.', response: { 200: Type.Object({ status: Type.Literal('ok') }) } },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Readiness',
        description: 'Ready when the database and the root key provider answer (the bus joins when its module lands). 503 otherwise.',
        response: {
          200: Type.Object({ status: Type.Literal('ready'), checks: Type.Object({ database: Type.Literal('ok'), rootKey: Type.Literal('ok') }) }),
        },
      },
    },
    async () => {
      const [database, rootKey] = await Promise.allSettled([withTimeout(db.ping(), probeTimeoutMs), withTimeout(rootKeys.ping(), probeTimeoutMs)]);
      if (database.status === 'rejected' || rootKey.status === 'rejected') {
        const checks = { database: database.status === 'fulfilled' ? 'ok' : 'unavailable', rootKey: rootKey.status === 'fulfilled' ? 'ok' : 'unavailable' };
        throw new BulwarkError('service_unavailable', { detail: `readiness: ${JSON.stringify(checks)}`, extensions: { checks } });
      }
      return { status: 'ready' as const, checks: { database: 'ok' as const, rootKey: 'ok' as const } };
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
