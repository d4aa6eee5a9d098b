import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import { adjacencyGraphs, dictionary as commonDictionary } from '@zxcvbn-ts/language-common';
import { dictionary as englishDictionary, translations } from '@zxcvbn-ts/language-en';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { verifyPassword } from './passwords.ts';

/**
 * A tenant's password policy (issue #4) and the check of a new password against it. Pure: the caller loads
 * the policy and the user's earlier hashes and passes them in.
 */
export interface PasswordPolicy {
  /** Unicode code points after NFC normalisation; 8..128, default 12. */
  minLength: number;
  /** 64..1024 and >= minLength, default 128. */
  maxLength: number;
  requireLowercase: boolean;
  requireUppercase: boolean;
  requireDigit: boolean;
  /** Anything that is not a letter or a number: punctuation, symbols, spaces. */
  requireSymbol: boolean;
  /** Minimum zxcvbn score, 0..4, default 3 ("safely unguessable: moderate protection from offline attacks"). */
  minStrength: number;
  /** Refuse passwords on the shipped common-password list (offline). Default true. */
  rejectCommon: boolean;
  /** The last N passwords may not be reused; 0..24, default 5. */
  historyCount: number;
  /** Days until a password expires; null (never, the default, as NIST SP 800-63B advises) or 1..3650. */
  expiryDays: number | null;
}

export const defaultPasswordPolicy: PasswordPolicy = Object.freeze({
  minLength: 12,
  maxLength: 128,
  requireLowercase: false,
  requireUppercase: false,
  requireDigit: false,
  requireSymbol: false,
  minStrength: 3,
  rejectCommon: true,
  historyCount: 5,
  expiryDays: null,
});

export type PasswordRule =
  | 'min_length'
  | 'max_length'
  | 'lowercase'
  | 'uppercase'
  | 'digit'
  | 'symbol'
  | 'too_weak'
  | 'common'
  | 'reused'
  | 'contains_user_data';

export interface PasswordFailure {
  rule: PasswordRule;
  message: string;
}

export type PasswordCheckResult = { ok: true } | { ok: false; failures: PasswordFailure[] };

export interface PasswordCheckContext {
  /** The user's email address and names: the password may not contain them, and zxcvbn scores them as known words. */
  userInputs?: string[];
  /** Stored hashes of earlier passwords, newest first; the first `historyCount` are checked. */
  history?: string[];
}

export interface PolicyProblem {
  field: keyof PasswordPolicy;
  message: string;
}

/**
 * zxcvbn scores only this many leading code points: it is synchronous and its matching grows fast with
 * length (a crafted 256-character input still cost about 0.17 s of event loop, 128 about 0.05 s). Any
 * password this long that scores low in its first 128 characters deserves the verdict anyway.
 */
export const strengthScoredLength = 128;
/** A name or email local part shorter than this is too common a substring to forbid ("ann", "li"). */
const minUserDataLength = 4;
const dayMs = 86_400_000;

// Configured once at module load (about 0.1 s): the common and English dictionaries, the keyboard graphs
// for spatial patterns, and English feedback. zxcvbn-ts 4 replaced the global `zxcvbnOptions.setOptions`
// of version 3 with this factory. maxLength is in UTF-16 units: twice the code points we pass, so zxcvbn
// never cuts a surrogate pair of its own.
// l33tMaxSubstitutions: with the default 100, a crafted 256-character password (all l33t-able symbols) kept
// the event loop busy for 0.8-1.2 s; at 10 the worst we found at 256 stayed under 0.2 s, and the scores of ordinary
// l33t passwords (P@ssw0rd!, Tr0ub4dor&3, m0nk3y!!) did not change.
const zxcvbn = new ZxcvbnFactory({
  dictionary: { ...commonDictionary, ...englishDictionary },
  graphs: adjacencyGraphs,
  translations,
  maxLength: strengthScoredLength * 2,
  l33tMaxSubstitutions: 10,
});

