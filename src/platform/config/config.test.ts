import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from './config.ts';

describe('configuration', () => {
  it('has working defaults for the embedded setup', () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.dataDir, './data');
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.databaseAppRole, 'bulwark_app');
    assert.deepEqual(config.regions, ['local']);
    assert.ok(Object.isFrozen(config));
  });

  it('reads and types the documented environment variables', () => {
    const config = loadConfig({
      BULWARK_PORT: '9000',
      BULWARK_HOST: '0.0.0.0',
      BULWARK_DATA_DIR: '/var/lib/bulwark',
      BULWARK_DATABASE_URL: 'postgres://api@db:5432/bulwark',
      BULWARK_REDIS_URL: 'rediss://cache:6380',
      BULWARK_NATS_URL: 'nats://bus:4222',
      BULWARK_SETUP_TOKEN: 'x'.repeat(40),
      BULWARK_REGIONS: 'eu-central, us-east',
    });
    assert.equal(config.port, 9000);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.dataDir, '/var/lib/bulwark');
    assert.equal(config.databaseUrl, 'postgres://api@db:5432/bulwark');
    assert.equal(config.redisUrl, 'rediss://cache:6380');
    assert.equal(config.natsUrl, 'nats://bus:4222');
    assert.equal(config.setupToken, 'x'.repeat(40));
    assert.deepEqual(config.regions, ['eu-central', 'us-east']);
  });

  it('reports every bad value at once, without echoing secrets', () => {
    try {
      loadConfig({
        BULWARK_PORT: 'eighty',
        BULWARK_ENV: 'staging',
        BULWARK_DATABASE_URL: 'mysql://root:hunter2hunter2@db/x',
        BULWARK_SETUP_TOKEN: 'short-secret',
        BULWARK_REGIONS: 'eu,eu',
      });
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 5);
      assert.match(error.message, /BULWARK_PORT must be an integer between 0 and 65535 \(got "eighty"\)/);
      assert.match(error.message, /BULWARK_ENV must be one of development, production, test/);
      assert.match(error.message, /BULWARK_DATABASE_URL must be a URL with scheme postgres or postgresql/);
      assert.match(error.message, /BULWARK_SETUP_TOKEN must be 32 to 512 characters long/);
      assert.doesNotMatch(error.message, /hunter2|short-secret/);
    }
  });

  it('takes an optional JSON file, which the environment overrides', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-config-'));
    const file = join(dir, 'bulwark.json');
    writeFileSync(file, JSON.stringify({ port: 7000, host: '::1', regions: ['eu', 'us'] }));
    const config = loadConfig({ BULWARK_CONFIG_FILE: file, BULWARK_PORT: '7001' });
    assert.equal(config.port, 7001);
    assert.equal(config.host, '::1');
    assert.deepEqual(config.regions, ['eu', 'us']);
  });

  it('treats an empty variable as unset', () => {
    const config = loadConfig({ BULWARK_PORT: '', BULWARK_HOST: '' });
    assert.equal(config.port, 8080);
    assert.equal(config.host, '127.0.0.1');
  });

  it('keeps a record within the body limit', () => {
    assert.throws(
      () => loadConfig({ BULWARK_BODY_LIMIT_BYTES: '4096', BULWARK_RECORD_MAX_BYTES: '4000' }),
      /BULWARK_RECORD_MAX_BYTES must be at least 1024 below BULWARK_BODY_LIMIT_BYTES/,
    );
  });

  it('does not quote a malformed config file (it may hold secrets)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-config-'));
    const file = join(dir, 'bulwark.json');
    writeFileSync(file, '{"setupToken": "do-not-print-this-value-anywhere-please" oops}');
    assert.throws(
      () => loadConfig({ BULWARK_CONFIG_FILE: file }),
      (error: Error) => /is not valid JSON/.test(error.message) && !error.message.includes('do-not-print'),
    );
  });

  it('rejects unknown keys and unreadable files in the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-config-'));
    const file = join(dir, 'bulwark.json');
    writeFileSync(file, JSON.stringify({ prot: 7000, port: { nested: true } }));
    assert.throws(() => loadConfig({ BULWARK_CONFIG_FILE: file }), /unknown option "prot"[\s\S]*"port" must be a string or a number/);
    assert.throws(() => loadConfig({ BULWARK_CONFIG_FILE: join(dir, 'missing.json') }), /cannot be read \(ENOENT\)/);
  });

  it('takes a backup schedule of 5 fields, 6 with seconds, or off, and checks it at load', () => {
    assert.equal(loadConfig({}).backupSchedule, '0 3 * * *');
    assert.equal(loadConfig({ BULWARK_BACKUP_SCHEDULE: ' */5 * * * * * ' }).backupSchedule, '*/5 * * * * *');
    assert.equal(loadConfig({ BULWARK_BACKUP_SCHEDULE: 'off' }).backupSchedule, 'off');
    // The shape is right, the values are not: refused at load, not at the first missed backup.
    for (const schedule of ['61 * * * *', '0 0 31 2 *', 'H 3 * * *', '* * * *']) {
      assert.throws(() => loadConfig({ BULWARK_BACKUP_SCHEDULE: schedule }), /BULWARK_BACKUP_SCHEDULE must be a cron expression \(5 fields, or 6 with seconds first\) or off/, schedule);
    }
  });
});
