import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { newId } from '../platform/ids.ts';
import { defaultPasswordPolicy } from '../modules/identity/password-policy.ts';
import { FakeVaultTransit } from '../modules/keys/root/vault-transit-fake.ts';
import { Secret } from 'otpauth';
import { totpCode } from '../modules/identity/mfa/totp.ts';
import { generateServiceKeyPair } from '../modules/secrets/sealing.ts';
import { cheapArgon2, createTestApp, type TestApp, testPassphrase } from './app.ts';
import { startTestDnsServer, type TestDnsServer } from './dns-server.ts';
import type { EngineName } from './engines.ts';
import { documentedOperations, fillPath, type Operation, rawCall, type RouteAuth } from './security-suite.ts';

/**
 * The route table the security and corpus suites drive, and the fixture that makes real targets for it:
 * one app with a working customer KMS, tenants with keys, and per call a fresh record, key, user, role,
 * grant and operator to aim at.
 */
export type Targets = Record<string, string>;
const customerVaultToken = 'hvs.suite-customer-vault-token';
/** The customer-managed key routes need a customer KMS that works: an in-test Vault transit, its address in the targets. */
const customerKey = (values: Targets) => ({ provider: 'vault-transit', address: values['customerVaultAddress'], token: customerVaultToken, keyName: 'suite-kek' });
/** Each change moves the target user to a fresh password, so the route can be sent again with the same targets. */
const changePassword = (values: Targets) => {
  const currentPassword = values['password'];
  values['password'] = testPassphrase('calm harbor', 'beacon');
  return { tenantId: values['tenantId'], email: values['email'], currentPassword, newPassword: values['password'] };
};
/** Each change moves the target operator to a fresh password, likewise. */
const changeOperatorPassword = (values: Targets) => {
  const currentPassword = values['operatorPassword'];
  values['operatorPassword'] = testPassphrase('still water', 'compass');
  return { email: values['operatorEmail'], currentPassword, newPassword: values['operatorPassword'] };
};
/** A disabled LDAP connection (nothing listens on its address): configurable, never reached. */
/** The value of every sample secret: no response may ever carry it (the fixture's secrets list holds it). */
const suiteSecretValue = `suite secret value ${newId()}`;
const ldapConnection = (name: string) => ({
  protocol: 'ldap',
  name,
  enabled: false,
  config: { url: 'ldap://127.0.0.1:9', security: 'starttls', userBaseDn: 'ou=people,dc=suite,dc=example' },
  secret: 'suite service password',
});

export interface RouteSample {
  auth: RouteAuth;
  /** A self route of tenant users only: operators get 403 forbidden. */
  userOnly?: true;
  /**
   * What a self route answers its user when its success needs a step no sample can take (a WebAuthn
   * ceremony's browser half); the success is tested in the route's own suite.
   */
  selfStatus?: number;
  /** Why a state-changing route writes no audit event (ceremony state, like a login's reservation). */
  unaudited?: string;
  /** The sample body goes form-encoded (the SAML HTTP-POST binding), not as JSON. */
  form?: true;
  /** A body the route accepts (or `bodyFor`, when it depends on the targets or must differ per call). */
  body?: unknown;
  bodyFor?: (values: Targets) => unknown;
  /** What a public route answers when its success cannot repeat (setup is done once, by the test app itself). */
  publicStatus?: number;
  /** The credential a public route checks itself (a service's own), from the targets: the corpus sends it to reach what lies behind the check. */
  credential?: (values: Targets) => string | undefined;
  /** Path parameters filled from another target than the one of their name: offboarding aims at tenants of its own, never the suite's. */
  pathTargets?: Record<string, string>;
}

/**
 * Every documented route with its auth level and an accepted body. A route missing here fails the suites'
 * first test, so a new route cannot skip them.
 */
