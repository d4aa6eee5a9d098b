import { Type } from 'typebox';
import type { Database } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';

const tags = ['health'];
const probeTimeoutMs = 2_000;

export const healthRoutes: RoutePlugin<{ db: Database }> = async (app, { db }) => {
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
        description: 'Ready when the database answers (the bus and key provider join as their modules land). 503 otherwise.',
        response: { 200: Type.Object({ status: Type.Literal('ready'), checks: Type.Object({ database: Type.Literal('ok') }) }) },
      },
    },
    async () => {
      try {
        await withTimeout(db.ping(), probeTimeoutMs);
      } catch (error) {
        throw new BulwarkError('service_unavailable', { cause: error, detail: 'readiness: database', extensions: { checks: { database: 'unavailable' } } });
      }
      return { status: 'ready' as const, checks: { database: 'ok' as const } };
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
