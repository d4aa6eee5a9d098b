import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { lockPgliteFolder } from './pglite-lock.ts';

describe('the embedded database folder lock', () => {
  it('admits one holder at a time and is released on unlock', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'bulwark-lock-')), 'pglite');
    const unlock = lockPgliteFolder(dir);
    assert.equal(readFileSync(`${dir}.lock`, 'utf8'), String(process.pid));
    assert.throws(() => lockPgliteFolder(dir), new RegExp(`in use by process ${process.pid}`));
    unlock();
    assert.equal(existsSync(`${dir}.lock`), false);
    lockPgliteFolder(dir)();
  });

  it('takes over a lock left by a process that died', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'bulwark-lock-')), 'pglite');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    writeFileSync(`${dir}.lock`, dead);
    const unlock = lockPgliteFolder(dir);
    assert.equal(readFileSync(`${dir}.lock`, 'utf8'), String(process.pid));
    unlock();
  });
});
