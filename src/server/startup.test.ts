import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type RunningCli, spawnCli } from '../testing/cli.ts';
import { adminQuery, engineSkip, postgresAdminUrl } from '../testing/engines.ts';
import { freePort } from '../testing/ports.ts';

const run = spawnCli;
type Running = RunningCli;

async function listeningPort(server: Running, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(server.stdout());
    if (match?.[1] !== undefined) return Number(match[1]);
    if (server.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`server did not start:\n${server.stdout()}\n${server.stderr()}`);
}

function postJson(port: number, path: string, body: unknown): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

describe('start-up', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-start-'));
  const children: Running[] = [];
  after(() => children.forEach((child) => child.child.kill('SIGKILL')));

  it('comes up on an empty data folder (PGlite), is ready, prints the setup token once, stops on SIGTERM; the token survives a restart and setup spends it', async () => {
    const env = { BULWARK_DATA_DIR: dataDir, BULWARK_PORT: '0' };
    const first = run(['serve'], env);
    children.push(first);
    const port = await listeningPort(first);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready', checks: { database: 'ok', rootKey: 'ok' } });

    const token = /(bws_[A-Za-z0-9_-]{43})/.exec(first.stderr())?.[1];
    assert.ok(token, 'setup token printed on first start');
    assert.ok(!first.stdout().includes(token), 'the token is not in the JSON log stream');
    // The setup token is no operator credential: it only creates the first operator.
    const tenants = await fetch(`http://127.0.0.1:${port}/v1/tenants`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(tenants.status, 401);
    assert.equal((statSync(join(dataDir, 'pglite')).mode & 0o777).toString(8), '700');

    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
    assert.match(first.stdout(), /"signal":"SIGTERM"/);

    const second = run(['serve'], env);
    children.push(second);
    const secondPort = await listeningPort(second);
    assert.doesNotMatch(second.stderr(), /bws_/, 'the token is shown only once');
    const operator = { email: 'first@operator.example', password: 'a long and quiet passphrase 12' };
    const setup = await postJson(secondPort, '/v1/setup', { setupToken: token, ...operator });
    assert.equal(setup.status, 201, 'the stored token still works after a restart');
    assert.equal((await postJson(secondPort, '/v1/setup', { setupToken: token, email: 'second@operator.example', password: operator.password })).status, 409);
    const login = await postJson(secondPort, '/v1/auth/operator/login', operator);
    assert.equal(login.status, 200);
    const { accessToken } = (await login.json()) as { accessToken: string };
    assert.equal((await fetch(`http://127.0.0.1:${secondPort}/v1/tenants`, { headers: { authorization: `Bearer ${accessToken}` } })).status, 200);
    second.child.kill('SIGINT');
    assert.equal(await second.exited, 0);

    // Set up: no token any more, also when one is configured.
    const third = run(['serve'], { ...env, BULWARK_SETUP_TOKEN: token });
    children.push(third);
    const thirdPort = await listeningPort(third);
    assert.doesNotMatch(third.stderr(), /bws_/);
    assert.match(third.stdout(), /BULWARK_SETUP_TOKEN is set but setup is done/);
    assert.equal((await postJson(thirdPort, '/v1/setup', { setupToken: token, ...operator })).status, 409);
    third.child.kill('SIGTERM');
    assert.equal(await third.exited, 0);
  });

  it('`bulwark migrate` reports an up-to-date database', async () => {
    const migrate = run(['migrate'], { BULWARK_DATA_DIR: dataDir });
    assert.equal(await migrate.exited, 0);
    assert.match(migrate.stdout(), /Database is up to date \(\d+ migrations applied earlier\)/);
  });

  it('`bulwark migrate` in production refuses a database off loopback without verify-full, before connecting', async () => {
    // 0.0.0.0 counts as off the machine, and a connection attempt would still stay on it (a closed port).
    const url = `postgres://owner@0.0.0.0:${await freePort()}/x`;
    const refused = run(['migrate'], { BULWARK_DATA_DIR: dataDir, BULWARK_ENV: 'production', BULWARK_DATABASE_URL: url });
    assert.equal(await refused.exited, 1);
    assert.match(refused.stderr(), /PostgreSQL at 0\.0\.0\.0 is reached in plain text; refusing to start in production/);
    // Control: outside production the same URL is a warning, and the command gets as far as connecting.
    const warned = run(['migrate'], { BULWARK_DATA_DIR: dataDir, BULWARK_DATABASE_URL: url });
    assert.equal(await warned.exited, 1);
    assert.match(warned.stderr(), /warning: PostgreSQL at 0\.0\.0\.0 is reached in plain text/);
    assert.match(warned.stderr(), /ECONNREFUSED/);
  });

  it('fails fast with every bad value named', async () => {
    const bad = run(['serve'], { BULWARK_DATA_DIR: dataDir, BULWARK_PORT: 'http', BULWARK_LOG_LEVEL: 'loud' });
    assert.equal(await bad.exited, 78);
    assert.match(bad.stderr(), /BULWARK_PORT must be an integer/);
    assert.match(bad.stderr(), /BULWARK_LOG_LEVEL must be one of/);
  });

  it('comes up on PostgreSQL', { skip: engineSkip('postgres') }, async () => {
    const name = `bulwark_test_${randomBytes(6).toString('hex')}`;
    await adminQuery(`CREATE DATABASE ${name}`);
    try {
      const url = new URL(postgresAdminUrl);
      url.pathname = `/${name}`;
      const setupToken = randomBytes(24).toString('base64url');
      const server = run(['serve'], { BULWARK_DATA_DIR: dataDir, BULWARK_PORT: '0', BULWARK_DATABASE_URL: url.toString(), BULWARK_SETUP_TOKEN: setupToken });
      children.push(server);
      const port = await listeningPort(server);
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
      assert.match(server.stdout(), /"engine":"postgres"/);
      assert.doesNotMatch(server.stderr(), /bws_/, 'a preset token is not printed');
      assert.equal((await postJson(port, '/v1/setup', { setupToken, email: 'pg@operator.example', password: 'a long and quiet passphrase 12' })).status, 201);
      server.child.kill('SIGTERM');
      assert.equal(await server.exited, 0);
    } finally {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });
});
