import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { configurationDocPath, readmePath, renderConfigDocs } from '../../../scripts/generate-config-docs.ts';
import { optionSpecs } from './spec.ts';

/** docs/configuration.md and the README table are generated from spec.ts; this keeps them in step. */

/** Fails with the first line that differs instead of two whole documents. */
function assertGenerated(actual: string, expected: string, file: string): void {
  if (actual === expected) return;
  const have = actual.split('\n');
  const want = expected.split('\n');
  const line = want.findIndex((text, index) => have[index] !== text);
  const at = line === -1 ? want.length : line;
  assert.fail(
    `${file} is out of date with src/platform/config/spec.ts: run \`npm run docs:config\`.\n` +
      `  first difference at line ${at + 1}:\n  found:    ${have[at] ?? '(end of file)'}\n  expected: ${want[at] ?? '(end of file)'}`,
  );
}

describe('configuration docs', () => {
  const readme = readFileSync(readmePath, 'utf8');
  const rendered = renderConfigDocs(readme);

  it('docs/configuration.md is what the generator renders', () => {
    assertGenerated(readFileSync(configurationDocPath, 'utf8'), rendered.configuration, 'docs/configuration.md');
  });

  it('the README configuration table is what the generator renders', () => {
    assertGenerated(readme, rendered.readme, 'README.md (configuration table)');
  });

  it('the table names every option by variable and config-file key', () => {
    for (const spec of optionSpecs) {
      const row = `| \`${spec.env}\` | \`${spec.key}\` |`;
      assert.ok(rendered.configuration.includes(row), `docs/configuration.md lacks ${spec.env}`);
      assert.ok(rendered.readme.includes(row), `README.md lacks ${spec.env}`);
    }
  });
});
