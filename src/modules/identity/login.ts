import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { actAs } from '../../platform/http/request-context.ts';
import type { AuditEvent, AuditRecorder, AuditScope, AuditService } from '../audit/service.ts';
import type { KeyringService, TenantKeys } from '../keys/service.ts';
import { blockLoginSubject, clearLoginSubject, releaseLoginAttempt, reserveLoginAttempts, settleLoginAttempt, type ThrottleTable, userThrottles } from './login-throttles-store.ts';
import { type PasswordPolicy, passwordExpired, withPolicyDefaults } from './password-policy.ts';
import { type Argon2Params, defaultArgon2Params, dummyVerify, hashPassword, verifyPassword } from './passwords.ts';
import { normalizeEmail, stampLogin, type UsersService } from './service.ts';
import { findLoginPolicy } from './mfa/store.ts';
import { findLoginUser, findPasswordPolicy, type LoginAccount, upgradePasswordHash } from './store.ts';

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
 * own accounts and throttle rows; the login flow, the limits and the answers are the same for both. A
 * realm is made for one attempt, with its keys in hand (no key is loaded inside a transaction).
 */
export interface LoginRealm {
  readonly throttles: ThrottleTable;
  /** The throttle rows' scope: the tenant id, or 'platform'. */
  readonly scope: string;
  /** Where this realm's accounts change an expired or admin-set password (named in the 403). */
  readonly passwordChangeRoute: string;
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Keyed hashes of the (normalised) e-mail, the account's lookup, and of the source address. */
  lookupHashes(email: string, source: string): { account: Buffer; source: Buffer };
  findAccount(tx: Queryable, emailHash: Buffer): Promise<LoginAccount | undefined>;
  passwordPolicy(tx: Queryable): Promise<PasswordPolicy>;
  /** Whether password login is refused for the account because the realm requires SSO (none: never). */
  ssoRequiredFor?(tx: Queryable): Promise<(accountId: string) => boolean>;
  upgradeHash(tx: Queryable, id: string, previous: string, next: string): Promise<void>;
  /** Stamps the login time into the account's sealed PII, unless the row changed since it was read. */
  recordLogin(tx: Queryable, account: LoginAccount, at: Date): Promise<void>;
  /** The chain the realm's authentication events go to. */
  readonly auditScope: AuditScope;
  /** What an account of this realm is, as actor and target of its events. */
  readonly accountKind: 'user' | 'operator';
}

export interface LoginOptions<T> {
  /**
   * `login` (default) starts a session: its success is `auth.login`. `password-change` only checks the current
   * password for a change (expired or admin-set ones too); the change records itself, failures are
   * `auth.password.change` failures.
   */
  purpose?: 'login' | 'password-change';
  /** Runs in the transaction that records the successful login (e.g. starts the session). */
  onSuccess: (tx: Queryable, accountId: string) => Promise<T>;
  /** The session the login started, for its event (none yet when a second factor is due). */
  sessionOf?: (result: T) => string | undefined;
  /** More of the login's event detail (e.g. that a second factor is due). */
  detailOf?: (result: T) => Record<string, unknown>;
}

/** What the login needs of the audit trail. */
export type LoginAudit = AuditRecorder & Pick<AuditService, 'prepareSubject'>;

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
const sourceSubject = (realm: LoginRealm, source: string) => `source:${realm.lookupHashes('', source).source.toString('hex')}`;

/** The two throttle rows a check counts on: the account's (or a second factor's) and the source address's. */
export interface ThrottleSubjects {
  account: string;
  source: string;
}

/** When a refused attempt may come back: the latest block among the subjects that refused it. */
function blockedUntilOf(entries: readonly ({ attempts: number } | { blockedUntil: Date } | undefined)[], now: Date): Date {
  const until = entries.flatMap((entry) => (entry !== undefined && 'blockedUntil' in entry ? [entry.blockedUntil.getTime()] : []));
  return new Date(Math.max(...until, now.getTime()));
}

