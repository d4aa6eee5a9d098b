import type { AuditScope, VerifyReport } from '../../modules/audit/service.ts';
import { findTenant } from '../../modules/tenancy/store.ts';
import { loadConfig } from '../../platform/config/config.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { isId } from '../../platform/ids.ts';
import { allTenantIds, openStorage, writeJson } from '../storage.ts';
import { parseSubcommand, UsageError, withUsage } from '../usage.ts';

export const auditUsage = `Usage: bulwark audit verify [--tenant <id>] [--json]

Walks the audit hash chains straight in the database and checks every link, hash and signed checkpoint:
the platform's chain and every tenant's, or with --tenant only that tenant's. For each chain it prints
whether it holds and, when it does not, the first broken sequence number and why.

Options:
  --tenant <id>             Verify one tenant's chain only
  --json                    Print the reports as JSON
  -h, --help                Show this help

Exit codes: 0 every chain verifies, 3 a chain is broken, 1 failed, 2 usage error, 78 bad configuration.
With the embedded PGlite database, stop \`bulwark serve\` first (one process per data folder).`;

interface ChainReport extends VerifyReport {
  chain: string;
}

/** `bulwark audit verify`: an offline check of the tamper evidence, as an auditor would run it. */
export async function runAudit(args: string[]): Promise<number> {
  return withUsage(args, auditUsage, parseInvocation, verifyChains);
}

async function verifyChains({ tenantId, json }: { tenantId: string | undefined; json: boolean }): Promise<number> {
  const storage = await openStorage(loadConfig());
  try {
    const scopes: { chain: string; scope: AuditScope }[] = [];
    if (tenantId === undefined) {
      scopes.push({ chain: 'platform', scope: 'platform' });
      for (const id of await allTenantIds(storage.db)) scopes.push({ chain: `tenant ${id}`, scope: { tenantId: id } });
    } else {
      const tenant = await storage.db.withPlatform((tx) => findTenant(tx, tenantId));
      if (tenant === undefined) {
        process.stderr.write(`bulwark audit verify failed: tenant ${tenantId} does not exist. [not_found]\n`);
        return 1;
      }
      scopes.push({ chain: `tenant ${tenantId}`, scope: { tenantId } });
    }
    const reports: ChainReport[] = [];
    for (const { chain, scope } of scopes) reports.push({ chain, ...(await storage.services.audit.verify(scope)) });
    if (json) writeJson({ ok: reports.every((report) => report.ok), chains: reports });
    else for (const report of reports) process.stdout.write(`${describe(report)}\n`);
    return reports.every((report) => report.ok) ? 0 : 3;
  } catch (error) {
    if (!(error instanceof BulwarkError)) throw error;
    process.stderr.write(`bulwark audit verify failed: ${error.message}${error.detail === undefined ? '' : ` (${error.detail})`} [${error.code}]\n`);
    return 1;
  } finally {
    await storage.close();
  }
}

function describe(report: ChainReport): string {
  const counts = `${report.eventsChecked} event(s) checked, ${report.checkpointsChecked} checkpoint(s)${report.prunedThrough > 0 ? `, pruned through ${report.prunedThrough}` : ''}`;
  if (report.firstBreak === null) return `${report.chain}: ok (${counts})`;
  return `${report.chain}: BROKEN at sequence ${report.firstBreak.seq} (${report.firstBreak.reason}); ${counts}`;
}

function parseInvocation(args: string[]): { tenantId: string | undefined; json: boolean } | 'help' {
  const parsed = parseSubcommand('audit', ['verify'] as const, args);
  if (parsed === 'help') return 'help';
  if (parsed.tenant !== undefined && !isId(parsed.tenant)) throw new UsageError('bulwark audit verify: --tenant must be a tenant id (12 lowercase hex characters).');
  return { tenantId: parsed.tenant, json: parsed.json };
}