// The shipped common-password list: the `passwords-common` dictionary of @zxcvbn-ts/language-common 4.1
// (49,233 entries, all lowercase, 3 to 20 characters, ranked by frequency; zxcvbn-ts builds it from public
// breach-derived frequency lists). It ships inside the package, so the check runs offline. Matching is exact
// after lowercasing; near misses ("Password1!") are zxcvbn's job, which knows the same list with l33t and
// capitalisation variants.
const commonPasswords: ReadonlySet<string> = new Set(commonDictionary['passwords-common']);

const lowercasePattern = /\p{Ll}/u;
const uppercasePattern = /\p{Lu}/u;
const digitPattern = /\p{Nd}/u;
const symbolPattern = /[^\p{L}\p{M}\p{N}]/u;
const userDataSeparators = /[\s._+-]+/u;

/** Problems with a policy document (for PATCH validation), every one at once; empty when it is valid. */
export function policyProblems(policy: PasswordPolicy): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  // Checked at run time too: a PATCH body may hold anything, even before its schema is applied.
  const document: unknown = policy;
  const fields = (typeof document === 'object' && document !== null ? document : {}) as Partial<Record<keyof PasswordPolicy, unknown>>;
  const integerIn = (field: keyof PasswordPolicy, min: number, max: number): void => {
    const value = fields[field];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      problems.push({ field, message: `must be an integer from ${min} to ${max}` });
    }
  };
  const boolean = (field: keyof PasswordPolicy): void => {
    if (typeof fields[field] !== 'boolean') problems.push({ field, message: 'must be true or false' });
  };

  integerIn('minLength', 8, 128);
  integerIn('maxLength', 64, 1024);
  const { minLength, maxLength } = fields;
  if (typeof minLength === 'number' && typeof maxLength === 'number' && maxLength < minLength) {
    problems.push({ field: 'maxLength', message: 'must be at least minLength' });
  }
  boolean('requireLowercase');
  boolean('requireUppercase');
  boolean('requireDigit');
  boolean('requireSymbol');
  integerIn('minStrength', 0, 4);
  boolean('rejectCommon');
  integerIn('historyCount', 0, 24);
  if (fields.expiryDays !== null) {
    const value = fields.expiryDays;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 3650) {
      problems.push({ field: 'expiryDays', message: 'must be null (never) or an integer from 1 to 3650' });
    }
  }
  return problems;
}

/**
 * Checks a new password against a policy and returns every rule it fails, each with a message that says what
 * the rule requires. Messages never contain the password or the user's data. Lengths count Unicode code
 * points after NFC normalisation.
 *
 * @example
 * const result = await checkPassword(newPassword, policy, { userInputs: [user.email, user.name], history });
 * if (!result.ok) throw new BulwarkError('validation_failed', { extensions: { failures: result.failures } });
 */
