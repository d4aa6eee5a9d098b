import { hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import { createHash, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { digestsEqual } from '../../platform/secret-compare.ts';

/**
 * Password hashing (issue #4). New hashes are Argon2id PHC strings, so the parameters travel with each
 * hash and can be raised without a migration. Two legacy forms are accepted for imported users and are
 * replaced by Argon2id at their next successful login (`needsRehash`):
 *
 *   md5:<32 lowercase hex>                                   unsalted MD5 of the UTF-8 password
 *   pbkdf2-sha256:<iterations>:<salt base64>:<key base64>    Keycloak's pbkdf2-sha256 credential
 *
 * Nothing here throws for bad stored data or puts a password or hash into an error message.
 */

export interface Argon2Params {
  /** Memory in KiB (`m=` in the PHC string). */
  memoryCost: number;
  /** Passes over memory (`t=`). */
  timeCost: number;
  /** Lanes (`p=`). */
  parallelism: number;
}

/** OWASP Password Storage Cheat Sheet: Argon2id m=19456 KiB, t=2, p=1. */
export const defaultArgon2Params: Argon2Params = Object.freeze({ memoryCost: 19_456, timeCost: 2, parallelism: 1 });

/**
 * What this module hashes with and accepts in a stored or imported Argon2id hash. The lower bounds are the
 * algorithm's own (RFC 9106 section 3.1: m >= 8p, salt >= 8 bytes). The upper bounds stop a stored or
 * imported hash from making one login allocate or compute without limit (a tenant admin imports users, so
 * an import is not fully trusted): 256 MiB and 16 passes cover RFC 9106's second recommended option (64 MiB,
 * t=3, p=4) and common library defaults (argon2-cffi 64 MiB, Django 100 MiB with p=8, Keycloak 7 MiB t=5).
 */
export const argon2Limits = Object.freeze({
  maxMemoryCost: 262_144,
  maxTimeCost: 16,
  maxParallelism: 16,
  minSaltBytes: 8,
  maxSaltBytes: 64,
  minHashBytes: 16,
  maxHashBytes: 64,
});

/** What new hashes use; a stored Argon2id hash with a shorter salt or output needs a rehash. */
const saltBytes = 16;
const hashBytes = 32;

/** Limits for an imported or stored PBKDF2 credential, enforced by both `importedHash` and `verifyPassword`. */
const pbkdf2Limits = Object.freeze({
  minIterations: 1_000,
  maxIterations: 10_000_000,
  minSaltBytes: 8,
  maxSaltBytes: 64,
  minKeyBytes: 16,
  maxKeyBytes: 64,
});

export type HashAlgorithm = 'argon2id' | 'md5' | 'pbkdf2-sha256';

/** A stored hash, parsed and bounds-checked. */
type ParsedHash =
  | { algorithm: 'argon2id'; params: Argon2Params; saltBytes: number; hashBytes: number }
  | { algorithm: 'md5'; digest: Buffer }
  | { algorithm: 'pbkdf2-sha256'; iterations: number; salt: Buffer; key: Buffer };

const pbkdf2Async = promisify(pbkdf2);

// PHC string format (github.com/P-H-C/phc-string-format): decimals without leading zeros, salt and hash in
// unpadded standard base64. Only version 19 (0x13, the current Argon2) and only m, t, p, in that order: the
// optional keyid/data fields and version 16 are refused rather than half-supported.
const phcPattern =
  /^\$argon2id\$v=19\$m=([1-9][0-9]{0,9}),t=([1-9][0-9]{0,9}),p=([1-9][0-9]{0,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;
const md5Pattern = /^md5:([0-9a-f]{32})$/;
const pbkdf2Pattern = /^pbkdf2-sha256:([1-9][0-9]{0,9}):([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/;

/**
 * Hashes a password with Argon2id: a random 16-byte salt, a 32-byte output, and the result as a PHC string
 * (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`). The password is NFC-normalised first (NIST SP 800-63B
 * section 5.1.1.2), so the same characters typed on different systems verify alike.
 *
 * @example
 * const stored = await hashPassword('correct horse battery staple');
 * // later: const { ok, needsRehash } = await verifyPassword(stored, presented);
 */
export async function hashPassword(password: string, params: Argon2Params = defaultArgon2Params): Promise<string> {
  if (typeof password !== 'string') throw new TypeError('password must be a string');
  assertArgon2Params(params);
  try {
    return await argon2Hash(password.normalize('NFC'), {
      memoryCost: params.memoryCost,
      timeCost: params.timeCost,
      parallelism: params.parallelism,
      outputLen: hashBytes,
      salt: randomBytes(saltBytes),
      // algorithm and version are left at the library defaults, Argon2id and 0x13: the enums are ambient
      // const enums, which isolatedModules cannot inline. The tests check the PHC prefix.
    });
  } catch (cause) {
    throw new Error('Argon2id hashing failed', { cause });
  }
}

/**
 * Verifies a password against a stored hash of any supported form. `needsRehash` is true after a successful
 * verification when the stored form is legacy (md5, pbkdf2-sha256) or an Argon2id hash weaker than `params`
 * (the current policy): the caller then stores `await hashPassword(password, params)`. It is never true when
 * `ok` is false, so a caller that forgets to check `ok` cannot overwrite a hash with a wrong password.
 * A malformed stored value gives `{ ok: false, needsRehash: false }`; nothing here throws.
 *
 * @example
 * const { ok, needsRehash } = await verifyPassword(user.passwordHash, presented);
 * if (ok && needsRehash) await store.setPasswordHash(user.id, await hashPassword(presented));
 */
export async function verifyPassword(
  stored: string,
  password: string,
  params: Argon2Params = defaultArgon2Params,
): Promise<{ ok: boolean; needsRehash: boolean }> {
  const parsed = parseStoredHash(stored);
  if (parsed === undefined || typeof password !== 'string') return { ok: false, needsRehash: false };
  let ok: boolean;
  try {
    ok = await verifyParsed(parsed, stored, password);
  } catch {
    // The library refused the stored value after our own parse accepted it: treat it as malformed.
    return { ok: false, needsRehash: false };
  }
  return { ok, needsRehash: ok && needsRehash(parsed, params) };
}

async function verifyParsed(parsed: ParsedHash, stored: string, password: string): Promise<boolean> {
  switch (parsed.algorithm) {
    case 'argon2id':
      return argon2Verify(stored, password.normalize('NFC'));
    case 'md5':
      // Legacy forms hash the password exactly as the source system did, without normalisation.
      return digestsEqual(createHash('md5').update(password, 'utf8').digest(), parsed.digest);
    case 'pbkdf2-sha256': {
      // Async: up to 10M iterations run on the libuv pool instead of blocking the event loop.
      const derived = await pbkdf2Async(password, parsed.salt, parsed.iterations, parsed.key.length, 'sha256');
      return digestsEqual(derived, parsed.key);
    }
  }
}

function needsRehash(parsed: ParsedHash, params: Argon2Params): boolean {
  if (parsed.algorithm !== 'argon2id') return true;
  const current = parsed.params;
  return (
    current.memoryCost < params.memoryCost ||
    current.timeCost < params.timeCost ||
    current.parallelism < params.parallelism ||
    parsed.saltBytes < saltBytes ||
    parsed.hashBytes < hashBytes
  );
}

/** The algorithm of a stored hash, or `undefined` when it is malformed. Feeds the "still on legacy hashes" report. */
export function hashAlgorithm(stored: string): HashAlgorithm | undefined {
  return parseStoredHash(stored)?.algorithm;
}

/** The parameters of a stored Argon2id hash, or `undefined` for another or a malformed form. */
export function argon2ParamsOf(stored: string): Argon2Params | undefined {
  const parsed = parseStoredHash(stored);
  return parsed?.algorithm === 'argon2id' ? { ...parsed.params } : undefined;
}

function parseStoredHash(stored: string): ParsedHash | undefined {
  if (typeof stored !== 'string') return undefined;
  if (stored.startsWith('$argon2id$')) return parseArgon2id(stored);
  if (stored.startsWith('md5:')) {
    const hex = md5Pattern.exec(stored)?.[1];
    return hex === undefined ? undefined : { algorithm: 'md5', digest: Buffer.from(hex, 'hex') };
  }
  if (stored.startsWith('pbkdf2-sha256:')) {
    const match = pbkdf2Pattern.exec(stored);
    if (match === null) return undefined;
    const iterations = Number(match[1]);
    const salt = decodeBase64(match[2] ?? '', true);
    const key = decodeBase64(match[3] ?? '', true);
    if (pbkdf2Problem(iterations, salt, key) !== undefined || salt === undefined || key === undefined) return undefined;
    return { algorithm: 'pbkdf2-sha256', iterations, salt, key };
  }
  return undefined;
}

function parseArgon2id(stored: string): Extract<ParsedHash, { algorithm: 'argon2id' }> | undefined {
  const match = phcPattern.exec(stored);
  if (match === null) return undefined;
  const params = { memoryCost: Number(match[1]), timeCost: Number(match[2]), parallelism: Number(match[3]) };
  const salt = decodeBase64(match[4] ?? '', false);
  const output = decodeBase64(match[5] ?? '', false);
  if (argon2ParamsProblem(params) !== undefined || salt === undefined || output === undefined) return undefined;
  if (salt.length < argon2Limits.minSaltBytes || salt.length > argon2Limits.maxSaltBytes) return undefined;
  if (output.length < argon2Limits.minHashBytes || output.length > argon2Limits.maxHashBytes) return undefined;
  return { algorithm: 'argon2id', params, saltBytes: salt.length, hashBytes: output.length };
}

/**
 * Decodes canonical standard base64 (RFC 4648 section 4): `padded` demands `=` padding, otherwise it must be
 * absent (PHC). Anything that does not re-encode to the same text is refused, so one credential has exactly
 * one spelling and Node's lenient decoder (which skips junk) cannot hide a corrupted value.
 */
function decodeBase64(text: string, padded: boolean): Buffer | undefined {
  if (text.length === 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  const canonical = bytes.toString('base64');
  return (padded ? canonical : canonical.replace(/=+$/, '')) === text && bytes.length > 0 ? bytes : undefined;
}

function argon2ParamsProblem(params: Argon2Params): string | undefined {
  const { memoryCost, timeCost, parallelism } = params;
  if (!Number.isSafeInteger(parallelism) || parallelism < 1 || parallelism > argon2Limits.maxParallelism) {
    return `parallelism must be an integer from 1 to ${argon2Limits.maxParallelism}`;
  }
  if (!Number.isSafeInteger(timeCost) || timeCost < 1 || timeCost > argon2Limits.maxTimeCost) {
    return `timeCost must be an integer from 1 to ${argon2Limits.maxTimeCost}`;
  }
  if (!Number.isSafeInteger(memoryCost) || memoryCost < 8 * parallelism || memoryCost > argon2Limits.maxMemoryCost) {
    return `memoryCost must be an integer from 8 x parallelism to ${argon2Limits.maxMemoryCost} KiB`;
  }
  return undefined;
}

function assertArgon2Params(params: Argon2Params): void {
  const problem = argon2ParamsProblem(params);
  if (problem !== undefined) throw new RangeError(`Argon2 parameters: ${problem}`);
}

function pbkdf2Problem(
  iterations: number,
  salt: Buffer | undefined,
  key: Buffer | undefined,
): { field: 'iterations' | 'salt' | 'hash'; message: string } | undefined {
  const limits = pbkdf2Limits;
  if (!Number.isSafeInteger(iterations) || iterations < limits.minIterations || iterations > limits.maxIterations) {
    return { field: 'iterations', message: `must be an integer from ${limits.minIterations} to ${limits.maxIterations}` };
  }
  if (salt === undefined || salt.length < limits.minSaltBytes || salt.length > limits.maxSaltBytes) {
    return {
      field: 'salt',
      message: `must be canonical padded base64 of ${limits.minSaltBytes} to ${limits.maxSaltBytes} bytes`,
    };
  }
  if (key === undefined || key.length < limits.minKeyBytes || key.length > limits.maxKeyBytes) {
    return {
      field: 'hash',
      message: `must be canonical padded base64 of a ${limits.minKeyBytes} to ${limits.maxKeyBytes} byte derived key`,
    };
  }
  return undefined;
}

/** A credential exported from another system, as an admin imports it. */
export type ImportedCredential =
  | { algorithm: 'md5'; /** 32 hex digits, either case. */ hash: string }
  | {
      algorithm: 'pbkdf2-sha256';
      /** Keycloak `credentialData.hashIterations`. */
      iterations: number;
      /** Keycloak `secretData.salt`: padded base64. */
      salt: string;
      /** Keycloak `secretData.value`: padded base64; its decoded length is the derived key length. */
      hash: string;
    }
  | { algorithm: 'argon2id'; /** A PHC string, `$argon2id$v=19$m=..,t=..,p=..$salt$hash`. */ hash: string };

export type ImportedHashField = 'algorithm' | 'hash' | 'iterations' | 'salt';

/**
 * An imported credential is malformed. `field` names the offending input field, and the message says what
 * it must be without quoting the value, so it is safe to return to the importing admin and to log.
 */
export class ImportedHashError extends Error {
  readonly field: ImportedHashField;
  constructor(field: ImportedHashField, message: string) {
    super(`${field}: ${message}`);
    this.name = 'ImportedHashError';
    this.field = field;
  }
}

/**
 * Validates an imported credential and returns the stored form that `verifyPassword` accepts. The input is
 * checked at run time as well, since it arrives from an import file. Throws `ImportedHashError`.
 *
 * @example
 * importedHash({ algorithm: 'pbkdf2-sha256', iterations: 27500, salt: 'c2FsdHNhbHRzYWx0c2FsdA==', hash: keyB64 });
 * // 'pbkdf2-sha256:27500:c2FsdHNhbHRzYWx0c2FsdA==:...'
 */
export function importedHash(input: ImportedCredential): string {
  const candidate = input as Partial<Record<ImportedHashField, unknown>> | null;
  if (typeof candidate !== 'object' || candidate === null) {
    throw new ImportedHashError('algorithm', "must be 'md5', 'pbkdf2-sha256' or 'argon2id'");
  }
  const { algorithm, hash } = candidate;
  if (algorithm !== 'md5' && algorithm !== 'pbkdf2-sha256' && algorithm !== 'argon2id') {
    throw new ImportedHashError('algorithm', "must be 'md5', 'pbkdf2-sha256' or 'argon2id'");
  }
  if (typeof hash !== 'string') throw new ImportedHashError('hash', 'must be a string');
  switch (algorithm) {
    case 'md5': {
      if (!/^[0-9a-fA-F]{32}$/.test(hash)) throw new ImportedHashError('hash', 'must be 32 hexadecimal digits (an MD5 digest)');
      return `md5:${hash.toLowerCase()}`;
    }
    case 'pbkdf2-sha256': {
      const { iterations, salt } = candidate;
      if (typeof iterations !== 'number') throw new ImportedHashError('iterations', 'must be a number');
      if (typeof salt !== 'string') throw new ImportedHashError('salt', 'must be a string');
      const problem = pbkdf2Problem(iterations, decodeBase64(salt, true), decodeBase64(hash, true));
      if (problem !== undefined) throw new ImportedHashError(problem.field, problem.message);
      return `pbkdf2-sha256:${iterations}:${salt}:${hash}`;
    }
    case 'argon2id': {
      if (parseArgon2id(hash) === undefined) {
        throw new ImportedHashError(
          'hash',
          `must be an Argon2id PHC string ($argon2id$v=19$m=..,t=..,p=..$salt$hash) with m <= ${argon2Limits.maxMemoryCost} KiB, ` +
            `t <= ${argon2Limits.maxTimeCost}, p <= ${argon2Limits.maxParallelism}, a ${argon2Limits.minSaltBytes} to ` +
            `${argon2Limits.maxSaltBytes} byte salt and a ${argon2Limits.minHashBytes} to ${argon2Limits.maxHashBytes} byte hash`,
        );
      }
      return hash;
    }
  }
}

/**
 * One dummy Argon2id hash per parameter set, made on first use from a random password nobody knows. The
 * first `dummyVerify` with new parameters therefore costs a hash and a verification; later ones cost one
 * verification, like a real login.
 */
const dummyHashes = new Map<string, Promise<string>>();

function dummyHash(params: Argon2Params): Promise<string> {
  const key = `${params.memoryCost},${params.timeCost},${params.parallelism}`;
  let pending = dummyHashes.get(key);
  if (pending === undefined) {
    pending = hashPassword(randomBytes(32).toString('base64url'), params);
    dummyHashes.set(key, pending);
    pending.catch(() => dummyHashes.delete(key));
  }
  return pending;
}

/**
 * For a login whose user does not exist: one Argon2id verification against a dummy hash with the current
 * parameters, through the same path as `verifyPassword`, so the response time does not reveal whether the
 * account exists. Always resolves.
 *
 * @example
 * if (user === undefined) { await dummyVerify(presented); throw invalidCredentials(); }
 */
export async function dummyVerify(password: string, params: Argon2Params = defaultArgon2Params): Promise<void> {
  try {
    await verifyPassword(await dummyHash(params), typeof password === 'string' ? password : '', params);
  } catch {
    // Nothing to report: the caller answers "invalid credentials" either way.
  }
}
