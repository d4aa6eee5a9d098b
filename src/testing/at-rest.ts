import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TestDatabase } from './engines.ts';

/**
 * Which of `needles` appear in what the engine stored: every file of the PGlite data folder, read raw
 * (the database is closed first, so its pages are on disk; reopen it to go on), or a data-only pg_dump of
 * PostgreSQL. An encryption-at-rest test searches for a unique marker and for a plaintext control, which
 * proves the search itself works.
 */
export async function storedDataContains(storage: TestDatabase, pgliteDir: string, needles: string[]): Promise<boolean[]> {
  if (storage.engine === 'pglite') {
    await storage.db.close();
    return needles.map((needle) => filesContain(pgliteDir, Buffer.from(needle)));
  }
  const dump = execFileSync('pg_dump', ['--data-only', '--no-owner', storage.ownerUrl ?? ''], { maxBuffer: 1024 * 1024 * 1024 }).toString();
  return needles.map((needle) => dump.includes(needle));
}

function filesContain(dir: string, needle: Buffer): boolean {
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    if (statSync(path).size > 0 && readFileSync(path).includes(needle)) return true;
  }
  return false;
}