function lockoutEvent(email: string, until: Date, subject: 'account' | 'source'): AuditEvent {
  return {
    action: 'auth.lockout',
    outcome: 'denied',
    actor: { kind: 'anonymous', id: null },
    detail: { lockedUntil: until.toISOString(), throttled: subject },
    // A second factor's lockout knows the account, not the address typed.
    ...(email === '' ? {} : { personal: { email } }),
  };
}

/**
 * Password login with brute-force protection, for any realm. Each check is reserved before it runs (a
 * counter increment in its own transaction), so N parallel guesses cannot get more than the limit of checks;
 * throttles are keyed by the e-mail's keyed hash, so an unknown address is throttled exactly like a real
 * one and a lockout says nothing about whether the account exists. Unknown accounts cost one dummy
 * Argon2id verification.
 */
export class PasswordLogin {
  readonly #clock: Clock;
  readonly #audit: LoginAudit;
  readonly #argon2: Argon2Params;
  readonly #policy: ThrottlePolicy;

  constructor(clock: Clock, audit: LoginAudit, options: { argon2?: Argon2Params; throttle?: ThrottlePolicy } = {}) {
    this.#clock = clock;
    this.#audit = audit;
    this.#argon2 = options.argon2 ?? defaultArgon2Params;
    this.#policy = options.throttle ?? defaultThrottlePolicy;
  }

