import type { RootKeyDescription } from '../../modules/keys/root/provider.ts';
import type { KeyringInfo, KeyringService, KeyVersionInfo } from '../../modules/keys/service.ts';
import { findKeyring, listKeys } from '../../modules/keys/store.ts';
import { countRecordsByKeyVersion } from '../../modules/records/store.ts';
import { findTenant } from '../../modules/tenancy/store.ts';
import { loadConfig } from '../../platform/config/config.ts';
import type { Database } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { isId } from '../../platform/ids.ts';
import { allTenantIds, openStorage, writeJson } from '../storage.ts';
import { parseSubcommand, UsageError, withUsage } from '../usage.ts';

export const keysUsage = `Usage: bulwark keys <subcommand> [options]

Subcommands:
  rotate-root               Add a root key version and re-wrap every tenant's data keys under it
                            (the data keys, and the data, do not change)
  rotate --tenant <id>      Add a data key version for one tenant; new writes use it, older versions
                            keep decrypting until re-encryption moves the records forward
  status                    Root key versions and, per tenant, data key versions and record counts

Options:
  --json                    Print the result as JSON (every subcommand)
  -h, --help                Show this help

Storage and the root key come from the BULWARK_* environment, as for \`bulwark serve\`.
With the embedded PGlite database (no BULWARK_DATABASE_URL) only one process may open the data
folder: stop \`bulwark serve\` first. With PostgreSQL these commands can run alongside the server.
Nothing printed contains key material. Exit codes: 0 done, 1 failed, 2 usage error, 78 bad configuration.`;

type Subcommand = 'rotate-root' | 'rotate' | 'status';

interface Invocation {
  subcommand: Subcommand;
  json: boolean;
  /** `rotate` only. */
  tenantId?: string;
}

/** `bulwark keys ...`: offline key operations, straight on the configured storage and root key provider. */
export async function runKeys(args: string[]): Promise<number> {
  return withUsage(args, keysUsage, parseInvocation, runSubcommand);
}

async function runSubcommand(invocation: Invocation): Promise<number> {
  const storage = await openStorage(loadConfig());
  try {
    await commands[invocation.subcommand]({ db: storage.db, keyring: storage.services.keyring }, invocation);
    return 0;
  } catch (error) {
    if (!(error instanceof BulwarkError)) throw error;
    process.stderr.write(`bulwark keys ${invocation.subcommand} failed: ${failureMessage(error, invocation)}\n`);
    return 1;
  } finally {
    await storage.close();
  }
}

function parseInvocation(args: string[]): Invocation | 'help' {
  const parsed = parseSubcommand('keys', ['rotate-root', 'rotate', 'status'] as const, args);
  if (parsed === 'help') return 'help';
  const { name, json, tenant } = parsed;
  if (name !== 'rotate') {
    if (tenant !== undefined) throw new UsageError(`bulwark keys ${name}: unknown option '--tenant' (only \`rotate\` takes one).`);
    return { subcommand: name, json };
  }
  if (tenant === undefined) throw new UsageError('bulwark keys rotate: --tenant <id> is required.');
  // The id is checked before it reaches the database or the terminal again.
  if (!isId(tenant)) throw new UsageError('bulwark keys rotate: --tenant must be a tenant id (12 lowercase hex characters).');
  return { subcommand: name, json, tenantId: tenant };
}

interface Session {
  db: Database;
  keyring: KeyringService;
}

const commands: Record<Subcommand, (session: Session, invocation: Invocation) => Promise<void>> = {
  'rotate-root': rotateRoot,
  rotate: rotateTenant,
  status,
};

async function rotateRoot({ keyring }: Session, { json }: Invocation): Promise<void> {
  const result = await keyring.rotateRoot();
  if (json) {
    writeJson(result);
    return;
  }
  const what = result.rotated
    ? `Root key rotated to version ${result.rootVersion}`
    : `This root key provider cannot add versions itself (add one to BULWARK_ROOT_KEY and restart); kept version ${result.rootVersion}`;
  process.stdout.write(`${what}; re-wrapped ${result.keysRewrapped} data key(s) of ${result.tenants} tenant(s) and ${result.platformKeysRewrapped} platform key(s) under it.\n`);
}

async function rotateTenant({ db, keyring }: Session, { json, tenantId }: Invocation): Promise<void> {
  if (tenantId === undefined) throw new Error('unreachable: rotate is parsed with a tenant id');
  // The keyring service would create a keyring for any id; only an existing tenant may get one.
  const tenant = await db.withPlatform((tx) => findTenant(tx, tenantId));
  if (tenant === undefined || tenant.status === 'deleted') throw new BulwarkError('not_found');
  const info = await keyring.rotate(tenantId);
  if (json) {
    writeJson({ tenantId, keyring: info });
    return;
  }
  process.stdout.write(
    `Tenant ${tenantId}: data key rotated to version ${info.currentVersion} (min decryption version ${info.minDecryptionVersion}).\n` +
      `New writes use version ${info.currentVersion}; existing records keep their version until re-encrypted ` +
      `(POST /v1/tenants/${tenantId}/keys/reencrypt).\n`,
  );
}

