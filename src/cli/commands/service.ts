import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { generateServiceKeyPair } from '../../modules/secrets/sealing.ts';
import { writeJson } from '../storage.ts';
import { UsageError, withUsage } from '../usage.ts';

export const serviceUsage = `Usage: bulwark service <subcommand> [options]

Subcommands:
  keygen                    Create a service's X25519 key pair, on the machine the service runs on:
                            the private key goes to <dir>/service-private-key.pem (mode 0600, never
                            overwritten), the public key to stdout, to register with POST /v1/services

Options:
  --out <dir>               Where to write the private key (default: the current directory)
  --json                    Print {"publicKey": ..., "privateKeyFile": ...} instead
  -h, --help                Show this help

Nothing here talks to a server or a database. The private key never leaves this machine: Bulwark seals
secrets to the public key and cannot open them. Exit codes: 0 done, 1 failed, 2 usage error.`;

export const privateKeyFileName = 'service-private-key.pem';

interface Invocation {
  out: string;
  json: boolean;
}

/** `bulwark service keygen`: a key pair for a service that reads sealed secrets. */
export async function runService(args: string[]): Promise<number> {
  return withUsage(args, serviceUsage, parseInvocation, keygen);
}

function parseInvocation(args: string[]): Invocation | 'help' {
  const [name, ...rest] = args;
  if (name === '--help' || name === '-h' || name === 'help') return 'help';
  if (name === undefined) throw new UsageError('Missing service subcommand.');
  if (name !== 'keygen') throw new UsageError(`Unknown service subcommand: ${name}`);
  let values: { out?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ args: rest, options: { out: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }));
  } catch (error) {
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) throw new UsageError(`bulwark service keygen: ${error.message}`);
    throw error;
  }
  if (values.help === true) return 'help';
  if (values.out === '') throw new UsageError('bulwark service keygen: --out needs a directory.');
  return { out: values.out ?? '.', json: values.json === true };
}

async function keygen(invocation: Invocation): Promise<number> {
  const { privateKeyPem, publicKey } = generateServiceKeyPair();
  const dir = resolve(invocation.out);
  const file = join(dir, privateKeyFileName);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // `wx`: an existing key is never replaced (its secrets would become unreadable); 0600 from the first byte.
    writeFileSync(file, privateKeyPem, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code === 'EEXIST' ? 'it exists already (move it away to make a new key)' : (error as Error).message;
    process.stderr.write(`bulwark service keygen failed: cannot write ${file}: ${why}\n`);
    return 1;
  }
  if (invocation.json) {
    writeJson({ publicKey, privateKeyFile: file });
    return 0;
  }
  process.stderr.write(`Private key written to ${file} (mode 0600); keep it with the service.\nPublic key, to register with POST /v1/services as "publicKey":\n`);
  process.stdout.write(`${publicKey}\n`);
  return 0;
}
