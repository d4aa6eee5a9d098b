import { randomInt } from 'node:crypto';

/**
 * One-time recovery codes: ten of them, shown once when made, stored as keyed hashes. Ten characters from
 * an alphabet without look-alikes (no 0/o, 1/l/i) give 50 bits each: far beyond guessing under the
 * login throttles, and short enough to type from paper.
 */
const alphabet = 'abcdefghjkmnpqrstuvwxyz23456789';
export const recoveryCodeCount = 10;
const codeLength = 10;

export function newRecoveryCodes(): string[] {
  return Array.from({ length: recoveryCodeCount }, () => {
    const chars = Array.from({ length: codeLength }, () => alphabet[randomInt(alphabet.length)] ?? '');
    return `${chars.slice(0, 5).join('')}-${chars.slice(5).join('')}`;
  });
}

/** The form that is hashed: case, spaces and the hyphen do not matter when typing a code back. */
export function normalizeRecoveryCode(code: string): string | undefined {
  const compact = code.toLowerCase().replace(/[\s-]/g, '');
  return new RegExp(`^[${alphabet}]{${codeLength}}$`).test(compact) ? compact : undefined;
}
