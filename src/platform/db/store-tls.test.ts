import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createAccount, createOperator, createUser, encodeUser, fmtCreds } from '@nats-io/jwt';
import { NatsBus, natsBusOf, natsTlsOf } from '../../modules/bus/nats.ts';
import { natsAgentAccessOf } from '../../modules/bus/nats-credentials.ts';
import { openRateLimiter } from '../../modules/limits/open.ts';
import { systemClock } from '../clock.ts';
import { type Config, ConfigError, loadConfig } from '../config/config.ts';
import { freePort } from '../../testing/ports.ts';
import {
  clientCertificateUser,
  makeTestPki,
  natsPlaintextExchange,
  startTestNats,
  startTlsPostgres,
  startTlsRedis,
  type TestPki,
  type TlsPostgres,
  type TlsServer,
  tlsStoresSkip,
} from '../../testing/tls-stores.ts';
import { migratePostgres, openDatabase } from './open.ts';
import { postgresClientConfig, unverifiedTransport } from './postgres-tls.ts';

/**
 * TLS to every data store, through Bulwark's own adapters (openDatabase, openRateLimiter, natsBusOf),
 * against private PostgreSQL 15, Redis and NATS servers that speak only TLS (src/testing/tls-stores.ts).
 * Each refusal has a control: the same adapter and server succeeding once the one thing under test is right.
 */
const skip = tlsStoresSkip();
const appRole = 'bulwark_app';

let pki: TestPki;
let dataDir: string;

before(async () => {
  if (skip !== false) return;
  pki = await makeTestPki();
  dataDir = await mkdtemp(join(tmpdir(), 'bulwark-store-tls-'));
});

after(async () => {
  if (skip !== false) return;
  await pki.close();
  await rm(dataDir, { recursive: true, force: true });
});

function storeConfig(overrides: Partial<Record<keyof Config, string>>): Config {
  return loadConfig({}, { env: 'test', logLevel: 'silent', dataDir, backupSchedule: 'off', ...overrides });
}

/** The TLS (or OpenSSL) error code of a failure, wherever the client library put the original. */
function tlsCode(error: unknown): string | undefined {
  for (let current = error; current instanceof Error; current = current.cause) {
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^(ERR_|UNABLE_|SELF_|CERT_|DEPTH_)/.test(code)) return code;
  }
  return undefined;
}

const newId = () => randomBytes(6).toString('hex');

/** How a client reports a chain that does not lead to a CA it trusts (whether the server sends its CA along or not). */
const untrustedChain = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN']);

