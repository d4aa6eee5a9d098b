/**
 * The authentication benchmark's server processes (bench/auth-bulwark-server.ts, bench/auth-better-auth-server.ts)
 * and what they tell the orchestrator (bench/auth.ts). Like bench/child.ts, but a server reports the request
 * to load (a path and the credential headers) instead of a seeded record; `stop` and `cpu` are the same
 * messages (bench/protocol.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { DatabaseUrls, Engine, ParentMessage } from './protocol.ts';

export type AuthServerName = 'bulwark' | 'better-auth';

export interface AuthBulwarkSpec {
  engine: Engine;
  /** PostgreSQL only: Bulwark migrates as the owner and serves as the login, like a production deployment. */
  database?: DatabaseUrls;
  poolMax: number;
}

export interface AuthBetterAuthSpec {
  /** Better Auth's own throwaway PostgreSQL database; it creates its tables there on start. */
  databaseUrl: string;
  poolMax: number;
}

/** The authenticated request to load, and what a correct answer names. */
export interface AuthTarget {
  path: string;
  headers: Record<string, string>;
  /** The user's e-mail address: the answer to the request must contain it. */
  email: string;
}

export type AuthChildMessage =
  | { type: 'ready'; port: number; target: AuthTarget }
  | { type: 'failed'; error: string }
  /** The server process's CPU time so far (user + system), in microseconds. */
  | { type: 'cpu'; micros: number };

export interface AuthServed {
  app: FastifyInstance;
  target: AuthTarget;
  /** Releases the database after the HTTP server has closed. */
  close: () => Promise<void>;
}

/** The JSON spec the orchestrator passes as the only argument. */
export function authSpecArgument(): unknown {
  const raw = process.argv[2];
  if (raw === undefined) throw new Error('usage: node bench/auth-<server>.ts <json spec>');
  return JSON.parse(raw);
}

function send(message: AuthChildMessage): void {
  if (process.send) process.send(message);
  // Run by hand (no IPC channel): say where to point a load generator.
  else console.log(JSON.stringify(message));
}

/** Listens on a free loopback port, reports it, and shuts down cleanly on `stop` or when the orchestrator goes away. */
export function runAuthChild(start: () => Promise<AuthServed>): void {
  start()
    .then(async ({ app, target, close }) => {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
      let stopping = false;
      const stop = async () => {
        if (stopping) return;
        stopping = true;
        await app.close();
        await close();
        process.exit(0);
      };
      process.on('message', (message: unknown) => {
        const type = (message as Partial<ParentMessage> | null)?.type;
        if (type === 'stop') void stop();
        if (type === 'cpu') {
          const { user, system } = process.cpuUsage();
          send({ type: 'cpu', micros: user + system });
        }
      });
      process.on('disconnect', () => void stop());
      process.on('SIGINT', () => void stop());
      send({ type: 'ready', port: address.port, target });
    })
    .catch((error: unknown) => {
      send({ type: 'failed', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      process.exit(1);
    });
}
