import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { exposedModeProblem } from '../private-file.ts';

/**
 * A PEM file named by the configuration, read once at start. `pem` is not enumerable, so a config object
 * that reaches a log line or `JSON.stringify` shows the path, never the key.
 */
export interface PemFile {
  readonly path: string;
  readonly pem: string;
}

const maxBytes = 1024 * 1024;
const certificateBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The config parser of a PEM file option: `certificates` (one or more, e.g. a CA bundle) or a `private key`
 * (unencrypted, and refused when group or others may read it, as the NATS key files are). Errors name the
 * problem, never the content.
 */
export function pemFile(kind: 'certificates' | 'private key') {
  return (path: string): { value: PemFile } | { error: string } => {
    let pem: string;
    try {
      const descriptor = openSync(path, 'r');
      try {
        const stat = fstatSync(descriptor);
        const exposed = kind === 'private key' ? exposedModeProblem(stat.mode) : undefined;
        if (exposed !== undefined) return { error: `${exposed}; restrict it with \`chmod 600\`` };
        if (stat.size > maxBytes) return { error: `is larger than ${maxBytes} bytes` };
        pem = readFileSync(descriptor, 'utf8');
      } finally {
        closeSync(descriptor);
      }
    } catch (error) {
      return { error: `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
    }
    if (kind === 'certificates') {
      const blocks = pem.match(certificateBlock) ?? [];
      if (blocks.length === 0 || !blocks.every(parsesAsCertificate)) return { error: 'does not hold PEM certificates' };
    } else if (!parsesAsPrivateKey(pem)) {
      return { error: 'does not hold an unencrypted PEM private key' };
    }
    const file = { path };
    Object.defineProperty(file, 'pem', { value: pem, enumerable: false });
    return { value: Object.freeze(file) as PemFile };
  };
}

/** Whether `key` is the private key of the first certificate in `certificate` (a client certificate and its key). */
export function keyMatchesCertificate(certificate: PemFile, key: PemFile): boolean {
  return new X509Certificate(certificate.pem).checkPrivateKey(createPrivateKey(key.pem));
}

function parsesAsCertificate(block: string): boolean {
  try {
    new X509Certificate(block);
    return true;
  } catch {
    return false;
  }
}

function parsesAsPrivateKey(pem: string): boolean {
  try {
    return createPrivateKey(pem).type === 'private';
  } catch {
    return false;
  }
}
