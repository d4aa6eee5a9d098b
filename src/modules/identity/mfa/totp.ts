import { randomBytes } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';

/**
 * TOTP (RFC 6238) as every authenticator app speaks it: SHA-1, 6 digits, 30 s steps. A code is accepted in
 * its own step and one step either side (clock drift), and only in a step later than the last one accepted
 * for the factor, so a code (or an older one seen over a shoulder) works once.
 */
const period = 30;
const digits = 6;
const window = 1;
/** RFC 4226 recommends 160 bits: the size of the HMAC-SHA-1 key. */
const seedBytes = 20;

export function newTotpSeed(): Buffer {
  return randomBytes(seedBytes);
}

function totpOf(seed: Buffer, issuer: string, label: string): TOTP {
  return new TOTP({ issuer, label, algorithm: 'SHA1', digits, period, secret: new Secret({ buffer: new Uint8Array(seed).buffer }) });
}

/** What an authenticator app needs: the base32 seed to type in, and the `otpauth://` URI for a QR code. */
export function totpProvisioning(seed: Buffer, issuer: string, label: string): { secret: string; otpauthUri: string } {
  const totp = totpOf(seed, issuer, label);
  return { secret: totp.secret.base32, otpauthUri: totp.toString() };
}

/**
 * The time step `code` belongs to at `now`, if it is a valid code and that step is later than `lastUsedStep`;
 * undefined otherwise. The caller stores the step in the same statement that accepts it (compare-and-set),
 * so two requests racing with one code cannot both pass.
 */
export function acceptedTotpStep(seed: Buffer, code: string, now: Date, lastUsedStep: number | null): number | undefined {
  if (!/^[0-9]{6}$/.test(code)) return undefined;
  const timestamp = now.getTime();
  const delta = TOTP.validate({ token: code, secret: new Secret({ buffer: new Uint8Array(seed).buffer }), algorithm: 'SHA1', digits, period, timestamp, window });
  if (delta === null) return undefined;
  const step = TOTP.counter({ period, timestamp }) + delta;
  return lastUsedStep !== null && step <= lastUsedStep ? undefined : step;
}

/** The current code of a seed: for tests and for the enrolment check of a software authenticator. */
export function totpCode(seed: Buffer, at: Date): string {
  return TOTP.generate({ secret: new Secret({ buffer: new Uint8Array(seed).buffer }), algorithm: 'SHA1', digits, period, timestamp: at.getTime() });
}
