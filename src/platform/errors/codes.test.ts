import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { errorCodes } from './codes.ts';

const errorsDoc = new URL('../../../docs/errors.md', import.meta.url);

/** The registry and docs/errors.md stay in step (STYLE.md rule 4): every code documented, none stale. */
describe('error code registry', () => {
  const registered = Object.keys(errorCodes);
  const doc = readFileSync(errorsDoc, 'utf8');
  const sections = [...doc.matchAll(/^## (.+)$/gm)].map((match) => (match[1] ?? '').trim());

  it('documents every registered code in docs/errors.md', () => {
    const missing = registered.filter((code) => !sections.includes(code));
    assert.deepEqual(missing, [], 'add a `## <code>` section to docs/errors.md for each');
  });

  it('documents no code that is not registered', () => {
    const stale = sections.filter((section) => !registered.includes(section));
    assert.deepEqual(stale, [], 'docs/errors.md has sections for codes that are not in codes.ts');
  });

  it('documents each code once, with the status it is registered with', () => {
    assert.equal(new Set(sections).size, sections.length, 'a code has two sections');
    const bodies = doc.split(/^## /m).slice(1);
    for (const body of bodies) {
      const code = body.slice(0, body.indexOf('\n')).trim() as keyof typeof errorCodes;
      if (!Object.hasOwn(errorCodes, code)) continue;
      assert.match(body, new RegExp(`^Status: ${errorCodes[code].status}\\b`, 'm'), `${code}: the section states status ${errorCodes[code].status}`);
    }
  });

  it('every status is a 4xx or 5xx', () => {
    for (const [code, { status }] of Object.entries(errorCodes)) {
      assert.ok(Number.isInteger(status) && status >= 400 && status <= 599, `${code}: ${status}`);
    }
  });

  it('codes are lowercase snake_case and every title is a sentence', () => {
    for (const [code, { title }] of Object.entries(errorCodes)) {
      assert.match(code, /^[a-z]+(_[a-z]+)*$/, code);
      assert.match(title, /^[A-Z].*\.$/, `${code}: title`);
    }
  });
});
