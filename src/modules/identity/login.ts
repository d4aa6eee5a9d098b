import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { KeyringService } from '../keys/service.ts';
import { passwordExpired } from './password-policy.ts';
import { type Argon2Params, defaultArgon2Params, dummyVerify, hashPassword, verifyPassword } from './passwords.ts';
import { normalizeEmail, type UsersService } from './service.ts';
import {
  blockLoginSubject,
  clearLoginSubject,
  findLoginUser,
  releaseLoginAttempt,
  reserveLoginAttempt,
  upgradePasswordHash,
} from './store.ts';

/**
 * Brute-force limits. Per account: after `delayAfter` failures each further check waits twice as long as
 * the last (1 s, 2 s, 4 s...), and `accountMaxFailures` failures in the window lock it for `lockoutMs`.
 * Per source address: `sourceMaxFailures` in the window lock that address out of every account.
 */
export interface ThrottlePolicy {
  accountMaxFailures: number;
  sourceMaxFailures: number;
  delayAfter: number;
  baseDelayMs: number;
  windowMs: number;
  lockoutMs: number;
}

export const defaultThrottlePolicy: ThrottlePolicy = Object.freeze({
  accountMaxFailures: 5,
  sourceMaxFailures: 50,
  delayAfter: 3,
  baseDelayMs: 1000,
  windowMs: 15 * 60_000,
  lockoutMs: 15 * 60_000,
});

export interface LoginAttempt {
  tenantId: string;
  email: string;
  password: string;
  /** The client's address as the server sees it (behind a proxy: configure trustProxy). */
  source: string;
}

// Unknown tenant, unknown user, no password set, wrong password: one answer, so none of them is revealed.
const invalidCredentials = () => new BulwarkError('invalid_credentials', { message: 'The e-mail address or password is wrong.' });

function tooManyAttempts(until: Date, now: Date): BulwarkError {
  const seconds = Math.max(1, Math.ceil((until.getTime() - now.getTime()) / 1000));
  return new BulwarkError('too_many_attempts', {
    message: `Too many failed attempts; retry in ${seconds} s.`,
    headers: { 'retry-after': String(seconds) },
  });
}

/**
 * Password login with brute-force protection. Each check is reserved before it runs (a counter increment in
 * its own transaction), so N parallel guesses cannot get more than the limit of checks; throttles are keyed
 * by the e-mail's keyed hash, so an unknown address is throttled exactly like a real one and a lockout says
 * nothing about whether the account exists. Unknown users cost one dummy Argon2id verification.
 */
export class LoginService {
  readonly #db: Database;
  readonly #keyring: KeyringService;
  readonly #users: UsersService;
  readonly #clock: Clock;
  readonly #argon2: Argon2Params;
  readonly #policy: ThrottlePolicy;
  readonly #tenantStatus: (tenantId: string) => Promise<string | null>;

  constructor(
    db: Database,
    keyring: KeyringService,
    users: UsersService,
    clock: Clock,
    options: { tenantStatus: (tenantId: string) => Promise<string | null>; argon2?: Argon2Params; throttle?: ThrottlePolicy },
  ) {
    this.#db = db;
    this.#tenantStatus = options.tenantStatus;
    this.#keyring = keyring;
    this.#users = users;
    this.#clock = clock;
    this.#argon2 = options.argon2 ?? defaultArgon2Params;
    this.#policy = options.throttle ?? defaultThrottlePolicy;
  }