describe('TLS to PostgreSQL', { skip }, () => {
  let server: TlsPostgres;
  const tlsFiles = () => ({ databaseTlsCaFile: pki.caFile, databaseTlsCertFile: pki.client.certFile, databaseTlsKeyFile: pki.client.keyFile });

  before(async () => {
    server = await startTlsPostgres(pki);
    // The owner migrates (over verified TLS), creating the app role; the login of the client certificate joins it.
    const ca = await readFile(pki.caFile, 'utf8');
    await migratePostgres(server.url('postgres', 'verify-full'), appRole, { ca });
    await server.adminQuery(`CREATE ROLE ${clientCertificateUser} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE ${appRole}`);
  });

  after(async () => {
    await server.stop();
  });

  /** The server's own record of a backend (still open in the pool); the app role may not read other logins' rows of pg_stat_ssl. */
  async function sslOf(pid: number | undefined): Promise<Record<string, unknown> | undefined> {
    return (await server.adminQuery('SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = $1', [pid]))[0];
  }

  it('verify-full with a client certificate: the app serves as the app role under tenant RLS, over TLS', async () => {
    const config = storeConfig({ databaseUrl: server.url(clientCertificateUser, 'verify-full'), databaseAdminUrl: server.url('postgres', 'verify-full'), ...tlsFiles() });
    const { db, warnings } = await openDatabase(config);
    try {
      assert.deepEqual(warnings, [], 'a non-superuser login on loopback: nothing to warn about');
      const [mine, other] = [newId(), newId()];
      await db.withPlatform(async (tx) => {
        await tx.query("INSERT INTO tenants (id, name, region) VALUES ($1, 'Mine', 'local'), ($2, 'Other', 'local')", [mine, other]);
      });
      const { rows } = await db.tenantQuery<{ id: string; role: string; login: string; pid: number }>(mine, 'SELECT id, current_user AS role, session_user AS login, pg_backend_pid() AS pid FROM tenants');
      assert.deepEqual(rows.map(({ id, role, login }) => ({ id, role, login })), [{ id: mine, role: appRole, login: clientCertificateUser }], 'RLS shows the tenant its own row only');
      assert.deepEqual(await sslOf(rows[0]?.pid), { ssl: true, version: 'TLSv1.3', client_dn: `/CN=${clientCertificateUser}` });
    } finally {
      await db.close();
    }
  });

  it('plain text is refused by the server (hostnossl reject), so the success above was TLS', async () => {
    const config = storeConfig({ databaseUrl: server.url(clientCertificateUser, 'disable'), databaseAdminUrl: server.url('postgres', 'disable') });
    await assert.rejects(openDatabase(config), (error: unknown) => error instanceof pg.DatabaseError && error.code === '28000' && /no encryption/.test(error.message));
  });

  it('cert authentication: without the client certificate the login is refused', async () => {
    const config = storeConfig({ databaseUrl: server.url(clientCertificateUser, 'verify-full'), databaseAdminUrl: server.url('postgres', 'verify-full'), databaseTlsCaFile: pki.caFile });
    await assert.rejects(openDatabase(config), (error: unknown) => error instanceof pg.DatabaseError && error.code === '28000' && /certificate/.test(error.message));
  });

  it('a server certificate from another CA is refused', async () => {
    const config = storeConfig({ databaseUrl: server.url(clientCertificateUser, 'verify-full'), ...tlsFiles(), databaseTlsCaFile: pki.foreignCaFile });
    await assert.rejects(openDatabase(config), (error: unknown) => untrustedChain.has(tlsCode(error) ?? ''));
  });

  it('a certificate of the right CA for another name: verify-full refuses it, verify-ca (chain only) accepts it, require checks nothing', async () => {
    await server.present('wrongName');
    try {
      const withMode = (mode: string, files: Partial<Record<keyof Config, string>>) =>
        storeConfig({ databaseUrl: server.url(clientCertificateUser, mode), databaseAdminUrl: server.url('postgres', mode), ...files });
      await assert.rejects(openDatabase(withMode('verify-full', tlsFiles())), (error: unknown) => tlsCode(error) === 'ERR_TLS_CERT_ALTNAME_INVALID');
      // Also by name: the URL's host name, not just an IP address, is what verify-full holds the certificate to.
      const byName = storeConfig({ databaseUrl: server.url(clientCertificateUser, 'verify-full', 'localhost'), databaseAdminUrl: server.url('postgres', 'verify-full', 'localhost'), ...tlsFiles() });
      await assert.rejects(openDatabase(byName), (error: unknown) => tlsCode(error) === 'ERR_TLS_CERT_ALTNAME_INVALID');
      for (const [mode, files] of [
        ['verify-ca', tlsFiles()],
        ['require', { databaseTlsCertFile: pki.client.certFile, databaseTlsKeyFile: pki.client.keyFile }],
      ] as const) {
        const { db } = await openDatabase(withMode(mode, files));
        try {
          const { rows } = await db.tenantQuery<{ pid: number }>(newId(), 'SELECT pg_backend_pid() AS pid');
          assert.equal((await sslOf(rows[0]?.pid))?.['ssl'], true, mode);
        } finally {
          await db.close();
        }
      }
    } finally {
      await server.present('server');
    }
    // Control: the certificate for the right name passes verify-full again, by name too.
    const byName = storeConfig({ databaseUrl: server.url(clientCertificateUser, 'verify-full', 'localhost'), databaseAdminUrl: server.url('postgres', 'verify-full', 'localhost'), ...tlsFiles() });
    const { db } = await openDatabase(byName);
    await db.close();
  });
});

