import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { newId } from '../platform/ids.ts';
import { createLogger } from '../platform/logger.ts';
import { type BareTestApp, createBareTestApp, createTestApp, type TestApp } from '../testing/app.ts';
import { testConfig } from '../testing/engines.ts';
import { assertProblem } from '../testing/security-suite.ts';
import { type RunningServer, startServer } from './server.ts';

/** The HTTP edge: security headers, CORS, body limits, escaping, socket deadlines, TLS and the metrics listener. */
describe('gateway', () => {
  let test: TestApp;
  let tenant: { tenantId: string; apiKey: string };

  before(async () => {
    test = await createTestApp('pglite', { config: { trustProxy: '10.0.0.1' } });
    tenant = await test.tenantWithKey('Edge');
  });
  after(() => test.close());

  it('sends the security headers on every API response, errors included; no HSTS over plain HTTP', async () => {
    for (const response of [
      await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/keys`, token: tenant.apiKey }),
      await test.call({ method: 'GET', url: '/v1/nowhere' }),
      await test.call({ method: 'GET', url: '/healthz' }),
    ]) {
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
      assert.equal(response.headers['referrer-policy'], 'no-referrer');
      assert.equal(response.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
      assert.equal(response.headers['cache-control'], 'no-store');
      assert.equal(response.headers['strict-transport-security'], undefined);
    }
  });

  it('sends HSTS when a trusted proxy says the client spoke HTTPS, and only then', async () => {
    const via = (remoteAddress: string) =>
      test.app.inject({ method: 'GET', url: '/healthz', remoteAddress, headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.7' } });
    assert.equal((await via('10.0.0.1')).headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
    assert.equal((await via('10.0.0.2')).headers['strict-transport-security'], undefined, 'anyone else may not claim it');
  });

  it('serves the docs under a strict CSP: scripts from here only, nothing from elsewhere, never framed', async () => {
    const page = await test.call({ method: 'GET', url: '/docs/' });
    assert.equal(page.statusCode, 200);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'[^;]*;/);
    assert.match(csp, /script-src-attr 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /object-src 'none'/);
    assert.doesNotMatch(csp, /https:|validator\.swagger\.io/);
  });

  it('never reflects input unescaped: an unknown field name comes back as \\u escapes', async () => {
    const field = await test.call({ method: 'POST', url: '/v1/tenants', token: test.operatorToken, body: { name: 'x', '<img src=x onerror=alert(1)>': 1 } });
    assertProblem(field, 400, 'validation_failed');
    assert.doesNotMatch(field.body, /<img/);
    assert.match(field.body, /\\u003cimg src=x onerror=alert\(1\)\\u003e/, 'the JSON still reads back exactly');
  });

  it('reads small bodies on ordinary routes, larger ones only where the route needs them', async () => {
    const large = JSON.stringify({ name: 'x'.repeat(70 * 1024) });
    assertProblem(await test.call({ method: 'POST', url: '/v1/tenants', token: test.operatorToken, body: large }), 413, 'payload_too_large');
    const record = await test.call({
      method: 'PUT',
      url: `/v1/tenants/${tenant.tenantId}/collections/notes/records/${newId()}`,
      token: tenant.apiKey,
      body: { data: { text: 'y'.repeat(60 * 1024) } },
    });
    assert.equal(record.statusCode, 201, 'a record of 60 KiB is within BULWARK_RECORD_MAX_BYTES');
  });

  it('has CORS off by default: a preflight gets no allowance', async () => {
    const preflight = await test.app.inject({
      method: 'OPTIONS',
      url: '/v1/me',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' },
    });
    assert.equal(preflight.headers['access-control-allow-origin'], undefined);
    assert.ok(preflight.statusCode >= 400);
  });
});

describe('the client address behind proxies (BULWARK_TRUST_PROXY)', () => {
  const lines: string[] = [];
  let byList: BareTestApp;
  let byHops: BareTestApp;

  before(async () => {
    const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
    byList = await createBareTestApp('pglite', { config: { trustProxy: '10.0.0.1,10.1.0.0/16' }, logger });
    byHops = await createBareTestApp('pglite', { config: { trustProxy: '1' }, logger });
  });
  after(async () => {
    await byList.close();
    await byHops.close();
  });

  /** The address the app took for the client (what rate limits, lockouts and the audit trail key on), from its request log line. */
  const clientAddress = async (test: BareTestApp, remoteAddress: string, forwardedFor?: string) => {
    const requestId = newId();
    const headers = { 'x-request-id': requestId, ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }) };
    assert.equal((await test.app.inject({ method: 'GET', url: '/healthz', remoteAddress, headers })).statusCode, 200);
    const line = lines.map((text) => JSON.parse(text) as { requestId?: string; req?: { remoteAddress?: string } }).find((entry) => entry.requestId === requestId && entry.req !== undefined);
    return line?.req?.remoteAddress;
  };

  it('believes X-Forwarded-For only as far as the hops are trusted proxies', async () => {
    // No proxy in between, or one we do not trust: its claim is ignored.
    assert.equal(await clientAddress(byList, '198.51.100.7', '203.0.113.1'), '198.51.100.7');
    assert.equal(await clientAddress(byList, '10.0.0.2', '203.0.113.1'), '10.0.0.2');
    // A trusted proxy (by address, or in a trusted range) names the client.
    assert.equal(await clientAddress(byList, '10.0.0.1', '203.0.113.1'), '203.0.113.1');
    assert.equal(await clientAddress(byList, '10.1.2.3', '203.0.113.1'), '203.0.113.1');
    // Through two trusted proxies, the client is the hop before the outer one.
    assert.equal(await clientAddress(byList, '10.0.0.1', '203.0.113.1, 10.1.0.9'), '203.0.113.1');
    // An untrusted hop nearer than a trusted one: the chain is believed up to it and no further, so neither
    // what the client wrote first (a spoofed address) nor the trusted proxy beyond it counts.
    assert.equal(await clientAddress(byList, '10.0.0.1', '192.0.2.66, 10.1.0.9, 198.51.100.20'), '198.51.100.20');
    // A hop count trusts exactly that many hops from this server, whatever the client prepends.
    assert.equal(await clientAddress(byHops, '10.9.9.9', '192.0.2.66, 203.0.113.1'), '203.0.113.1');
    assert.equal(await clientAddress(byHops, '10.9.9.9'), '10.9.9.9');
  });
});

describe('gateway with CORS origins', () => {
  let test: TestApp;

  before(async () => {
    test = await createTestApp('pglite', { config: { corsOrigins: 'https://app.example.com,https://admin.example.com' } });
  });
  after(() => test.close());

  it('allows exactly the listed origins, without credentials, exposing the headers clients need', async () => {
    const preflight = (origin: string) =>
      test.app.inject({
        method: 'OPTIONS',
        url: '/v1/me?x=1',
        headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
      });
    const allowed = await preflight('https://admin.example.com');
    assert.equal(allowed.statusCode, 204);
    assert.equal(allowed.headers['access-control-allow-origin'], 'https://admin.example.com');
    assert.match(String(allowed.headers['access-control-allow-headers']), /authorization/);
    assert.equal(allowed.headers['access-control-allow-credentials'], undefined);
    const refused = await preflight('https://evil.example.net');
    assert.equal(refused.headers['access-control-allow-origin'], undefined);
    const actual = await test.app.inject({ method: 'GET', url: '/v1/me', headers: { origin: 'https://app.example.com', authorization: `Bearer ${test.operatorToken}` } });
    assert.equal(actual.statusCode, 200);
    assert.equal(actual.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.match(String(actual.headers['access-control-expose-headers']), /x-request-id.*ratelimit/);
  });
});

describe('a listening server', () => {
  let server: RunningServer;
  let dataDir: string;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'bulwark-gateway-'));
    server = await startServer(
      testConfig({ dataDir, port: '0', metricsPort: '0', headersTimeoutSeconds: '1', requestTimeoutSeconds: '2', setupToken: `bws_${'s'.repeat(43)}` }),
      { banner: () => undefined },
    );
  });
  after(() => server.stop());

  const rawSocket = async (): Promise<Socket> => {
    const { port } = new URL(server.address);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    return socket;
  };
  /** Dribbles `chunks` one every 300 ms; resolves with what the server sent and how long it took to close. */
  const dribble = async (chunks: string[]) => {
    const socket = await rawSocket();
    const started = Date.now();
    let received = '';
    socket.on('data', (data: Buffer) => (received += data.toString()));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    for (const chunk of chunks) {
      if (socket.destroyed || socket.writableEnded) break;
      socket.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    await closed;
    return { received, seconds: (Date.now() - started) / 1000 };
  };

  it('closes a client that sends its headers too slowly (slowloris)', async () => {
    const { received, seconds } = await dribble(['GET /healthz HTTP/1.1\r\n', 'Host: x\r\n', ...Array.from({ length: 30 }, (_, index) => `X-Slow-${index}: 1\r\n`)]);
    assert.match(received, /^HTTP\/1\.1 408/);
    assert.match(received, /"code":"request_timeout"/);
    assert.ok(seconds < 5, `closed after ${seconds} s (header deadline 1 s, checked every 0.5 s)`);
  });

  it('closes a client that sends its body too slowly', async () => {
    const { received, seconds } = await dribble([
      'POST /v1/setup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n',
      ...Array.from({ length: 30 }, () => '{'),
    ]);
    assert.match(received, /^HTTP\/1\.1 408/);
    assert.ok(seconds < 6, `closed after ${seconds} s (request deadline 2 s)`);
  });

  it('escapes a raw path it quotes in a problem', async () => {
    const socket = await rawSocket();
    let received = '';
    socket.on('data', (data: Buffer) => (received += data.toString()));
    socket.end('GET /v1/<script>alert(1)</script> HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    assert.match(received, /^HTTP\/1\.1 404/);
    assert.doesNotMatch(received, /<script>/);
    assert.match(received, /"instance":"\/v1\/\\u003cscript\\u003ealert\(1\)\\u003c\/script\\u003e"/);
  });

  /** Sends `request` as raw bytes; resolves with everything the server sent before closing. */
  const exchange = async (request: string) => {
    const socket = await rawSocket();
    let received = '';
    socket.on('data', (data: Buffer) => (received += data.toString('latin1')));
    socket.end(request);
    await new Promise((resolve) => socket.once('close', resolve));
    return received;
  };

  it('refuses smuggling and header injection at the HTTP parser (what inject() never exercises)', async () => {
    const smuggled = 'GET /v1/operators HTTP/1.1\r\nHost: x\r\n\r\n';
    const requests = [
      // Content-Length and Transfer-Encoding together (CL.TE), and two differing lengths.
      `POST /v1/setup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /v1/setup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}${smuggled}`,
      // An obfuscated Transfer-Encoding, a bare LF inside a header value, a header name with a space.
      `POST /v1/setup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`,
      'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\rSet-Cookie: a=b\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n',
    ];
    for (const request of requests) {
      const received = await exchange(request);
      const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => match[1]);
      assert.deepEqual(statuses, ['400'], `${JSON.stringify(request.slice(0, 90))}: ${received.slice(0, 200)}`);
      assert.doesNotMatch(received, /set-cookie/i);
      // A problem document like every other refusal, with the API's headers.
      const [head = '', body = ''] = received.split('\r\n\r\n');
      assert.match(head, /^content-type: application\/problem\+json/im);
      assert.match(head, /^x-content-type-options: nosniff/im);
      assert.match(head, /^connection: close/im);
      const problem = JSON.parse(body) as { code: string; requestId: string };
      assert.equal(problem.code, 'malformed_request');
      assert.match(head, new RegExp(`^x-request-id: ${problem.requestId}`, 'im'));
    }
    const oversized = await exchange(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(oversized, /^HTTP\/1\.1 431/);
    assert.match(oversized, /"code":"request_headers_too_large"/);
    // Still serving.
    assert.equal((await fetch(new URL('/healthz', server.address))).status, 200);
  });

  it('serves Prometheus metrics on their own listener, not on the API', async () => {
    assert.ok(server.metricsAddress !== undefined);
    await fetch(new URL('/healthz', server.address));
    const metrics = await fetch(server.metricsAddress);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await metrics.text();
    assert.match(text, /bulwark_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/);
    assert.match(text, /bulwark_process_cpu_user_seconds_total/);
    assert.equal((await fetch(new URL('/other', server.metricsAddress))).status, 404);
    assert.equal((await fetch(new URL('/metrics', server.address))).status, 404);
  });
});

describe('a server with TLS', () => {
  let server: RunningServer;

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-tls-'));
    const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], {
      stdio: 'ignore',
    });
    chmodSync(key, 0o600);
    server = await startServer(testConfig({ dataDir: dir, port: '0', tls: 'on', tlsCertFile: cert, tlsKeyFile: key, setupToken: `bws_${'t'.repeat(43)}` }), { banner: () => undefined });
  });
  after(() => server.stop());

  it('speaks HTTPS and sends Strict-Transport-Security', async () => {
    assert.match(server.address, /^https:/);
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const request = httpsRequest(new URL('/healthz', server.address), { rejectUnauthorized: false }, (response) => {
        response.resume();
        resolve(response.headers);
      });
      request.once('error', reject);
      request.end();
    });
    assert.equal(headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  });
});
