import 'reflect-metadata';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { runCli, spawnCli } from '../../testing/cli.ts';
import { movableClock } from '../../testing/clock.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { renewalDue, runAgent } from '../../cli/commands/agent.ts';
import { agentSubjects } from '../bus/access.ts';
import { agentUri } from './certificates.ts';

const dayMs = 86_400_000;
const clientAuth = '1.3.6.1.5.5.7.3.2';
const serverAuth = '1.3.6.1.5.5.7.3.1';

interface IssuedCertificate {
  certificate: string;
  caCertificate: string;
  serialNumber: string;
  uri: string;
  notBefore: string;
  notAfter: string;
}

interface PairedAgent {
  tenantId: string;
  agentId: string;
  token: string;
  /** The agent's Ed25519 private key, PEM: what `bulwark agent pair` keeps in its state file. */
  key: string;
  publicKey: KeyObject;
  certificate: IssuedCertificate;
}

interface Answer {
  status: number;
  body: { code?: string; detail?: string } & Record<string, unknown>;
  reusedSocket: boolean;
}

const pem = (certificate: x509.X509Certificate) => certificate.toString('pem');

/**
 * Agents authenticating to the gateway with mutual TLS: the certificate pairing issues (checked field by field
 * and by `openssl verify`), real HTTPS requests through a listener that requests client certificates the way
 * BULWARK_TLS_CLIENT_CERTS=request does (`requestCert: true, rejectUnauthorized: false`), and the certificates
 * that must not work: another tenant's CA, expired, self-signed, a copied CA name, another key, the wrong usage,
 * a revoked agent. The agent program's `run --mtls` runs on one engine (it speaks HTTP only).
 */
