import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkPassword,
  defaultPasswordPolicy,
  type PasswordCheckContext,
  type PasswordPolicy,
  type PasswordRule,
  passwordExpired,
  policyProblems,
} from './password-policy.ts';
import { type Argon2Params, hashPassword, importedHash } from './passwords.ts';

const fast: Argon2Params = { memoryCost: 1024, timeCost: 1, parallelism: 1 };
// Strong (zxcvbn 4), not common, no user data: passes every rule that is switched on below.
const strong = 'vivid-Quartz-harbor-41!';

/** Every rule off except those a test turns on, so each test sees only its own rule. */
function only(overrides: Partial<PasswordPolicy>): PasswordPolicy {
  return {
    ...defaultPasswordPolicy,
    minLength: 8,
    maxLength: 1024,
    minStrength: 0,
    rejectCommon: false,
    historyCount: 0,
    ...overrides,
  };
}

async function failedRules(password: string, policy: PasswordPolicy, context?: PasswordCheckContext): Promise<PasswordRule[]> {
  const result = await checkPassword(password, policy, context);
  return result.ok ? [] : result.failures.map((failure) => failure.rule);
}

describe('password policy: defaults and policyProblems', () => {
  it('has the documented defaults', () => {
    assert.deepEqual(defaultPasswordPolicy, {
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
    assert.ok(Object.isFrozen(defaultPasswordPolicy));
    assert.deepEqual(policyProblems(defaultPasswordPolicy), []);
  });

  it('accepts every bound of every range', () => {
    const edges: Partial<PasswordPolicy>[] = [
      { minLength: 8, maxLength: 64 },
      { minLength: 128, maxLength: 1024 },
      { minLength: 64, maxLength: 64 },
      { minStrength: 0 },
      { minStrength: 4 },
      { historyCount: 0 },
      { historyCount: 24 },
      { expiryDays: 1 },
      { expiryDays: 3650 },
      { requireLowercase: true, requireUppercase: true, requireDigit: true, requireSymbol: true, rejectCommon: false },
    ];
    for (const edge of edges) assert.deepEqual(policyProblems({ ...defaultPasswordPolicy, ...edge }), [], JSON.stringify(edge));
  });

  it('names each field that is out of range or of the wrong type', () => {
    const cases: [Record<string, unknown>, (keyof PasswordPolicy)[]][] = [
      [{ minLength: 7 }, ['minLength']],
      [{ minLength: 129, maxLength: 1024 }, ['minLength']],
      [{ minLength: 12.5 }, ['minLength']],
      [{ maxLength: 63 }, ['maxLength']],
      [{ maxLength: 1025 }, ['maxLength']],
      [{ minLength: 100, maxLength: 64 }, ['maxLength']],
      [{ minStrength: -1 }, ['minStrength']],
      [{ minStrength: 5 }, ['minStrength']],
      [{ historyCount: 25 }, ['historyCount']],
      [{ historyCount: '5' }, ['historyCount']],
      [{ expiryDays: 0 }, ['expiryDays']],
      [{ expiryDays: 3651 }, ['expiryDays']],
      [{ expiryDays: 30.5 }, ['expiryDays']],
      [{ expiryDays: undefined }, ['expiryDays']],
      [{ requireSymbol: 'yes' }, ['requireSymbol']],
      [{ rejectCommon: undefined }, ['rejectCommon']],
      // Every problem at once, in field order.
      [
        { minLength: 4, maxLength: 2000, requireDigit: 1, minStrength: 9, historyCount: -1, expiryDays: -3 },
        ['minLength', 'maxLength', 'requireDigit', 'minStrength', 'historyCount', 'expiryDays'],
      ],
    ];
    for (const [overrides, fields] of cases) {
      const problems = policyProblems({ ...defaultPasswordPolicy, ...overrides });
      assert.deepEqual(
        problems.map((problem) => problem.field),
        fields,
        JSON.stringify(overrides),
      );
      for (const problem of problems) assert.match(problem.message, /^must /);
    }
    assert.equal(policyProblems(null as unknown as PasswordPolicy).length, 10, 'not an object: every field is missing');
  });
});

describe('password policy: one rule at a time', () => {
  it('min_length counts code points after NFC normalisation', async () => {
    const policy = only({ minLength: 10 });
    assert.deepEqual(await failedRules('abcdefghi', policy), ['min_length']);
    assert.deepEqual(await failedRules('abcdefghij', policy), []);
    // Ten "e + combining acute" pairs are 20 UTF-16 units but 10 code points after NFC; 9 of them are too few.
    assert.deepEqual(await failedRules('e\u0301'.repeat(10), policy), []);
    assert.deepEqual(await failedRules('e\u0301'.repeat(9), policy), ['min_length']);
    // An emoji outside the BMP is one code point, not two UTF-16 units.
    assert.deepEqual(await failedRules('\u{1F600}'.repeat(9), policy), ['min_length']);
  });

  it('max_length', async () => {
    const policy = only({ maxLength: 64 });
    assert.deepEqual(await failedRules('x'.repeat(64), policy), []);
    assert.deepEqual(await failedRules('x'.repeat(65), policy), ['max_length']);
    assert.deepEqual(await failedRules('\u{1F600}'.repeat(64), policy), []);
  });

  it('lowercase', async () => {
    const policy = only({ requireLowercase: true });
    assert.deepEqual(await failedRules('ABCDEFGH12', policy), ['lowercase']);
    assert.deepEqual(await failedRules('ABCDEFGH1z', policy), []);
    assert.deepEqual(await failedRules('ABCDEFGH1\u00e9', policy), [], 'a non-ASCII lowercase letter counts');
  });

  it('uppercase', async () => {
    const policy = only({ requireUppercase: true });
    assert.deepEqual(await failedRules('abcdefgh12', policy), ['uppercase']);
    assert.deepEqual(await failedRules('abcdefgh1Z', policy), []);
    assert.deepEqual(await failedRules('abcdefgh1\u00c9', policy), []);
  });

  it('digit', async () => {
    const policy = only({ requireDigit: true });
    assert.deepEqual(await failedRules('abcdefghij', policy), ['digit']);
    assert.deepEqual(await failedRules('abcdefghi7', policy), []);
  });

  it('symbol: anything that is not a letter or digit', async () => {
    const policy = only({ requireSymbol: true });
    assert.deepEqual(await failedRules('abcdefgh12', policy), ['symbol']);
    assert.deepEqual(await failedRules('abc\u00e9defgh12', policy), ['symbol'], 'an accented letter is not a symbol');
    for (const symbol of ['!', '#', ' ', '-', '\u20ac', '\u{1F600}']) {
      assert.deepEqual(await failedRules(`abcdefgh1${symbol}`, policy), [], JSON.stringify(symbol));
    }
  });

  it('too_weak: the zxcvbn score must reach minStrength', async () => {
    const policy = only({ minStrength: 3 });
    for (const weak of ['aaaaaaaaaaaa', 'qwertyuiop123', 'abcdefghijkl', 'Password123!', '1234567890']) {
      assert.deepEqual(await failedRules(weak, policy), ['too_weak'], weak);
    }
    assert.deepEqual(await failedRules(strong, policy), []);
    assert.deepEqual(await failedRules('correct horse battery staple', policy), []);
    // minStrength 0 switches the rule off.
    assert.deepEqual(await failedRules('aaaaaaaaaaaa', only({ minStrength: 0 })), []);
  });

  it('too_weak scores user inputs as known words', async () => {
    const policy = only({ minStrength: 4 });
    const password = 'Wojciechowska-Szczebrzeszyn';
    assert.deepEqual(await failedRules(password, policy), []);
    assert.ok(
      (await failedRules(password, policy, { userInputs: ['Wojciechowska Szczebrzeszyn'] })).includes('too_weak'),
      'a password made of the user\u2019s own names is weak',
    );
  });

  it('too_weak stays fast for a long crafted password: only the first 256 characters are scored', async () => {
    const crafted = Array.from({ length: 1024 }, (_, i) => '4@8({[<3&69!|1$5+0%'.charAt((i * 7) % 19)).join('');
    const start = performance.now();
    await checkPassword(crafted, only({ minStrength: 4, maxLength: 1024 }));
    const ms = performance.now() - start;
    // Measured about 0.15 s here; with zxcvbn's defaults over the whole input it took seconds.
    assert.ok(ms < 2000, `${ms.toFixed(0)} ms`);
  });

  it('common: the shipped list, exact match after lowercasing', async () => {
    const policy = only({ rejectCommon: true });
    for (const common of ['password', 'PASSWORD', 'Password', 'qwerty123', 'iloveyou', '1qaz2wsx3edc', 'leavemealone']) {
      assert.deepEqual(await failedRules(common, policy), ['common'], common);
    }
    assert.deepEqual(await failedRules('password-not-quite', policy), []);
    assert.deepEqual(await failedRules(strong, policy), []);
    assert.deepEqual(await failedRules('password', only({ rejectCommon: false })), []);
  });

  it('contains_user_data: the email local part and names of 4+ characters, case-insensitive', async () => {
    const policy = only({});
    const context = { userInputs: ['Mary.Smithson@example.com', 'Mary Ann Smithson'] };
    for (const password of ['xx-mary.smithson-xx', 'SMITHSON-rules-99', 'i am MARY 1984!']) {
      assert.deepEqual(await failedRules(password, policy, context), ['contains_user_data'], password);
    }
    // "ann" has three characters: too short a substring to forbid ("planning" contains it).
    assert.deepEqual(await failedRules('planning-vivid-41', policy, context), []);
    assert.deepEqual(await failedRules('example.com-vivid', policy, context), [], 'the domain is not the user\u2019s data');
    assert.deepEqual(await failedRules('mary.smithson', policy), [], 'without user inputs there is nothing to compare');
    assert.deepEqual(await failedRules('J\u00fcrgen-vivid-41', policy, { userInputs: ['JU\u0308RGEN M\u00fcller'] }), [
      'contains_user_data',
    ]);
  });
});

describe('password policy: history', () => {
  it('refuses one of the last historyCount passwords and allows an older one', async () => {
    // Newest first: generation 0 is the current password, generation 5 is the sixth most recent.
    const generations = ['gen-0-vivid-quartz', 'gen-1-vivid-quartz', 'gen-2-vivid-quartz', 'gen-3-vivid-quartz', 'gen-4-vivid-quartz', 'gen-5-vivid-quartz'];
    const history = await Promise.all(generations.map((password) => hashPassword(password, fast)));
    const policy = only({ historyCount: 5 });
    assert.deepEqual(await failedRules('gen-0-vivid-quartz', policy, { history }), ['reused']);
    assert.deepEqual(await failedRules('gen-4-vivid-quartz', policy, { history }), ['reused']);
    assert.deepEqual(await failedRules('gen-5-vivid-quartz', policy, { history }), [], 'older than the last 5');
    assert.deepEqual(await failedRules('gen-6-vivid-quartz', policy, { history }), []);
    assert.deepEqual(await failedRules('gen-0-vivid-quartz', only({ historyCount: 0 }), { history }), [], 'historyCount 0 allows reuse');
    assert.deepEqual(await failedRules('gen-1-vivid-quartz', only({ historyCount: 1 }), { history }), []);
  });

  it('checks legacy hashes in the history and skips malformed entries', async () => {
    const history = ['not a hash', importedHash({ algorithm: 'md5', hash: '5f4dcc3b5aa765d61d8327deb882cf99' })];
    assert.deepEqual(await failedRules('password', only({ historyCount: 5 }), { history }), ['reused']);
    assert.deepEqual(await failedRules('passwords', only({ historyCount: 5 }), { history }), []);
  });
});

describe('password policy: the failures list', () => {
  const everything: PasswordPolicy = {
    ...defaultPasswordPolicy,
    requireLowercase: true,
    requireUppercase: true,
    requireDigit: true,
    requireSymbol: true,
  };

  it('lists every failed rule, in order, each saying what is required and none echoing the password', async () => {
    // Common, all digits, short, the previous password and the email's local part: eight rules fail.
    const password = '12345678';
    const history = [await hashPassword(password, fast)];
    const result = await checkPassword(password, everything, { history, userInputs: ['12345678@example.com'] });
    assert.ok(!result.ok);
    assert.deepEqual(
      result.failures.map((failure) => failure.rule),
      ['min_length', 'lowercase', 'uppercase', 'symbol', 'too_weak', 'common', 'reused', 'contains_user_data'],
    );
    for (const { message } of result.failures) {
      assert.match(message, /^Password (must|is) /);
      assert.ok(!message.includes(password), message);
      assert.ok(!message.includes('example.com'), message);
    }
    assert.match(result.failures[0]?.message ?? '', /at least 12 characters/);
    assert.match(result.failures.find((failure) => failure.rule === 'reused')?.message ?? '', /last 5 passwords/);
  });

  it('lists the remaining rules (max_length, digit) with the others', async () => {
    const password = 'Zebra-crossing-'.repeat(10);
    const result = await checkPassword(password, { ...everything, maxLength: 64 }, { userInputs: ['zebra@example.com'] });
    assert.ok(!result.ok);
    assert.deepEqual(
      result.failures.map((failure) => failure.rule),
      ['max_length', 'digit', 'contains_user_data'],
    );
    for (const { message } of result.failures) assert.ok(!message.toLowerCase().includes('zebra'), message);
  });

  it('answers ok for a password that passes the default policy', async () => {
    assert.deepEqual(await checkPassword(strong, defaultPasswordPolicy, { userInputs: ['mary@example.com'] }), { ok: true });
  });
});

describe('password policy: expiry', () => {
  const changedAt = new Date('2026-01-01T00:00:00Z');
  const day = 86_400_000;

  it('never expires when expiryDays is null', () => {
    assert.equal(passwordExpired(defaultPasswordPolicy, changedAt, new Date(changedAt.getTime() + 10_000 * day)), false);
  });

  it('expires exactly expiryDays after the change', () => {
    const policy = { ...defaultPasswordPolicy, expiryDays: 90 };
    assert.equal(passwordExpired(policy, changedAt, changedAt), false);
    assert.equal(passwordExpired(policy, changedAt, new Date(changedAt.getTime() + 90 * day - 1)), false);
    assert.equal(passwordExpired(policy, changedAt, new Date(changedAt.getTime() + 90 * day)), true);
    assert.equal(passwordExpired(policy, changedAt, new Date(changedAt.getTime() + 400 * day)), true);
  });

  it('fails closed on an invalid date', () => {
    assert.equal(passwordExpired({ ...defaultPasswordPolicy, expiryDays: 90 }, new Date(Number.NaN), changedAt), true);
  });
});
