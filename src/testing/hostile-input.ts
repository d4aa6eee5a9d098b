import fc from 'fast-check';

/**
 * The malicious-input corpus: strings, JSON values and raw bodies that have broken web services before.
 * The corpus test aims each at every route (path parameters, query, body, headers); fast-check mixes them
 * with generated values.
 */

export const hostileStrings: readonly string[] = [
  // SQL injection: classic, stacked, time-based, comment and quote variants.
  "' OR '1'='1",
  "' OR 1=1--",
  "1'; DROP TABLE records; --",
  '" OR ""="',
  "'; SELECT pg_sleep(10); --",
  "1 UNION SELECT secret_hash FROM api_keys",
  "$$; DELETE FROM tenants; $$",
  "\\'; SET app.tenant_id = 'other'; --",
  // Cross-site scripting.
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  "javascript:alert('x')",
  '</textarea><svg onload=alert(1)>',
  '{{7*7}}${7*7}<%= 7*7 %>',
  // Path traversal.
  '../../../../etc/passwd',
  '..%2f..%2f..%2fetc%2fpasswd',
  '%2e%2e%2f%2e%2e%2f',
  '..\\..\\windows\\win.ini',
  '/dev/zero',
  // Header injection (CRLF) and log forging.
  'x\r\nSet-Cookie: injected=1',
  'x%0d%0aSet-Cookie:%20injected=1',
  'ok\n{"level":60,"msg":"forged"}',
  // Prototype pollution spelled as values.
  '__proto__',
  'constructor',
  'prototype',
  // Unicode edge cases: NUL, lone surrogates, bidi override, zero-width, BOM, combining marks, astral.
  'nul\u0000byte',
  'lone \ud800 surrogate',
  'trailing surrogate \udfff',
  'bidi \u202egnp.exe',
  'zero\u200bwidth\u200d',
  '\ufeffbom',
  'e\u0301\u0301\u0301\u0301\u0301\u0301',
  '\u{1F4A9}\u{1F9D1}\u200D\u{1F4BB}',
  'Ａｄｍｉｎ',
  '\u0130stanbul \u0131',
  // Format strings and numbers spelled as text.
  '%s%s%s%n%x',
  'NaN',
  '-0',
  '1e309',
  '9'.repeat(400),
  // Empty, blank and very long.
  '',
  ' ',
  '\t\n',
  'a'.repeat(100_000),
];

/** JSON values of every type and size edge, to stand where a field's value goes. */
export const hostileValues: readonly unknown[] = [
  ...hostileStrings.filter((value) => value.length < 1000),
  null,
  true,
  false,
  0,
  -1,
  -0,
  1.5,
  2 ** 31,
  2 ** 53 + 2,
  -(2 ** 63),
  1e308,
  -1e308,
  5e-324,
  [],
  [null],
  ['__proto__'],
  {},
  { $gt: '' },
  { $where: 'sleep(1000)' },
  Array.from({ length: 2000 }, (_, index) => index),
];

/** Raw JSON texts JSON.stringify cannot produce: pollution keys, duplicates, huge literals, deep nesting. */
export function hostileJsonTexts(sample: unknown): string[] {
  const inner = sample !== null && typeof sample === 'object' && !Array.isArray(sample) ? JSON.stringify(sample).slice(1, -1) : '';
  const join = (member: string) => `{${[inner, member].filter((part) => part.length > 0).join(',')}}`;
  return [
    join('"__proto__":{"polluted":true}'),
    join('"constructor":{"prototype":{"polluted":true}}'),
    '{"__proto__":{"isAdmin":true,"polluted":true}}',
    join('"unknownField":1'),
    join('"a":1,"a":2'),
    join(`"n":${'9'.repeat(5000)}`),
    join('"n":1e400'),
    `${'['.repeat(20_000)}${']'.repeat(20_000)}`,
    `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`,
    '{"unterminated": "str',
    '{"a":1,}',
    "{'single':'quotes'}",
    '{"a":NaN}',
    '{"a":Infinity}',
    'null',
    '"just a string"',
    '12345',
    '[]',
    '',
    ' ',
    '\ufeff{}',
  ];
}

/** Bytes that are not UTF-8: lone continuation, overlong '/', truncated sequence, surrogate half, 0xFF. */
export const invalidUtf8Bodies: readonly Buffer[] = [
  Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0x80, 0x22, 0x7d]),
  Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d]),
  Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xe2, 0x82, 0x22, 0x7d]),
  Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]),
  Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00]),
];

/** Content types a JSON API must refuse (or, for the declared-charset case, refuse to misread). */
export const wrongContentTypes: readonly string[] = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/xml',
  'text/html',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/jsonp',
  'image/png',
];

/**
 * Header values aimed at request-id echoing and logging: over-long, non-ASCII, injection text. (CR, LF and
 * NUL cannot be sent through Node's client; gateway.test.ts sends them over a raw socket.)
 */
export const hostileHeaderValues: readonly string[] = ['x'.repeat(9000), 'ünïcödé', "' OR 1=1 --", '<script>alert(1)</script>', '../../etc/passwd'];

/** fast-check: a value for any JSON field, biased towards the corpus but also free-form. */
export const arbitraryHostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...hostileValues) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.bigInt().map((value) => Number(value))) },
);

/** fast-check: a path segment, percent-encoded as a client would send it. */
export const arbitraryPathSegment: fc.Arbitrary<string> = fc
  .oneof(fc.constantFrom(...hostileStrings.filter((value) => value.length > 0 && value.length < 500)), fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }))
  .map(encodeSegment);

/** Percent-encodes a path segment; a lone surrogate (which encodeURIComponent refuses) goes as raw invalid UTF-8. */
export function encodeSegment(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return Buffer.from(value, 'latin1').toString('hex').replace(/(..)/g, '%$1');
  }
}
