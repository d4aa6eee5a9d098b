import { loadConfig } from '../../platform/config/config.ts';
import { databaseTransportWarnings, migratePostgres, openDatabase, postgresTlsOf } from '../../platform/db/open.ts';

/** `bulwark migrate`: apply pending migrations to the configured engine and report them. */
export async function runMigrate(): Promise<number> {
  const config = loadConfig();
  let report;
  if (config.databaseUrl !== undefined) {
    const ownerUrl = config.databaseAdminUrl ?? config.databaseUrl;
    for (const warning of databaseTransportWarnings(config, [ownerUrl])) process.stderr.write(`warning: ${warning}\n`);
    report = await migratePostgres(ownerUrl, config.databaseAppRole, postgresTlsOf(config));
  } else {
    const opened = await openDatabase(config);
    await opened.db.close();
    report = opened.migrations;
  }
  process.stdout.write(
    report.applied.length === 0
      ? `Database is up to date (${report.alreadyApplied} migrations applied earlier).\n`
      : `Applied ${report.applied.length} migration(s): ${report.applied.join(', ')}\n`,
  );
  return 0;
}
