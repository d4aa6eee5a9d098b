import type { FastifyInstance, FastifyPluginAsync, FastifyPluginOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

/** A module's routes: a Fastify plugin whose handler types come from its TypeBox schemas. */
export type RoutePlugin<Options extends FastifyPluginOptions> = FastifyPluginAsync<Options, FastifyInstance['server'], TypeBoxTypeProvider>;