export const routeSamples: Record<string, RouteSample> = {
  'GET /healthz': { auth: 'public' },
  'GET /readyz': { auth: 'public' },
  'POST /v1/tenants': { auth: 'operator', body: { name: 'Suite tenant' } },
  'GET /v1/tenants': { auth: 'operator' },
  'GET /v1/tenants/{tenantId}': { auth: 'operator' },
  'PATCH /v1/tenants/{tenantId}': { auth: 'operator', body: { name: 'Renamed by the suite' } },
  // Offboarding: requested of a fresh tenant, read, cancelled and confirmed on another fresh one already requested.
  'DELETE /v1/tenants/{tenantId}': { auth: 'operator', pathTargets: { tenantId: 'spareTenantId' } },
  'GET /v1/tenants/{tenantId}/offboarding': { auth: 'operator', pathTargets: { tenantId: 'offboardingTenantId' } },
  'POST /v1/tenants/{tenantId}/offboarding/cancel': { auth: 'operator', pathTargets: { tenantId: 'offboardingTenantId' } },
  'POST /v1/tenants/{tenantId}/offboarding/confirm': { auth: 'operator', pathTargets: { tenantId: 'offboardingTenantId' } },
  'GET /v1/tenants/{tenantId}/collections/{collection}/records': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/collections/{collection}/records': { auth: 'tenant', body: { data: { written: 'by the suite' } } },
  'GET /v1/tenants/{tenantId}/collections/{collection}/records/{recordId}': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/collections/{collection}/records/{recordId}': { auth: 'tenant', body: { data: { written: 'by the suite' } } },
  'DELETE /v1/tenants/{tenantId}/collections/{collection}/records/{recordId}': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/api-keys': { auth: 'tenant', body: { name: 'suite key' } },
  'GET /v1/tenants/{tenantId}/api-keys': { auth: 'tenant' },
  'DELETE /v1/tenants/{tenantId}/api-keys/{keyId}': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/keys': { auth: 'tenant' },
  'PATCH /v1/tenants/{tenantId}/keys': { auth: 'tenant', body: { rotationPeriodDays: 90 } },
  'POST /v1/tenants/{tenantId}/keys/rotate': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/keys/reencrypt': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/keys/trim': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/users': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/users': { auth: 'tenant', bodyFor: () => ({ email: `suite-${newId()}@example.org`, firstName: 'Suite' }) },
  'POST /v1/tenants/{tenantId}/user-imports': {
    auth: 'tenant',
    bodyFor: () => ({ users: [{ email: `imported-${newId()}@example.org`, credential: { algorithm: 'md5', hash: 'f'.repeat(32) } }] }),
  },
  'GET /v1/tenants/{tenantId}/legacy-password-hashes': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/users/{userId}': { auth: 'tenant' },
  'PATCH /v1/tenants/{tenantId}/users/{userId}': { auth: 'tenant', body: { lastName: 'Renamed by the suite' } },
  'DELETE /v1/tenants/{tenantId}/users/{userId}': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/users/{userId}/password': { auth: 'tenant', body: { password: 'suite passphrase with 5 words!' } },
  'GET /v1/tenants/{tenantId}/password-policy': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/password-policy': { auth: 'tenant', body: defaultPasswordPolicy },
  'GET /v1/tenants/{tenantId}/keys/customer-key': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/keys/customer-key': { auth: 'tenant', bodyFor: customerKey },
  'DELETE /v1/tenants/{tenantId}/keys/customer-key': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/crypto/encrypt': { auth: 'tenant', body: { items: [{ plaintext: 'c3VpdGU=' }] } },
  'POST /v1/tenants/{tenantId}/crypto/decrypt': { auth: 'tenant', bodyFor: (values) => ({ items: [{ ciphertext: values['ciphertext'] }] }) },
  'POST /v1/tenants/{tenantId}/crypto/rewrap': { auth: 'tenant', bodyFor: (values) => ({ items: [{ ciphertext: values['ciphertext'] }] }) },
  'DELETE /v1/tenants/{tenantId}/users/{userId}/lockout': { auth: 'tenant' },
  'POST /v1/auth/login': { auth: 'public', bodyFor: (values) => ({ tenantId: values['tenantId'], email: values['email'], password: values['password'] }) },
  'POST /v1/auth/refresh': { auth: 'public', bodyFor: (values) => ({ refreshToken: values['refreshToken'] }) },
  'POST /v1/auth/logout': { auth: 'public', bodyFor: (values) => ({ refreshToken: values['refreshToken'] }) },
  'POST /v1/auth/password': { auth: 'public', bodyFor: changePassword },
  'GET /.well-known/jwks.json': { auth: 'public' },
  'GET /v1/me': { auth: 'self' },
  'POST /v1/setup': {
    auth: 'public',
    body: { setupToken: `bws_${'A'.repeat(43)}`, email: 'second-setup@operator.example', password: 'a fine long passphrase 42' },
    publicStatus: 409,
  },
  'POST /v1/auth/operator/login': { auth: 'public', bodyFor: (values) => ({ email: values['operatorEmail'], password: values['operatorPassword'] }) },
  'POST /v1/auth/operator/password': { auth: 'public', bodyFor: changeOperatorPassword },
  'GET /v1/operators': { auth: 'operator' },
  'POST /v1/operators': { auth: 'operator', bodyFor: () => ({ email: `suite-${newId()}@operator.example`, role: 'platform-auditor' }) },
  'GET /v1/operators/{operatorId}': { auth: 'operator' },
  'PATCH /v1/operators/{operatorId}': { auth: 'operator', body: { name: 'Renamed by the suite' } },
  'DELETE /v1/operators/{operatorId}': { auth: 'operator' },
  'PUT /v1/operators/{operatorId}/password': { auth: 'operator', bodyFor: () => ({ password: testPassphrase('suite operator', 'passphrase') }) },
  'DELETE /v1/operators/{operatorId}/lockout': { auth: 'operator' },
  'GET /v1/tenants/{tenantId}/audit': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/audit/export': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/audit/summary': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/audit/verify': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/audit/settings': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/audit/checkpoints': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/audit/settings': { auth: 'tenant', body: { retentionDays: 3650 } },
  'GET /v1/audit': { auth: 'operator' },
  'GET /v1/audit/export': { auth: 'operator' },
  'GET /v1/audit/summary': { auth: 'operator' },
  'POST /v1/audit/verify': { auth: 'operator' },
  'GET /v1/audit/settings': { auth: 'operator' },
  'GET /v1/audit/checkpoints': { auth: 'operator' },
  'PUT /v1/audit/settings': { auth: 'operator', body: { retentionDays: 3650 } },
  'GET /v1/audit/checkpoint-key': { auth: 'public' },
  // The suites' app serves plain HTTP: no self-managed CA to hand out (src/platform/tls/tls.test.ts downloads one).
  'GET /v1/tls/ca.pem': { auth: 'public', publicStatus: 404 },
  'GET /v1/tenants/{tenantId}/roles': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/roles': { auth: 'tenant', bodyFor: () => ({ name: `suite-${newId()}`, permissions: ['records:read'] }) },
  'GET /v1/tenants/{tenantId}/roles/{roleName}': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/roles/{roleName}': { auth: 'tenant', body: { description: 'Changed by the suite', permissions: ['records:read', 'users:read'] } },
  'DELETE /v1/tenants/{tenantId}/roles/{roleName}': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/users/{userId}/roles': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/users/{userId}/roles': { auth: 'tenant', body: { roles: ['viewer'] } },
  'POST /v1/tenants/{tenantId}/support-grants': { auth: 'tenant', body: { permissions: ['records:read'], reason: 'Suite ticket 1', durationHours: 1 } },
  'GET /v1/tenants/{tenantId}/support-grants': { auth: 'tenant' },
  'DELETE /v1/tenants/{tenantId}/support-grants/{grantId}': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/limits': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/limits': {
    auth: 'operator',
    body: { rates: { requests: { limit: 1_000_000, windowSeconds: 10 }, export: 'unlimited' }, quotas: { records: 'unlimited', users: 5000 } },
  },
  // MFA: the login's second step (the challenge token is its credential), a user's own factors, the policy.
  'POST /v1/auth/mfa': { auth: 'public', body: { challengeToken: `bwm_${'0'.repeat(12)}${'A'.repeat(43)}`, method: 'totp', code: '123456' }, publicStatus: 401 },
  'POST /v1/auth/mfa/totp': { auth: 'public', body: { challengeToken: `bwm_${'0'.repeat(12)}${'A'.repeat(43)}` }, publicStatus: 401 },
  'POST /v1/auth/mfa/webauthn/options': { auth: 'public', body: { challengeToken: `bwm_${'0'.repeat(12)}${'A'.repeat(43)}` }, publicStatus: 401 },
  'GET /v1/me/mfa': { auth: 'self', userOnly: true },
  'POST /v1/me/mfa/totp': { auth: 'self', userOnly: true, body: { name: 'Suite app' } },
  'POST /v1/me/mfa/totp/{factorId}/verify': { auth: 'self', userOnly: true, bodyFor: (values) => ({ code: totpCode(Buffer.from(Secret.fromBase32(values['totpSecret'] ?? '').bytes), new Date()) }) },
  'POST /v1/me/mfa/webauthn/registration-options': { auth: 'self', userOnly: true, unaudited: 'a ceremony challenge; the registration it leads to is audited' },
  'POST /v1/me/mfa/webauthn': {
    auth: 'self',
    userOnly: true,
    body: { credential: { id: 'c3VpdGU', rawId: 'c3VpdGU', type: 'public-key', clientExtensionResults: {}, response: { clientDataJSON: 'e30', attestationObject: 'oA' } } },
    selfStatus: 400,
  },
  'DELETE /v1/me/mfa/factors/{factorId}': { auth: 'self', userOnly: true },
  'POST /v1/me/mfa/recovery-codes': { auth: 'self', userOnly: true },
  'GET /v1/tenants/{tenantId}/mfa-policy': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/mfa-policy': { auth: 'tenant', body: { mode: 'optional' } },
  'DELETE /v1/tenants/{tenantId}/users/{userId}/mfa': { auth: 'tenant' },
  // SSO: the tenant's connections, requirement and domains; the public endpoints meet a disabled connection (404).
  'GET /v1/tenants/{tenantId}/sso-connections': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/sso-connections': { auth: 'tenant', body: ldapConnection('Suite directory') },
  'GET /v1/tenants/{tenantId}/sso-connections/{connectionId}': { auth: 'tenant' },
  'PATCH /v1/tenants/{tenantId}/sso-connections/{connectionId}': { auth: 'tenant', body: { protocol: 'ldap', name: 'Renamed by the suite' } },
  'DELETE /v1/tenants/{tenantId}/sso-connections/{connectionId}': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/sso-policy': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/sso-policy': { auth: 'tenant', body: { required: false } },
  'GET /v1/tenants/{tenantId}/domains': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/domains': { auth: 'tenant', bodyFor: () => ({ domain: `suite-${newId()}.example` }) },
  'POST /v1/tenants/{tenantId}/domains/{domain}/verify': { auth: 'tenant' },
  'PATCH /v1/tenants/{tenantId}/domains/{domain}': { auth: 'tenant', body: { connectionId: null } },
  'DELETE /v1/tenants/{tenantId}/domains/{domain}': { auth: 'tenant' },
  'POST /v1/auth/discover': { auth: 'public', body: { email: 'someone@unclaimed.example' }, publicStatus: 200 },
  'POST /v1/auth/ldap': { auth: 'public', bodyFor: (values) => ({ tenantId: values['tenantId'], connectionId: values['connectionId'], username: 'suite', password: 'suite' }), publicStatus: 404 },
  'GET /v1/sso/{tenantId}/{connectionId}/start': { auth: 'public', publicStatus: 404 },
  'GET /v1/sso/{tenantId}/{connectionId}/callback': { auth: 'public', publicStatus: 404 },
  'POST /v1/sso/{tenantId}/{connectionId}/acs': { auth: 'public', form: true, body: { SAMLResponse: 'PHNhbWw+', RelayState: 'suite' }, publicStatus: 404 },
  'GET /v1/sso/{tenantId}/{connectionId}/metadata': { auth: 'public', publicStatus: 404 },
  'GET /v1/keys/root': { auth: 'operator' },
  'POST /v1/keys/root/rotate': { auth: 'operator' },
  // Secrets: the services that read them, a tenant's secrets (metadata only), and a service's own sealed copy
  // (its credential checked by the route: without one, 401).
  'POST /v1/services': { auth: 'operator', bodyFor: () => ({ name: `suite-${newId()}`, publicKey: generateServiceKeyPair().publicKey }) },
  'GET /v1/services': { auth: 'operator' },
  'GET /v1/services/{serviceId}': { auth: 'operator' },
  'DELETE /v1/services/{serviceId}': { auth: 'operator' },
  'GET /v1/tenants/{tenantId}/secrets': { auth: 'tenant' },
  'PUT /v1/tenants/{tenantId}/secrets/{secretName}': { auth: 'tenant', bodyFor: (values) => ({ value: suiteSecretValue, readers: [values['serviceId']] }) },
  'GET /v1/tenants/{tenantId}/secrets/{secretName}': { auth: 'tenant' },
  'DELETE /v1/tenants/{tenantId}/secrets/{secretName}': { auth: 'tenant' },
  'GET /v1/services/{serviceId}/secrets/{tenantId}/{secretName}': { auth: 'public', credential: (values) => values['serviceCredential'], publicStatus: 401 },
  // Agents: pairing codes, the pairing (the code is the credential), the agents, and the gateway (the agent
  // token is its credential: without one, 401). The gateway sample publishes where no subscriber records anything.
  'POST /v1/tenants/{tenantId}/agents/pairing-codes': { auth: 'tenant', body: { name: 'Suite agent', ttlSeconds: 600 } },
  'GET /v1/tenants/{tenantId}/agents/pairing-codes': { auth: 'tenant' },
  'DELETE /v1/tenants/{tenantId}/agents/pairing-codes': { auth: 'tenant' },
  'POST /v1/agents/pair': { auth: 'public', bodyFor: (values) => ({ code: values['pairingCode'], name: 'Suite agent', publicKey: { type: 'ed25519', key: values['agentPublicKey'] } }) },
  'GET /v1/tenants/{tenantId}/agents': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/agents/{agentId}': { auth: 'tenant' },
  'DELETE /v1/tenants/{tenantId}/agents/{agentId}': { auth: 'tenant' },
  // Privacy: a hold of its own on a second user (so the target user's erasure is not deferred), the target
  // user's copy and erasure (fresh per targets), the register of erasures, and the operator's inventory.
  'POST /v1/tenants/{tenantId}/legal-holds': { auth: 'tenant', bodyFor: (values) => ({ name: 'Suite hold', reason: 'Suite case 1', userId: values['heldUserId'] }) },
  'GET /v1/tenants/{tenantId}/legal-holds': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/legal-holds/{holdId}': { auth: 'tenant' },
  'DELETE /v1/tenants/{tenantId}/legal-holds/{holdId}': { auth: 'tenant' },
  'GET /v1/tenants/{tenantId}/users/{userId}/export': { auth: 'tenant' },
  'POST /v1/tenants/{tenantId}/users/{userId}/erase': { auth: 'tenant', body: { reason: 'Suite request 1' } },
  'GET /v1/tenants/{tenantId}/erasure-requests': { auth: 'tenant' },
  'GET /v1/privacy/inventory': { auth: 'operator' },
  'GET /v1/tenants/{tenantId}/export': { auth: 'tenant' },
  // Backups: one backup (made once by the fixture) is read, verified and restored; each restore goes to a folder of its own.
  'POST /v1/backups': { auth: 'operator' },
  'GET /v1/backups': { auth: 'operator' },
  'GET /v1/backups/{backupId}': { auth: 'operator' },
  'POST /v1/backups/{backupId}/verify': { auth: 'operator' },
  'POST /v1/backups/{backupId}/restore': { auth: 'operator', bodyFor: () => ({ target: `suite-${newId()}` }) },
  'POST /v1/agents/{agentId}/messages': {
    auth: 'public',
    credential: (values) => values['agentToken'],
    bodyFor: (values) => ({ subject: `bulwark.t.${values['tenantId'] ?? ''}.agents.${values['agentId'] ?? ''}.events`, payload: { suite: true } }),
    publicStatus: 401,
  },
  // A fresh client certificate for the agent: its token (or its certificate) is the credential, checked by the route.
  'POST /v1/agents/{agentId}/certificate': { auth: 'public', credential: (values) => values['agentToken'], publicStatus: 401 },
};


