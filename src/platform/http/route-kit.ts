import type { FastifyInstance, FastifyPluginAsync, FastifyPluginOptions } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

/** A module's routes: a Fastify plugin whose handler types come from its TypeBox schemas. */
export type RoutePlugin<Options extends FastifyPluginOptions> = FastifyPluginAsync<Options, FastifyInstance['server'], TypeBoxTypeProvider>;

/**
 * Any JSON object, every member kept. `Type.Record(Type.String(), …)` would compile to the pattern `^.*$`,
 * which no key with a line break matches: the response serializer would drop such members silently.
 */
export function anyJsonObject(options: { description?: string } = {}) {
  return Type.Unsafe<Record<string, unknown>>({ type: 'object', additionalProperties: true, ...options });
}
