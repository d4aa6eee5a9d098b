import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Agent, get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ConnectionOptions, connect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { EnvRootKey } from '../../modules/keys/root/env.ts';
import { buildApp } from '../../server/app.ts';
import { type RunningServer, startServer } from '../../server/server.ts';
import { engineSkip, engines, openTestDatabase, testConfig, type TestDatabase } from '../../testing/engines.ts';
import { loadConfig } from '../config/config.ts';
import type { Database } from '../db/database.ts';
import { openDatabase } from '../db/open.ts';
import { createCertificateAuthority, issueServerCertificate } from './issuance.ts';
import { openServerTls, type ServerTls, type TlsLog } from './server-tls.ts';

type Probe =
  | { ok: true; protocol: string | null; cipher: string; peer: X509Certificate | undefined; authorized: boolean; authorizationError: string | undefined }
  | { ok: false; code: string };

/** One TLS handshake with `options`, on loopback; what was negotiated, or the error code. */
function handshake(port: number, options: ConnectionOptions = {}): Promise<Probe> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...options }, () => {
      resolve({
        ok: true,
        protocol: socket.getProtocol(),
        cipher: socket.getCipher().name,
        peer: socket.getPeerX509Certificate(),
        authorized: socket.authorized,
        authorizationError: socket.authorized ? undefined : String(socket.authorizationError),
      });
      socket.destroy();
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve({ ok: false, code: error.code ?? error.message }));
  });
}

/**
 * The control: a TLS server that takes anything (TLS 1.0 up, every cipher, security level 0) with a key of
 * the same kind as Bulwark's. A probe it accepts and Bulwark refuses was refused by Bulwark's policy, not
 * by what this client can offer.
 */
async function permissiveServer(serving: { cert: string; key: string }): Promise<{ port: number; close(): Promise<void> }> {
  // Connections stay open until the client goes (a renegotiation needs the peer still there).
  const server = createTlsServer({ ...serving, minVersion: 'TLSv1', ciphers: 'ALL@SECLEVEL=0' }, (socket) => socket.on('error', () => undefined).resume());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return { port: address.port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const legacy = { ciphers: 'DEFAULT@SECLEVEL=0' };
/** TLS 1.2 suites that are not ECDHE + AEAD: CBC with SHA-2 or SHA-1 MACs. */
const nonAeadSuites = ['ECDHE-ECDSA-AES256-SHA384', 'ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA'];

function portOf(address: string): number {
  return Number(new URL(address).port);
}

function capturingLog(): TlsLog & { lines: { level: string; message: string; details: object; at: number }[] } {
  const lines: { level: string; message: string; details: object; at: number }[] = [];
  return {
    lines,
    info: (details, message) => lines.push({ level: 'info', message, details, at: Date.now() }),
    error: (details, message) => lines.push({ level: 'error', message, details, at: Date.now() }),
  };
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const servedOn = new WeakMap<TLSSocket, string>();

/** GET over HTTPS on loopback; the status, headers, body and the certificate the connection was made with. */
function httpsCall(port: number, path: string, options: { agent?: Agent; ca?: string } = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string; serial: string | undefined }>((resolve, reject) => {
    const request = httpsGet(
      { host: '127.0.0.1', port, path, ...(options.agent === undefined ? { agent: false as const, rejectUnauthorized: options.ca !== undefined, ca: options.ca } : { agent: options.agent }) },
      (response) => {
        // Node's client answers the peer certificate on a connection's first response only: a reused one is looked up.
        const socket = response.socket as unknown as TLSSocket;
        const serial = socket.getPeerX509Certificate()?.serialNumber ?? servedOn.get(socket);
        if (serial !== undefined) servedOn.set(socket, serial);
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body, serial }));
      },
    );
    request.once('error', reject);
  });
}

