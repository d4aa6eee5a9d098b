import { ConfigError } from '../platform/config/config.ts';
import { runAgent } from './commands/agent.ts';
import { runAudit } from './commands/audit.ts';
import { runBackup } from './commands/backup.ts';
import { runKeys } from './commands/keys.ts';
import { runMigrate } from './commands/migrate.ts';
import { runServe } from './commands/serve.ts';
import { runService } from './commands/service.ts';

const usage = `Usage: bulwark <command> [options]

Commands:
  serve     Migrate the database and run the API server (what \`npm start\` does)
  migrate   Apply pending database migrations and exit
  keys      Key operations: rotate-root, rotate --tenant <id>, status [--json]
            (\`bulwark keys --help\` for details)
  audit     Verify the audit hash chains: verify [--tenant <id>] [--json]
            (\`bulwark audit --help\` for details)
  backup    Backups: create, list, verify <id>, restore <id> --to <target> [--force], prune
            (\`bulwark backup --help\` for details)
  service   A reading service's key pair: keygen [--out DIR] (\`bulwark service --help\`)
  agent     The agent program: pair --server URL --code CODE, then run (\`bulwark agent --help\`)

Configuration comes from BULWARK_* environment variables; see docs/configuration.md and docs/cli.md.
With the embedded PGlite database (no BULWARK_DATABASE_URL) only one process may open the data folder:
stop \`bulwark serve\` before running \`migrate\`, \`keys\` or \`audit\`. With PostgreSQL they can run alongside it.`;

const commands: Record<string, (args: string[]) => Promise<number | undefined>> = { serve: runServe, migrate: runMigrate, keys: runKeys, audit: runAudit, backup: runBackup, service: runService, agent: runAgent };

const [name, ...args] = process.argv.slice(2);
const command = name === undefined || !Object.hasOwn(commands, name) ? undefined : commands[name];
if (command === undefined) {
  process.stderr.write(`${name === undefined || name === 'help' || name === '--help' ? '' : `Unknown command: ${name}\n\n`}${usage}\n`);
  process.exitCode = name === 'help' || name === '--help' ? 0 : 2;
} else {
  try {
    const code = await command(args);
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