export const sampleCollection = 'notes';

export interface SuiteTenant {
  tenantId: string;
  apiKey: string;
  apiKeyId: string;
  adminToken: string;
}

export class RouteFixture {
  readonly test: TestApp;
  readonly operations: Operation[];
  /** Credentials handed out so far: none may appear in a response body. */
  readonly secrets: string[];
  private readonly customerVault: FakeVaultTransit;
  private readonly dns: TestDnsServer;
  private readonly connections = new Map<string, string>();
  private backupId: string | undefined;
  private offboardingTargets: { spare?: string; requested?: string } = {};

  private constructor(test: TestApp, operations: Operation[], customerVault: FakeVaultTransit, dns: TestDnsServer) {
    this.test = test;
    this.operations = operations;
    this.customerVault = customerVault;
    this.dns = dns;
    this.secrets = [test.operatorToken, customerVaultToken, suiteSecretValue];
  }

  static async start(engine: EngineName): Promise<RouteFixture> {
    const customerVault = await FakeVaultTransit.start({ token: customerVaultToken, keyName: 'suite-kek' });
    // Domain verification asks this server for the TXT records the targets publish.
    const dns = await startTestDnsServer();
    // Each call of `targets` leaves a live API key and a live pairing code: the suites make more than the default caps.
    // No stale sweep: an agent going stale mid-suite would change state between a refused probe's before and after.
    // The suites hash a password for every target user and operator, and test no hash: the cheapest Argon2id.
    const test = await createTestApp(engine, { argon2: cheapArgon2, config: { customerKmsAllowedOrigins: customerVault.address, quotaApiKeys: 'unlimited', dnsServers: dns.address, agentPairingMaxLiveCodes: '100000', agentStaleSweepSeconds: '0' } });
    return new RouteFixture(test, await documentedOperations(test.app), customerVault, dns);
  }

