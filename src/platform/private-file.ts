import { open } from 'node:fs/promises';

/**
 * Files of key material (the root key, TLS and data-store client keys, NATS seeds) are refused when group or
 * others may access them, as ssh refuses an open private key: one rule, one message. Callers take the mode
 * from the open file, so the file checked is the file read.
 */
export function exposedModeProblem(mode: number): string | undefined {
  const bits = mode & 0o777;
  return (bits & 0o077) === 0 ? undefined : `is accessible by group or others (mode ${bits.toString(8).padStart(4, '0')})`;
}

/** Reads a key file, refusing one that group or others may access. */
export async function readPrivateFile(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const problem = exposedModeProblem((await handle.stat()).mode);
    if (problem !== undefined) throw new Error(`${path} ${problem}; restrict it with \`chmod 600\``);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
