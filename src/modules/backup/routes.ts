import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import type { RestoreReport } from './restore.ts';
import { backupList, backupParams, backupSummary, restoreBody, restoreReport, verifyReport } from './schemas.ts';
import type { BackupService } from './service.ts';

const tags = ['backups'];

/** Restores into an embedded database folder under the data folder (the route's only kind of target). */
export type FolderRestore = (backupId: string, target: string, force: boolean) => Promise<RestoreReport & { target: string; location: string }>;

/** Backups: platform-operator routes. Scheduling and retention run in the background (BULWARK_BACKUP_*). */
export const backupRoutes: RoutePlugin<{ backups: BackupService; restoreToFolder: FolderRestore }> = async (app, { backups, restoreToFolder }) => {
  app.post(
    '/v1/backups',
    {
      config: { auth: 'operator', permission: 'platform:backups:write' },
      schema: {
        tags,
        summary: 'Take a backup now',
        description:
          "A consistent snapshot of the whole database, compressed and encrypted: one segment per tenant sealed with that tenant's escrowed backup key and stored in its region, one platform segment sealed with the backup's own key (wrapped by the root key). Retention applies to it like to scheduled ones.",
        response: { 201: backupSummary },
      },
    },
    async (_request, reply) => reply.code(201).send(await backups.create('on-demand')),
  );

  app.get(
    '/v1/backups',
    {
      config: { auth: 'operator', permission: 'platform:backups:read' },
      schema: { tags, summary: 'List backups', description: 'Every backup whose manifest is in the first region’s storage, newest first.', response: { 200: backupList } },
    },
    async () => ({ items: await backups.list(), locations: backups.locations() }),
  );

  app.get(
    '/v1/backups/:backupId',
    {
      config: { auth: 'operator', permission: 'platform:backups:read' },
      schema: { tags, summary: 'Get a backup', params: backupParams, response: { 200: backupSummary } },
    },
    async (request) => backups.get(request.params.backupId),
  );

  app.post(
    '/v1/backups/:backupId/verify',
    {
      config: { auth: 'operator', permission: 'platform:backups:read' },
      schema: {
        tags,
        summary: 'Verify a backup',
        description:
          "Checks the manifest's MAC, then every segment: present, SHA-256 as recorded, decrypts, row count as recorded. Nothing decrypted leaves the server. A tenant offboarded since shows `shredded`. Audited as `backup.verify`.",
        params: backupParams,
        response: { 200: verifyReport },
      },
    },
    async (request) => backups.verify(request.params.backupId),
  );

  app.post(
    '/v1/backups/:backupId/restore',
    {
      config: { auth: 'operator', permission: 'platform:backups:restore' },
      schema: {
        tags,
        summary: 'Restore a backup into a fresh embedded database',
        description:
          'Verifies the backup, then restores it into a new embedded database (`<BULWARK_DATA_DIR>/restores/<target>/pglite`, a data folder a second server can be started on), migrated to this release. A folder that already holds a Bulwark database is refused (409 restore_target_not_empty) unless `force`. The running database is never touched. Audited as `backup.restore`.',
        params: backupParams,
        body: restoreBody,
        response: { 200: restoreReport },
      },
    },
    async (request) => restoreToFolder(request.params.backupId, request.body.target, request.body.force ?? false),
  );
};