  async close(): Promise<void> {
    await this.test.close();
    await this.customerVault.close();
    await this.dns.close();
  }

  async tenant(name: string): Promise<SuiteTenant> {
    const tenant = await this.test.tenantWithKey(name);
    this.secrets.push(tenant.apiKey, tenant.adminToken);
    return tenant;
  }

  authOf(operation: Operation): RouteAuth {
    const entry = routeSamples[operation.key];
    if (entry === undefined) throw new Error(`${operation.key} is not classified in the route samples`);
    return entry.auth;
  }

  byAuth(auth: RouteAuth): Operation[] {
    return this.operations.filter((operation) => this.authOf(operation) === auth);
  }

  /** The accepted sample body of a route for these targets. */
  sampleBody(operation: Operation, values: Targets): unknown {
    const { body, bodyFor } = routeSamples[operation.key] ?? {};
    return bodyFor ? bodyFor(values) : body;
  }

  /** The route's path filled with these targets (a sample's `pathTargets` first). */
  url(operation: Operation, values: Targets): string {
    const remapped = Object.entries(routeSamples[operation.key]?.pathTargets ?? {}).map(([parameter, target]) => [parameter, values[target]]);
    return fillPath(operation.path, { ...values, ...Object.fromEntries(remapped.filter((entry): entry is [string, string] => entry[1] !== undefined)) });
  }