  /**
   * Verifies the password; on success runs `onSuccess` in the transaction that records the login and
   * returns its result. The login costs two transactions besides the hash: one reserves the check (both
   * throttle counters) and reads the account and the policy, committed before the hash is checked; one
   * clears the counters, upgrades a legacy or weaker hash to Argon2id with the current parameters, stamps the
   * login time, runs `onSuccess` and records the event. Independent statements are issued together (pipelined
   * on PostgreSQL). Every outcome is audited in the realm's chain: a failure in its own transaction with the
   * counters, the start of a lockout, and success or refusal with the login; attempts refused while a lockout
   * runs are not (they cost no password check, and an event each would let a flood write without limit).
   */
  async authenticate<T>(realm: LoginRealm, attempt: PasswordAttempt, options: LoginOptions<T>): Promise<T> {
    const { throttles, scope } = realm;
    const hashes = realm.lookupHashes(normalizeEmail(attempt.email), attempt.source);
    const account = accountSubject(hashes.account);
    const source = `source:${hashes.source.toString('hex')}`;
    const now = this.#clock.now();
    const { accountMaxFailures, sourceMaxFailures, windowMs, lockoutMs } = this.#policy;

    const reserved = await realm.transaction(async (tx) => {
      const [forAccount, forSource] = await reserveLoginAttempts(tx, throttles, scope, [account, source], now, windowMs);
      if (forAccount === undefined || forSource === undefined || !('attempts' in forAccount) || !('attempts' in forSource)) {
        return { kind: 'blocked' as const, until: blockedUntilOf([forAccount, forSource], now) };
      }
      const attempts = { account: forAccount.attempts, source: forSource.attempts };
      if (attempts.account > accountMaxFailures || attempts.source > sourceMaxFailures) {
        const until = new Date(now.getTime() + lockoutMs);
        await Promise.all([
          attempts.account > accountMaxFailures ? blockLoginSubject(tx, throttles, scope, account, until) : undefined,
          attempts.source > sourceMaxFailures ? blockLoginSubject(tx, throttles, scope, source, until) : undefined,
          this.#audit.record(tx, realm.auditScope, lockoutEvent(attempt.email, until, attempts.account > accountMaxFailures ? 'account' : 'source')),
        ]);
        return { kind: 'blocked' as const, until };
      }
      const [found, policy, ssoRequired] = await Promise.all([realm.findAccount(tx, hashes.account), realm.passwordPolicy(tx), realm.ssoRequiredFor?.(tx)]);
      return { kind: 'reserved' as const, attempts, found, policy, ssoRequired };
    });
    if (reserved.kind === 'blocked') throw tooManyAttempts(reserved.until, now);

    const { attempts, found, policy, ssoRequired } = reserved;
    const action = options.purpose === 'password-change' ? 'auth.password.change' : 'auth.login';
    let verified = { ok: false, needsRehash: false };
    if (found?.password_hash == null) await dummyVerify(attempt.password, this.#argon2);
    else verified = await verifyPassword(found.password_hash, attempt.password, this.#argon2);
    if (!verified.ok || found === undefined || found.password_hash === null) {
      await this.#recordFailure(realm, { account, source }, attempts, {
        action,
        outcome: 'failure',
        actor: { kind: 'anonymous', id: null },
        // A known account's failure is personal data of that account: sealed under its key, erased with it.
        ...(found === undefined ? {} : { target: { type: realm.accountKind, id: found.id }, personalOf: { kind: realm.accountKind, id: found.id } }),
        detail: { reason: 'invalid_credentials' },
        personal: { email: attempt.email },
      });
      throw invalidCredentials();
    }

    // The password is right from here on: telling the caller more reveals nothing they do not know.
    const expired = found.password_changed_at !== null && passwordExpired(policy, found.password_changed_at, now);
    const refusal =
      found.status === 'disabled'
        ? new BulwarkError('account_disabled')
        : options.purpose !== 'password-change' && ssoRequired?.(found.id) === true
          ? new BulwarkError('sso_required')
        : options.purpose !== 'password-change' && (found.must_change_password || expired)
          ? new BulwarkError('password_change_required', { message: `The password must be changed (${realm.passwordChangeRoute}) before logging in.` })
          : undefined;
    const upgraded = verified.needsRehash ? await hashPassword(attempt.password, this.#argon2) : undefined;
    const previousHash = found.password_hash;
    const actor = { kind: realm.accountKind, id: found.id };
    const target = { type: realm.accountKind, id: found.id };
    await this.#audit.prepareSubject(realm.auditScope, actor);
    const result = await realm.transaction(async (tx) => {
      const [, , , succeeded] = await Promise.all([
        settleLoginAttempt(tx, throttles, scope, { account, source }),
        upgraded === undefined ? undefined : realm.upgradeHash(tx, found.id, previousHash, upgraded),
        // A password change checks the current password; it is not a login.
        refusal === undefined && options.purpose !== 'password-change' ? realm.recordLogin(tx, found, now) : undefined,
        refusal === undefined ? options.onSuccess(tx, found.id) : undefined,
      ]);
      const detail = { ...(upgraded === undefined ? {} : { hashUpgraded: true }) };
      if (refusal !== undefined) await this.#audit.record(tx, realm.auditScope, { action, actor, target, outcome: 'failure', detail: { ...detail, reason: refusal.code } });
      else if (options.purpose !== 'password-change' && succeeded !== undefined) {
        const sessionId = options.sessionOf?.(succeeded);
        await this.#audit.record(tx, realm.auditScope, { action, actor, target, detail: { ...detail, ...options.detailOf?.(succeeded) }, ...(sessionId === undefined ? {} : { sessionId }) });
      }
      return succeeded;
    });
    if (refusal !== undefined || result === undefined) throw refusal ?? new BulwarkError('internal_error', { detail: 'login succeeded without a result' });
    return result;
  }

  /**
   * The second step of a login that passed its password: `check` proves the factor in its transaction (its
   * own bookkeeping, such as a spent code or a cleared WebAuthn challenge, commits either way); on success
   * `onSuccess` starts the session in the same transaction. Throttled like the password, on the account's
   * own MFA subject (which a correct password does not clear, so password, guess, password, guess gains
   * nothing) and on the source address; each failure is audited and earns the same delays and lockout.
   */
  async secondFactor<T>(
    realm: LoginRealm,
    attempt: { accountId: string; source: string; method: string },
    step: { check: (tx: Queryable) => Promise<boolean>; onSuccess: (tx: Queryable) => Promise<T>; sessionOf: (result: T) => string },
  ): Promise<T> {
    const subjects = { account: `mfa:${attempt.accountId}`, source: sourceSubject(realm, attempt.source) };
    const actor = { kind: realm.accountKind, id: attempt.accountId };
    const target = { type: realm.accountKind, id: attempt.accountId };
    const reserved = await this.reserve(realm, subjects);
    await this.#audit.prepareSubject(realm.auditScope, actor);
    const outcome = await realm.transaction(async (tx) => {
      if (!(await step.check(tx))) return { ok: false as const };
      await settleLoginAttempt(tx, realm.throttles, realm.scope, subjects);
      const result = await step.onSuccess(tx);
      await this.#audit.record(tx, realm.auditScope, { action: 'auth.mfa', actor, target, sessionId: step.sessionOf(result), detail: { method: attempt.method } });
      return { ok: true as const, result };
    });
    if (outcome.ok) return outcome.result;
    await this.#recordFailure(realm, subjects, reserved, {
      action: 'auth.mfa',
      outcome: 'failure',
      actor,
      target,
      detail: { method: attempt.method, reason: 'invalid_mfa_code' },
    });
    throw new BulwarkError('invalid_mfa_code');
  }

  /**
   * Reserves one check for both subjects before a check made outside this class (a second factor, a
   * directory's bind): counted first, so parallel guesses cannot exceed the limit. Throws too_many_attempts
   * while either subject is delayed or locked out, and starts the lockout of one that has run over.
   */
  async reserve(realm: LoginRealm, subjects: ThrottleSubjects): Promise<{ account: number; source: number }> {
    const now = this.#clock.now();
    const { accountMaxFailures, sourceMaxFailures, windowMs, lockoutMs } = this.#policy;
    const reserved = await realm.transaction(async (tx) => {
      const [forAccount, forSource] = await reserveLoginAttempts(tx, realm.throttles, realm.scope, [subjects.account, subjects.source], now, windowMs);
      if (forAccount === undefined || forSource === undefined || !('attempts' in forAccount) || !('attempts' in forSource)) {
        return { kind: 'blocked' as const, until: blockedUntilOf([forAccount, forSource], now) };
      }
      if (forAccount.attempts > accountMaxFailures || forSource.attempts > sourceMaxFailures) {
        const until = new Date(now.getTime() + lockoutMs);
        if (forAccount.attempts > accountMaxFailures) await blockLoginSubject(tx, realm.throttles, realm.scope, subjects.account, until);
        if (forSource.attempts > sourceMaxFailures) await blockLoginSubject(tx, realm.throttles, realm.scope, subjects.source, until);
        return { kind: 'blocked' as const, until };
      }
      return { kind: 'reserved' as const, account: forAccount.attempts, source: forSource.attempts };
    });
    if (reserved.kind === 'blocked') throw tooManyAttempts(reserved.until, now);
    return { account: reserved.account, source: reserved.source };
  }

  /** A reserved check that passed: in the transaction that records the success, the account starts clean. */
  async settle(tx: Queryable, realm: LoginRealm, subjects: ThrottleSubjects): Promise<void> {
    await settleLoginAttempt(tx, realm.throttles, realm.scope, subjects);
  }

  /** A reserved check that failed: its event, and the delay or lockout it earns. */
  async refuse(realm: LoginRealm, subjects: ThrottleSubjects, attempts: { account: number; source: number }, event: AuditEvent): Promise<void> {
    await this.#recordFailure(realm, subjects, attempts, event);
  }

  /** An admin lifts an account's lockout before it runs out (the source throttles stay). */
  async unlock(realm: LoginRealm, email: string, accountId: string): Promise<void> {
    const { account } = realm.lookupHashes(normalizeEmail(email), '');
    await realm.transaction(async (tx) => {
      await clearLoginSubject(tx, realm.throttles, realm.scope, accountSubject(account));
      await clearLoginSubject(tx, realm.throttles, realm.scope, `mfa:${accountId}`);
      await this.#audit.record(tx, realm.auditScope, {
        action: realm.accountKind === 'user' ? 'user.lockout.clear' : 'operator.lockout.clear',
        target: { type: realm.accountKind, id: accountId },
      });
    });
  }

  /** A failed check: its event, and the delay or lockout it earns, in one transaction. */
  async #recordFailure(
    realm: LoginRealm,
    subjects: { account: string; source: string },
    attempts: { account: number; source: number },
    event: AuditEvent,
  ): Promise<void> {
    const now = this.#clock.now().getTime();
    const { accountMaxFailures, sourceMaxFailures, delayAfter, baseDelayMs, lockoutMs } = this.#policy;
    const accountUntil =
      attempts.account >= accountMaxFailures
        ? now + lockoutMs
        : attempts.account >= delayAfter
          ? now + baseDelayMs * 2 ** (attempts.account - delayAfter)
          : undefined;
    const sourceUntil = attempts.source >= sourceMaxFailures ? now + lockoutMs : undefined;
    const lockedOut = attempts.account >= accountMaxFailures || sourceUntil !== undefined;
    const email = event.personal?.email ?? '';
    await this.#audit.prepareSubject(realm.auditScope, event.personalOf ?? { kind: 'anonymous', id: null });
    await realm.transaction(async (tx) => {
      await Promise.all([
        accountUntil === undefined ? undefined : blockLoginSubject(tx, realm.throttles, realm.scope, subjects.account, new Date(accountUntil)),
        sourceUntil === undefined ? undefined : blockLoginSubject(tx, realm.throttles, realm.scope, subjects.source, new Date(sourceUntil)),
        this.#audit.record(tx, realm.auditScope, { ...event, detail: { ...event.detail, attempts: attempts.account } }),
      ]);
      if (lockedOut) {
        const lockout = lockoutEvent(email, new Date(Math.max(accountUntil ?? 0, sourceUntil ?? 0)), sourceUntil === undefined ? 'account' : 'source');
        await this.#audit.record(tx, realm.auditScope, event.personalOf === undefined ? lockout : { ...lockout, personalOf: event.personalOf });
      }
    });
  }
}

