import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { movableClock } from '../../testing/clock.ts';
import { engineSkip, engines, postgresAdminUrl } from '../../testing/engines.ts';
import { startTestS3Server, type TestS3Server } from '../../testing/s3-server.ts';
import { newId } from '../../platform/ids.ts';
import { offboardedTenantName } from '../tenancy/store.ts';
import { openRestoreTarget, type RestoreTarget } from './restore.ts';
import type { BackupSummary, VerifyReport } from './service.ts';
import { selectRowsSql, tableLayout } from './snapshot.ts';

/**
 * Backups end to end on both engines: two regions (one a folder, one S3-compatible storage), tenants
 * in each, a backup whose parts land only in their regions, a restore that gives back every row, a flipped
 * byte that verify finds, retention on a simulated calendar, one backup per schedule slot, and a tenant
 * shredded out of every earlier backup.
 */
for (const engine of engines) {
  describe(`backups (${engine})`, { skip: engineSkip(engine) }, () => {
    const clock = movableClock();
    let s3: TestS3Server;
    let folder: string;
    let test: TestApp;
    let euTenant: { tenantId: string; apiKey: string };
    let usTenant: { tenantId: string; apiKey: string };
    const euMarker = `eu-marker-${newId()}`;
    const usMarker = `us-marker-${newId()}`;

    const operator = (method: 'GET' | 'POST', url: string, body?: unknown) => test.call({ method, url, token: test.operatorToken, body });

    before(async () => {
      s3 = await startTestS3Server();
      // The app's S3 store takes its credentials from the AWS SDK chain, as in production.
      process.env['AWS_ACCESS_KEY_ID'] = s3.accessKeyId;
      process.env['AWS_SECRET_ACCESS_KEY'] = s3.secretAccessKey;
      folder = mkdtempSync(join(tmpdir(), 'bulwark-backups-'));
      test = await createTestApp(engine, {
        clock,
        config: { regions: 'eu,us', backupTargets: `eu=file://${join(folder, 'eu')},us=${s3.target('us')}`, backupKeepDailyDays: '3', backupKeepWeeklyWeeks: '2' },
      });
      euTenant = await withRegion('eu');
      usTenant = await withRegion('us');
      for (const [target, marker] of [[euTenant, euMarker], [usTenant, usMarker]] as const) {
        for (let index = 0; index < 3; index += 1) {
          const put = await test.call({ method: 'PUT', url: `/v1/tenants/${target.tenantId}/collections/notes/records/${newId()}`, token: target.apiKey, body: { data: { note: `${marker} ${index}` } } });
          assert.equal(put.statusCode, 201, put.body);
        }
        const user = await test.call({ method: 'POST', url: `/v1/tenants/${target.tenantId}/users`, token: target.apiKey, body: { email: `${marker}@example.org`, firstName: marker } });
        assert.equal(user.statusCode, 201, user.body);
      }
    });

    /** A tenant in `region` with an all-permission API key (tenantWithKey makes tenants in the first region only). */
    async function withRegion(region: string): Promise<{ tenantId: string; apiKey: string }> {
      const email = `admin-${newId()}@example.org`;
      const password = 'a fine long passphrase 42';
      const created = await operator('POST', '/v1/tenants', { name: `Tenant in ${region}`, region, admin: { email, password } });
      assert.equal(created.statusCode, 201, created.body);
      const { id } = created.json<{ id: string }>();
      const login = await test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId: id, email, password } });
      assert.equal(login.statusCode, 200, login.body);
      const key = await test.call({ method: 'POST', url: `/v1/tenants/${id}/api-keys`, token: login.json<{ accessToken: string }>().accessToken, body: { name: 'backup test' } });
      assert.equal(key.statusCode, 201, key.body);
      return { tenantId: id, apiKey: key.json<{ key: string }>().key };
    }

    after(async () => {
      await test.close();
      await s3.close();
      delete process.env['AWS_ACCESS_KEY_ID'];
      delete process.env['AWS_SECRET_ACCESS_KEY'];
      rmSync(folder, { recursive: true, force: true });
    });

    /** Every table's rows as the owner reads them, in a stable order. */
    async function sourceRows(): Promise<Record<string, unknown[]>> {
      const layout = await tableLayout((sql) => test.storage.asOwner(sql) as never);
      const rows: Record<string, unknown[]> = {};
      for (const table of layout.ordered) rows[table] = (await test.storage.asOwner(selectRowsSql(table))).map((row) => row['row']);
      return rows;
    }

    async function targetRows(target: RestoreTarget): Promise<Record<string, unknown[]>> {
      const layout = await tableLayout((sql) => target.session.query(sql));
      const rows: Record<string, unknown[]> = {};
      for (const table of layout.ordered) rows[table] = (await target.session.query<{ row: unknown }>(selectRowsSql(table))).map((row) => row.row);
      return rows;
    }

    /** A fresh restore target of this engine: a new PostgreSQL database, or a new embedded folder. */
    async function freshTarget(): Promise<{ to: string; drop(): Promise<void> }> {
      if (engine === 'pglite') {
        const dir = mkdtempSync(join(tmpdir(), 'bulwark-restore-'));
        return { to: dir, drop: async () => rmSync(dir, { recursive: true, force: true }) };
      }
      const name = `bulwark_restore_${newId()}`;
      const admin = new pg.Client({ connectionString: postgresAdminUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      const url = new URL(postgresAdminUrl);
      url.pathname = `/${name}`;
      return {
        to: url.toString(),
        async drop() {
          const client = new pg.Client({ connectionString: postgresAdminUrl });
          await client.connect();
          await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          await client.end();
        },
      };
    }

    let first: BackupSummary;
    let snapshotRows: Record<string, unknown[]>;

    it('takes a backup whose parts land only in their regions, encrypted', async () => {
      snapshotRows = await sourceRows();
      const response = await operator('POST', '/v1/backups');
      assert.equal(response.statusCode, 201, response.body);
      first = response.json<BackupSummary>();
      assert.equal(first.kind, 'on-demand');
      assert.deepEqual(first.regions, ['eu', 'us']);
      const euObjects = listFiles(join(folder, 'eu'));
      const usObjects = [...s3.objects().keys()].map((key) => key.replace(/^us\//, ''));
      assert.ok(euObjects.includes(`backups/${first.id}/manifest.json`) && euObjects.includes(`backups/${first.id}/platform.bin`));
      assert.ok(euObjects.includes(`backups/${first.id}/tenants/${euTenant.tenantId}.bin`));
      assert.ok(usObjects.includes(`backups/${first.id}/tenants/${usTenant.tenantId}.bin`));
      // Residency: nothing of the US tenant's data or keys in the EU storage, and the reverse.
      assert.ok(!euObjects.some((object) => object.includes(`tenants/${usTenant.tenantId}`) || object.startsWith(`escrow/${usTenant.tenantId}/`)));
      assert.ok(!usObjects.some((object) => object.includes(`tenants/${euTenant.tenantId}`) || object.startsWith(`escrow/${euTenant.tenantId}/`)));
      assert.ok(euObjects.some((object) => object.startsWith(`escrow/${euTenant.tenantId}/`)));
      assert.ok(usObjects.some((object) => object.startsWith(`escrow/${usTenant.tenantId}/`)));
      // Compressed and sealed: no marker readable in any stored byte.
      for (const body of [...euObjects.map((object) => readFileSync(join(folder, 'eu', object))), ...s3.objects().values()]) {
        const text = body.toString('latin1');
        assert.ok(!text.includes(euMarker) && !text.includes(usMarker));
      }
      if (engine === 'postgres') return;
      for (const object of euObjects) assert.equal((statSync(join(folder, 'eu', object)).mode & 0o077), 0, `${object} is private to the owner`);
    });

    it('lists and reads backups; unknown or malformed ids and tenant credentials are refused', async () => {
      const list = await operator('GET', '/v1/backups');
      assert.equal(list.statusCode, 200);
      const { items, locations } = list.json<{ items: BackupSummary[]; locations: Record<string, string> }>();
      assert.deepEqual(items.map((item) => item.id), [first.id]);
      assert.match(locations['us'] ?? '', /^s3:\/\//);
      assert.doesNotMatch(JSON.stringify(locations), new RegExp(s3.secretAccessKey));
      assert.equal((await operator('GET', `/v1/backups/${first.id}`)).json<BackupSummary>().id, first.id);
      assert.equal((await operator('GET', `/v1/backups/${newId()}`)).json<{ code: string }>().code, 'not_found');
      assert.equal((await operator('GET', '/v1/backups/NOT-AN-ID')).statusCode, 400);
      const tenantCall = await test.call({ method: 'POST', url: '/v1/backups', token: euTenant.apiKey });
      assert.ok([401, 403].includes(tenantCall.statusCode), tenantCall.body);
      assert.equal((await operator('POST', `/v1/backups/${first.id}/restore`, { target: '../escape' })).statusCode, 400);
      assert.equal((await operator('POST', `/v1/backups/${first.id}/restore`, { target: 'ok', extra: 1 })).statusCode, 400);
    });

    it('restores into a fresh database with every row as it was', async () => {
      const target = await freshTarget();
      try {
        const restore = (force: boolean) => test.app.services.backups.restore(first.id, () => openRestoreTarget(target.to), { appRole: test.storage.config.databaseAppRole, force });
        const report = await restore(false);
        const opened = await openRestoreTarget(target.to);
        try {
          assert.equal(report.tenantsRestored, (snapshotRows['tenants'] ?? []).length);
          assert.deepEqual(report.tenantsShredded, []);
          assert.deepEqual(await targetRows(opened), snapshotRows);
          // A second restore into the same database is refused unless forced, and changes nothing.
        } finally {
          await opened.close();
        }
        await assert.rejects(restore(false), (error: Error & { code?: string }) => error.code === 'restore_target_not_empty');
        await restore(true);
        const reopened = await openRestoreTarget(target.to);
        try {
          assert.deepEqual(await targetRows(reopened), snapshotRows);
        } finally {
          await reopened.close();
        }
      } finally {
        await target.drop();
      }
    });

    it('restores through the API into a folder under the data folder, once unless forced', async () => {
      const target = `api-${newId()}`;
      const restored = await operator('POST', `/v1/backups/${first.id}/restore`, { target });
      assert.equal(restored.statusCode, 200, restored.body);
      assert.deepEqual(restored.json<{ target: string; location: string }>(), { ...restored.json(), target, location: `restores/${target}/pglite` });
      assert.equal((await operator('POST', `/v1/backups/${first.id}/restore`, { target })).json<{ code: string }>().code, 'restore_target_not_empty');
      assert.equal((await operator('POST', `/v1/backups/${first.id}/restore`, { target, force: true })).statusCode, 200);
    });

    it('verify passes, then finds a flipped byte; a restore of the damaged backup is refused', async () => {
      const ok = await operator('POST', `/v1/backups/${first.id}/verify`);
      assert.equal(ok.statusCode, 200, ok.body);
      assert.equal(ok.json<VerifyReport>().ok, true);
      const file = join(folder, 'eu', 'backups', first.id, 'tenants', `${euTenant.tenantId}.bin`);
      const original = readFileSync(file);
      const flipped = Buffer.from(original);
      flipped[Math.floor(flipped.length / 2)] = (flipped[Math.floor(flipped.length / 2)] ?? 0) ^ 0x01;
      writeFileSync(file, flipped);
      try {
        const report = (await operator('POST', `/v1/backups/${first.id}/verify`)).json<VerifyReport>();
        assert.equal(report.ok, false);
        assert.equal(report.segments.find((segment) => segment.name.startsWith(`tenant/${euTenant.tenantId}/`))?.status, 'corrupt');
        assert.equal(report.segments.find((segment) => segment.name === 'platform')?.status, 'ok');
        const refused = await operator('POST', `/v1/backups/${first.id}/restore`, { target: `damaged-${newId()}` });
        assert.equal(refused.statusCode, 422);
        assert.equal(refused.json<{ code: string }>().code, 'backup_corrupt');
      } finally {
        writeFileSync(file, original);
      }
      // A flipped byte in the manifest is found by its MAC.
      const manifestFile = join(folder, 'eu', 'backups', first.id, 'manifest.json');
      const manifest = readFileSync(manifestFile, 'utf8');
      writeFileSync(manifestFile, manifest.replace(/"rows": (\d+)/, (_match, rows: string) => `"rows": ${Number(rows) + 1}`));
      try {
        assert.equal((await operator('POST', `/v1/backups/${first.id}/verify`)).json<VerifyReport>().manifest, 'corrupt');
      } finally {
        writeFileSync(manifestFile, manifest);
      }
    });

    it('a scheduled slot is backed up once, across two instances', async () => {
      const { backups } = test.app.services;
      const since = new Date(clock.now().getTime() - 86_400_000);
      const second = await import('./service.ts');
      const other = new second.BackupService(test.storage.db, test.rootKeys, test.app.services.audit, clock, {
        stores: (await import('./storage.ts')).backupStoresOf(test.storage.config),
        regions: test.storage.config.regions,
        retention: { keepDailyDays: 30, keepWeeklyWeeks: 0 },
        schedule: '0 3 * * *',
      });
      const scheduled = new second.BackupService(test.storage.db, test.rootKeys, test.app.services.audit, clock, {
        stores: (await import('./storage.ts')).backupStoresOf(test.storage.config),
        regions: test.storage.config.regions,
        retention: { keepDailyDays: 30, keepWeeklyWeeks: 0 },
        schedule: '0 3 * * *',
      });
      const runs = await Promise.all([scheduled.runDue(since), other.runDue(since), scheduled.runDue(since)]);
      assert.equal(runs.filter((run) => run !== undefined).length, 1);
      assert.equal(runs.find((run) => run !== undefined)?.kind, 'scheduled');
      assert.equal((await backups.list()).filter((backup) => backup.kind === 'scheduled').length, 1);
    });

    it('retention prunes exactly what the policy says on a simulated calendar, audited', async () => {
      const { backups } = test.app.services;
      const taken: { id: string; day: number }[] = [];
      // 20 days of one backup a day (keep daily 3, weekly 2, from the app's config).
      for (let day = 0; day < 20; day += 1) {
        clock.advance(86_400_000);
        taken.push({ id: (await backups.create('on-demand')).id, day });
      }
      const now = clock.now();
      const { pruned } = await backups.prune();
      const left = new Set((await backups.list()).map((backup) => backup.id));
      const dayOf = (offset: number) => new Date(now.getTime() - offset * 86_400_000);
      const isoWeek = (date: Date) => {
        const monday = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() - ((date.getUTCDay() + 6) % 7)));
        return monday.toISOString().slice(0, 10);
      };
      const backupsByAge = taken.map(({ id, day }) => ({ id, at: dayOf(19 - day) }));
      const keepDaily = new Set(backupsByAge.slice(-3).map((backup) => backup.id));
      const weeks = [...new Set(backupsByAge.map((backup) => isoWeek(backup.at)))].sort().slice(-2);
      const keepWeekly = new Set(weeks.map((week) => backupsByAge.filter((backup) => isoWeek(backup.at) === week).at(-1)?.id));
      for (const { id } of backupsByAge) assert.equal(left.has(id), keepDaily.has(id) || keepWeekly.has(id), `backup ${id}`);
      assert.ok(pruned.length >= 15);
      // Twenty simulated days outlived the operator's access token.
      await test.relogOperator();
      const audit = await operator('GET', '/v1/audit?action=backup.prune');
      const events = audit.json<{ items: { detail: { pruned: string[] } }[] }>().items;
      assert.deepEqual(events[0]?.detail.pruned, [...pruned].sort());
      // Pruned backups are gone from both regions' storage.
      const remaining = new Set([...listFiles(join(folder, 'eu')), ...s3.objects().keys()].map((key) => /backups\/([0-9a-f]{12})\//.exec(key)?.[1]).filter((id) => id !== undefined));
      assert.deepEqual([...remaining].sort(), [...left].sort());
    });

    it('a tenant whose offboarding is confirmed goes into no backup: no segment, no escrow key, a bare deleted row', async () => {
      await test.relogOperator();
      const leaving = await withRegion('eu');
      const marker = `leaving-${newId()}`;
      const put = await test.call({ method: 'PUT', url: `/v1/tenants/${leaving.tenantId}/collections/notes/records/${newId()}`, token: leaving.apiKey, body: { data: { marker } } });
      assert.equal(put.statusCode, 201, put.body);
      assert.equal((await test.call({ method: 'DELETE', url: `/v1/tenants/${leaving.tenantId}`, token: test.operatorToken })).statusCode, 202);
      // The confirm's first step, as a backup running alongside it would see it.
      await test.storage.asOwner('UPDATE tenant_offboardings SET confirmed_at = now(), confirmed_by = $2 WHERE tenant = $1', [leaving.tenantId, 'system']);
      const backup = await test.app.services.backups.create('on-demand');
      const objects = listFiles(join(folder, 'eu'));
      assert.ok(!objects.some((object) => object.includes(leaving.tenantId)), 'nothing of the tenant in the storage');
      const verified = await test.app.services.backups.verify(backup.id);
      assert.equal(verified.ok, true);
      assert.ok(!verified.segments.some((segment) => segment.name.includes(leaving.tenantId)));
      const target = await freshTarget();
      try {
        await test.app.services.backups.restore(backup.id, () => openRestoreTarget(target.to), { appRole: test.storage.config.databaseAppRole, force: false });
        const opened = await openRestoreTarget(target.to);
        try {
          const rows = await targetRows(opened);
          assert.ok(!JSON.stringify(rows).includes(marker));
          assert.deepEqual((rows['tenants'] as { id: string; status: string }[]).filter((tenant) => tenant.id === leaving.tenantId).map((tenant) => tenant.status), ['deleted']);
        } finally {
          await opened.close();
        }
      } finally {
        await target.drop();
      }
    });

    it('shredding a tenant makes every earlier backup of it unreadable while the rest restores', async () => {
      const { backups } = test.app.services;
      const latest = (await backups.list())[0];
      assert.ok(latest);
      const shred = await backups.shredTenant(usTenant.tenantId, 'us');
      assert.equal(shred.escrowKeyDestroyed, true);
      assert.ok(shred.objectsDeleted >= 1);
      assert.ok(![...s3.objects().keys()].some((key) => key.includes(usTenant.tenantId)));
      const report = await backups.verify(latest.id);
      assert.equal(report.ok, true);
      assert.equal(report.segments.find((segment) => segment.name.startsWith(`tenant/${usTenant.tenantId}/`))?.status, 'shredded');
      const target = await freshTarget();
      try {
        const restored = await backups.restore(latest.id, () => openRestoreTarget(target.to), { appRole: test.storage.config.databaseAppRole, force: false });
        assert.deepEqual(restored.tenantsShredded, [usTenant.tenantId]);
        const opened = await openRestoreTarget(target.to);
        try {
          const rows = await targetRows(opened);
          const text = JSON.stringify(rows);
          assert.ok(!text.includes(usMarker));
          assert.deepEqual(
            (rows['tenants'] as { id: string; status: string; name: string }[]).filter((tenant) => tenant.id === usTenant.tenantId).map(({ status, name }) => ({ status, name })),
            [{ status: 'deleted', name: offboardedTenantName }],
          );
          for (const [table, tableRows] of Object.entries(rows)) {
            if (table === 'tenants') continue;
            assert.ok(!(tableRows as { tenant_id?: string }[]).some((row) => row.tenant_id === usTenant.tenantId), `${table} holds no row of the shredded tenant`);
          }
          assert.ok((rows['records'] as { tenant_id: string }[]).some((row) => row.tenant_id === euTenant.tenantId));
        } finally {
          await opened.close();
        }
      } finally {
        await target.drop();
      }
    });
  });
}

function listFiles(root: string, prefix = ''): string[] {
  let entries: string[];
  try {
    entries = readdirSync(join(root, prefix));
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const relative = prefix === '' ? entry : `${prefix}/${entry}`;
    return statSync(join(root, relative)).isDirectory() ? listFiles(root, relative) : [relative];
  });
}

describe('restore targets on PostgreSQL', () => {
  it('take the serving database TLS rules: sslmode with libpq meanings, no TLS file parameters in the URL', async () => {
    await assert.rejects(openRestoreTarget('postgres://owner@127.0.0.1:1/x?sslmode=prefer'), /sslmode=prefer.*fall back to plain text/);
    await assert.rejects(openRestoreTarget('postgres://owner@127.0.0.1:1/x?sslmode=verify-full&sslrootcert=/etc/ca.pem'), /has sslrootcert: give only sslmode in the URL/);
    // Control: an accepted URL gets as far as connecting (a closed port).
    await assert.rejects(openRestoreTarget('postgres://owner@127.0.0.1:1/x?sslmode=verify-full'), (error: unknown) => (error as NodeJS.ErrnoException).code === 'ECONNREFUSED');
  });
});
