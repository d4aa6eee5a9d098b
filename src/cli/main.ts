import { ConfigError } from '../platform/config/config.ts';
import { runMigrate } from './commands/migrate.ts';
import { runServe } from './commands/serve.ts';

const usage = `Usage: bulwark <command>

Commands:
  serve     Migrate the database and run the API server (what \`npm start\` does)
  migrate   Apply pending database migrations and exit

Configuration comes from BULWARK_* environment variables; see docs/configuration.md.`;

const commands: Record<string, () => Promise<number | undefined>> = { serve: runServe, migrate: runMigrate };

const [name] = process.argv.slice(2);
const command = name === undefined ? undefined : commands[name];
if (command === undefined) {
  process.stderr.write(`${name === undefined || name === 'help' || name === '--help' ? '' : `Unknown command: ${name}\n\n`}${usage}\n`);
  process.exitCode = name === 'help' || name === '--help' ? 0 : 2;
} else {
  try {
    const code = await command();
    if (code !== undefined) process.exitCode = code;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 78; // EX_CONFIG
    } else {
      process.stderr.write(`bulwark ${name ?? ''} failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    }
  }
}
