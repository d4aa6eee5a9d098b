import { parseArgs } from 'node:util';
import type { BackupSummary, VerifyReport } from '../../modules/backup/service.ts';
import { openRestoreTarget } from '../../modules/backup/restore.ts';
import { loadConfig } from '../../platform/config/config.ts';
import { postgresTlsOf } from '../../platform/db/open.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { isId } from '../../platform/ids.ts';
import { openStorage, writeJson } from '../storage.ts';
import { UsageError, withUsage } from '../usage.ts';

export const backupUsage = `Usage: bulwark backup <subcommand> [options]

Subcommands:
  create                    Take a backup now (encrypted; each tenant's segment in its region's storage)
  list                      List backups, newest first
  verify <id>               Decrypt every segment and check its checksum and row count
  restore <id> --to <target> [--force]
                            Restore into a fresh database: a PostgreSQL URL (as the schema owner) or an
                            embedded database folder. A target that already holds a Bulwark database is
                            refused unless --force, which drops its Bulwark tables first.
  prune                     Apply the retention policy now (BULWARK_BACKUP_KEEP_*), audited

Options:
  --json                    Print the result as JSON
  -h, --help                Show this help

Exit codes: 0 done (verify: the backup verifies), 3 verify found a problem, 1 failed, 2 usage error,
78 bad configuration. With the embedded PGlite database, stop \`bulwark serve\` first (one process per data folder).`;

type Invocation =
  | { name: 'create' | 'list' | 'prune'; json: boolean }
  | { name: 'verify'; json: boolean; id: string }
  | { name: 'restore'; json: boolean; id: string; to: string; force: boolean };

/** `bulwark backup`: the operator's backup tools, straight on the configured database and storage. */
export async function runBackup(args: string[]): Promise<number> {
  return withUsage(args, backupUsage, parseInvocation, run);
}

async function run(invocation: Invocation): Promise<number> {
  const config = loadConfig();
  const storage = await openStorage(config);
  const { backups } = storage.services;
  const print = (value: unknown, text: string) => {
    if (invocation.json) writeJson(value);
    else process.stdout.write(`${text}\n`);
  };
  try {
    switch (invocation.name) {
      case 'create': {
        const backup = await backups.create('on-demand');
        print(backup, `backup ${backup.id} taken: ${describe(backup)}`);
        return 0;
      }
      case 'list': {
        const items = await backups.list();
        print({ items, locations: backups.locations() }, items.length === 0 ? 'no backups' : items.map((backup) => `${backup.id}  ${describe(backup)}`).join('\n'));
        return 0;
      }
      case 'prune': {
        const { pruned, kept } = await backups.prune();
        print({ pruned, kept }, `pruned ${pruned.length} backup(s)${pruned.length > 0 ? `: ${pruned.join(', ')}` : ''}; ${kept} kept`);
        return 0;
      }
      case 'verify': {
        const report = await backups.verify(invocation.id);
        print(report, describeVerify(report));
        return report.ok ? 0 : 3;
      }
      case 'restore': {
        const { to } = invocation;
        const report = await backups.restore(invocation.id, () => openRestoreTarget(to, { appRole: config.databaseAppRole, tls: postgresTlsOf(config) }), { appRole: config.databaseAppRole, force: invocation.force });
        const shredded = report.tenantsShredded.length > 0 ? `; ${report.tenantsShredded.length} offboarded tenant(s) left out: ${report.tenantsShredded.join(', ')}` : '';
        print(report, `restored ${invocation.id} into ${report.location}: ${report.rows} row(s) in ${report.tables} table(s), ${report.tenantsRestored} tenant(s)${shredded}`);
        return 0;
      }
    }
  } catch (error) {
    if (!(error instanceof BulwarkError)) throw error;
    process.stderr.write(`bulwark backup ${invocation.name} failed: ${error.message}${error.detail === undefined ? '' : ` (${error.detail})`} [${error.code}]\n`);
    return 1;
  } finally {
    await storage.close();
  }
}

function describe(backup: BackupSummary): string {
  return `${backup.createdAt} ${backup.kind}, ${backup.tenants} tenant(s), ${backup.rows} row(s), ${backup.bytes} bytes, regions ${backup.regions.join(', ')}`;
}

function describeVerify(report: VerifyReport): string {
  const lines = [`backup ${report.id}: ${report.ok ? 'ok' : 'FAILED'} (manifest ${report.manifest})`];
  for (const segment of report.segments) lines.push(`  ${segment.name} [${segment.region}]: ${segment.status}`);
  return lines.join('\n');
}

function parseInvocation(args: string[]): Invocation | 'help' {
  const [name, ...rest] = args;
  if (name === undefined) throw new UsageError('Missing backup subcommand.');
  if (name === '--help' || name === '-h' || name === 'help') return 'help';
  let parsed: { values: { json?: boolean; help?: boolean; to?: string; force?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: rest,
      options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, to: { type: 'string' }, force: { type: 'boolean' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) throw new UsageError(`bulwark backup ${name}: ${error.message}`);
    throw error;
  }
  const { values, positionals } = parsed;
  if (values.help === true) return 'help';
  const json = values.json === true;
  const takesId = name === 'verify' || name === 'restore';
  if (!['create', 'list', 'prune', 'verify', 'restore'].includes(name)) throw new UsageError(`Unknown backup subcommand: ${name}`);
  if (positionals.length !== (takesId ? 1 : 0)) throw new UsageError(takesId ? `bulwark backup ${name} takes one backup id.` : `bulwark backup ${name} takes no arguments.`);
  if (name !== 'restore' && (values.to !== undefined || values.force !== undefined)) throw new UsageError(`bulwark backup ${name}: --to and --force belong to restore.`);
  if (!takesId) return { name: name as 'create' | 'list' | 'prune', json };
  const id = positionals[0] ?? '';
  if (!isId(id)) throw new UsageError(`bulwark backup ${name}: the backup id must be 12 lowercase hex characters.`);
  if (name === 'verify') return { name, json, id };
  if (values.to === undefined || values.to === '') throw new UsageError('bulwark backup restore needs --to <postgres URL or folder>.');
  return { name: 'restore', json, id, to: values.to, force: values.force === true };
}
