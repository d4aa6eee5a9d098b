import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../../../testing/app.ts';
import { startTestDnsServer, type TestDnsServer } from '../../../testing/dns-server.ts';
import { engineSkip, engines } from '../../../testing/engines.ts';

interface DomainAnswer {
  domain: string;
  verified: boolean;
  connectionId: string | null;
  verification: { type: string; name: string; value: string };
}

/**
 * E-mail domains and home-realm discovery: a claim proves itself with a DNS TXT record (asked of a real
 * resolver, pointed at a DNS server of the test's), only verified domains discover, and a domain belongs
 * to the tenant that verified it first.
 */
for (const engine of engines) {
  describe(`e-mail domains and home-realm discovery [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let dns: TestDnsServer;
    let a: { tenantId: string; apiKey: string };
    let b: { tenantId: string; apiKey: string };

    const as = (tenant: { tenantId: string; apiKey: string }, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown) =>
      test.call({ method, url: `/v1/tenants/${tenant.tenantId}${path}`, token: tenant.apiKey, ...(body === undefined ? {} : { body }) });
    const discover = async (email: string) => {
      const response = await test.call({ method: 'POST', url: '/v1/auth/discover', body: { email } });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<{ tenantId: string | null; connection: { id: string; protocol: string; name: string; start: string } | null }>();
    };
    const auditActions = async (tenantId: string) =>
      (await test.storage.asOwner('SELECT action FROM audit_events WHERE tenant_id = $1 ORDER BY seq', [tenantId])).map((row) => String(row['action']));

    before(async () => {
      dns = await startTestDnsServer();
      test = await createTestApp(engine, { config: { dnsServers: dns.address } });
      a = await test.tenantWithKey('Acme');
      b = await test.tenantWithKey('Impostor');
    });
    after(async () => {
      await test.close();
      await dns.close();
    });

    it('a claimed domain discovers nothing until its TXT record carries the token', async () => {
      const claim = await as(a, 'POST', '/domains', { domain: 'acme.example' });
      assert.equal(claim.statusCode, 201, claim.body);
      const claimed = claim.json<DomainAnswer>();
      assert.deepEqual([claimed.verified, claimed.verification.type, claimed.verification.name], [false, 'dns-txt', '_bulwark-challenge.acme.example']);
      assert.match(claimed.verification.value, /^bulwark-domain-verification=[A-Za-z0-9_-]{32}$/);
      assert.deepEqual(await discover('ann@acme.example'), { tenantId: null, connection: null });

      const missing = await as(a, 'POST', '/domains/acme.example/verify');
      assert.equal(missing.json<{ code: string }>().code, 'domain_not_verified');
      dns.setTxt('_bulwark-challenge.acme.example', ['bulwark-domain-verification=someone-elses-token']);
      assert.equal((await as(a, 'POST', '/domains/acme.example/verify')).statusCode, 422);
      assert.deepEqual(await discover('ann@acme.example'), { tenantId: null, connection: null });

      dns.setTxt('_bulwark-challenge.acme.example', ['v=spf1 -all', claimed.verification.value]);
      const verified = await as(a, 'POST', '/domains/acme.example/verify');
      assert.equal(verified.statusCode, 200, verified.body);
      assert.equal(verified.json<DomainAnswer>().verified, true);
      assert.deepEqual(await discover('Ann@ACME.example'), { tenantId: a.tenantId, connection: null });
      assert.deepEqual(await discover('ann@other.example'), { tenantId: null, connection: null });
      assert.ok((await auditActions(a.tenantId)).includes('domain.verify'));
    });

    it('a domain sends its users to its connection; a disabled one falls back to the password', async () => {
      const created = await as(a, 'POST', '/sso-connections', {
        protocol: 'ldap',
        name: 'Acme directory',
        config: { url: 'ldaps://ldap.acme.example', security: 'ldaps', userBaseDn: 'ou=people,dc=acme,dc=example' },
      });
      assert.equal(created.statusCode, 201, created.body);
      const connectionId = created.json<{ id: string }>().id;
      const pointed = await as(a, 'PATCH', '/domains/acme.example', { connectionId });
      assert.equal(pointed.statusCode, 200, pointed.body);
      const found = await discover('bob@acme.example');
      assert.equal(found.tenantId, a.tenantId);
      assert.deepEqual(found.connection && { id: found.connection.id, protocol: found.connection.protocol, name: found.connection.name }, { id: connectionId, protocol: 'ldap', name: 'Acme directory' });
      assert.match(found.connection?.start ?? '', /\/v1\/auth\/ldap$/);

      assert.equal((await as(a, 'PATCH', `/sso-connections/${connectionId}`, { protocol: 'ldap', enabled: false })).statusCode, 200);
      assert.deepEqual(await discover('bob@acme.example'), { tenantId: a.tenantId, connection: null });
      // A connection of another tenant cannot be named.
      assert.equal((await as(b, 'POST', '/domains', { domain: 'b-only.example', connectionId })).json<{ code: string }>().code, 'validation_failed');
    });

    it('another tenant may claim a verified domain but never verify it; once released, it can', async () => {
      const claim = await as(b, 'POST', '/domains', { domain: 'acme.example' });
      assert.equal(claim.statusCode, 201, claim.body);
      // Even with its own token published (it controls the zone, say, after the fact), the first verification holds.
      dns.setTxt('_bulwark-challenge.acme.example', [claim.json<DomainAnswer>().verification.value]);
      const stolen = await as(b, 'POST', '/domains/acme.example/verify');
      assert.equal(stolen.statusCode, 409, stolen.body);
      assert.equal((await discover('ann@acme.example')).tenantId, a.tenantId);
      // B sees only its own claims; A's is not even visible to it.
      const listed = (await as(b, 'GET', '/domains')).json<{ items: DomainAnswer[] }>().items;
      assert.deepEqual(listed.map((domain) => [domain.domain, domain.verified]), [['acme.example', false]]);
      assert.equal((await as(b, 'DELETE', '/domains/acme.example')).statusCode, 204);
      assert.equal((await as(b, 'GET', '/domains/acme.example/verify')).statusCode, 405);

      assert.equal((await as(a, 'DELETE', '/domains/acme.example')).statusCode, 204);
      assert.deepEqual(await discover('ann@acme.example'), { tenantId: null, connection: null });
      const reclaim = await as(b, 'POST', '/domains', { domain: 'acme.example' });
      dns.setTxt('_bulwark-challenge.acme.example', [reclaim.json<DomainAnswer>().verification.value]);
      assert.equal((await as(b, 'POST', '/domains/acme.example/verify')).statusCode, 200);
      assert.equal((await discover('ann@acme.example')).tenantId, b.tenantId);
    });

    it('bad domains and unknown ones are refused without a change', async () => {
      for (const domain of ['Acme.Example', 'localhost', '-acme.example', 'acme..example', 'a'.repeat(64) + '.example', 'acme.example.']) {
        const response = await as(a, 'POST', '/domains', { domain });
        assert.equal(response.statusCode, 400, `${domain}: ${response.body}`);
      }
      assert.equal((await as(a, 'POST', '/domains/never-claimed.example/verify')).statusCode, 404);
      assert.equal((await as(a, 'PATCH', '/domains/never-claimed.example', { connectionId: null })).statusCode, 404);
      assert.equal((await as(a, 'POST', '/domains', { domain: 'acme2.example', unknown: true })).statusCode, 400);
      assert.equal((await test.call({ method: 'POST', url: '/v1/auth/discover', body: { email: 'not an address' } })).statusCode, 400);
      const rows = await test.storage.asOwner("SELECT domain FROM tenant_domains WHERE domain IN ('never-claimed.example', 'acme2.example')");
      assert.deepEqual(rows, []);
    });
  });
}