describe('self-managed TLS (BULWARK_TLS=on, no files), through startServer', () => {
  let server: RunningServer;
  let port: number;
  let caPem: string;
  let control: { port: number; close(): Promise<void> };

  before(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-tls-'));
    server = await startServer(
      testConfig({ dataDir, port: '0', tls: 'on', tlsHostnames: 'api.bulwark.test,localhost,127.0.0.1', setupToken: `bws_${'u'.repeat(43)}` }),
      { banner: () => undefined },
    );
    port = portOf(server.address);
    caPem = (await httpsCall(port, '/v1/tls/ca.pem')).body;
    // The control serves a certificate of the same kind (ECDSA P-384 from a local CA), issued the same way.
    const controlCa = await createCertificateAuthority(new Date());
    control = await permissiveServer(await issueServerCertificate(controlCa, ['localhost'], new Date(), 86_400_000));
  });
  after(async () => {
    await control.close();
    await server.stop();
  });

  it('listens on https and sends HSTS; the CA downloads as PEM', async () => {
    assert.match(server.address, /^https:\/\//);
    const download = await httpsCall(port, '/v1/tls/ca.pem');
    assert.equal(download.status, 200);
    assert.equal(download.headers['content-type'], 'application/x-pem-file');
    assert.equal(download.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
    const ca = new X509Certificate(download.body);
    assert.ok(ca.ca, 'a CA certificate');
    assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
  });

  it('refuses TLS 1.0 and 1.1 handshakes, which the same client completes with a permissive server', async () => {
    for (const version of ['TLSv1', 'TLSv1.1'] as const) {
      const options = { ...legacy, minVersion: version, maxVersion: version };
      const controlled = await handshake(control.port, options);
      assert.ok(controlled.ok && controlled.protocol === version, `control speaks ${version}: ${JSON.stringify(controlled)}`);
      const refused = await handshake(port, options);
      assert.ok(!refused.ok && /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/.test(refused.code), `${version}: ${JSON.stringify(refused)}`);
    }
  });

  it('refuses TLS 1.2 with ciphers that are not ECDHE + AEAD, which the permissive server accepts', async () => {
    for (const cipher of nonAeadSuites) {
      const options = { ...legacy, ciphers: `${cipher}@SECLEVEL=0`, minVersion: 'TLSv1.2' as const, maxVersion: 'TLSv1.2' as const };
      const controlled = await handshake(control.port, options);
      assert.ok(controlled.ok && controlled.cipher === cipher, `control negotiates ${cipher}: ${JSON.stringify(controlled)}`);
      const refused = await handshake(port, options);
      assert.ok(!refused.ok && /HANDSHAKE_FAILURE|NO_SHARED_CIPHER/.test(refused.code), `${cipher}: ${JSON.stringify(refused)}`);
    }
  });

  it('accepts TLS 1.2 with ECDHE + AES-GCM or ChaCha20-Poly1305, and TLS 1.3 by default', async () => {
    for (const cipher of ['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-ECDSA-AES128-GCM-SHA256']) {
      const accepted = await handshake(port, { ciphers: cipher, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
      assert.ok(accepted.ok && accepted.protocol === 'TLSv1.2' && accepted.cipher === cipher, `${cipher}: ${JSON.stringify(accepted)}`);
    }
    const modern = await handshake(port);
    assert.ok(modern.ok && modern.protocol === 'TLSv1.3' && modern.cipher === 'TLS_AES_256_GCM_SHA384', JSON.stringify(modern));
  });

  it('refuses a TLS 1.2 renegotiation, which the permissive server performs', async () => {
    const renegotiate = (to: number) =>
      new Promise<string>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port: to, rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, () => {
          socket.renegotiate({ rejectUnauthorized: false }, (error: Error | null) => {
            resolve(error === null ? 'renegotiated' : error.message);
            socket.destroy();
          });
        });
        socket.once('error', (error: Error) => resolve(error.message));
        socket.once('close', () => resolve('closed'));
      });
    assert.equal(await renegotiate(control.port), 'renegotiated');
    assert.match(await renegotiate(port), /no renegotiation/);
  });

  it('serves an ECDSA P-384 server certificate that chains to the CA, expires within 90 days and names the configured hosts', async () => {
    const probe = await handshake(port, { ca: caPem, rejectUnauthorized: true, servername: 'api.bulwark.test' });
    assert.ok(probe.ok && probe.authorized && probe.peer !== undefined, JSON.stringify(probe));
    const { peer } = probe;
    assert.equal(peer.publicKey.asymmetricKeyType, 'ec');
    assert.equal(peer.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
    assert.ok(peer.checkIssued(new X509Certificate(caPem)) && peer.verify(new X509Certificate(caPem).publicKey), 'issued and signed by the CA');
    assert.equal(peer.ca, false);
    assert.deepEqual(peer.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'EKU serverAuth only');
    assert.equal(peer.subjectAltName, 'DNS:api.bulwark.test, DNS:localhost, IP Address:127.0.0.1');
    const remainingDays = (peer.validToDate.getTime() - Date.now()) / 86_400_000;
    assert.ok(remainingDays <= 90 && remainingDays > 89, `expires in ${remainingDays} days`);
    // A name it was not issued for does not verify (nor does a client without the CA).
    const otherName = await handshake(port, { ca: caPem, rejectUnauthorized: true, servername: 'other.bulwark.test' });
    assert.ok(!otherName.ok && otherName.code === 'ERR_TLS_CERT_ALTNAME_INVALID', JSON.stringify(otherName));
    const untrusted = await handshake(port, { rejectUnauthorized: false });
    assert.ok(untrusted.ok && !untrusted.authorized, 'the CA is not a public one');
  });

  it('asks for a client certificate without requiring one; the server reads it from the TLS socket', async () => {
    const clientCa = await createCertificateAuthority(new Date());
    const client = await issueServerCertificate(clientCa, ['agent.bulwark.test'], new Date(), 86_400_000);
    const presented: (string | undefined)[] = [];
    const onConnection = (socket: TLSSocket) => presented.push(socket.getPeerX509Certificate()?.serialNumber);
    server.app.server.on('secureConnection', onConnection);
    try {
      const withCertificate = await httpsCall(port, '/healthz', { agent: new Agent({ cert: client.cert, key: client.key, rejectUnauthorized: false }) });
      const without = await httpsCall(port, '/healthz', { agent: new Agent({ rejectUnauthorized: false }) });
      assert.deepEqual([withCertificate.status, without.status], [200, 200]);
    } finally {
      server.app.server.off('secureConnection', onConnection);
    }
    assert.deepEqual(presented, [client.certificate.serialNumber, undefined]);
  });
});

/** One embedded database for the renewal and the files suites: neither needs one of its own (a PGlite start and its migrations saved). */
let embedded: Promise<TestDatabase> | undefined;
const embeddedDatabase = () => (embedded ??= openTestDatabase('pglite', { tls: 'on' }));
/** Its root key: the signing keys the first app makes there are wrapped by it. */
const embeddedRootKeys = new EnvRootKey(randomBytes(32).toString('base64'));
after(async () => (await embedded)?.close());

describe('renewal under load', () => {
  let storage: TestDatabase;
  let app: FastifyInstance;
  let tls: ServerTls;
  const log = capturingLog();
  const lifetimeMs = 3_000;

  before(async () => {
    storage = await embeddedDatabase();
    const rootKeys = embeddedRootKeys;
    tls = await openServerTls({ config: storage.config, db: storage.db, rootKeys, log }, { lifetimeMs, checkIntervalMs: 50 });
    app = await buildApp({ config: storage.config, db: storage.db, rootKeys, tls });
    await app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(() => app.close());

  it('swaps the certificate at two thirds of its life without a failed request; new connections get the new one, open ones go on', async () => {
    const { port } = app.server.address() as { port: number };
    const caPem = tls.caPem;
    assert.ok(caPem !== undefined);
    const renewAtOf = (certificate: X509Certificate) => certificate.validFromDate.getTime() + ((certificate.validToDate.getTime() - certificate.validFromDate.getTime()) * 2) / 3;
    // The load must start well before a renewal: setting up may have used up the first certificate's time.
    let first = tls.current();
    while (renewAtOf(first) - Date.now() < 700) {
      const waited = first;
      await waitFor(() => tls.current().serialNumber !== waited.serialNumber, lifetimeMs, 'a renewal before the load');
      first = tls.current();
    }
    const renewAt = renewAtOf(first);
    // Every client verifies the chain and the dates: a certificate served past its expiry would fail a request.
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 2, ca: caPem, maxCachedSessions: 0 });
    const fresh = new Agent({ keepAlive: false, ca: caPem, maxCachedSessions: 0 });
    const results: { kind: 'keep-alive' | 'new'; startedAt: number; serial: string | undefined }[] = [];
    const failures: string[] = [];
    let stopAt = Date.now() + lifetimeMs + 2_000;
    const worker = async (kind: 'keep-alive' | 'new') => {
      while (Date.now() < stopAt) {
        const startedAt = Date.now();
        try {
          const response = await httpsCall(port, '/healthz', { agent: kind === 'new' ? fresh : keepAlive });
          if (response.status !== 200) failures.push(`${kind}: status ${response.status}`);
          results.push({ kind, startedAt, serial: response.serial });
          // Once a new connection has seen the new certificate, a little more load, then stop.
          if (kind === 'new' && response.serial !== first.serialNumber && stopAt > Date.now() + 300) stopAt = Date.now() + 300;
        } catch (error) {
          failures.push(`${kind}: ${(error as Error).message}`);
        }
      }
    };
    await Promise.all([worker('keep-alive'), worker('keep-alive'), worker('new'), worker('new')]);
    keepAlive.destroy();
    fresh.destroy();

    assert.deepEqual(failures, []);
    const second = tls.current();
    assert.notEqual(second.serialNumber, first.serialNumber);
    const swap = log.lines.find((line) => line.message.startsWith('TLS: certificate replaced') && (line.details as { serialNumber?: string }).serialNumber === second.serialNumber);
    assert.ok(swap !== undefined, 'the renewal was logged');
    assert.ok(swap.at >= renewAt && swap.at < renewAt + 1_000, `renewed ${swap.at - renewAt} ms after two thirds of the life`);
    const newAfter = results.filter((result) => result.kind === 'new' && result.startedAt > swap.at);
    assert.ok(newAfter.length > 0 && newAfter.every((result) => result.serial === second.serialNumber), 'every connection made after the swap got the new certificate');
    assert.ok(results.some((result) => result.kind === 'new' && result.serial === first.serialNumber), 'connections before it got the first');
    const keptOpen = results.filter((result) => result.kind === 'keep-alive' && result.startedAt > swap.at && result.serial === first.serialNumber);
    assert.ok(keptOpen.length > 0, 'keep-alive connections opened before the swap kept serving through it');
    const probe = await handshake(port, { ca: caPem, rejectUnauthorized: true });
    assert.ok(probe.ok && probe.authorized && probe.peer?.publicKey.asymmetricKeyDetails?.namedCurve === 'secp384r1');
    assert.ok(results.length > 40, `a running load (${results.length} requests)`);
  });
});

for (const engine of engines) {
  describe(`one CA for every instance over one database [${engine}]`, { skip: engineSkip(engine) }, () => {
    let storage: TestDatabase;
    let second: Database;
    const rootKeys = new EnvRootKey(randomBytes(32).toString('base64'));
    const apps: FastifyInstance[] = [];

    before(async () => {
      storage = await openTestDatabase(engine, { tls: 'on', publicUrl: 'https://auth.bulwark.test' });
      // PostgreSQL: a second pool, as another instance would have; PGlite serves one process only.
      second = engine === 'postgres' ? (await openDatabase(storage.config)).db : storage.db;
    });
    after(async () => {
      for (const app of apps) await app.close();
      if (second !== storage.db) await second.close();
      await storage.close();
    });

    it('instances starting together create one CA, each serves its own certificate under it, and a restart reuses it', async () => {
      const started = await Promise.all([storage.db, second].map((db) => buildApp({ config: storage.config, db, rootKeys })));
      apps.push(...started);
      const ports: number[] = [];
      for (const app of started) {
        await app.listen({ host: '127.0.0.1', port: 0 });
        ports.push((app.server.address() as { port: number }).port);
      }
      const [caA, caB] = await Promise.all(ports.map(async (port) => (await httpsCall(port, '/v1/tls/ca.pem')).body));
      assert.ok(caA !== undefined && caA === caB, 'both serve the one CA');
      const probes = await Promise.all(ports.map((port) => handshake(port, { ca: caA, rejectUnauthorized: true })));
      const serials = probes.map((probe) => (probe.ok && probe.authorized ? probe.peer?.serialNumber : `refused ${JSON.stringify(probe)}`));
      assert.equal(new Set(serials).size, 2, `own certificates, both trusted: ${serials.join(', ')}`);
      const [probe] = probes;
      assert.ok(probe?.ok);
      assert.equal(probe.peer?.subjectAltName, 'DNS:auth.bulwark.test, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1', 'by default: the public URL host and loopback');
      assert.deepEqual(await storage.asOwner('SELECT count(*)::int AS n FROM tls_ca'), [{ n: 1 }]);

      const restarted = await openServerTls({ config: storage.config, db: storage.db, rootKeys, log: capturingLog() });
      assert.equal(restarted.caPem, caA);
      assert.deepEqual(await storage.asOwner('SELECT count(*)::int AS n FROM tls_ca'), [{ n: 1 }]);
    });

    it('stores the CA key only sealed and root-wrapped: another root key cannot open it', async () => {
      const [row] = await storage.asOwner('SELECT private_sealed, private_wrapped_key FROM tls_ca');
      assert.ok(row !== undefined);
      assert.match(String(row['private_wrapped_key']), /^bwrk:env:v1:/);
      // The PKCS#8 header of every P-384 key (version, id-ecPublicKey, secp384r1) is not in the stored bytes.
      const pkcs8Header = Buffer.from('020100301006072a8648ce3d020106052b81040022', 'hex');
      assert.equal(Buffer.from(row['private_sealed'] as Uint8Array).includes(pkcs8Header), false);
      const otherRoot = new EnvRootKey(randomBytes(32).toString('base64'));
      await assert.rejects(openServerTls({ config: storage.config, db: storage.db, rootKeys: otherRoot, log: capturingLog() }), { code: 'data_integrity_failed' });
    });
  });
}

describe("the operator's certificate files", () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-tls-files-'));
  const [certFile, keyFile] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
  const log = capturingLog();
  let storage: TestDatabase;
  let app: FastifyInstance;
  let tls: ServerTls;
  let port: number;

  /** A self-signed certificate for localhost made by openssl: `rsa:<bits>` or `ec` (P-384). */
  const openssl = (kind: string) => {
    const out = mkdtempSync(join(dir, 'gen-'));
    const keyArgs = kind === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp384r1'] : ['-newkey', kind];
    execFileSync('openssl', ['req', '-x509', ...keyArgs, '-nodes', '-keyout', join(out, 'key.pem'), '-out', join(out, 'cert.pem'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    chmodSync(join(out, 'key.pem'), 0o600);
    return { certFile: join(out, 'cert.pem'), keyFile: join(out, 'key.pem'), serial: new X509Certificate(readFileSync(join(out, 'cert.pem'))).serialNumber };
  };
  /** Replaces a file atomically, as deployment tools do. */
  const replace = (target: string, source: string) => {
    const temporary = `${target}.new`;
    writeFileSync(temporary, readFileSync(source), { mode: 0o600 });
    renameSync(temporary, target);
  };
  const servedSerial = async () => {
    const probe = await handshake(port);
    return probe.ok ? probe.peer?.serialNumber : undefined;
  };

  before(async () => {
    const rsa = openssl('rsa:2048');
    replace(certFile, rsa.certFile);
    replace(keyFile, rsa.keyFile);
    storage = await embeddedDatabase();
    const config = testConfig({ tls: 'on', tlsCertFile: certFile, tlsKeyFile: keyFile });
    const rootKeys = embeddedRootKeys;
    tls = await openServerTls({ config, db: storage.db, rootKeys, log }, { checkIntervalMs: 50 });
    app = await buildApp({ config, db: storage.db, rootKeys, tls });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(() => app.close());

  it('serves an RSA certificate with ECDHE-RSA + AEAD only: static RSA key exchange is refused, which the permissive server accepts', async () => {
    const rsaKex = { ciphers: 'AES256-GCM-SHA384@SECLEVEL=0', minVersion: 'TLSv1.2' as const, maxVersion: 'TLSv1.2' as const };
    const control = await permissiveServer({ cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') });
    try {
      const controlled = await handshake(control.port, rsaKex);
      assert.ok(controlled.ok && controlled.cipher === 'AES256-GCM-SHA384', JSON.stringify(controlled));
    } finally {
      await control.close();
    }
    const refused = await handshake(port, rsaKex);
    assert.ok(!refused.ok, JSON.stringify(refused));
    const accepted = await handshake(port, { ciphers: 'ECDHE-RSA-AES256-GCM-SHA384', maxVersion: 'TLSv1.2' });
    assert.ok(accepted.ok && accepted.cipher === 'ECDHE-RSA-AES256-GCM-SHA384', JSON.stringify(accepted));
    assert.equal(tls.caPem, undefined);
    assert.equal((await httpsCall(port, '/v1/tls/ca.pem')).status, 404, 'no self-managed CA to hand out');
  });

  it('takes changed files while serving; a broken replacement is logged and the old certificate kept', async () => {
    const before = await servedSerial();
    assert.equal(before, tls.current().serialNumber);
    const replacement = openssl('ec');
    // A half-done rollout: the new certificate next to the old key. Refused, the old pair goes on.
    replace(certFile, replacement.certFile);
    await waitFor(() => log.lines.some((line) => line.level === 'error'), 3_000, 'the refusal');
    assert.equal(await servedSerial(), before);
    // The key follows: now the pair matches and is taken.
    replace(keyFile, replacement.keyFile);
    await waitFor(() => tls.current().serialNumber === replacement.serial, 3_000, 'the reload');
    assert.equal(await servedSerial(), replacement.serial);
    // Garbage in place of the certificate: refused, the last good one stays.
    writeFileSync(certFile, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    await waitFor(() => log.lines.filter((line) => line.level === 'error').length === 2, 3_000, 'the second refusal');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(await servedSerial(), replacement.serial);
    assert.equal(log.lines.filter((line) => line.level === 'error').length, 2, 'an unchanged broken file is reported once');
    const logged = JSON.stringify(log.lines, (_key, value: unknown) => (value instanceof Error ? { message: value.message } : value));
    assert.doesNotMatch(logged, /PRIVATE KEY|BEGIN/, 'no PEM in the log');
    assert.match(logged, /does not belong to the certificate/);
  });

  it('refuses to start on files it cannot serve, naming the options', async () => {
    const weak = openssl('rsa:1024');
    const mismatched = openssl('ec');
    const lapsed = await issueServerCertificate(await createCertificateAuthority(new Date(Date.now() - 3 * 86_400_000)), ['localhost'], new Date(Date.now() - 2 * 86_400_000), 86_400_000);
    const expired = { certFile: join(dir, 'expired-cert.pem'), keyFile: join(dir, 'expired-key.pem') };
    writeFileSync(expired.certFile, lapsed.cert);
    writeFileSync(expired.keyFile, lapsed.key, { mode: 0o600 });
    const exposedKey = join(dir, 'exposed-key.pem');
    writeFileSync(exposedKey, lapsed.key);
    chmodSync(exposedKey, 0o644);
    for (const [cert, key, reason] of [
      [weak.certFile, weak.keyFile, /too small/],
      [expired.certFile, expired.keyFile, /expired at/],
      [mismatched.certFile, weak.keyFile, /does not belong to the certificate/],
      [join(dir, 'missing.pem'), weak.keyFile, /ENOENT/],
      [expired.certFile, exposedKey, /exposed-key\.pem is accessible by group or others \(mode 0644\)/],
    ] as const) {
      const config = testConfig({ tls: 'on', tlsCertFile: cert, tlsKeyFile: key });
      await assert.rejects(openServerTls({ config, db: storage.db, rootKeys: new EnvRootKey(randomBytes(32).toString('base64')), log: capturingLog() }), (error: Error) => {
        assert.match(error.message, /^BULWARK_TLS_CERT_FILE \/ BULWARK_TLS_KEY_FILE cannot be served: /);
        assert.match(error.message, reason);
        return true;
      });
    }
  });
});

describe('TLS configuration', () => {
  const problemsOf = (environment: Record<string, string>) => {
    try {
      loadConfig(environment);
      return [];
    } catch (error) {
      return (error as { problems: string[] }).problems;
    }
  };

  it('is off by default; certificate files need BULWARK_TLS=on; the self-managed options are checked', () => {
    const defaults = loadConfig({});
    assert.deepEqual([defaults.tls, defaults.tlsCertDays, defaults.tlsClientCerts, defaults.tlsHostnames], ['off', 90, 'request', undefined]);
    assert.deepEqual(problemsOf({ BULWARK_TLS_CERT_FILE: '/c.pem', BULWARK_TLS_KEY_FILE: '/k.pem' }), [
      'BULWARK_TLS_CERT_FILE and BULWARK_TLS_KEY_FILE are served only with BULWARK_TLS=on: set it, or unset the files',
    ]);
    assert.deepEqual(problemsOf({ BULWARK_TLS: 'on', BULWARK_TLS_CERT_FILE: '/c.pem', BULWARK_TLS_KEY_FILE: '/k.pem' }), []);
    assert.deepEqual(problemsOf({ BULWARK_TLS: 'on', BULWARK_TLS_CERT_FILE: '/c.pem', BULWARK_TLS_KEY_FILE: '/k.pem', BULWARK_TLS_HOSTNAMES: 'a.example' }), [
      'BULWARK_TLS_HOSTNAMES names the self-managed certificate: it needs BULWARK_TLS=on without BULWARK_TLS_CERT_FILE',
    ]);
    assert.equal(problemsOf({ BULWARK_TLS: 'on', BULWARK_TLS_CERT_DAYS: '91' }).length, 1);
    assert.equal(problemsOf({ BULWARK_TLS: 'on', BULWARK_TLS_HOSTNAMES: 'ok.example,bad_name!' }).length, 1);
    assert.equal(problemsOf({ BULWARK_TLS: 'yes' }).length, 1);
    const named = loadConfig({ BULWARK_TLS: 'on', BULWARK_TLS_HOSTNAMES: 'API.Example.com, *.internal.example, 10.0.0.5, ::1' });
    assert.deepEqual(named.tlsHostnames, ['api.example.com', '*.internal.example', '10.0.0.5', '::1']);
  });
});