export async function checkPassword(
  password: string,
  policy: PasswordPolicy,
  context: PasswordCheckContext = {},
): Promise<PasswordCheckResult> {
  if (typeof password !== 'string') throw new TypeError('password must be a string');
  const normalized = password.normalize('NFC');
  // Code points, as the policy counts length (not grapheme clusters: an emoji sequence counts as several).
  const codePoints = Array.from(normalized);
  const lowered = normalized.toLowerCase();
  const userData = userDataTokens(context.userInputs ?? []);
  const failures: PasswordFailure[] = [];
  const fail = (rule: PasswordRule, message: string): void => {
    failures.push({ rule, message });
  };

  if (codePoints.length < policy.minLength) fail('min_length', `Password must be at least ${policy.minLength} characters long.`);
  if (codePoints.length > policy.maxLength) fail('max_length', `Password must be at most ${policy.maxLength} characters long.`);
  if (policy.requireLowercase && !lowercasePattern.test(normalized)) fail('lowercase', 'Password must contain a lowercase letter.');
  if (policy.requireUppercase && !uppercasePattern.test(normalized)) fail('uppercase', 'Password must contain an uppercase letter.');
  if (policy.requireDigit && !digitPattern.test(normalized)) fail('digit', 'Password must contain a digit.');
  if (policy.requireSymbol && !symbolPattern.test(normalized)) {
    fail('symbol', 'Password must contain a symbol: a character that is not a letter or digit, such as a space or punctuation.');
  }
  if (policy.minStrength > 0 && strength(codePoints, userData) < policy.minStrength) {
    fail(
      'too_weak',
      `Password is too easy to guess (it must reach strength ${policy.minStrength} of 4): avoid common words, names, ` +
        'dates, keyboard patterns and repeated characters, or make it longer.',
    );
  }
  if (policy.rejectCommon && commonPasswords.has(lowered)) {
    fail('common', 'Password is on a list of commonly used passwords: choose one that is not.');
  }
  if (policy.historyCount > 0 && (await reusesHistory(password, (context.history ?? []).slice(0, policy.historyCount)))) {
    fail('reused', `Password must differ from the last ${policy.historyCount} passwords used on this account.`);
  }
  if (userData.some((token) => lowered.includes(token))) {
    fail('contains_user_data', 'Password must not contain your email address or your name.');
  }
  return failures.length === 0 ? { ok: true } : { ok: false, failures };
}

/** Whether a password set at `changedAt` has expired under the policy at `now`. An invalid date counts as expired. */
/** A stored policy (validated when written) with the defaults for fields added since; none stored: the defaults. */
export function withPolicyDefaults(stored: unknown): PasswordPolicy {
  return { ...defaultPasswordPolicy, ...(typeof stored === 'object' && stored !== null ? (stored as Partial<PasswordPolicy>) : {}) };
}

/** `checkPassword` for a write: throws 422 password_policy_violation naming each failed rule. */
export async function assertPasswordAcceptable(password: string, policy: PasswordPolicy, context: PasswordCheckContext): Promise<void> {
  const result = await checkPassword(password, policy, context);
  if (result.ok) return;
  throw new BulwarkError('password_policy_violation', {
    message: result.failures.map((failure) => failure.message).join(' '),
    extensions: { rules: result.failures.map((failure) => ({ rule: failure.rule, message: failure.message })) },
  });
}

export function passwordExpired(policy: PasswordPolicy, changedAt: Date, now: Date): boolean {
  if (policy.expiryDays === null) return false;
  const age = now.getTime() - changedAt.getTime();
  // NaN (an invalid date) fails closed: the user is asked for a new password rather than kept forever.
  if (Number.isNaN(age)) return true;
  return age >= policy.expiryDays * dayMs;
}

function strength(codePoints: string[], userData: string[]): number {
  return zxcvbn.check(codePoints.slice(0, strengthScoredLength).join(''), userData).score;
}

/**
 * The substrings a password may not contain: each email's local part and each name, whole and split at
 * spaces, dots, underscores, plus signs and hyphens ("mary.ann.smith@x" gives "mary.ann.smith", "mary",
 * "smith"), lowercased and NFC-normalised, of at least four code points.
 */
function userDataTokens(userInputs: string[]): string[] {
  const tokens = new Set<string>();
  for (const input of userInputs) {
    if (typeof input !== 'string') continue;
    let text = input.normalize('NFC').toLowerCase().trim();
    const at = text.lastIndexOf('@');
    if (at >= 0) text = text.slice(0, at);
    for (const token of [text, ...text.split(userDataSeparators)]) {
      if (Array.from(token).length >= minUserDataLength) tokens.add(token);
    }
  }
  return [...tokens];
}

async function reusesHistory(password: string, history: string[]): Promise<boolean> {
  // In parallel on the libuv pool; a malformed entry simply does not match.
  const results = await Promise.all(history.map((stored) => verifyPassword(stored, password)));
  return results.some((result) => result.ok);
}
