import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import { adminQuery, engineSkip, engines, postgresAdminUrl, testConfig } from '../testing/engines.ts';
import { runCli } from '../testing/cli.ts';
import { openStorage } from './storage.ts';

describe('bulwark audit: usage', () => {
  const env = { BULWARK_DATA_DIR: mkdtempSync(join(tmpdir(), 'bulwark-audit-cli-')) };
  after(() => rmSync(env.BULWARK_DATA_DIR, { recursive: true, force: true }));

  it('refuses bad invocations with exit code 2 before touching storage; --help exits 0', async () => {
    for (const args of [['audit'], ['audit', 'check'], ['audit', 'verify', '--tenant', 'ABC'], ['audit', 'verify', '--nope'], ['audit', 'verify', 'extra']]) {
      const result = await runCli(args, env);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /Usage: bulwark audit verify/);
    }
    const help = await runCli(['audit', '--help'], env);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Exit codes: 0 every chain verifies, 3 a chain is broken/);
  });
});

for (const engine of engines) {
  describe(`bulwark audit verify [${engine}]`, { skip: engineSkip(engine) }, () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-audit-cli-'));
    const databaseName = `bulwark_test_${randomBytes(6).toString('hex')}`;
    const env: Record<string, string> = { BULWARK_DATA_DIR: dataDir };
    let tenantA = '';
    let tenantB = '';

    /** SQL as the owner, around the app role: what someone with the database could do. */
    async function asOwner(sql: string, params: unknown[]): Promise<void> {
      if (engine === 'postgres') {
        await adminQuery(sql, env['BULWARK_DATABASE_URL'], params);
        return;
      }
      const pglite = await PGlite.create(join(dataDir, 'pglite'));
      try {
        await pglite.query(sql, params);
      } finally {
        await pglite.close();
      }
    }

    before(async () => {
      if (engine === 'postgres') {
        await adminQuery(`CREATE DATABASE ${databaseName}`);
        const url = new URL(postgresAdminUrl);
        url.pathname = `/${databaseName}`;
        env['BULWARK_DATABASE_URL'] = url.toString();
      }
      const storage = await openStorage(testConfig({ dataDir, ...(env['BULWARK_DATABASE_URL'] === undefined ? {} : { databaseUrl: env['BULWARK_DATABASE_URL'] }) }));
      try {
        const { tenancy, records } = storage.services;
        tenantA = (await tenancy.create({ name: 'Alpha' })).id;
        tenantB = (await tenancy.create({ name: 'Beta' })).id;
        for (const tenantId of [tenantA, tenantB]) for (let index = 0; index < 4; index += 1) await records.create(tenantId, 'notes', { index });
        await storage.services.audit.checkpointAll();
      } finally {
        await storage.close();
      }
    });

    after(async () => {
      if (engine === 'postgres') await adminQuery(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('verifies every chain, then names the first broken sequence number of a tampered one (exit 3)', async () => {
      const intact = await runCli(['audit', 'verify'], env);
      assert.equal(intact.code, 0, intact.stderr);
      assert.match(intact.stdout, /^platform: ok \(2 event\(s\) checked, 1 checkpoint\(s\)\)$/m);
      assert.match(intact.stdout, new RegExp(`^tenant ${tenantA}: ok \\(4 event\\(s\\) checked, 1 checkpoint\\(s\\)\\)$`, 'm'));

      await asOwner("UPDATE audit_events SET detail = '{\"collection\":\"notes\",\"version\":7}' WHERE tenant_id = $1 AND seq = 3", [tenantA]);
      const broken = await runCli(['audit', 'verify'], env);
      assert.equal(broken.code, 3, broken.stderr);
      assert.match(broken.stdout, new RegExp(`^tenant ${tenantA}: BROKEN at sequence 3 \\(hash_mismatch\\)`, 'm'));
      assert.match(broken.stdout, new RegExp(`^tenant ${tenantB}: ok`, 'm'));

      const one = await runCli(['audit', 'verify', '--tenant', tenantB, '--json'], env);
      assert.equal(one.code, 0, one.stderr);
      const report = JSON.parse(one.stdout) as { ok: boolean; chains: { chain: string; ok: boolean; eventsChecked: number; firstBreak: unknown }[] };
      assert.deepEqual(report.chains.map((chain) => [chain.chain, chain.ok, chain.eventsChecked, chain.firstBreak]), [[`tenant ${tenantB}`, true, 4, null]]);

      const unknown = await runCli(['audit', 'verify', '--tenant', '0123456789ab'], env);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /does not exist/);
    });
  });
}