for (const engine of engines) {
  describe(`agent mutual TLS [${engine}]`, { skip: engineSkip(engine) }, () => {
    const clock = movableClock();
    let test: TestApp;
    let listener: https.Server;
    let origin: string;
    let dir: string;
    let serverCertificate: string;
    let tenantA: { tenantId: string; apiKey: string };
    let tenantB: { tenantId: string; apiKey: string };
    let nextAddress = 10;

    const newCode = async (tenant: { tenantId: string; apiKey: string }) => {
      const created = await test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/agents/pairing-codes`, token: tenant.apiKey, body: {} });
      assert.equal(created.statusCode, 201, created.body);
      return created.json<{ code: string }>().code;
    };
    const pairRaw = async (tenant: { tenantId: string; apiKey: string }, type: 'ed25519' | 'x25519' = 'ed25519') => {
      const keys = generateKeyPairSync(type as 'ed25519');
      const response = await test.app.inject({
        method: 'POST',
        url: '/v1/agents/pair',
        remoteAddress: `198.51.100.${nextAddress++}`,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ code: await newCode(tenant), publicKey: { type, key: keys.publicKey.export({ format: 'jwk' }).x } }),
      });
      assert.equal(response.statusCode, 201, response.body);
      return { keys, paired: response.json<{ agentId: string; tenantId: string; credentials: { token: string }; certificate: IssuedCertificate | null }>() };
    };
    const pair = async (tenant: { tenantId: string; apiKey: string }): Promise<PairedAgent> => {
      const { keys, paired } = await pairRaw(tenant);
      assert.ok(paired.certificate !== null);
      return {
        tenantId: paired.tenantId,
        agentId: paired.agentId,
        token: paired.credentials.token,
        key: keys.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        publicKey: keys.publicKey,
        certificate: paired.certificate,
      };
    };
    /** A real HTTPS request to the listener, presenting `tls` (a client certificate and its key) and/or a token. */
    const request = (path: string, options: { tls?: { cert: string; key: string }; token?: string; body?: unknown; agent?: https.Agent }): Promise<Answer> =>
      new Promise((resolve, reject) => {
        const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
        const call = https.request(
          new URL(path, origin),
          {
            method: 'POST',
            ca: serverCertificate,
            ...(options.agent === undefined ? { agent: false, ...options.tls } : { agent: options.agent }),
            headers: {
              ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
              ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
            },
          },
          (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              resolve({ status: response.statusCode ?? 0, body: text === '' ? {} : (JSON.parse(text) as Answer['body']), reusedSocket: call.reusedSocket });
            });
          },
        );
        call.on('error', reject);
        call.end(payload);
      });
    const heartbeat = async (agent: { tenantId: string; agentId: string }, options: { tls?: { cert: string; key: string }; token?: string; agent?: https.Agent }) => {
      const answer = await request(`/v1/agents/${agent.agentId}/messages`, { ...options, body: { subject: agentSubjects(agent.tenantId, agent.agentId).heartbeat, payload: {} } });
      await test.app.services.agents.settled();
      return answer;
    };
    const tlsOf = (agent: PairedAgent, cert = agent.certificate.certificate) => ({ cert, key: agent.key });
    const refused = (answer: Answer, what: string) => {
      assert.equal(answer.status, 401, `${what}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.code, 'invalid_credentials', what);
    };
    const view = async (agent: { tenantId: string; agentId: string }, apiKey: string) => {
      const response = await test.call({ method: 'GET', url: `/v1/tenants/${agent.tenantId}/agents/${agent.agentId}`, token: apiKey });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<{ lastSeenAt: string | null; certificate: { serialNumber: string; notAfter: string } | null }>();
    };
    const events = async (tenantId: string, action: string) =>
      test.storage.asOwner('SELECT actor_kind, actor_id, target_id, detail FROM audit_events WHERE tenant_id = $1 AND action = $2 ORDER BY seq', [tenantId, action]);
    const authorityRow = async (tenantId: string) =>
      (await test.storage.asOwner('SELECT certificate, private_key, key_version FROM agent_certificate_authorities WHERE tenant_id = $1', [tenantId])) as {
        certificate: Uint8Array;
        private_key: Uint8Array;
        key_version: number;
      }[];
    /** The tenant's CA private key, opened the way the server opens it. */
    const authorityKey = async (tenantId: string) => {
      const [row] = await authorityRow(tenantId);
      assert.ok(row !== undefined);
      const context = { tenantId, table: 'agent_certificate_authorities', column: 'private_key', rowId: tenantId };
      return test.app.services.keyring.open(tenantId, Buffer.from(row.private_key), context, 'data_integrity_failed');
    };
    /** Any certificate a test wants, signed by `signer` (PKCS #8 of a P-384 key) in the name of `issuer`. */
    const mint = async (options: {
      signer: Buffer;
      issuer: x509.X509Certificate | { name: string; keyId: string };
      subjectKey: KeyObject;
      uri: string;
      usages?: string[] | null;
      notBefore?: Date;
      notAfter?: Date;
      isCa?: boolean;
    }) => {
      const signingKey = createPrivateKey({ key: options.signer, format: 'der', type: 'pkcs8' }).toCryptoKey({ name: 'ECDSA', namedCurve: 'P-384' }, false, ['sign']);
      const publicKey = options.subjectKey.toCryptoKey({ name: 'Ed25519' }, true, ['verify']);
      const issuerName = options.issuer instanceof x509.X509Certificate ? options.issuer.subject : options.issuer.name;
      const authorityKeyId =
        options.issuer instanceof x509.X509Certificate ? await x509.AuthorityKeyIdentifierExtension.create(options.issuer) : new x509.AuthorityKeyIdentifierExtension(options.issuer.keyId);
      const minted = await x509.X509CertificateGenerator.create({
        subject: 'CN=forged',
        issuer: issuerName,
        notBefore: options.notBefore ?? new Date(clock.now().getTime() - 60_000),
        notAfter: options.notAfter ?? new Date(clock.now().getTime() + dayMs),
        publicKey,
        signingKey,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
        extensions: [
          new x509.BasicConstraintsExtension(options.isCa === true, undefined, true),
          ...(options.usages === null ? [] : [new x509.ExtendedKeyUsageExtension(options.usages ?? [clientAuth])]),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: options.uri }]),
          authorityKeyId,
        ],
      });
      return pem(minted);
    };

    before(async () => {
      test = await createTestApp(engine, { clock, config: { agentCertificateDays: '45', agentStaleSweepSeconds: '0' } });
      dir = mkdtempSync(join(tmpdir(), 'bulwark-mtls-'));
      // The listener's own certificate, made by OpenSSL: the test's client trusts exactly it.
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.pem')], { stdio: 'ignore' });
      serverCertificate = readFileSync(join(dir, 'server.pem'), 'utf8');
      await test.app.ready();
      listener = https.createServer({ cert: serverCertificate, key: readFileSync(join(dir, 'server.key')), requestCert: true, rejectUnauthorized: false }, (req, res) => test.app.routing(req, res));
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      origin = `https://127.0.0.1:${(listener.address() as AddressInfo).port}`;
      tenantA = await test.tenantWithKey('mTLS A');
      tenantB = await test.tenantWithKey('mTLS B');
    });
    after(async () => {
      listener.closeAllConnections();
      await new Promise((resolve) => listener.close(resolve));
      await test.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("pairing issues a client certificate over the agent's own key, signed by the tenant's P-384 CA, with the agent URI and clientAuth; one CA per tenant, created once under racing pairings", async () => {
      const tenant = await test.tenantWithKey('mTLS race');
      const pairings = await Promise.all([pair(tenant), pair(tenant), pair(tenant), pair(tenant)]);
      const rows = await authorityRow(tenant.tenantId);
      assert.equal(rows.length, 1, 'exactly one CA');
      const stored = new X509Certificate(Buffer.from(rows[0]?.certificate ?? []));
      for (const agent of pairings) assert.equal(agent.certificate.caCertificate, stored.toString(), 'every pairing names the one stored CA');
      const created = (await events(tenant.tenantId, 'agent.pair')).map((row) => (row['detail'] as { certificate: { authorityCreated: boolean } }).certificate.authorityCreated);
      assert.deepEqual(created.sort(), [false, false, false, true]);

      const [agent] = pairings;
      const leaf = new X509Certificate(agent.certificate.certificate);
      const ca = new X509Certificate(agent.certificate.caCertificate);
      // The CA: self-signed ECDSA P-384, a CA of path length 0 that signs certificates only.
      assert.equal(ca.publicKey.asymmetricKeyType, 'ec');
      assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
      assert.ok(ca.ca && ca.checkIssued(ca) && ca.verify(ca.publicKey));
      const caParsed = new x509.X509Certificate(agent.certificate.caCertificate);
      assert.equal(caParsed.getExtension(x509.BasicConstraintsExtension)?.pathLength, 0);
      assert.equal(caParsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
      assert.match(ca.subject, new RegExp(tenant.tenantId));
      // The leaf: issued and signed by it (ECDSA with SHA-384), over exactly the paired Ed25519 key.
      assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
      assert.equal(leaf.publicKey.asymmetricKeyType, 'ed25519');
      assert.ok(leaf.publicKey.equals(agent.publicKey), 'the subject key is the paired key');
      assert.equal(leaf.subjectAltName, `URI:${agentUri(tenant.tenantId, agent.agentId)}`);
      assert.equal(agent.certificate.uri, agentUri(tenant.tenantId, agent.agentId));
      assert.deepEqual(leaf.keyUsage, [clientAuth]);
      assert.equal(leaf.ca, false);
      const leafParsed = new x509.X509Certificate(agent.certificate.certificate);
      assert.equal(leafParsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
      assert.equal(leaf.serialNumber.toLowerCase(), agent.certificate.serialNumber);
      // Valid BULWARK_AGENT_CERTIFICATE_DAYS (45 here), from a few minutes ago.
      const now = clock.now().getTime();
      assert.ok(leaf.validFromDate.getTime() <= now && leaf.validFromDate.getTime() >= now - 10 * 60_000);
      assert.ok(Math.abs(leaf.validToDate.getTime() - (now + 45 * dayMs)) < 60_000, leaf.validTo);
      assert.equal(agent.certificate.notAfter, leaf.validToDate.toISOString());
      // OpenSSL agrees: it chains to the CA for TLS clients, and is no server certificate.
      writeFileSync(join(dir, 'ca.pem'), agent.certificate.caCertificate);
      writeFileSync(join(dir, 'leaf.pem'), agent.certificate.certificate);
      assert.match(execFileSync('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslclient', join(dir, 'leaf.pem')], { encoding: 'utf8' }), /OK/);
      assert.match(execFileSync('openssl', ['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-text'], { encoding: 'utf8' }), /Signature Algorithm: ecdsa-with-SHA384/);
      assert.throws(() => execFileSync('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslserver', join(dir, 'leaf.pem')], { stdio: 'pipe' }));
      // Shown in the agent list; the audit event has the serial.
      assert.deepEqual((await view(agent, tenant.apiKey)).certificate, { serialNumber: agent.certificate.serialNumber, notAfter: agent.certificate.notAfter });
      // The CA private key is stored only as an envelope under the tenant's key, and opens to the CA's key.
      const sealed = Buffer.from(rows[0]?.private_key ?? []);
      assert.deepEqual([sealed[0], sealed[1]], [1, 1], 'envelope format 1, AES-256-GCM');
      const opened = await authorityKey(tenant.tenantId);
      assert.ok(createPublicKey(createPrivateKey({ key: opened, format: 'der', type: 'pkcs8' })).equals(ca.publicKey));
      assert.ok(!sealed.includes(opened.subarray(-48)), 'the private scalar is not stored in clear');
      // Another tenant has a CA of its own.
      const other = await pair(tenantB);
      assert.notEqual(other.certificate.caCertificate, agent.certificate.caCertificate);
    });

    it('a real HTTPS request with the client certificate reaches the gateway as that agent, with no token; without the certificate it is unauthenticated', async () => {
      const agent = await pair(tenantA);
      assert.equal((await view(agent, tenantA.apiKey)).lastSeenAt, null);
      const answer = await heartbeat(agent, { tls: tlsOf(agent) });
      assert.equal(answer.status, 204, JSON.stringify(answer.body));
      assert.notEqual((await view(agent, tenantA.apiKey)).lastSeenAt, null, 'recorded as that agent');
      // Control: the same request without the certificate (and without a token) is refused for the want of a credential.
      const bare = await heartbeat(agent, {});
      assert.equal(bare.status, 401);
      assert.equal(bare.body.code, 'unauthenticated');
      // The agent's own subjects only, as with the token.
      const elsewhere = await request(`/v1/agents/${agent.agentId}/messages`, { tls: tlsOf(agent), body: { subject: `bulwark.t.${tenantB.tenantId}.agents.${agent.agentId}.heartbeat`, payload: {} } });
      assert.equal(elsewhere.status, 403);
      // An explicit Authorization header is the credential when present: a bad token is refused even beside a good certificate.
      refused(await heartbeat(agent, { tls: tlsOf(agent), token: `${agent.token.slice(0, -1)}${agent.token.endsWith('A') ? 'B' : 'A'}` }), 'bad token beside a good certificate');
    });

    it("another tenant's certificate is refused: its agent on this tenant's path (403), and a certificate its CA signed in the name of this tenant's agent (401)", async () => {
      const agentA = await pair(tenantA);
      const agentB = await pair(tenantB);
      const onPath = await heartbeat(agentA, { tls: tlsOf(agentB) });
      assert.equal(onPath.status, 403, JSON.stringify(onPath.body));
      // B's CA key signs a certificate naming A's agent, over A's agent key (the attacker holding it): not A's CA.
      const forged = await mint({ signer: await authorityKey(tenantB.tenantId), issuer: new x509.X509Certificate(agentB.certificate.caCertificate), subjectKey: agentA.publicKey, uri: agentUri(tenantA.tenantId, agentA.agentId) });
      refused(await heartbeat(agentA, { tls: tlsOf(agentA, forged) }), "B's CA for A's agent");
      // Control: the same agent with its own certificate.
      assert.equal((await heartbeat(agentA, { tls: tlsOf(agentA) })).status, 204);
    });

    it('self-signed, impostor-CA, wrong-key, wrong-usage and CA certificates with a valid agent SAN are refused with the bad-token answer; the real CA signing the same fields is accepted', async () => {
      const agent = await pair(tenantA);
      const uri = agentUri(tenantA.tenantId, agent.agentId);
      const realCa = new x509.X509Certificate(agent.certificate.caCertificate);
      const caKey = await authorityKey(tenantA.tenantId);
      // Control: the tenant's CA key, minting the fields the tests below vary, makes a certificate that works.
      const genuine = await mint({ signer: caKey, issuer: realCa, subjectKey: agent.publicKey, uri });
      assert.equal((await heartbeat(agent, { tls: tlsOf(agent, genuine) })).status, 204);

      // Self-signed by the agent's own key.
      const agentKeys = { privateKey: createPrivateKey(agent.key).toCryptoKey({ name: 'Ed25519' }, false, ['sign']), publicKey: agent.publicKey.toCryptoKey({ name: 'Ed25519' }, true, ['verify']) };
      const selfSigned = await x509.X509CertificateGenerator.createSelfSigned({
        name: realCa.subject,
        keys: agentKeys,
        signingAlgorithm: { name: 'Ed25519' },
        extensions: [new x509.ExtendedKeyUsageExtension([clientAuth]), new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }])],
      });
      refused(await heartbeat(agent, { tls: tlsOf(agent, pem(selfSigned)) }), 'self-signed');

      // An impostor CA copying the real one's name and key identifier: names and identifiers match, only the signature does not.
      const impostor = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'der', type: 'pkcs8' });
      const keyId = realCa.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? '';
      const copied = await mint({ signer: impostor, issuer: { name: realCa.subject, keyId }, subjectKey: agent.publicKey, uri });
      assert.ok(new X509Certificate(copied).checkIssued(new X509Certificate(agent.certificate.caCertificate)), 'control: it looks issued by the CA');
      refused(await heartbeat(agent, { tls: tlsOf(agent, copied) }), 'impostor CA');

      // The real CA's signature, over another Ed25519 key than the paired one (presented with that key).
      const stranger = generateKeyPairSync('ed25519');
      const otherKey = await mint({ signer: caKey, issuer: realCa, subjectKey: stranger.publicKey, uri });
      refused(await heartbeat(agent, { tls: { cert: otherKey, key: stranger.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() } }), 'another key');

      // The real CA's signature, but for servers only, without any extended key usage, or as a CA.
      refused(await heartbeat(agent, { tls: tlsOf(agent, await mint({ signer: caKey, issuer: realCa, subjectKey: agent.publicKey, uri, usages: [serverAuth] })) }), 'serverAuth');
      refused(await heartbeat(agent, { tls: tlsOf(agent, await mint({ signer: caKey, issuer: realCa, subjectKey: agent.publicKey, uri, usages: null })) }), 'no EKU');
      refused(await heartbeat(agent, { tls: tlsOf(agent, await mint({ signer: caKey, issuer: realCa, subjectKey: agent.publicKey, uri, isCa: true })) }), 'a CA');
      // Not yet valid; and a SAN that is not exactly the agent URI.
      refused(await heartbeat(agent, { tls: tlsOf(agent, await mint({ signer: caKey, issuer: realCa, subjectKey: agent.publicKey, uri, notBefore: new Date(clock.now().getTime() + dayMs), notAfter: new Date(clock.now().getTime() + 2 * dayMs) })) }), 'not yet valid');
      refused(await heartbeat(agent, { tls: tlsOf(agent, await mint({ signer: caKey, issuer: realCa, subjectKey: agent.publicKey, uri: `${uri}:x` })) }), 'SAN with a suffix');
    });

    it("a suspended tenant's agent is refused with its certificate too; revoking the agent stops its certificate at once, on a connection already open", async () => {
      await test.relogOperator();
      const suspended = await test.tenantWithKey('mTLS suspended');
      const held = await pair(suspended);
      const status = (value: string) => test.call({ method: 'PATCH', url: `/v1/tenants/${suspended.tenantId}`, token: test.operatorToken, body: { status: value } });
      assert.equal((await status('suspended')).statusCode, 200);
      const answer = await heartbeat(held, { tls: tlsOf(held) });
      assert.equal(answer.status, 403);
      assert.equal(answer.body.code, 'tenant_suspended');
      assert.equal((await status('active')).statusCode, 200);
      assert.equal((await heartbeat(held, { tls: tlsOf(held) })).status, 204);

      const agent = await pair(tenantA);
      const connection = new https.Agent({ keepAlive: true, maxSockets: 1, ca: serverCertificate, ...tlsOf(agent) });
      try {
        assert.equal((await heartbeat(agent, { agent: connection })).status, 204);
        assert.equal((await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantA.tenantId}/agents/${agent.agentId}`, token: tenantA.apiKey })).statusCode, 204);
        const after = await heartbeat(agent, { agent: connection });
        assert.ok(after.reusedSocket, 'the same TLS connection');
        refused(after, 'revoked');
        refused(await request(`/v1/agents/${agent.agentId}/certificate`, { tls: tlsOf(agent) }), 'revoked agent renewing');
      } finally {
        connection.destroy();
      }
    });

    it('renewal: with the certificate or the token a fresh certificate, audited; an expired certificate is refused and the token renews it; an X25519 agent gets none', async () => {
      const agent = await pair(tenantA);
      clock.advance(10 * dayMs);
      const renewed = await request(`/v1/agents/${agent.agentId}/certificate`, { tls: tlsOf(agent) });
      assert.equal(renewed.status, 201, JSON.stringify(renewed.body));
      const fresh = renewed.body as unknown as IssuedCertificate;
      assert.notEqual(fresh.serialNumber, agent.certificate.serialNumber);
      assert.ok(Date.parse(fresh.notAfter) - Date.parse(agent.certificate.notAfter) > 9 * dayMs);
      assert.equal(fresh.caCertificate, agent.certificate.caCertificate);
      assert.ok(new X509Certificate(fresh.certificate).publicKey.equals(agent.publicKey));
      assert.equal((await view(agent, tenantA.apiKey)).certificate?.serialNumber, fresh.serialNumber);
      const issued = (await events(tenantA.tenantId, 'agent.certificate.issue')).filter((row) => row['target_id'] === agent.agentId);
      assert.deepEqual(
        issued.map((row) => [row['actor_kind'], row['actor_id'], (row['detail'] as { serialNumber: string }).serialNumber]),
        [['agent', agent.agentId, fresh.serialNumber]],
      );
      // Past the first certificate's end (45 days), before the second's: the first is refused, the second works.
      clock.advance(36 * dayMs);
      try {
        refused(await heartbeat(agent, { tls: tlsOf(agent) }), 'expired');
        assert.equal((await heartbeat(agent, { tls: tlsOf(agent, fresh.certificate) })).status, 204);
        refused(await request(`/v1/agents/${agent.agentId}/certificate`, { tls: tlsOf(agent) }), 'renewal with an expired certificate');
        const byToken = await request(`/v1/agents/${agent.agentId}/certificate`, { token: agent.token });
        assert.equal(byToken.status, 201, JSON.stringify(byToken.body));
        // Another agent's credential renews nothing of this one.
        const other = await pair(tenantA);
        assert.equal((await request(`/v1/agents/${agent.agentId}/certificate`, { tls: tlsOf(other) })).status, 403);
      } finally {
        clock.advance(-46 * dayMs);
      }
      // An X25519 key cannot sign a handshake: no certificate at pairing, 409 on renewal.
      const { paired } = await pairRaw(tenantA, 'x25519');
      assert.equal(paired.certificate, null);
      const refusedRenewal = await request(`/v1/agents/${paired.agentId}/certificate`, { token: paired.credentials.token });
      assert.equal(refusedRenewal.status, 409);
      assert.equal(refusedRenewal.body.code, 'conflict');
    });

    it("the CA key follows the tenant's key rotation, and is unreadable once the tenant's keys are destroyed", async () => {
      const tenant = await test.tenantWithKey('mTLS shredded');
      const agent = await pair(tenant);
      const { keyring } = test.app.services;
      await keyring.rotate(tenant.tenantId);
      await keyring.reencrypt(tenant.tenantId);
      assert.equal((await authorityRow(tenant.tenantId))[0]?.key_version, 2, 're-sealed under the new version');
      const renewed = await request(`/v1/agents/${agent.agentId}/certificate`, { token: agent.token });
      assert.equal(renewed.status, 201, JSON.stringify(renewed.body));
      // Control: it opens while the keys exist.
      assert.ok((await authorityKey(tenant.tenantId)).length > 0);
      await keyring.destroy(tenant.tenantId);
      await assert.rejects(authorityKey(tenant.tenantId), (error: Error & { code?: string }) => error.code === 'keys_destroyed');
      const afterDestroy = await request(`/v1/agents/${agent.agentId}/certificate`, { token: agent.token });
      assert.equal(afterDestroy.status, 410);
      assert.equal(afterDestroy.body.code, 'keys_destroyed');
      // What is left of it is the envelope: no key version opens it.
      const sealed = Buffer.from((await authorityRow(tenant.tenantId))[0]?.private_key ?? []);
      assert.deepEqual([sealed[0], sealed[1]], [1, 1]);
    });

    it('bulwark agent pair keeps the certificate; run --mtls reports over HTTPS with it and no working token, and renews it once two thirds of its life have passed', { skip: engine !== 'pglite' && 'the agent program speaks HTTP only: one engine' }, async () => {
      assert.equal(renewalDue({ certificate: '', caCertificate: '', serialNumber: '', notBefore: '2030-01-01T00:00:00Z', notAfter: '2030-01-31T00:00:00Z' }, Date.parse('2030-01-20T23:00:00Z')), false);
      assert.equal(renewalDue({ certificate: '', caCertificate: '', serialNumber: '', notBefore: '2030-01-01T00:00:00Z', notAfter: '2030-01-31T00:00:00Z' }, Date.parse('2030-01-21T00:00:00Z')), true);
      const state = join(dir, 'agent.json');
      const env = { NODE_EXTRA_CA_CERTS: join(dir, 'server.pem') };
      // Paired 35 of its 45 days ago, as the server's clock sees it: due for renewal now.
      clock.advance(-35 * dayMs);
      let paired;
      try {
        paired = await runCli(['agent', 'pair', '--server', origin, '--code', await newCode(tenantA), '--name', 'mtls agent', '--state', state], env);
      } finally {
        clock.advance(35 * dayMs);
      }
      assert.equal(paired.code, 0, paired.stderr);
      assert.match(paired.stdout, /client certificate until/);
      const saved = JSON.parse(readFileSync(state, 'utf8')) as { agentId: string; tenantId: string; token: string; certificate: IssuedCertificate; privateKey: string };
      assert.ok(new X509Certificate(saved.certificate.certificate).publicKey.equals(createPublicKey(saved.privateKey)));
      // The token no longer works: what the agent gets done, the certificate does.
      writeFileSync(state, JSON.stringify({ ...saved, token: `${saved.token.slice(0, -4)}AAAA` }));
      const agent = spawnCli(['agent', 'run', '--state', state, '--interval', '1', '--mtls'], env);
      try {
        await eventually(async () => (await view(saved, tenantA.apiKey)).lastSeenAt !== null && /renewed/.test(agent.stderr()));
        const now = JSON.parse(readFileSync(state, 'utf8')) as { certificate: IssuedCertificate };
        assert.notEqual(now.certificate.serialNumber, saved.certificate.serialNumber);
        assert.ok(Math.abs(Date.parse(now.certificate.notAfter) - (clock.now().getTime() + 45 * dayMs)) < 120_000);
        assert.equal((await view(saved, tenantA.apiKey)).certificate?.serialNumber, now.certificate.serialNumber);
        assert.equal(statSync(state).mode & 0o777, 0o600, 'the renewed state file is private too');
        const seen = (await view(saved, tenantA.apiKey)).lastSeenAt ?? '';
        await eventually(async () => ((await view(saved, tenantA.apiKey)).lastSeenAt ?? '') > seen);
      } finally {
        agent.child.kill('SIGTERM');
      }
      assert.equal(await agent.exited, 0, agent.stderr());
      assert.ok(!agent.stderr().includes(saved.token.slice(5)), 'the token is never printed');
      // --mtls needs TLS: an agent paired over plain HTTP cannot use it.
      const plain = join(dir, 'plain.json');
      writeFileSync(plain, JSON.stringify({ ...saved, server: 'http://127.0.0.1:9' }), { mode: 0o600 });
      assert.equal(await runAgent(['run', '--state', plain, '--mtls']), 1);
      assert.equal(await runAgent(['pair', '--server', origin, '--code', 'ZZZZ-ZZZZ', '--mtls']), 2);
    });
  });
}

/** Polls until `check` holds (the agent program reports on its own schedule), or fails after 15 s. */
async function eventually(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The same path through the listener BULWARK_TLS=on builds (self-managed certificate, client certificates requested). */
describe('agent mutual TLS through the built-in HTTPS listener [pglite]', { skip: engineSkip('pglite') }, () => {
  let test: TestApp;
  let origin: string;
  let serverCa: string;
  before(async () => {
    test = await createTestApp('pglite', { config: { tls: 'on', agentStaleSweepSeconds: '0' } });
    origin = await test.app.listen({ host: '127.0.0.1', port: 0 });
    serverCa = (await test.call({ method: 'GET', url: '/v1/tls/ca.pem' })).body;
  });
  after(() => test.close());

  const post = (path: string, body: unknown, tls: { cert?: string; key?: string }) =>
    new Promise<number>((resolve, reject) => {
      const call = https.request(new URL(path, origin), { method: 'POST', ca: serverCa, agent: false, ...tls, headers: { 'content-type': 'application/json' } }, (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      });
      call.on('error', reject);
      call.end(JSON.stringify(body));
    });

  it('an agent reports with its certificate and no token; without either it is refused', async () => {
    const tenant = await test.tenantWithKey('mTLS listener');
    const code = (await test.call({ method: 'POST', url: `/v1/tenants/${tenant.tenantId}/agents/pairing-codes`, token: tenant.apiKey, body: {} })).json<{ code: string }>().code;
    const keys = generateKeyPairSync('ed25519');
    const paired = await test.call({ method: 'POST', url: '/v1/agents/pair', body: { code, publicKey: { type: 'ed25519', key: keys.publicKey.export({ format: 'jwk' }).x } } });
    assert.equal(paired.statusCode, 201, paired.body);
    const { agentId, certificate } = paired.json<{ agentId: string; certificate: IssuedCertificate }>();
    const message = { subject: agentSubjects(tenant.tenantId, agentId).heartbeat, payload: {} };
    const withCertificate = { cert: certificate.certificate, key: keys.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
    assert.equal(await post(`/v1/agents/${agentId}/messages`, message, withCertificate), 204);
    assert.equal(await post(`/v1/agents/${agentId}/messages`, message, {}), 401);
  });
});
