import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';

/**
 * PGlite takes no lock on its folder, and two processes writing to one corrupt it. This lock file
 * (created with O_EXCL, holding the owner's pid) makes a second `bulwark serve`, `migrate` or `keys` run
 * refuse with a clear message instead. A file left by a process that died is taken over.
 */
export function lockPgliteFolder(dataDir: string): () => void {
  const path = `${dataDir}.lock`;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          unlinkSync(path);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = readOwner(path);
    if (owner !== undefined && isAlive(owner)) {
      throw new Error(
        `the embedded database in ${dataDir} is in use by process ${owner} (${path}). PGlite allows one process at a time: stop that process (e.g. \`bulwark serve\`) and retry.`,
      );
    }
    try {
      unlinkSync(path);
    } catch {
      // Another process took it over first; the next attempt sees its pid.
    }
  }
  throw new Error(`could not lock the embedded database folder ${dataDir}: ${path} keeps reappearing`);
}

function readOwner(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
