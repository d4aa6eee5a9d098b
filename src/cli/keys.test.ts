import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openRootKeyProvider } from '../modules/keys/root-providers.ts';
import { PlatformKeys } from '../modules/keys/platform-keys.ts';
import { findPlatformKey } from '../modules/keys/platform-keys-store.ts';
import type { KeyringService } from '../modules/keys/service.ts';
import { buildServices } from '../server/app.ts';
import { listKeys } from '../modules/keys/store.ts';
import type { RecordsService } from '../modules/records/service.ts';
import type { TenancyService } from '../modules/tenancy/service.ts';
import { systemClock } from '../platform/clock.ts';
import type { Config } from '../platform/config/config.ts';
import type { Database } from '../platform/db/database.ts';
import { openDatabase } from '../platform/db/open.ts';
import { newId } from '../platform/ids.ts';
import { runCli as runBulwark } from '../testing/cli.ts';
import { adminQuery, engineSkip, engines, postgresAdminUrl, testConfig } from '../testing/engines.ts';

const sealedAt = { table: 'operators', column: 'pii', rowId: '0123456789ab' };
let platformSealed: Buffer = Buffer.alloc(0);

/** Every output of every run, checked at the end for key material. */
const outputs: string[] = [];

type CliResult = Awaited<ReturnType<typeof runBulwark>>;

async function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  const result = await runBulwark(args, env);
  outputs.push(result.stdout, result.stderr);
  return result;
}

function parseJson(result: CliResult): unknown {
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

interface KeyringJson {
  currentVersion: number;
  minDecryptionVersion: number;
  destroyedAt: string | null;
  versions: { version: number; state: string; records: number }[];
  unencryptedRecords: number;
}

interface StatusJson {
  root: { kind: string; keyName: string; currentVersion: number; versions: { version: number }[] };
  tenants: { tenantId: string; keyring: KeyringJson | null }[];
}

/** The services over the configured storage, in this process; closed before the CLI runs (PGlite is single-process). */
async function withServices<T>(
  config: Config,
  work: (services: { keyring: KeyringService; tenancy: TenancyService; records: RecordsService; platformKeys: PlatformKeys; db: Database }) => Promise<T>,
): Promise<T> {
  const { provider } = await openRootKeyProvider(config, systemClock);
  const { db } = await openDatabase(config);
  const { keyring, tenancy, records } = buildServices({ config: { ...config, keyCacheTtlMs: 0, authCacheTtlMs: 0 }, db, rootKeys: provider });
  try {
    return await work({ db, keyring, platformKeys: new PlatformKeys(db, provider, systemClock), tenancy, records });
  } finally {
    await keyring.close();
    await db.close();
  }
}

describe('bulwark keys: usage errors', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-keys-cli-'));
  const env = { BULWARK_DATA_DIR: dataDir };
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('rejects bad invocations with exit code 2 and the usage, before touching storage', async () => {
    const [unknown, missing, badId, noTenant, unknownFlag, tenantOnStatus, stray] = await Promise.all([
      runCli(['keys', 'rotate-all'], env),
      runCli(['keys'], env),
      runCli(['keys', 'rotate', '--tenant', 'ABCDEF012345'], env),
      runCli(['keys', 'rotate'], env),
      runCli(['keys', 'status', '--yaml'], env),
      runCli(['keys', 'status', '--tenant', '0123456789ab'], env),
      runCli(['keys', 'status', 'extra'], env),
    ]);
    for (const result of [unknown, missing, badId, noTenant, unknownFlag, tenantOnStatus, stray]) {
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /Usage: bulwark keys <subcommand>/);
      assert.equal(result.stdout, '');
    }
    assert.match(unknown.stderr, /Unknown keys subcommand: rotate-all/);
    assert.match(badId.stderr, /--tenant must be a tenant id \(12 lowercase hex characters\)/);
    assert.match(noTenant.stderr, /--tenant <id> is required/);
    assert.match(unknownFlag.stderr, /--yaml/);
    assert.ok(!existsSync(join(dataDir, 'pglite')), 'no database was opened');
    assert.ok(!existsSync(join(dataDir, 'root-key.json')), 'no root key was created');
  });

  it('prints its help with exit code 0, and the top-level usage lists it', async () => {
    const [help, top] = await Promise.all([runCli(['keys', '--help'], env), runCli(['help'], env)]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /rotate --tenant <id>/);
    assert.match(help.stdout, /PGlite/);
    assert.equal(top.code, 0);
    assert.match(top.stderr, /keys +Key operations/);
  });
});

