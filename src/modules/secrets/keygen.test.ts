import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { privateKeyFileName } from '../../cli/commands/service.ts';
import { openSealedSecret } from '../../sdk/secrets.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { runCli } from '../../testing/cli.ts';

describe('bulwark service keygen', () => {
  let dir: string;
  let test: TestApp;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-keygen-'));
    test = await createTestApp('pglite');
  });
  after(async () => {
    await test.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes the private key (0600) and prints the public key; a service registered with it opens its secret with the file', async () => {
    const out = join(dir, 'replicator');
    const result = await runCli(['service', 'keygen', '--out', out], {});
    assert.equal(result.code, 0, result.stderr);
    const publicKey = result.stdout.trim();
    assert.match(publicKey, /^[A-Za-z0-9_-]{43}$/);
    const file = join(out, privateKeyFileName);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const pem = readFileSync(file, 'utf8');
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.ok(!result.stdout.includes('PRIVATE') && !result.stderr.includes('PRIVATE') && !result.stderr.includes(pem.split('\n')[1] ?? 'x'), 'the private key is not printed');

    const { tenantId, apiKey } = await test.tenantWithKey('Keygen');
    const registered = await test.call({ method: 'POST', url: '/v1/services', token: test.operatorToken, body: { name: 'replicator', publicKey } });
    assert.equal(registered.statusCode, 201, registered.body);
    const { id: serviceId, credential } = registered.json<{ id: string; credential: string }>();
    const written = await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/secrets/bucket-credentials`, token: apiKey, body: { value: 'secret-access-key', readers: [serviceId] } });
    assert.equal(written.statusCode, 201, written.body);
    const sealed = await test.call({ method: 'GET', url: `/v1/services/${serviceId}/secrets/${tenantId}/bucket-credentials`, token: credential });
    assert.equal(sealed.statusCode, 200, sealed.body);
    assert.equal(await openSealedSecret(sealed.json(), pem, { tenantId, name: 'bucket-credentials', serviceId }), 'secret-access-key');
  });

  it('never overwrites a key file; --json prints the public key and the file', async () => {
    const out = join(dir, 'kept');
    const first = await runCli(['service', 'keygen', '--out', out, '--json'], {});
    assert.equal(first.code, 0, first.stderr);
    const printed = JSON.parse(first.stdout) as { publicKey: string; privateKeyFile: string };
    assert.equal(printed.privateKeyFile, join(out, privateKeyFileName));
    assert.match(printed.publicKey, /^[A-Za-z0-9_-]{43}$/);
    const before = readFileSync(printed.privateKeyFile, 'utf8');
    const second = await runCli(['service', 'keygen', '--out', out], {});
    assert.equal(second.code, 1);
    assert.match(second.stderr, /exists already/);
    assert.equal(second.stdout, '');
    assert.equal(readFileSync(printed.privateKeyFile, 'utf8'), before);
  });

  it('refuses bad invocations with the usage (exit 2) and writes nothing; --help exits 0', async () => {
    const blocked = join(dir, 'blocked');
    writeFileSync(blocked, 'a file, not a directory');
    for (const args of [['service', 'rotate'], ['service', 'keygen', '--unknown'], ['service', 'keygen', 'extra'], ['service', 'keygen', '--out', '']]) {
      const result = await runCli(args, {});
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /Usage: bulwark service/);
    }
    // Without --out the key would go to the working directory: none went there.
    assert.equal(existsSync(join(process.cwd(), privateKeyFileName)), false);
    const notADirectory = await runCli(['service', 'keygen', '--out', blocked], {});
    assert.equal(notADirectory.code, 1);
    const help = await runCli(['service', '--help'], {});
    assert.equal(help.code, 0);
    assert.match(help.stdout, /keygen/);
    const top = await runCli(['--help'], {});
    assert.match(top.stdout + top.stderr, /service\s+A reading service's key pair/);
  });
});