/** A directory check's reservation: its subjects and their counts. */
export interface DirectoryThrottle {
  subjects: ThrottleSubjects;
  attempts: { account: number; source: number };
}

/** Login of a tenant's users: the tenant realm over the users store, with the tenant's keys and policy. */
export class LoginService {
  readonly #db: Database;
  readonly #keyring: KeyringService;
  readonly #users: UsersService;
  readonly #login: PasswordLogin;
  readonly #argon2: Argon2Params;
  readonly #tenantStatus: (tenantId: string) => Promise<string | null>;

  constructor(
    db: Database,
    keyring: KeyringService,
    users: UsersService,
    login: PasswordLogin,
    options: { tenantStatus: (tenantId: string) => Promise<string | null>; argon2?: Argon2Params },
  ) {
    this.#db = db;
    this.#keyring = keyring;
    this.#users = users;
    this.#login = login;
    this.#argon2 = options.argon2 ?? defaultArgon2Params;
    this.#tenantStatus = options.tenantStatus;
  }

  /**
   * Logs a user in; `onSuccess` runs in the transaction that records the login. An unknown, inactive or
   * shredded tenant answers like a wrong password, after the same dummy verification.
   */
  async authenticate<T>(attempt: LoginAttempt, options: LoginOptions<T>): Promise<T> {
    const { tenantId } = attempt;
    if ((await this.#tenantStatus(tenantId)) === 'active') {
      try {
        return await this.#keyring.withKeys(tenantId, (keys) => this.#login.authenticate(this.#realm(tenantId, keys), attempt, options));
      } catch (error) {
        // A shredded tenant looks like a wrong password; a KMS outage or refusal does not.
        if (!(error instanceof BulwarkError && error.code === 'keys_destroyed')) throw error;
      }
    }
    await dummyVerify(attempt.password, this.#argon2);
    throw invalidCredentials();
  }

  /** Self-service change with the current password; also the way out of an expired or admin-set password. */
  async changePassword(attempt: LoginAttempt & { newPassword: string }): Promise<{ userId: string }> {
    const userId = await this.authenticate(attempt, { purpose: 'password-change', onSuccess: async (_tx, id) => id });
    actAs({ kind: 'user', id: userId });
    await this.#users.setPassword(attempt.tenantId, userId, attempt.newPassword, { mustChangePassword: false, action: 'auth.password.change' });
    return { userId };
  }

  /** A user's second factor after the password (see PasswordLogin.secondFactor); `check` gets the tenant's keys. */
  async secondFactor<T>(
    tenantId: string,
    attempt: { accountId: string; source: string; method: string },
    step: { check: (tx: Queryable, keys: TenantKeys) => Promise<boolean>; onSuccess: (tx: Queryable) => Promise<T>; sessionOf: (result: T) => string },
  ): Promise<T> {
    // Suspended since the password was checked: the challenge does not outlive the tenant's standing.
    if ((await this.#tenantStatus(tenantId)) !== 'active') throw new BulwarkError('mfa_challenge_invalid');
    return this.#keyring.withKeys(tenantId, (keys) => this.#login.secondFactor(this.#realm(tenantId, keys), attempt, { ...step, check: (tx) => step.check(tx, keys) }));
  }

  /**
   * A password the tenant's directory checks (LDAP): throttled like one of ours, with the same delays,
   * lockout and source limit, on an account subject keyed by the connection and the (normalised) username.
   * Known and unknown usernames count alike, so the directory's own answers do not tell them apart.
   */
  async reserveDirectoryCheck(tenantId: string, keys: TenantKeys, attempt: { connectionId: string; username: string; source: string }): Promise<DirectoryThrottle> {
    const realm = this.#realm(tenantId, keys);
    const subjects = {
      account: accountSubject(keys.lookupHash(`directory:${attempt.connectionId}:${attempt.username.trim().normalize('NFC').toLowerCase()}`)),
      source: sourceSubject(realm, attempt.source),
    };
    return { subjects, attempts: await this.#login.reserve(realm, subjects) };
  }

  async settleDirectoryCheck(tx: Queryable, tenantId: string, keys: TenantKeys, throttle: DirectoryThrottle): Promise<void> {
    await this.#login.settle(tx, this.#realm(tenantId, keys), throttle.subjects);
  }

  async refuseDirectoryCheck(tenantId: string, keys: TenantKeys, throttle: DirectoryThrottle, event: AuditEvent): Promise<void> {
    await this.#login.refuse(this.#realm(tenantId, keys), throttle.subjects, throttle.attempts, event);
  }

  /**
   * A reserved check the directory never made (unreachable, or it could not prove who it is): both subjects
   * give it back, so an outage earns no delay or lockout, and what earlier failures earned stays.
   */
  async releaseDirectoryCheck(tenantId: string, throttle: DirectoryThrottle): Promise<void> {
    await this.#db.withTenant(tenantId, (tx) => releaseLoginAttempt(tx, userThrottles, tenantId, throttle.subjects));
  }

  /** An admin lifts a user's lockout before it runs out. */
  async unlock(tenantId: string, userId: string): Promise<void> {
    const email = await this.#users.emailOf(tenantId, userId);
    await this.#keyring.withKeys(tenantId, (keys) => this.#login.unlock(this.#realm(tenantId, keys), email, userId));
  }

  #realm(tenantId: string, keys: TenantKeys): LoginRealm {
    const db = this.#db;
    return {
      throttles: userThrottles,
      scope: tenantId,
      passwordChangeRoute: 'POST /v1/auth/password',
      transaction: (work) => db.withTenant(tenantId, work),
      lookupHashes: (email, source) => ({ account: keys.lookupHash(email), source: keys.lookupHash(`source:${source}`) }),
      findAccount: (tx, emailHash) => findLoginUser(tx, tenantId, emailHash),
      passwordPolicy: async (tx) => withPolicyDefaults(await findPasswordPolicy(tx, tenantId)),
      ssoRequiredFor: async (tx) => {
        const policy = await findLoginPolicy(tx, tenantId);
        return (userId) => policy?.sso_required === true && !policy.sso_break_glass.includes(userId);
      },
      upgradeHash: (tx, id, previous, next) => upgradePasswordHash(tx, tenantId, id, previous, next),
      recordLogin: (tx, account, at) => stampLogin(tx, keys, tenantId, account, at),
      auditScope: { tenantId },
      accountKind: 'user',
    };
  }
}
