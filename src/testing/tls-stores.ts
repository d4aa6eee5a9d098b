import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, chmod, chown, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports.ts';

/**
 * Private PostgreSQL 15, Redis and NATS servers that speak only TLS, on free loopback ports, with a
 * throwaway PKI: what the data-store TLS tests connect Bulwark's own adapters to. Without the binaries (or
 * openssl) the suite skips; with BULWARK_REQUIRE_SERVICES=1 (CI) the import fails instead. PostgreSQL
 * refuses to run as root, so under root it runs as the `postgres` OS user.
 */
const postgresBin = '/usr/lib/postgresql/15/bin';
const natsServerBinary = '/usr/sbin/nats-server';
const run = promisify(execFile);

function onPath(command: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, command)));
}

/** uid and gid of the `postgres` OS user, from /etc/passwd (a root test process hands PostgreSQL to it). */
function postgresUser(): { uid: number; gid: number } | undefined {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((entry) => entry.startsWith('postgres:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  return uid === undefined || gid === undefined ? undefined : { uid: Number(uid), gid: Number(gid) };
}

const runAs = process.getuid?.() === 0 ? postgresUser() : undefined;
const tlsStoresProblem = !existsSync(join(postgresBin, 'postgres')) || !existsSync(join(postgresBin, 'initdb'))
  ? `PostgreSQL 15 server binaries are not in ${postgresBin} (apt-get install postgresql-15)`
  : process.getuid?.() === 0 && runAs === undefined
    ? 'running as root without a postgres OS user to run PostgreSQL as'
    : !onPath('redis-server')
      ? 'redis-server is not installed'
      : !existsSync(natsServerBinary)
        ? `${natsServerBinary} is not installed (apt-get install nats-server)`
        : !onPath('openssl')
          ? 'openssl is not installed'
          : undefined;
if (tlsStoresProblem !== undefined && process.env['BULWARK_REQUIRE_SERVICES'] === '1') {
  throw new Error(`BULWARK_REQUIRE_SERVICES=1 but ${tlsStoresProblem}`);
}

/** `skip` option for node:test. */
export function tlsStoresSkip(): string | false {
  return tlsStoresProblem ?? false;
}

export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

export interface TestPki {
  /** The CA that signed every certificate below. */
  caFile: string;
  /** A CA that signed nothing here: trusting it instead must refuse every server. */
  foreignCaFile: string;
  /** SAN DNS:localhost, IP:127.0.0.1. */
  server: CertificateFiles;
  /** Same CA, SAN DNS:elsewhere.invalid only: right chain, wrong name. */
  wrongName: CertificateFiles;
  /** CN=bulwark_tls (the PostgreSQL login of `cert` authentication), clientAuth. */
  client: CertificateFiles;
  close(): Promise<void>;
}

export const clientCertificateUser = 'bulwark_tls';

/** A fresh CA, server and client certificates (EC P-256, two days), made with the openssl CLI. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-pki-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'];
  const file = (name: string) => join(dir, name);
  await Promise.all([
    run('openssl', ['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-subj', '/CN=Bulwark test store CA']),
    run('openssl', ['req', '-x509', ...ec, '-keyout', file('foreign-ca.key'), '-out', file('foreign-ca.pem'), '-subj', '/CN=Unrelated test CA']),
  ]);
  const issue = (name: string, subject: string, extensions: string[]) =>
    run('openssl', [
      'req', '-x509', ...ec, '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-keyout', file(`${name}.key`), '-out', file(`${name}.pem`),
      '-subj', subject, '-addext', 'basicConstraints=critical,CA:FALSE', ...extensions.flatMap((extension) => ['-addext', extension]),
    ]);
  await Promise.all([
    issue('server', '/CN=localhost', ['subjectAltName=DNS:localhost,IP:127.0.0.1', 'extendedKeyUsage=serverAuth']),
    issue('wrong-name', '/CN=elsewhere.invalid', ['subjectAltName=DNS:elsewhere.invalid', 'extendedKeyUsage=serverAuth']),
    issue('client', `/CN=${clientCertificateUser}`, ['extendedKeyUsage=clientAuth']),
  ]);
  await Promise.all(['ca', 'foreign-ca', 'server', 'wrong-name', 'client'].map((name) => chmod(file(`${name}.key`), 0o600)));
  const pair = (name: string) => ({ certFile: file(`${name}.pem`), keyFile: file(`${name}.key`) });
  return {
    caFile: file('ca.pem'),
    foreignCaFile: file('foreign-ca.pem'),
    server: pair('server'),
    wrongName: pair('wrong-name'),
    client: pair('client'),
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A child that a test file ending early (a failed `before`) must not leave behind. */
function killedOnExit(child: ChildProcess): () => void {
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  return () => process.removeListener('exit', kill);
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

async function until<T>(what: string, child: ChildProcess, attempt: () => Promise<T>, output: () => string): Promise<T> {
  for (let tries = 0; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (tries > 100 || child.exitCode !== null) throw new Error(`${what} did not come up: ${output().slice(-2000)}`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function captured(child: ChildProcess): () => string {
  let text = '';
  const keep = (chunk: Buffer) => {
    text = (text + chunk.toString('utf8')).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => text;
}

const tcpOpen = (port: number) =>
  new Promise<void>((resolve, reject) => {
    const socket = connectTcp(port, '127.0.0.1', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });

export interface TlsPostgres {
  port: number;
  /** `postgres://<user>@<host>:<port>/postgres`, with `?sslmode=<mode>` unless omitted. */
  url(user: string, sslmode?: string, host?: string): string;
  /** The server certificate new connections get (reloaded in place, as an operator rotating it would). */
  present(certificate: 'server' | 'wrongName'): Promise<void>;
  /** As the superuser, over TLS whose chain (not name: `present` may swap it) is verified against the test CA. */
  adminQuery(sql: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
}

/**
 * PostgreSQL 15 in a fresh cluster: TLS only (`hostnossl ... reject`), `cert` authentication for
 * `bulwark_tls` (the client certificate's CN) and trust for everyone else over TLS, no Unix socket.
 */
export async function startTlsPostgres(pki: TestPki): Promise<TlsPostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-pgtls-'));
  const data = join(dir, 'data');
  const port = await freePort();
  const owned = async (path: string) => {
    if (runAs !== undefined) await chown(path, runAs.uid, runAs.gid);
  };
  await owned(dir);
  // The server reads its key only when the cluster's user owns it with no group or other access.
  const certificates = { server: pki.server, wrongName: pki.wrongName };
  for (const [name, files] of Object.entries(certificates)) {
    for (const [kind, source] of [['pem', files.certFile], ['key', files.keyFile]] as const) {
      const target = join(dir, `${name}.${kind}`);
      await copyFile(source, target);
      await chmod(target, 0o600);
      await owned(target);
    }
  }
  await copyFile(pki.caFile, join(dir, 'ca.pem'));
  await owned(join(dir, 'ca.pem'));
  const asPostgres = runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid };
  await run(join(postgresBin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--no-instructions'], { ...asPostgres, cwd: dir });
  await writeFile(
    join(data, 'pg_hba.conf'),
    [`hostssl all ${clientCertificateUser} 127.0.0.1/32 cert`, 'hostssl all all 127.0.0.1/32 trust', 'hostnossl all all 0.0.0.0/0 reject', ''].join('\n'),
  );
  // In postgresql.conf, not on the command line: ALTER SYSTEM (`present`) must be able to override them.
  await appendFile(
    join(data, 'postgresql.conf'),
    [
      "listen_addresses = '127.0.0.1'",
      `port = ${port}`,
      "unix_socket_directories = ''",
      'ssl = on',
      `ssl_cert_file = '${join(dir, 'server.pem')}'`,
      `ssl_key_file = '${join(dir, 'server.key')}'`,
      `ssl_ca_file = '${join(dir, 'ca.pem')}'`,
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'max_connections = 40',
      '',
    ].join('\n'),
  );
  const child = spawn(join(postgresBin, 'postgres'), ['-D', data], { ...asPostgres, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = captured(child);
  const release = killedOnExit(child);
  const ca = await readFile(pki.caFile, 'utf8');
  const url = (user: string, sslmode?: string, host = '127.0.0.1') => `postgres://${user}@${host}:${port}/postgres${sslmode === undefined ? '' : `?sslmode=${sslmode}`}`;
  const adminQuery = async (sql: string, params: readonly unknown[] = []) => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', ssl: { ca, checkServerIdentity: () => undefined }, connectionTimeoutMillis: 2_000 });
    await client.connect();
    try {
      return (await client.query(sql, params as unknown[])).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  };
  const stop = async () => {
    // Fast shutdown (SIGINT): backends end with the postmaster and the shared memory goes with them.
    await stopChild(child, 'SIGINT');
    release();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await until(`PostgreSQL on port ${port}`, child, () => adminQuery('SELECT 1'), output);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    port,
    url,
    adminQuery,
    async present(certificate) {
      const name = certificate === 'server' ? 'server' : 'wrongName';
      await adminQuery(`ALTER SYSTEM SET ssl_cert_file = '${join(dir, `${name}.pem`)}'`);
      await adminQuery(`ALTER SYSTEM SET ssl_key_file = '${join(dir, `${name}.key`)}'`);
      await adminQuery('SELECT pg_reload_conf()');
      // The postmaster reloads asynchronously; a backend forked after it shows the new file (and its TLS context).
      const wanted = join(dir, `${name}.pem`);
      await until('the certificate reload', child, async () => {
        const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', ssl: { rejectUnauthorized: false } });
        await client.connect();
        try {
          const { rows } = await client.query<{ file: string }>("SELECT current_setting('ssl_cert_file') AS file");
          if (rows[0]?.file !== wanted) throw new Error('not reloaded yet');
        } finally {
          await client.end();
        }
      }, output);
    },
    stop,
  };
}

export interface TlsServer {
  port: number;
  /** The tail of what the server logged: why it refused a client. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * `redis-server` with no plaintext port (`--port 0`), TLS on a free one, in memory only. `clientCertificates`
 * is its `tls-auth-clients`: `optional` checks a certificate when one is sent, `yes` requires one.
 */
export async function startTlsRedis(pki: TestPki, options: { certificate: 'server' | 'wrongName'; clientCertificates: 'optional' | 'yes' }): Promise<TlsServer> {
  const port = await freePort();
  const { certFile, keyFile } = pki[options.certificate];
  const child = spawn(
    'redis-server',
    [
      '--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--tls-cert-file', certFile, '--tls-key-file', keyFile, '--tls-ca-cert-file', pki.caFile, '--tls-auth-clients', options.clientCertificates,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return serverOf(child, port, `redis-server on port ${port}`);
}

/** `nats-server` on a free port: TLS only (`tls_required`), optionally requiring client certificates; or plaintext (`tls: false`), the control. */
export async function startTestNats(
  pki: TestPki,
  options: { tls: false } | { tls: true; certificate: 'server' | 'wrongName'; verifyClients: boolean },
): Promise<TlsServer> {
  const port = await freePort();
  const tlsArgs = options.tls
    ? [options.verifyClients ? '--tlsverify' : '--tls', '--tlscert', pki[options.certificate].certFile, '--tlskey', pki[options.certificate].keyFile, '--tlscacert', pki.caFile]
    : [];
  const child = spawn(natsServerBinary, ['-a', '127.0.0.1', '-p', String(port), ...tlsArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  return serverOf(child, port, `nats-server on port ${port}`);
}

async function serverOf(child: ChildProcess, port: number, what: string): Promise<TlsServer> {
  const output = captured(child);
  const release = killedOnExit(child);
  const stop = async () => {
    await stopChild(child, 'SIGKILL');
    release();
  };
  try {
    await until(what, child, () => tcpOpen(port), output);
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, log: output, stop };
}

/**
 * A client that never starts TLS: reads the NATS greeting, sends CONNECT and PING in clear, and returns
 * everything the server said until it closed the connection or a second passed.
 */
export async function natsPlaintextExchange(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    let sent = false;
    const socket = connectTcp(port, '127.0.0.1');
    const timer = setTimeout(() => socket.destroy(), 1_000);
    socket.on('data', (chunk) => {
      answer += chunk.toString('utf8');
      if (!sent && answer.includes('\r\n')) {
        sent = true;
        socket.write('CONNECT {"verbose":false,"pedantic":false,"tls_required":false}\r\nPING\r\n');
      }
    });
    socket.once('error', reject);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
  });
}
