import { loadConfig } from '../../platform/config/config.ts';
import { startServer } from '../../server/server.ts';

/** `bulwark serve`: run until SIGTERM or SIGINT, then drain in-flight requests and close the pool. */
export async function runServe(): Promise<undefined> {
  const config = loadConfig();
  const server = await startServer(config, { banner: (text) => process.stderr.write(text) });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    server.app.log.info({ signal }, 'shutting down');
    server.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        server.app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return undefined;
}
