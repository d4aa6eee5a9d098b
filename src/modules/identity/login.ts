import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import type { KeyringService } from '../keys/service.ts';
import { blockLoginSubject, clearLoginSubject, releaseLoginAttempt, reserveLoginAttempt, type ThrottleTable, userThrottles } from './login-throttles-store.ts';
import { type PasswordPolicy, passwordExpired } from './password-policy.ts';
import { type Argon2Params, defaultArgon2Params, dummyVerify, hashPassword, verifyPassword } from './passwords.ts';
import { normalizeEmail, type UsersService } from './service.ts';
import { findLoginUser, type LoginAccount, upgradePasswordHash } from './store.ts';

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

export interface PasswordAttempt {
  email: string;
  password: string;
  /** The client's address as the server sees it (behind a proxy: configure trustProxy). */
  source: string;
}

export interface LoginAttempt extends PasswordAttempt {
  tenantId: string;
}

/**
 * What one realm gives the password login: a tenant's users, or the platform's operators. Each keeps its
 * own accounts and throttle rows; the login flow, the limits and the answers are the same for both.
 */
export interface LoginRealm {
  readonly throttles: ThrottleTable;
  /** The throttle rows' scope: the tenant id, or 'platform'. */
  readonly scope: string;
  /** Where this realm's accounts change an expired or admin-set password (named in the 403). */
  readonly passwordChangeRoute: string;
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Keyed hashes of the e-mail (the account's lookup) and of the source address; undefined when the realm
   * logs nobody in (an unknown, inactive or shredded tenant), which then looks like a wrong password.
   */
  lookupHashes(email: string, source: string): Promise<{ account: Buffer; source: Buffer } | undefined>;
  findAccount(tx: Queryable, emailHash: Buffer): Promise<LoginAccount | undefined>;
  upgradeHash(tx: Queryable, id: string, previous: string, next: string): Promise<void>;
  passwordPolicy(): Promise<PasswordPolicy>;
  recordLogin(id: string, at: Date): Promise<void>;
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

const accountSubject = (hash: Buffer) => `account:${hash.toString('hex')}`;

/**
 * Password login with brute-force protection, for any realm. Each check is reserved before it runs (a
 * counter increment in its own transaction), so N parallel guesses cannot get more than the limit of checks;
 * throttles are keyed by the e-mail's keyed hash, so an unknown address is throttled exactly like a real
 * one and a lockout says nothing about whether the account exists. Unknown accounts cost one dummy
 * Argon2id verification.
 */
export class PasswordLogin {
  readonly #clock: Clock;
  readonly #argon2: Argon2Params;
  readonly #policy: ThrottlePolicy;

  constructor(clock: Clock, options: { argon2?: Argon2Params; throttle?: ThrottlePolicy } = {}) {
    this.#clock = clock;
    this.#argon2 = options.argon2 ?? defaultArgon2Params;
    this.#policy = options.throttle ?? defaultThrottlePolicy;
  }

  /**
   * Verifies the password and returns the account id. A legacy or weaker hash is replaced by an Argon2id
   * hash with the current parameters, and the login time is recorded. `allowPasswordChange` lets the
   * change-password flow through when the password expired or must be changed.
   */
  async authenticate(realm: LoginRealm, attempt: PasswordAttempt, options: { allowPasswordChange?: boolean } = {}): Promise<{ id: string }> {
    const hashes = await realm.lookupHashes(normalizeEmail(attempt.email), attempt.source);
    if (hashes === undefined) {
      await dummyVerify(attempt.password, this.#argon2);
      throw invalidCredentials();
    }
    const { throttles, scope } = realm;
    const account = accountSubject(hashes.account);
    const source = `source:${hashes.source.toString('hex')}`;
    const now = this.#clock.now();
    const reserved = await realm.transaction(async (tx) => ({
      account: await reserveLoginAttempt(tx, throttles, scope, account, now, this.#policy.windowMs),
      source: await reserveLoginAttempt(tx, throttles, scope, source, now, this.#policy.windowMs),
    }));
    const blockedUntil = [reserved.account, reserved.source].flatMap((entry) => ('blockedUntil' in entry ? [entry.blockedUntil] : []));
    if (blockedUntil.length > 0 || !('attempts' in reserved.account) || !('attempts' in reserved.source)) {
      const latest = new Date(Math.max(...blockedUntil.map((date) => date.getTime()), now.getTime()));
      throw tooManyAttempts(latest, now);
    }
    const attempts = { account: reserved.account.attempts, source: reserved.source.attempts };
    if (attempts.account > this.#policy.accountMaxFailures || attempts.source > this.#policy.sourceMaxFailures) {
      const until = new Date(now.getTime() + this.#policy.lockoutMs);
      await realm.transaction(async (tx) => {
        if (attempts.account > this.#policy.accountMaxFailures) await blockLoginSubject(tx, throttles, scope, account, until);
        if (attempts.source > this.#policy.sourceMaxFailures) await blockLoginSubject(tx, throttles, scope, source, until);
      });
      throw tooManyAttempts(until, now);
    }

    const found = await realm.transaction((tx) => realm.findAccount(tx, hashes.account));
    let verified = { ok: false, needsRehash: false };
    if (found?.password_hash == null) await dummyVerify(attempt.password, this.#argon2);
    else verified = await verifyPassword(found.password_hash, attempt.password, this.#argon2);

    if (!verified.ok || found === undefined || found.password_hash === null) {
      await this.#recordFailure(realm, { account, source }, attempts);
      throw invalidCredentials();
    }
    await realm.transaction(async (tx) => {
      await clearLoginSubject(tx, throttles, scope, account);
      await releaseLoginAttempt(tx, throttles, scope, source);
    });
    // The password is right from here on: telling the caller more reveals nothing they do not know.
    if (found.status === 'disabled') throw new BulwarkError('account_disabled');
    if (verified.needsRehash) {
      const upgraded = await hashPassword(attempt.password, this.#argon2);
      await realm.transaction((tx) => realm.upgradeHash(tx, found.id, found.password_hash ?? '', upgraded));
    }
    if (options.allowPasswordChange !== true) {
      const policy = await realm.passwordPolicy();
      const expired = found.password_changed_at !== null && passwordExpired(policy, found.password_changed_at, now);
      if (found.must_change_password || expired) {
        throw new BulwarkError('password_change_required', { message: `The password must be changed (${realm.passwordChangeRoute}) before logging in.` });
      }
    }
    await realm.recordLogin(found.id, now);
    return { id: found.id };
  }

  /** An admin lifts an account's lockout before it runs out (the source throttles stay). */
  async unlock(realm: LoginRealm, email: string): Promise<void> {
    const hashes = await realm.lookupHashes(normalizeEmail(email), '');
    if (hashes === undefined) return;
    await realm.transaction((tx) => clearLoginSubject(tx, realm.throttles, realm.scope, accountSubject(hashes.account)));
  }

  async #recordFailure(realm: LoginRealm, subjects: { account: string; source: string }, attempts: { account: number; source: number }): Promise<void> {
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
    await realm.transaction(async (tx) => {
      if (accountUntil !== undefined) await blockLoginSubject(tx, realm.throttles, realm.scope, subjects.account, new Date(accountUntil));
      if (sourceUntil !== undefined) await blockLoginSubject(tx, realm.throttles, realm.scope, subjects.source, new Date(sourceUntil));
    });
  }
}

/** Login of a tenant's users: the tenant realm over the users store, with the tenant's keys and policy. */
export class LoginService {
  readonly #db: Database;
  readonly #keyring: KeyringService;
  readonly #users: UsersService;
  readonly #login: PasswordLogin;
  readonly #tenantStatus: (tenantId: string) => Promise<string | null>;

  constructor(
    db: Database,
    keyring: KeyringService,
    users: UsersService,
    login: PasswordLogin,
    options: { tenantStatus: (tenantId: string) => Promise<string | null> },
  ) {
    this.#db = db;
    this.#keyring = keyring;
    this.#users = users;
    this.#login = login;
    this.#tenantStatus = options.tenantStatus;
  }

  async authenticate(attempt: LoginAttempt, options: { allowPasswordChange?: boolean } = {}): Promise<{ userId: string }> {
    const { id } = await this.#login.authenticate(this.#realm(attempt.tenantId), attempt, options);
    return { userId: id };
  }

  /** Self-service change with the current password; also the way out of an expired or admin-set password. */
  async changePassword(attempt: LoginAttempt & { newPassword: string }): Promise<{ userId: string }> {
    const { userId } = await this.authenticate(attempt, { allowPasswordChange: true });
    await this.#users.setPassword(attempt.tenantId, userId, attempt.newPassword, false);
    return { userId };
  }

  /** An admin lifts a user's lockout before it runs out. */
  async unlock(tenantId: string, userId: string): Promise<void> {
    await this.#login.unlock(this.#realm(tenantId), await this.#users.emailOf(tenantId, userId));
  }

  #realm(tenantId: string): LoginRealm {
    const db = this.#db;
    const keyring = this.#keyring;
    const users = this.#users;
    const tenantStatus = this.#tenantStatus;
    return {
      throttles: userThrottles,
      scope: tenantId,
      passwordChangeRoute: 'POST /v1/auth/password',
      transaction: (work) => db.withTenant(tenantId, work),
      async lookupHashes(email, source) {
        if ((await tenantStatus(tenantId)) !== 'active') return undefined;
        try {
          return await keyring.withKeys(tenantId, (keys) => ({ account: keys.lookupHash(email), source: keys.lookupHash(`source:${source}`) }));
        } catch (error) {
          // A shredded tenant looks like a wrong password; a KMS outage or refusal does not.
          if (error instanceof BulwarkError && error.code === 'keys_destroyed') return undefined;
          throw error;
        }
      },
      findAccount: (tx, emailHash) => findLoginUser(tx, tenantId, emailHash),
      upgradeHash: (tx, id, previous, next) => upgradePasswordHash(tx, tenantId, id, previous, next),
      passwordPolicy: () => users.passwordPolicy(tenantId),
      recordLogin: (id, at) => users.recordLogin(tenantId, id, at),
    };
  }
}
