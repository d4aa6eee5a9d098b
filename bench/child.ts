/**
 * The server process's side of bench/servers.ts, for every server the benches fork: the record bench's
 * (bench/bulwark-server.ts, bench/baseline-server.ts) and the authentication bench's
 * (bench/auth-bulwark-server.ts, bench/auth-better-auth-server.ts). Messages in bench/protocol.ts.
 */
import type { FastifyInstance } from 'fastify';
import type { ChildMessage, ParentMessage } from './protocol.ts';

export interface Served<Report extends object> {
  app: FastifyInstance;
  /** Sent with `ready`: the record bench's `{ seed }`, the authentication bench's `{ target }`. */
  report: Report;
  /** Releases the database after the HTTP server has closed. */
  close: () => Promise<void>;
}

/** The JSON spec the orchestrator passes as the only argument. */
export function specArgument(): unknown {
  const raw = process.argv[2];
  if (raw === undefined) throw new Error('usage: node bench/<server>.ts <json spec>');
  return JSON.parse(raw);
}

function send(message: ChildMessage): void {
  if (process.send) process.send(message);
  // Run by hand (no IPC channel, e.g. for profiling): say where to point a load generator.
  else console.log(JSON.stringify(message));
}

/**
 * Starts a server process: listens on a free loopback port, reports it, and shuts down cleanly on
 * `stop` or when the orchestrator goes away (a clean exit also lets --cpu-prof write its profile).
 */
export function runChild<Report extends object>(start: () => Promise<Served<Report>>): void {
  start()
    .then(async ({ app, report, close }) => {
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
      send({ type: 'ready', port: address.port, ...report });
    })
    .catch((error: unknown) => {
      send({ type: 'failed', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      process.exit(1);
    });
}