/** What status needs of a keyring: all of `describe` for a live one, this much for a destroyed one. */
type KeyringStatus = Pick<KeyringInfo, 'currentVersion' | 'minDecryptionVersion' | 'destroyedAt' | 'unencryptedRecords'> & {
  versions: Pick<KeyVersionInfo, 'version' | 'state' | 'createdAt' | 'destroyedAt' | 'records'>[];
};

interface TenantStatusEntry {
  tenantId: string;
  /** null: a tenant from before the keys module, whose keyring is created on first use. */
  keyring: KeyringStatus | null;
}

async function status({ db, keyring }: Session, { json }: Invocation): Promise<void> {
  const root = await keyring.describeRoot();
  const tenants: TenantStatusEntry[] = [];
  for (const tenantId of await allTenantIds(db)) {
    tenants.push({ tenantId, keyring: await describeKeyring(db, keyring, tenantId) });
  }
  if (json) {
    writeJson({ root, tenants });
    return;
  }
  process.stdout.write(`${formatRoot(root)}\n${formatTenants(tenants)}\n`);
}

/** Read-only: describes live keyrings through the service, and destroyed ones (which it refuses) from the store. */
async function describeKeyring(db: Database, keyring: KeyringService, tenantId: string): Promise<KeyringStatus | null> {
  const row = await db.withTenant(tenantId, (tx) => findKeyring(tx, tenantId));
  if (row === undefined) return null;
  if (row.destroyed_at === null) {
    try {
      return await keyring.describe(tenantId);
    } catch (error) {
      // Destroyed between the two reads.
      if (!(error instanceof BulwarkError && error.code === 'keys_destroyed')) throw error;
    }
  }
  return describeDestroyed(db, tenantId);
}

async function describeDestroyed(db: Database, tenantId: string): Promise<KeyringStatus | null> {
  return db.withTenant(tenantId, async (tx) => {
    const row = await findKeyring(tx, tenantId);
    if (row === undefined) return null;
    const counts = await countRecordsByKeyVersion(tx, tenantId);
    const recordsAt = (version: number | null) => counts.find((count) => count.key_version === version)?.count ?? 0;
    return {
      currentVersion: row.current_version,
      minDecryptionVersion: row.min_decryption_version,
      destroyedAt: row.destroyed_at?.toISOString() ?? null,
      versions: (await listKeys(tx, tenantId)).map((key) => ({
        version: key.version,
        state: 'destroyed' as const,
        createdAt: key.created_at.toISOString(),
        destroyedAt: key.destroyed_at?.toISOString() ?? null,
        records: recordsAt(key.version),
      })),
      unencryptedRecords: recordsAt(null),
    };
  });
}

function formatRoot(root: RootKeyDescription): string {
  const versions = root.versions.map((entry) => `v${entry.version}${entry.createdAt === null ? '' : ` (${entry.createdAt})`}`);
  return [
    `Root key: ${root.kind} ${root.keyName}`,
    `  current version: ${root.currentVersion}`,
    `  versions: ${versions.length === 0 ? '-' : versions.join(', ')}`,
  ].join('\n');
}

function formatTenants(tenants: TenantStatusEntry[]): string {
  if (tenants.length === 0) return 'Tenants: none';
  const header = ['TENANT', 'CURRENT', 'MIN', 'RECORDS BY VERSION', 'UNENCRYPTED', 'DESTROYED'];
  const rows = tenants.map(({ tenantId, keyring }) => {
    if (keyring === null) return [tenantId, '-', '-', '-', '-', 'no keyring yet (created on first use)'];
    const records = keyring.versions.map(
      (version) => `v${version.version}=${version.records}${version.state === 'retired' || version.state === 'destroyed' ? `(${version.state})` : ''}`,
    );
    return [
      tenantId,
      String(keyring.currentVersion),
      String(keyring.minDecryptionVersion),
      records.join(' ') || '-',
      String(keyring.unencryptedRecords),
      keyring.destroyedAt === null ? 'no' : `yes (${keyring.destroyedAt})`,
    ];
  });
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)));
  const line = (cells: string[]) => `  ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()}`;
  return [`Tenants (${tenants.length}):`, line(header), ...rows.map(line)].join('\n');
}

function failureMessage(error: BulwarkError, invocation: Invocation): string {
  // The public message plus the internal detail: this is the operator's own terminal, and neither holds key
  // material (root key errors name files, versions and KMS answers, never keys or tokens).
  const message = error.code === 'not_found' && invocation.tenantId !== undefined ? `tenant ${invocation.tenantId} does not exist.` : error.message;
  return `${message}${error.detail === undefined ? '' : ` (${error.detail})`} [${error.code}]`;
}