  /**
   * Verifies the password and returns the user id. A legacy or weaker hash is replaced by an Argon2id hash
   * with the current parameters, and the last login time is recorded. `allowPasswordChange` lets the
   * change-password flow through when the password expired or must be changed.
   */
  async authenticate(attempt: LoginAttempt, options: { allowPasswordChange?: boolean } = {}): Promise<{ userId: string }> {
    const { tenantId } = attempt;
    const subjects = await this.#subjects(attempt);
    if (subjects === undefined) {
      await dummyVerify(attempt.password, this.#argon2);
      throw invalidCredentials();
    }
    const { account, source, emailHmac } = subjects;
    const now = this.#clock.now();
    const reserved = await this.#db.withTenant(tenantId, async (tx) => ({
      account: await reserveLoginAttempt(tx, tenantId, account, now, this.#policy.windowMs),
      source: await reserveLoginAttempt(tx, tenantId, source, now, this.#policy.windowMs),
    }));
    const blockedUntil = [reserved.account, reserved.source].flatMap((entry) => ('blockedUntil' in entry ? [entry.blockedUntil] : []));
    if (blockedUntil.length > 0 || !('attempts' in reserved.account) || !('attempts' in reserved.source)) {
      const latest = new Date(Math.max(...blockedUntil.map((date) => date.getTime()), now.getTime()));
      throw tooManyAttempts(latest, now);
    }
    const attempts = { account: reserved.account.attempts, source: reserved.source.attempts };
    if (attempts.account > this.#policy.accountMaxFailures || attempts.source > this.#policy.sourceMaxFailures) {
      const until = new Date(now.getTime() + this.#policy.lockoutMs);
      await this.#db.withTenant(tenantId, async (tx) => {
        if (attempts.account > this.#policy.accountMaxFailures) await blockLoginSubject(tx, tenantId, account, until);
        if (attempts.source > this.#policy.sourceMaxFailures) await blockLoginSubject(tx, tenantId, source, until);
      });
      throw tooManyAttempts(until, now);
    }

    const user = await this.#db.withTenant(tenantId, (tx) => findLoginUser(tx, tenantId, emailHmac));
    let verified = { ok: false, needsRehash: false };
    if (user?.password_hash == null) await dummyVerify(attempt.password, this.#argon2);
    else verified = await verifyPassword(user.password_hash, attempt.password, this.#argon2);

    if (!verified.ok || user === undefined || user.password_hash === null) {
      await this.#recordFailure(tenantId, { account, source }, attempts);
      throw invalidCredentials();
    }
    await this.#db.withTenant(tenantId, async (tx) => {
      await clearLoginSubject(tx, tenantId, account);
      await releaseLoginAttempt(tx, tenantId, source);
    });
    // The password is right from here on: telling the caller more reveals nothing they do not know.
    if (user.status === 'disabled') throw new BulwarkError('account_disabled');
    if (verified.needsRehash) {
      const upgraded = await hashPassword(attempt.password, this.#argon2);
      await this.#db.withTenant(tenantId, (tx) => upgradePasswordHash(tx, tenantId, user.id, user.password_hash ?? '', upgraded));
    }
    if (options.allowPasswordChange !== true) {
      const policy = await this.#users.passwordPolicy(tenantId);
      const expired = user.password_changed_at !== null && passwordExpired(policy, user.password_changed_at, now);
      if (user.must_change_password || expired) {
        throw new BulwarkError('password_change_required', { message: 'The password must be changed (POST /v1/auth/password) before logging in.' });
      }
    }
    await this.#users.recordLogin(tenantId, user.id, now);
    return { userId: user.id };
  }

  /** Self-service change with the current password; also the way out of an expired or admin-set password. */
  async changePassword(attempt: LoginAttempt & { newPassword: string }): Promise<{ userId: string }> {
    const { userId } = await this.authenticate(attempt, { allowPasswordChange: true });
    await this.#users.setPassword(attempt.tenantId, userId, attempt.newPassword, false);
    return { userId };
  }

  /** An admin lifts a user's lockout before it runs out. */
  async unlock(tenantId: string, userId: string): Promise<void> {
    const email = await this.#users.emailOf(tenantId, userId);
    await this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, (tx) => clearLoginSubject(tx, tenantId, `account:${keys.lookupHash(normalizeEmail(email)).toString('hex')}`)),
    );
  }

  async #recordFailure(tenantId: string, subjects: { account: string; source: string }, attempts: { account: number; source: number }): Promise<void> {
    const now = this.#clock.now().getTime();
    const { accountMaxFailures, sourceMaxFailures, delayAfter, baseDelayMs, lockoutMs } = this.#policy;
    const accountUntil =
      attempts.account >= accountMaxFailures
        ? now + lockoutMs
        : attempts.account >= delayAfter
          ? now + baseDelayMs * 2 ** (attempts.account - delayAfter)
          : undefined;
    const sourceUntil = attempts.source >= sourceMaxFailures ? now + lockoutMs : undefined;
    if (accountUntil === undefined && sourceUntil === undefined) return;
    await this.#db.withTenant(tenantId, async (tx) => {
      if (accountUntil !== undefined) await blockLoginSubject(tx, tenantId, subjects.account, new Date(accountUntil));
      if (sourceUntil !== undefined) await blockLoginSubject(tx, tenantId, subjects.source, new Date(sourceUntil));
    });
  }

  /** The throttle subjects and the e-mail hash; undefined when the tenant cannot log anyone in. */
  async #subjects(attempt: LoginAttempt): Promise<{ account: string; source: string; emailHmac: Buffer } | undefined> {
    if ((await this.#tenantStatus(attempt.tenantId)) !== 'active') return undefined;
    try {
      return await this.#keyring.withKeys(attempt.tenantId, (keys) => {
        const emailHmac = keys.lookupHash(normalizeEmail(attempt.email));
        return {
          emailHmac,
          account: `account:${emailHmac.toString('hex')}`,
          source: `source:${keys.lookupHash(`source:${attempt.source}`).toString('hex')}`,
        };
      });
    } catch (error) {
      // A shredded tenant looks like a wrong password; a KMS outage or refusal does not.
      if (error instanceof BulwarkError && error.code === 'keys_destroyed') return undefined;
      throw error;
    }
  }
}