describe('PostgreSQL TLS configuration', { skip }, () => {
  it('takes only sslmode from the URL and hands pg an explicit ssl option', () => {
    const plain = postgresClientConfig('postgres://u@db:5432/x');
    assert.deepEqual(plain, { connectionString: 'postgres://u@db:5432/x', ssl: false });
    const full = postgresClientConfig('postgres://u@db.internal:5432/x?sslmode=verify-full&application_name=a', { ca: 'CA' });
    assert.equal(full.connectionString, 'postgres://u@db.internal:5432/x?application_name=a');
    assert.ok(full.ssl !== false);
    assert.equal(full.ssl.servername, 'db.internal');
    assert.equal(full.ssl.rejectUnauthorized, true);
    const ca = postgresClientConfig('postgres://u@10.0.0.5/x?sslmode=verify-ca', { ca: 'CA' });
    assert.ok(ca.ssl !== false && ca.ssl.servername === undefined, 'no SNI for an IP address');
    const required = postgresClientConfig('postgres://u@db/x?sslmode=require');
    assert.ok(required.ssl !== false && required.ssl.rejectUnauthorized === false, 'require without a CA authenticates nobody (libpq)');
  });

  it('production refuses a database off loopback without verify-full before connecting, unless accepted by name', async () => {
    assert.match(unverifiedTransport('postgres://u@db.internal/x') ?? '', /PostgreSQL at db\.internal is reached in plain text/);
    assert.match(unverifiedTransport('postgres://u@db.internal/x?sslmode=verify-ca') ?? '', /sslmode=verify-ca, which does not check the server's host name/);
    assert.equal(unverifiedTransport('postgres://u@db.internal/x?sslmode=verify-full'), undefined);
    assert.equal(unverifiedTransport('postgres://u@127.0.0.1/x'), undefined);
    assert.equal(unverifiedTransport('postgres://u@[::1]/x'), undefined);
    assert.equal(unverifiedTransport('postgres://u@localhost/x?host=/var/run/postgresql'), undefined, 'a Unix socket stays on the machine');
    assert.match(unverifiedTransport('postgres://u@localhost/x?host=db.internal') ?? '', /db\.internal/, 'the host parameter wins, as in pg');
    // 0.0.0.0 is no loopback name, so it counts as off the machine; were the check to let it through, the
    // connection attempt would still stay on this machine (a closed port).
    const url = `postgres://u@0.0.0.0:${await freePort()}/x`;
    await assert.rejects(openDatabase(storeConfig({ env: 'production', databaseUrl: url })), /reached in plain text; refusing to start in production.*BULWARK_ALLOW_UNVERIFIED_DATABASE_TLS=true/);
    // Control: accepted by name, the same configuration gets as far as connecting.
    await assert.rejects(openDatabase(storeConfig({ env: 'production', databaseUrl: url, allowUnverifiedDatabaseTls: 'true' })), (error: unknown) => (error as NodeJS.ErrnoException).code === 'ECONNREFUSED');
  });
});

describe('TLS configuration errors', { skip }, () => {
  const problemsOf = (environment: Record<string, string>): string[] => {
    try {
      loadConfig(environment);
    } catch (error) {
      if (error instanceof ConfigError) return [...error.problems];
      throw error;
    }
    return [];
  };

  it('a missing or unreadable file names its variable and path', async () => {
    const problems = problemsOf({ BULWARK_REDIS_URL: 'rediss://cache:6380', BULWARK_REDIS_TLS_CA_FILE: '/nonexistent/ca.pem' });
    assert.deepEqual(problems, ['BULWARK_REDIS_TLS_CA_FILE cannot be read (ENOENT) (got "/nonexistent/ca.pem")']);
  });

  it('files are checked for what they hold and who may read them, without quoting them', async () => {
    const keyPem = await readFile(pki.client.keyFile, 'utf8');
    const openKey = join(dataDir, 'open.key');
    await copyFile(pki.client.keyFile, openKey);
    await chmod(openKey, 0o644);
    const problems = problemsOf({
      BULWARK_NATS_URL: 'tls://bus:4222',
      BULWARK_NATS_TLS_CA_FILE: pki.client.keyFile,
      BULWARK_NATS_TLS_CERT_FILE: pki.client.certFile,
      BULWARK_NATS_TLS_KEY_FILE: openKey,
      BULWARK_DATABASE_URL: 'postgres://u@db/x?sslmode=verify-full',
      BULWARK_DATABASE_TLS_CERT_FILE: pki.client.certFile,
      BULWARK_DATABASE_TLS_KEY_FILE: pki.server.keyFile,
    });
    assert.deepEqual(problems.sort(), [
      'BULWARK_DATABASE_TLS_KEY_FILE is not the private key of BULWARK_DATABASE_TLS_CERT_FILE',
      `BULWARK_NATS_TLS_CA_FILE does not hold PEM certificates (got ${JSON.stringify(pki.client.keyFile)})`,
      `BULWARK_NATS_TLS_CERT_FILE and BULWARK_NATS_TLS_KEY_FILE go together: set both or neither`,
      `BULWARK_NATS_TLS_KEY_FILE is accessible by group or others (mode 0644); restrict it with \`chmod 600\` (got ${JSON.stringify(openKey)})`,
    ]);
    assert.ok(!problems.join('\n').includes(keyPem.split('\n')[1] ?? 'unreachable'));
    // The key travels in the frozen config, but never into its JSON (what a log line would show).
    const config = loadConfig({ BULWARK_REDIS_URL: 'rediss://cache:6380', BULWARK_REDIS_TLS_CERT_FILE: pki.client.certFile, BULWARK_REDIS_TLS_KEY_FILE: pki.client.keyFile });
    assert.equal(config.redisTlsKeyFile?.pem, keyPem);
    assert.ok(!JSON.stringify(config).includes('PRIVATE KEY'));
  });

  it('files need the URL that uses them; verify-ca needs a CA; sslmode and only sslmode', () => {
    const problems = problemsOf({
      BULWARK_DATABASE_URL: 'postgres://u:hunter2@db/x?sslmode=prefer',
      BULWARK_DATABASE_ADMIN_URL: 'postgres://owner:hunter3@db/x?sslrootcert=/etc/ca.pem',
      BULWARK_REDIS_URL: 'redis://cache:6379',
      BULWARK_REDIS_TLS_CA_FILE: pki.caFile,
      BULWARK_NATS_URL: 'nats://bus:4222',
      BULWARK_NATS_TLS_CA_FILE: pki.caFile,
    });
    assert.deepEqual(problems.sort(), [
      'BULWARK_DATABASE_ADMIN_URL has sslrootcert: give only sslmode in the URL, and the files with BULWARK_DATABASE_TLS_CA_FILE, _CERT_FILE and _KEY_FILE',
      'BULWARK_DATABASE_URL has sslmode=prefer; use one of disable, require, verify-ca, verify-full (allow and prefer are not supported: they fall back to plain text)',
      'BULWARK_NATS_TLS_CA_FILE needs a tls:// BULWARK_NATS_URL',
      'BULWARK_REDIS_TLS_CA_FILE needs a rediss:// BULWARK_REDIS_URL',
    ]);
    assert.ok(!problems.join('\n').includes('hunter'));
    assert.deepEqual(problemsOf({ BULWARK_DATABASE_URL: 'postgres://u@db/x?sslmode=verify-ca' }), [
      'sslmode=verify-ca needs BULWARK_DATABASE_TLS_CA_FILE: against the public CAs, a certificate issued to anyone for any name would pass',
    ]);
    assert.deepEqual(problemsOf({ BULWARK_DATABASE_URL: 'postgres://u@db/x', BULWARK_DATABASE_TLS_CA_FILE: pki.caFile }), [
      'BULWARK_DATABASE_TLS_CA_FILE needs sslmode=require, verify-ca or verify-full in BULWARK_DATABASE_URL',
    ]);
  });
});

describe('TLS to Redis', { skip }, () => {
  let server: TlsServer;
  const silent = { warn: () => undefined, storeError: () => undefined, degradedDecision: () => undefined };

  before(async () => {
    server = await startTlsRedis(pki, { certificate: 'server', clientCertificates: 'optional' });
  });

  after(async () => {
    await server.stop();
  });

  /** Opens the rate limiter on `target`; the first connection error it reported, and whether Redis answers. */
  async function attempt(target: TlsServer, overrides: Partial<Record<keyof Config, string>>): Promise<{ error: unknown; answers: boolean }> {
    let error: unknown;
    const opened = await openRateLimiter(
      storeConfig({ redisUrl: `rediss://localhost:${target.port}`, rateLimitRedisFailure: 'closed', ...overrides }),
      systemClock,
      { ...silent, warn: (_message, reported) => (error ??= reported) },
    );
    try {
      const answers = await opened.probe?.ping().then(() => true, () => false);
      return { error, answers: answers === true };
    } finally {
      await opened.limiter.close();
    }
  }

  it('rediss:// with the CA: rate-limit decisions are made in Redis, over TLS', async () => {
    const opened = await openRateLimiter(storeConfig({ redisUrl: `rediss://localhost:${server.port}`, redisTlsCaFile: pki.caFile, rateLimitRedisFailure: 'closed' }), systemClock, silent);
    const inspector = new Redis(`rediss://localhost:${server.port}`, { tls: { ca: await readFile(pki.caFile, 'utf8') }, maxRetriesPerRequest: 0 });
    try {
      assert.equal(opened.limiter.storeKind, 'redis');
      const key = `tls-test:${newId()}`;
      const rate = { limit: 2, windowSeconds: 3600 };
      const decisions = [];
      for (let index = 0; index < 3; index += 1) decisions.push((await opened.limiter.take(key, rate, 1)).allowed);
      assert.deepEqual(decisions, [true, true, false]);
      assert.deepEqual(await inspector.keys(`bulwark:rl:${key}*`), [`bulwark:rl:${key}`], 'the bucket lives in Redis');
    } finally {
      inspector.disconnect();
      await opened.limiter.close();
    }
  });

  it('the server has no plaintext port: a plaintext client on its port gets no answer', async () => {
    const plain = new Redis(`redis://localhost:${server.port}`, { maxRetriesPerRequest: 0, connectTimeout: 1_000, commandTimeout: 1_000, retryStrategy: () => null });
    plain.on('error', () => undefined);
    try {
      await assert.rejects(plain.ping());
    } finally {
      plain.disconnect();
    }
  });

  describe('refusals (each with its control above or beside it)', { concurrency: true }, () => {
    it('a server certificate for another name is refused', async () => {
      const wrongName = await startTlsRedis(pki, { certificate: 'wrongName', clientCertificates: 'optional' });
      try {
        const refused = await attempt(wrongName, { redisTlsCaFile: pki.caFile });
        assert.equal(tlsCode(refused.error), 'ERR_TLS_CERT_ALTNAME_INVALID');
        assert.equal(refused.answers, false);
      } finally {
        await wrongName.stop();
      }
    });

    it('a server certificate from another CA is refused (and without the CA file, Node\'s public CAs do not know ours)', async () => {
      const [foreign, none] = await Promise.all([attempt(server, { redisTlsCaFile: pki.foreignCaFile }), attempt(server, {})]);
      assert.ok(untrustedChain.has(tlsCode(foreign.error) ?? ''), String(tlsCode(foreign.error)));
      assert.equal(foreign.answers, false);
      assert.ok(untrustedChain.has(tlsCode(none.error) ?? ''), String(tlsCode(none.error)));
    });

    it('tls-auth-clients yes: with the client certificate it works, without it the server refuses', async () => {
      const strict = await startTlsRedis(pki, { certificate: 'server', clientCertificates: 'yes' });
      try {
        const [withCertificate, without] = await Promise.all([
          attempt(strict, { redisTlsCaFile: pki.caFile, redisTlsCertFile: pki.client.certFile, redisTlsKeyFile: pki.client.keyFile }),
          attempt(strict, { redisTlsCaFile: pki.caFile }),
        ]);
        assert.deepEqual(withCertificate, { error: undefined, answers: true });
        // In TLS 1.3 the server checks for the certificate after the client's side of the handshake is done:
        // the client mostly sees a reset connection; the server's log says why.
        assert.equal(without.answers, false);
        assert.ok(without.error !== undefined);
        assert.match(strict.log(), /peer did not return a certificate/);
      } finally {
        await strict.stop();
      }
    });
  });
});

describe('TLS to NATS', { skip }, () => {
  let server: TlsServer;
  let plain: TlsServer;

  before(async () => {
    [server, plain] = await Promise.all([startTestNats(pki, { tls: true, certificate: 'server', verifyClients: false }), startTestNats(pki, { tls: false })]);
  });

  after(async () => {
    await Promise.all([server.stop(), plain.stop()]);
  });

  /** A publish and subscribe round trip, and a request with its reply, on `bus`. */
  async function roundTrip(bus: NatsBus): Promise<void> {
    const heard: unknown[] = [];
    const subject = `bulwark.tls.${newId()}`;
    bus.subscribe(`${subject}.event`, (_subject, payload) => {
      heard.push(payload);
    });
    bus.subscribe(`${subject}.echo`, async (_subject, payload, reply) => reply?.({ echo: payload }));
    await bus.ping();
    await bus.publish(`${subject}.event`, { n: 1 });
    assert.deepEqual(await bus.request(`${subject}.echo`, { n: 2 }, { timeoutMs: 2_000 }), { echo: { n: 2 } });
    assert.deepEqual(heard, [{ n: 1 }]);
  }

  /** Resolves once `bus` is connected, or rejects with the first error it reported. */
  async function connected(bus: NatsBus, errors: unknown[]): Promise<void> {
    for (let tries = 0; tries < 100; tries += 1) {
      if (errors.length > 0) throw errors[0];
      try {
        await bus.ping();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new Error('neither connected nor refused');
  }

  /** The bus of the configuration, but giving up on a connection after a second (the server may refuse after the handshake). */
  async function attempt(target: TlsServer, overrides: Partial<Record<keyof Config, string>>): Promise<unknown> {
    const errors: unknown[] = [];
    const config = storeConfig({ natsUrl: `tls://127.0.0.1:${target.port}`, ...overrides });
    const bus = new NatsBus({ servers: [`tls://127.0.0.1:${target.port}`], tls: natsTlsOf(config), connectTimeoutMs: 1_000, onError: (error) => errors.push(error) });
    try {
      await connected(bus, errors);
      return undefined;
    } catch (error) {
      return error;
    } finally {
      await bus.close();
    }
  }

  /** The bus of the configuration connects and carries a publish, a subscription and a request. */
  async function works(overrides: Partial<Record<keyof Config, string>>): Promise<void> {
    const errors: unknown[] = [];
    const bus = natsBusOf(storeConfig(overrides), (error) => errors.push(error));
    assert.ok(bus !== undefined);
    try {
      await connected(bus, errors);
      await roundTrip(bus);
    } finally {
      await bus.close();
    }
  }

  it('tls:// with the CA: the bus publishes, subscribes and answers requests', async () => {
    await works({ natsUrl: `tls://localhost:${server.port}`, natsTlsCaFile: pki.caFile });
  });

  it('the server requires TLS: a client that speaks plain text gets no PONG (a plaintext server does answer it)', async () => {
    const refused = await natsPlaintextExchange(server.port);
    assert.match(refused, /"tls_required":true/);
    assert.doesNotMatch(refused, /PONG/);
    assert.match(await natsPlaintextExchange(plain.port), /\r\nPONG\r\n/);
  });

  it('a server certificate for another name, or from another CA, is refused', async () => {
    const wrongName = await startTestNats(pki, { tls: true, certificate: 'wrongName', verifyClients: false });
    try {
      const [byName, byCa, control] = await Promise.all([
        attempt(wrongName, { natsTlsCaFile: pki.caFile }),
        attempt(server, { natsTlsCaFile: pki.foreignCaFile }),
        attempt(server, { natsTlsCaFile: pki.caFile }),
      ]);
      assert.equal(tlsCode(byName), 'ERR_TLS_CERT_ALTNAME_INVALID');
      assert.ok(untrustedChain.has(tlsCode(byCa) ?? ''), String(tlsCode(byCa)));
      assert.equal(control, undefined);
    } finally {
      await wrongName.stop();
    }
  });

  it('the revocation connection (system account user) uses the same TLS files', async () => {
    const seed = (key: { getSeed(): Uint8Array }) => new TextDecoder().decode(key.getSeed());
    const write = async (name: string, content: string) => {
      await writeFile(join(dataDir, name), content, { mode: 0o600 });
      return join(dataDir, name);
    };
    const account = createAccount();
    const system = createAccount();
    const systemUser = createUser();
    const files = {
      natsAgentAccount: account.getPublicKey(),
      natsAgentSigningKeyFile: await write('account.nk', seed(createAccount())),
      natsOperatorSigningKeyFile: await write('operator.nk', seed(createOperator())),
      natsSystemCredsFile: await write('system.creds', new TextDecoder().decode(fmtCreds(await encodeUser('sys', systemUser, system), systemUser))),
    };
    const revoke = (overrides: Partial<Record<keyof Config, string>>) => {
      const access = natsAgentAccessOf(storeConfig({ natsUrl: `tls://127.0.0.1:${server.port}`, ...files, ...overrides }));
      assert.ok(access !== undefined);
      return access.revoke(newId(), newId(), createUser().getPublicKey());
    };
    // This server runs no resolver, so nobody answers the account lookup: reaching that point means the TLS
    // connection was made. Without our CA, the connection itself fails.
    await assert.rejects(revoke({ natsTlsCaFile: pki.caFile }), /no answer from NATS on \$SYS\.REQ\.ACCOUNT\./);
    await assert.rejects(revoke({}), (error: unknown) => error instanceof Error && /cannot reach NATS as the system account user/.test(error.message) && untrustedChain.has(tlsCode(error) ?? ''));
  });

  it('a server that requires client certificates: with ours it works, without it refuses', async () => {
    const strict = await startTestNats(pki, { tls: true, certificate: 'server', verifyClients: true });
    try {
      // The client finishes its side of the TLS 1.3 handshake before the server checks for a certificate, so
      // it sees only a connection that never comes up; the server's log says why.
      const without = await attempt(strict, { natsTlsCaFile: pki.caFile });
      assert.ok(without !== undefined, 'refused without a client certificate');
      assert.match(strict.log(), /client didn't provide a certificate/);
      await works({ natsUrl: `tls://127.0.0.1:${strict.port}`, natsTlsCaFile: pki.caFile, natsTlsCertFile: pki.client.certFile, natsTlsKeyFile: pki.client.keyFile });
    } finally {
      await strict.stop();
    }
  });
});
