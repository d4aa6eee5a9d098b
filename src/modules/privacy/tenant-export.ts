import type { AccessService } from '../access/service.ts';
import type { AuditService } from '../audit/service.ts';
import type { UsersService } from '../identity/service.ts';
import type { RecordsService } from '../records/service.ts';
import type { TenancyService } from '../tenancy/service.ts';

export interface TenantExportSources {
  tenancy: Pick<TenancyService, 'get'>;
  users: Pick<UsersService, 'list'>;
  access: Pick<AccessService, 'listRoles' | 'userRoles'>;
  records: Pick<RecordsService, 'exportAll'>;
  audit: Pick<AuditService, 'export'>;
}

export const tenantExportFormat = 'bulwark-tenant-export/v1';

/**
 * Everything the tenant holds in Bulwark, decrypted, as NDJSON lines: a header, then each user (with their
 * roles), each role, each record and each audit event. Streamed page by page, so a large tenant costs
 * constant memory; the stream is the archive (nothing is written to storage, so it lands nowhere but
 * with the caller). Secrets are write-only and stay out: their metadata is at /secrets.
 */
export async function* tenantExportLines(sources: TenantExportSources, tenantId: string, exportedAt: Date): AsyncGenerator<string> {
  const line = (type: string, value: unknown) => `${JSON.stringify({ type, ...(value as object) })}\n`;
  const tenant = await sources.tenancy.get(tenantId);
  yield line('header', { format: tenantExportFormat, tenantId, exportedAt: exportedAt.toISOString(), tenant });
  let cursor: string | undefined;
  do {
    const page = await sources.users.list(tenantId, { limit: 200, cursor });
    const lines: string[] = [];
    for (const user of page.items) lines.push(line('user', { ...user, roles: (await sources.access.userRoles(tenantId, user.id)).roles }));
    yield lines.join('');
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  yield (await sources.access.listRoles(tenantId)).map((role) => line('role', role)).join('');
  for await (const records of sources.records.exportAll(tenantId)) yield records.map((record) => line('record', record)).join('');
  for await (const events of sources.audit.export({ tenantId }, {})) yield events.map((event) => line('audit-event', event)).join('');
}