  send(operation: Operation, values: Targets, token: string | undefined) {
    const url = this.url(operation, values);
    const body = this.sampleBody(operation, values);
    if (routeSamples[operation.key]?.form !== true) return this.test.call({ method: operation.method, url, token, body });
    const payload = new URLSearchParams(body as Record<string, string>).toString();
    return rawCall(this.test, { method: operation.method as 'POST', url, ...(token === undefined ? {} : { token }), payload, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  }

  /** A record, an API key, a ciphertext, a customer key, a user (logged in), a custom role, a grant, an operator and a legal hold (on a second user) of `tenant`. */
  async targets(tenant: SuiteTenant): Promise<Targets> {
    const { test, secrets } = this;
    const customerVaultAddress = this.customerVault.address;
    const as = async (method: 'POST' | 'PUT', url: string, body: unknown, status: number) => {
      const response = await test.call({ method, url: `/v1/tenants/${tenant.tenantId}${url}`, token: tenant.apiKey, body });
      assert.equal(response.statusCode, status, `${method} ${url}: ${response.body.slice(0, 300)}`);
      return response;
    };
    const recordId = newId();
    await as('PUT', `/collections/${sampleCollection}/records/${recordId}`, { data: { owner: tenant.tenantId } }, 201);
    const key = await as('POST', '/api-keys', { name: 'target' }, 201);
    secrets.push(key.json<{ key: string }>().key);
    const sealed = await as('POST', '/crypto/encrypt', { items: [{ plaintext: 'dGFyZ2V0' }] }, 200);
    const ciphertext = sealed.json<{ items: { ciphertext: string }[] }>().items[0]?.ciphertext ?? '';
    // The customer key is set again only when a DELETE took it away (a PUT re-splits every key version).
    const customerKeySet = await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/keys/customer-key`, token: tenant.apiKey });
    if (customerKeySet.statusCode !== 200 || customerKeySet.json<{ address: string }>().address !== customerVaultAddress) {
      await as('PUT', '/keys/customer-key', customerKey({ customerVaultAddress }), 200);
    }
    const email = `target-${newId()}@example.org`;
    const password = testPassphrase('wide river', 'lantern');
    const user = await as('POST', '/users', { email, password }, 201);
    const session = await test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId: tenant.tenantId, email, password } });
    assert.equal(session.statusCode, 200, session.body);
    const { accessToken, refreshToken } = session.json<{ accessToken: string; refreshToken: string }>();
    secrets.push(password, refreshToken, accessToken);
    const roleName = `target-${newId()}`;
    await as('POST', '/roles', { name: roleName, permissions: ['records:read'] }, 201);
    const grant = await as('POST', '/support-grants', { permissions: ['records:read'], reason: 'Suite target', durationHours: 1 }, 201);
    const operatorEmail = `target-${newId()}@operator.example`;
    const operatorPassword = testPassphrase('quiet forest', 'anchor');
    const targetOperator = await test.call({
      method: 'POST',
      url: '/v1/operators',
      token: test.operatorToken,
      body: { email: operatorEmail, role: 'platform-auditor', password: operatorPassword, mustChangePassword: false },
    });
    assert.equal(targetOperator.statusCode, 201, targetOperator.body);
    secrets.push(operatorPassword);
    // The user's second factors: an active TOTP seed (recovery codes with it) and a pending one to confirm or remove.
    const asUser = async (url: string, body: unknown, status: number) => {
      const response = await test.call({ method: 'POST', url, token: accessToken, body });
      assert.equal(response.statusCode, status, `POST ${url}: ${response.body.slice(0, 300)}`);
      return response.json<{ factorId: string; secret: string }>();
    };
    const codeOf = (secret: string) => totpCode(Buffer.from(Secret.fromBase32(secret).bytes), new Date());
    const active = await asUser('/v1/me/mfa/totp', { name: 'Suite active' }, 201);
    await asUser(`/v1/me/mfa/totp/${active.factorId}/verify`, { code: codeOf(active.secret) }, 200);
    const pending = await asUser('/v1/me/mfa/totp', { name: 'Suite pending' }, 201);
    secrets.push(active.secret, pending.secret);
    // One target connection per tenant while it lives (a tenant has at most 100): the suites make far more targets.
    let connectionId = this.connections.get(tenant.tenantId);
    const alive = connectionId === undefined ? undefined : await test.call({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/sso-connections/${connectionId}`, token: tenant.apiKey });
    if (alive?.statusCode !== 200) {
      connectionId = (await as('POST', '/sso-connections', ldapConnection('Target directory'), 201)).json<{ id: string }>().id;
      this.connections.set(tenant.tenantId, connectionId);
    }
    const domain = `target-${newId()}.example`;
    const claimed = await as('POST', '/domains', { domain }, 201);
    const verification = claimed.json<{ verification: { name: string; value: string } }>().verification;
    this.dns.setTxt(verification.name, [verification.value]);
    // A service of its own (DELETE retires it) and a secret sealed to it.
    const serviceKeys = generateServiceKeyPair();
    const registered = await test.call({ method: 'POST', url: '/v1/services', token: test.operatorToken, body: { name: `target-${newId()}`, publicKey: serviceKeys.publicKey } });
    assert.equal(registered.statusCode, 201, registered.body);
    const { id: serviceId, credential: serviceCredential } = registered.json<{ id: string; credential: string }>();
    secrets.push(serviceCredential, serviceKeys.privateKeyPem);
    const secretName = `target-${newId()}`;
    await as('PUT', `/secrets/${secretName}`, { value: suiteSecretValue, readers: [serviceId] }, 201);
    // An agent of its own (DELETE revokes it), and a fresh code for the pairing route (each is single use).
    const newPairingCode = async () => (await as('POST', '/agents/pairing-codes', {}, 201)).json<{ code: string }>().code;
    const agentPublicKey = () => generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x ?? '';
    const paired = await test.call({ method: 'POST', url: '/v1/agents/pair', body: { code: await newPairingCode(), name: 'Target agent', publicKey: { type: 'ed25519', key: agentPublicKey() } } });
    assert.equal(paired.statusCode, 201, paired.body);
    const { agentId, credentials } = paired.json<{ agentId: string; credentials: { token: string } }>();
    const pairingCode = await newPairingCode();
    secrets.push(credentials.token, pairingCode);
    // Two tenants for offboarding: one to request it of, one with a standing request (to read, cancel, confirm).
    // Those of the last call serve again while nothing took them further (their status says so): every tenant
    // made here would stay, and each makes every later backup and restore longer.
    const newTenant = async () => {
      const created = await test.call({ method: 'POST', url: '/v1/tenants', token: test.operatorToken, body: { name: 'Suite offboarding target' } });
      assert.equal(created.statusCode, 201, created.body);
      return created.json<{ id: string }>().id;
    };
    const still = async (tenantId: string | undefined, status: string) => {
      if (tenantId === undefined) return undefined;
      const shown = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}`, token: test.operatorToken });
      return shown.statusCode === 200 && shown.json<{ status: string }>().status === status ? tenantId : undefined;
    };
    const spareTenantId = (await still(this.offboardingTargets.spare, 'active')) ?? (await newTenant());
    let offboardingTenantId = await still(this.offboardingTargets.requested, 'offboarding');
    if (offboardingTenantId === undefined) {
      offboardingTenantId = await newTenant();
      const requested = await test.call({ method: 'DELETE', url: `/v1/tenants/${offboardingTenantId}`, token: test.operatorToken });
      assert.equal(requested.statusCode, 202, requested.body);
    }
    this.offboardingTargets = { spare: spareTenantId, requested: offboardingTenantId };
    // A legal hold of its own (DELETE releases it), on a user of its own: the target user stays erasable.
    const heldUserId = (await as('POST', '/users', { email: `held-${newId()}@example.org` }, 201)).json<{ id: string }>().id;
    const holdId = (await as('POST', '/legal-holds', { name: 'Target hold', reason: 'Suite target', userId: heldUserId }, 201)).json<{ id: string }>().id;
    // One backup serves every call: reading, verifying and restoring it leave it as it was.
    if (this.backupId === undefined) {
      const backup = await test.call({ method: 'POST', url: '/v1/backups', token: test.operatorToken });
      assert.equal(backup.statusCode, 201, backup.body);
      this.backupId = backup.json<{ id: string }>().id;
    }
    return {
      heldUserId,
      holdId,
      backupId: this.backupId,
      spareTenantId,
      offboardingTenantId,
      agentId,
      agentToken: credentials.token,
      pairingCode,
      agentPublicKey: agentPublicKey(),
      serviceId,
      serviceCredential,
      servicePrivateKey: serviceKeys.privateKeyPem,
      secretName,
      factorId: pending.factorId,
      totpSecret: pending.secret,
      connectionId: connectionId ?? '',
      domain,
      userId: user.json<{ id: string }>().id,
      tenantId: tenant.tenantId,
      collection: sampleCollection,
      recordId,
      keyId: key.json<{ id: string }>().id,
      ciphertext,
      email,
      password,
      accessToken,
      refreshToken,
      roleName,
      grantId: grant.json<{ id: string }>().id,
      operatorId: targetOperator.json<{ id: string }>().id,
      operatorEmail,
      operatorPassword,
      customerVaultAddress,
    };
  }
}
