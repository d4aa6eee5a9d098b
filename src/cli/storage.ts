import { openRootKeyProvider } from '../modules/keys/root-providers.ts';
import { systemClock } from '../platform/clock.ts';
import type { Config } from '../platform/config/config.ts';
import type { Database } from '../platform/db/database.ts';
import { openDatabase } from '../platform/db/open.ts';
import { listTenants } from '../modules/tenancy/store.ts';
import { type BulwarkServices, buildServices } from '../server/app.ts';

export interface Storage {
  db: Database;
  services: BulwarkServices;
  close(): Promise<void>;
}

/**
 * The offline tools' way in: the configured database (migrated) and root key provider, and the services
 * over them, without the HTTP server. Warnings go to stderr. No key cache: every operation unwraps what it
 * needs and drops it right after.
 */
export async function openStorage(config: Config): Promise<Storage> {
  const rootKeys = await openRootKeyProvider(config, systemClock);
  for (const warning of rootKeys.warnings) process.stderr.write(`warning: ${warning}\n`);
  const { db, migrations, warnings } = await openDatabase(config);
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  if (migrations.applied.length > 0) {
    process.stderr.write(`Applied ${migrations.applied.length} pending migration(s) first: ${migrations.applied.join(', ')}\n`);
  }
  const services = buildServices({ config: { ...config, keyCacheTtlMs: 0 }, db, rootKeys: rootKeys.provider });
  return {
    db,
    services,
    async close() {
      await services.keyring.close();
      await db.close();
    },
  };
}

export async function allTenantIds(db: Database): Promise<string[]> {
  const ids: string[] = [];
  const pageSize = 500;
  for (;;) {
    const after = ids[ids.length - 1] ?? '';
    const page = await db.withPlatform((tx) => listTenants(tx, after, pageSize));
    ids.push(...page.map((tenant) => tenant.id));
    if (page.length < pageSize) return ids;
  }
}

export function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