for (const engine of engines) {
  describe(`bulwark keys [${engine}]`, { skip: engineSkip(engine) }, () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-keys-cli-'));
    const databaseName = `bulwark_test_${randomBytes(6).toString('hex')}`;
    let config: Config;
    let env: Record<string, string>;
    let tenantA: string;
    let tenantB: string;
    const recordsOf: Record<string, { id: string; secret: string }[]> = {};

    before(async () => {
      env = { BULWARK_DATA_DIR: dataDir };
      if (engine === 'postgres') {
        await adminQuery(`CREATE DATABASE ${databaseName}`);
        const url = new URL(postgresAdminUrl);
        url.pathname = `/${databaseName}`;
        env['BULWARK_DATABASE_URL'] = url.toString();
      }
      config = testConfig({ dataDir, ...(env['BULWARK_DATABASE_URL'] === undefined ? {} : { databaseUrl: env['BULWARK_DATABASE_URL'] }) });
      await withServices(config, async ({ tenancy, records, platformKeys }) => {
        // The operators' platform key, as the first operator creates it, with a value sealed under it.
        platformSealed = (await platformKeys.get('operators')).seal(Buffer.from('still opens'), sealedAt);
        tenantA = (await tenancy.create({ name: 'Alpha' })).id;
        tenantB = (await tenancy.create({ name: 'Beta' })).id;
        for (const tenantId of [tenantA, tenantB]) {
          const secret = randomBytes(8).toString('hex');
          recordsOf[tenantId] = [{ id: (await records.create(tenantId, 'notes', { secret })).id, secret }];
        }
      });
    });

    after(async () => {
      if (engine === 'postgres') await adminQuery(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
      rmSync(dataDir, { recursive: true, force: true });
    });

    async function assertRecordsRead(records: RecordsService): Promise<void> {
      for (const [tenantId, list] of Object.entries(recordsOf)) {
        for (const { id, secret } of list) assert.deepEqual((await records.get(tenantId, 'notes', id)).data, { secret });
      }
    }

    it('status prints the root key and one line per tenant', async () => {
      const result = await runCli(['keys', 'status'], env);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Root key: local-file .*root-key\.json\n {2}current version: 1\n {2}versions: v1 \(/);
      assert.match(result.stdout, /Tenants \(2\):/);
      for (const tenantId of [tenantA, tenantB]) {
        assert.match(result.stdout, new RegExp(`^ {2}${tenantId} +1 +1 +v1=1 +0 +no$`, 'm'));
      }
    });

    it('rotate --tenant adds a data key version; the old records still read', async () => {
      const result = await runCli(['keys', 'rotate', '--tenant', tenantA], env);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`Tenant ${tenantA}: data key rotated to version 2 \\(min decryption version 1\\)`));
      await withServices(config, async ({ keyring, records }) => {
        await assertRecordsRead(records);
        const secret = 'after rotation';
        recordsOf[tenantA]?.push({ id: (await records.create(tenantA, 'notes', { secret })).id, secret });
        const a = await keyring.describe(tenantA);
        assert.equal(a.currentVersion, 2);
        assert.deepEqual(a.versions.map(({ version, state, records: count }) => ({ version, state, count })), [
          { version: 1, state: 'active', count: 1 },
          { version: 2, state: 'current', count: 1 },
        ]);
        assert.equal((await keyring.describe(tenantB)).currentVersion, 1, 'the other tenant is untouched');
      });
    });

    it('rotate-root adds a root key version and re-wraps every data key; all tenants stay readable', async () => {
      const result = await runCli(['keys', 'rotate-root', '--json'], env);
      assert.deepEqual(parseJson(result), { rootVersion: 2, rotated: true, tenants: 2, keysRewrapped: 3, platformKeysRewrapped: 1 });
      await withServices(config, async ({ db, keyring, records, platformKeys }) => {
        assert.equal((await keyring.describeRoot()).currentVersion, 2);
        assert.match((await db.withPlatform((tx) => findPlatformKey(tx, 'operators'))) ?? '', /^bwrk:local:v2:/, 'the platform key too');
        assert.equal((await platformKeys.get('operators')).open(platformSealed, sealedAt).toString(), 'still opens', 'the same key, re-wrapped');
        for (const tenantId of [tenantA, tenantB]) {
          const keys = await db.withTenant(tenantId, (tx) => listKeys(tx, tenantId));
          for (const key of keys) assert.match(key.wrapped_key ?? '', /^bwrk:local:v2:/, 'wrapped under the new root version');
        }
        await assertRecordsRead(records);
        await keyring.destroy(tenantB);
      });
    });

    it('status --json shows the rotations and a destroyed keyring', async () => {
      const status = parseJson(await runCli(['keys', 'status', '--json'], env)) as StatusJson;
      assert.equal(status.root.kind, 'local-file');
      assert.equal(status.root.currentVersion, 2);
      assert.deepEqual(status.root.versions.map((entry) => entry.version), [1, 2]);
      const byId = new Map(status.tenants.map((entry) => [entry.tenantId, entry.keyring]));
      assert.deepEqual([...byId.keys()].sort(), [tenantA, tenantB].sort());
      const a = byId.get(tenantA);
      assert.equal(a?.currentVersion, 2);
      assert.equal(a.minDecryptionVersion, 1);
      assert.equal(a.destroyedAt, null);
      assert.deepEqual(a.versions.map((version) => version.records), [1, 1]);
      assert.equal(a.unencryptedRecords, 0);
      const b = byId.get(tenantB);
      assert.ok(b?.destroyedAt, 'destroyed keyring is reported');
      assert.deepEqual(b.versions.map((version) => version.state), ['destroyed']);
    });

    it('an unknown tenant fails with not_found and a non-zero exit', async () => {
      const result = await runCli(['keys', 'rotate', '--tenant', newId()], env);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /does not exist\. \[not_found\]/);
      assert.equal(result.stdout, '');
    });

    it('a destroyed keyring cannot rotate (keys_destroyed)', async () => {
      const result = await runCli(['keys', 'rotate', '--tenant', tenantB], env);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /\[keys_destroyed\]/);
    });

    if (engine === 'pglite') {
      it('refuses to open the embedded database while another process has it open', async () => {
        const { db } = await openDatabase(config);
        try {
          const result = await runCli(['keys', 'status'], env);
          assert.equal(result.code, 1);
          assert.match(result.stderr, /is in use by process \d+/);
        } finally {
          await db.close();
        }
      });
    }

    it('never prints key material', () => {
      const file = JSON.parse(readFileSync(join(dataDir, 'root-key.json'), 'utf8')) as { versions: { key: string }[] };
      const everything = outputs.join('\n');
      assert.doesNotMatch(everything, /bwrk:/);
      for (const { key } of file.versions) assert.ok(!everything.includes(key), 'a root key appeared in the output');
    });
  });
}
