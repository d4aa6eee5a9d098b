import assert from 'node:assert/strict';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Value } from 'typebox/value';
import { ldapGroupsDn, ldapPeopleDn, type PrivateSlapd, type SeededLdapUser, slapdSkip, startPrivateSlapd } from '../../../testing/slapd.ts';
import { LdapAdapter, type LdapConnectionConfig, ldapConnectionConfig, ldapConnectionProblems } from './ldap.ts';
import { SsoProtocolError, SsoProviderUnavailableError } from './protocol.ts';

const refusedAs = (reason: string) => (error: unknown) => error instanceof SsoProtocolError && error.reason === reason;
const unavailable = (message?: RegExp) => (error: unknown) => error instanceof SsoProviderUnavailableError && (message === undefined || message.test(error.message));

/**
 * A TCP relay in front of slapd, to count the adapter's connections and to misbehave on purpose. `wire` joins
 * the adapter's socket to the upstream one; `earlier` holds the adapter's sockets of the relay's connections so far.
 */
interface Relay {
  url: string;
  accepted(): number;
  /** Everything the adapter sent, as a sniffer on the wire would see it. */
  sent(): Buffer;
  /** Resolves once every accepted connection is closed, or rejects after a second. */
  drained(): Promise<void>;
  close(): Promise<void>;
}
type Wire = (client: Socket, upstream: Socket, index: number, earlier: Socket[]) => void;
const pipeBoth: Wire = (client, upstream) => {
  client.pipe(upstream);
  upstream.pipe(client);
};

async function relay(target: string, wire: Wire = pipeBoth): Promise<Relay> {
  const { hostname, port, protocol } = new URL(target);
  const clients: Socket[] = [];
  const sent: Buffer[] = [];
  const server: Server = createServer((client) => {
    client.on('data', (chunk: Buffer) => sent.push(chunk));
    const upstream = connect(Number(port), hostname);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) socket.on('error', end).on('close', end);
    clients.push(client);
    wire(client, upstream, clients.length - 1, clients);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: relayPort } = server.address() as AddressInfo;
  return {
    url: `${protocol}//127.0.0.1:${relayPort}`,
    accepted: () => clients.length,
    sent: () => Buffer.concat(sent),
    async drained() {
      for (let waited = 0; clients.some((client) => !client.destroyed); waited += 10) {
        if (waited > 1_000) throw new Error('a connection to the directory was left open');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async close() {
      for (const client of clients) client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('LDAP adapter against a private slapd', { skip: slapdSkip() }, () => {
  let slapd: PrivateSlapd;
  const adapter = new LdapAdapter();

  before(async () => {
    slapd = await startPrivateSlapd();
  });
  after(async () => {
    await slapd.stop();
  });

  const config = (overrides: Partial<LdapConnectionConfig> = {}): LdapConnectionConfig => ({
    url: slapd.url,
    security: 'starttls',
    caCertificates: [slapd.caPem],
    bindDn: slapd.bindDn,
    userBaseDn: ldapPeopleDn,
    groupBaseDn: ldapGroupsDn,
    timeoutMs: 2_000,
    ...overrides,
  });
  const login = (user: SeededLdapUser, overrides: Partial<LdapConnectionConfig> = {}, password = user.password) =>
    adapter.authenticate(config(overrides), slapd.bindPassword, user.uid, password);

  it('StartTLS: the right password returns the entry with its email, names and groups, and closes both connections', async () => {
    const counter = await relay(slapd.url);
    try {
      const { alice } = slapd.users;
      const identity = await login(alice, { url: counter.url });
      assert.deepEqual(
        { ...identity, groups: [...identity.groups].sort() },
        { subject: alice.dn, email: alice.mail, emailVerified: true, givenName: 'Alice', familyName: 'Liddell', groups: ['admins', 'engineers'] },
      );
      assert.equal(counter.accepted(), 2, 'one connection to search, one to bind as the user');
      assert.equal(counter.sent().includes(alice.password), false, 'the password went through TLS');
      assert.equal(counter.sent().includes(slapd.bindPassword), false);
      await counter.drained();
    } finally {
      await counter.close();
    }
  });

  it('ldaps:// works, with the same checks', async () => {
    const counter = await relay(slapd.ldapsUrl);
    try {
      const { bob } = slapd.users;
      const identity = await login(bob, { url: counter.url, security: 'ldaps' });
      assert.equal(identity.subject, bob.dn);
      assert.deepEqual(identity.groups, ['engineers']);
      assert.equal(counter.sent().includes(bob.password), false);
      await assert.rejects(login(bob, { url: counter.url, security: 'ldaps' }, 'wrong'), refusedAs('invalid_credentials'));
      await counter.drained();
    } finally {
      await counter.close();
    }
  });

  it('plain LDAP only with allowInsecure (the password is then on the wire); without it nothing is even sent', async () => {
    const { bob } = slapd.users;
    const sniffed = await relay(slapd.url);
    try {
      assert.equal((await login(bob, { url: sniffed.url, security: 'none', caCertificates: undefined, allowInsecure: true })).subject, bob.dn);
      assert.equal(sniffed.sent().includes(bob.password), true);
    } finally {
      await sniffed.close();
    }
    const counter = await relay(slapd.url);
    try {
      await assert.rejects(login(bob, { url: counter.url, security: 'none' }), unavailable(/allowInsecure/));
      await assert.rejects(login(bob, { url: counter.url, security: 'ldaps' }), unavailable(/ldaps:\/\//));
      assert.equal(counter.accepted(), 0);
    } finally {
      await counter.close();
    }
  });

  it('refuses a wrong password, the password of another user and an unknown user alike, closing every connection', async () => {
    const counter = await relay(slapd.url);
    try {
      const { alice, bob } = slapd.users;
      await assert.rejects(login(alice, { url: counter.url }, `${alice.password}x`), refusedAs('invalid_credentials'));
      await assert.rejects(login(alice, { url: counter.url }, bob.password), refusedAs('invalid_credentials'));
      await assert.rejects(adapter.authenticate(config({ url: counter.url }), slapd.bindPassword, 'mallory', alice.password), refusedAs('invalid_credentials'));
      await counter.drained();
    } finally {
      await counter.close();
    }
  });

  it('refuses an empty password before any bind (it would be an unauthenticated bind that "succeeds")', async () => {
    const counter = await relay(slapd.url);
    try {
      await assert.rejects(login(slapd.users.alice, { url: counter.url }, ''), refusedAs('invalid_credentials'));
      assert.equal(counter.accepted(), 0);
    } finally {
      await counter.close();
    }
  });

  it('escapes filter metacharacters: injected usernames match nothing and log nobody in', async () => {
    const { alice } = slapd.users;
    // 'ali*' is the decisive one: unescaped, (uid=ali*) would match alice alone and her password would pass.
    const injections = ['*', 'ali*', '*)(uid=*', ')(uid=*', 'admin)(|(uid=*', 'alice)(|(uid=*', 'alice)(uid=*', '\\', 'alice\\', '\\2a', '$&', "$'", '$`', 'alice\0', '\0'];
    for (const username of injections) {
      await assert.rejects(adapter.authenticate(config(), slapd.bindPassword, username, alice.password), refusedAs('invalid_credentials'), JSON.stringify(username));
    }
  });

  it('logs in a user whose uid holds filter metacharacters, and finds its groups by its escaped DN', async () => {
    const { special } = slapd.users;
    assert.equal(special.uid, 'o*brien(x)');
    const identity = await login(special);
    assert.equal(identity.subject, special.dn);
    assert.deepEqual(identity.groups, ['support']);
    await assert.rejects(login(special, {}, 'wrong'), refusedAs('invalid_credentials'));
  });

  it('logs in a user with a non-ASCII uid (UTF-8 in the filter and in the group search)', async () => {
    const { unicode } = slapd.users;
    const identity = await login(unicode);
    assert.deepEqual([identity.subject, identity.givenName, identity.familyName, identity.groups], [unicode.dn, 'Zoë', 'Åström', ['engineers']]);
  });

  it('refuses a username that matches two entries, even with the right password', async () => {
    const { twinA, twinB } = slapd.users;
    assert.equal(twinA.uid, twinB.uid);
    await assert.rejects(login(twinA), refusedAs('invalid_credentials'));
    // Searching one OU only, the same credentials are fine.
    assert.equal((await login(twinB, { userBaseDn: `ou=contractors,${ldapPeopleDn}` })).subject, twinB.dn);
  });

  it('refuses oversized usernames and control characters before connecting', async () => {
    const counter = await relay(slapd.url);
    try {
      for (const username of ['a'.repeat(257), '', 'alice\n', 'al\tice', 'alice\u007f']) {
        await assert.rejects(adapter.authenticate(config({ url: counter.url }), slapd.bindPassword, username, 'password'), refusedAs('invalid_credentials'));
      }
      assert.equal(counter.accepted(), 0);
    } finally {
      await counter.close();
    }
  });

  it('refuses a server certificate the configured CA did not sign, or issued for another name, as unavailable', async () => {
    const { alice } = slapd.users;
    const untrusted = unavailable(/certificate could not be verified/);
    await assert.rejects(login(alice, { caCertificates: [slapd.foreignCaPem] }), untrusted);
    await assert.rejects(login(alice, { url: slapd.ldapsUrl, security: 'ldaps', caCertificates: [slapd.foreignCaPem] }), untrusted);
    // Node's default trust store does not know the test CA either.
    await assert.rejects(login(alice, { caCertificates: undefined }), untrusted);
    await assert.rejects(login(alice, { url: slapd.ldapsUrl, security: 'ldaps', caCertificates: undefined }), untrusted);
    // The certificate names IP:127.0.0.1 only; 'localhost' resolves there but is not that name.
    await assert.rejects(login(alice, { url: slapd.url.replace('127.0.0.1', 'localhost') }), untrusted);
    await assert.rejects(login(alice, { url: slapd.ldapsUrl.replace('127.0.0.1', 'localhost'), security: 'ldaps' }), untrusted);
  });

  it('the service account must authenticate: a wrong or missing password is a fault of the connection, not of the user', async () => {
    const { alice } = slapd.users;
    await assert.rejects(adapter.authenticate(config(), 'not-the-password', alice.uid, alice.password), unavailable(/service account/));
    const counter = await relay(slapd.url);
    try {
      for (const missing of [undefined, '']) {
        await assert.rejects(adapter.authenticate(config({ url: counter.url }), missing, alice.uid, alice.password), unavailable(/service account/));
      }
      assert.equal(counter.accepted(), 0);
    } finally {
      await counter.close();
    }
  });

  it('searches anonymously without a bindDn', async () => {
    const { bob } = slapd.users;
    const identity = await adapter.authenticate(config({ bindDn: undefined }), undefined, bob.uid, bob.password);
    assert.deepEqual([identity.subject, identity.groups], [bob.dn, ['engineers']]);
  });

  it('reads groups from memberOf instead of searching, when so configured', async () => {
    const { alice } = slapd.users;
    const identity = await login(alice, { groupBaseDn: undefined, memberOfAttribute: 'memberOf' });
    assert.deepEqual([...identity.groups].sort(), [`cn=admins,${ldapGroupsDn}`, `cn=engineers,${ldapGroupsDn}`]);
    assert.deepEqual((await login(alice, { groupBaseDn: undefined })).groups, []);
  });

  it('takes the subject from subjectAttribute, and refuses an entry without one', async () => {
    const { alice } = slapd.users;
    const first = await login(alice, { subjectAttribute: 'entryUUID' });
    assert.match(first.subject, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal((await login(alice, { subjectAttribute: 'entryuuid' })).subject, first.subject);
    await assert.rejects(login(alice, { subjectAttribute: 'employeeNumber' }), refusedAs('invalid_subject'));
  });

  it('fails the login rather than deciding on a truncated group list', async () => {
    const capped = new LdapAdapter({ maxGroups: 1 });
    const { alice, bob } = slapd.users;
    await assert.rejects(capped.authenticate(config(), slapd.bindPassword, alice.uid, alice.password), refusedAs('too_many_groups'));
    assert.deepEqual((await capped.authenticate(config(), slapd.bindPassword, bob.uid, bob.password)).groups, ['engineers']);
  });

  it('a base DN that does not exist is a fault of the connection', async () => {
    await assert.rejects(login(slapd.users.alice, { userBaseDn: `ou=nowhere,${ldapPeopleDn}` }), unavailable(/user search failed/));
    await assert.rejects(login(slapd.users.alice, { groupBaseDn: `ou=nowhere,${ldapPeopleDn}` }), unavailable(/group search failed/));
  });

  it('an unreachable or silent server is unavailable, within the timeout', async () => {
    const closed = await relay(slapd.url);
    const closedUrl = closed.url;
    await closed.close();
    await assert.rejects(login(slapd.users.alice, { url: closedUrl }), unavailable(/could not be reached/));

    const held: Socket[] = [];
    const silent = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentUrl = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      for (const overrides of [{ url: `ldap://${silentUrl}` }, { url: `ldaps://${silentUrl}`, security: 'ldaps' as const }]) {
        const started = Date.now();
        await assert.rejects(login(slapd.users.alice, { ...overrides, timeoutMs: 300 }), unavailable());
        assert.ok(Date.now() - started < 1_500, 'gave up after the timeout');
      }
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('a server that answers garbage is unavailable', async () => {
    const held: Socket[] = [];
    const garbage = createServer((socket) => {
      held.push(socket);
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((resolve) => garbage.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(garbage.address() as AddressInfo).port}`;
    try {
      await assert.rejects(login(slapd.users.alice, { url: `ldaps://${address}`, security: 'ldaps' }), unavailable(/TLS handshake/));
      await assert.rejects(login(slapd.users.alice, { url: `ldap://${address}` }), unavailable(/did not answer/));
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise<void>((resolve) => garbage.close(() => resolve()));
    }
  });

  it('a TLS handshake that stalls after StartTLS is unavailable, within the timeout', async () => {
    // Only the StartTLS response reaches the adapter; the server's side of the handshake never does.
    const stalling = await relay(slapd.url, (client, upstream) => {
      client.pipe(upstream);
      upstream.once('data', (chunk: Buffer) => client.write(chunk));
    });
    try {
      const started = Date.now();
      await assert.rejects(login(slapd.users.alice, { url: stalling.url, timeoutMs: 300 }), unavailable());
      assert.ok(Date.now() - started < 1_500, 'gave up after the timeout');
    } finally {
      await stalling.close();
    }
  });

  it('a dropped service connection fails the login instead of being reopened (in clear, unauthenticated)', async () => {
    // The service connection dies while the user's password is checked on the second one; the group search
    // that follows must not reconnect.
    const dropFirst: Wire = (client, upstream, index, earlier) => {
      pipeBoth(client, upstream, index, earlier);
      if (index === 1) earlier[0]?.destroy();
    };
    for (const overrides of [{ security: 'none' as const, caCertificates: undefined, allowInsecure: true }, {}]) {
      const dropping = await relay(slapd.url, dropFirst);
      try {
        await assert.rejects(login(slapd.users.alice, { ...overrides, url: dropping.url, timeoutMs: 500 }), unavailable());
        assert.equal(dropping.accepted(), 2, JSON.stringify(overrides));
      } finally {
        await dropping.close();
      }
    }
  });
});

describe('LDAP connection config', () => {
  const valid: LdapConnectionConfig = {
    url: 'ldaps://ldap.example.test:636',
    security: 'ldaps',
    bindDn: 'cn=reader,dc=example,dc=test',
    userBaseDn: 'ou=people,dc=example,dc=test',
    userFilter: '(&(objectClass=inetOrgPerson)(uid={username}))',
    groupBaseDn: 'ou=groups,dc=example,dc=test',
    groupFilter: '(&(objectClass=groupOfNames)(member={dn}))',
    subjectAttribute: 'entryUUID',
    timeoutMs: 3_000,
  };

  it('the schema accepts a complete config and refuses unknown fields, unbounded or malformed values', () => {
    assert.ok(Value.Check(ldapConnectionConfig, valid));
    assert.ok(Value.Check(ldapConnectionConfig, { url: 'ldap://10.0.0.1', security: 'starttls', userBaseDn: 'dc=example,dc=test' }));
    for (const bad of [
      { bindPassword: 'secret' },
      { url: 'https://ldap.example.test' },
      { url: 'ldaps://ldap.example.test/dc=example?uid' },
      { url: 'ldaps://user@ldap.example.test' },
      { security: 'tls' },
      { userFilter: '(uid=alice)' },
      { groupFilter: '(member=uid=alice)' },
      { userBaseDn: 'people' },
      { emailAttribute: 'mail;binary' },
      { timeoutMs: 0 },
      { caCertificates: [] },
      { caCertificates: Array.from({ length: 17 }, () => 'pem') },
      { userBaseDn: `ou=${'x'.repeat(1024)}` },
    ]) {
      assert.equal(Value.Check(ldapConnectionConfig, { ...valid, ...bad }), false, JSON.stringify(bad).slice(0, 80));
    }
  });

  it('ldapConnectionProblems reports the cross-field rules, and nothing for a sound config', () => {
    assert.deepEqual(ldapConnectionProblems(valid), []);
    assert.deepEqual(ldapConnectionProblems({ ...valid, url: 'ldap://ldap.example.test', security: 'starttls' }), []);
    assert.deepEqual(ldapConnectionProblems({ ...valid, url: 'ldap://ldap.example.test', security: 'none', allowInsecure: true }), []);
    const problems = (overrides: Partial<LdapConnectionConfig>) => ldapConnectionProblems({ ...valid, ...overrides }).join('\n');
    assert.match(problems({ url: 'ldap://ldap.example.test' }), /'ldaps' needs an ldaps:\/\/ url/);
    assert.match(problems({ security: 'starttls' }), /'starttls' needs an ldap:\/\/ url/);
    assert.match(problems({ url: 'ldap://ldap.example.test', security: 'none' }), /allowInsecure/);
    assert.match(problems({ url: 'ldap://ldap.example.test', security: 'none', allowInsecure: false }), /allowInsecure/);
    assert.match(problems({ memberOfAttribute: 'memberOf' }), /alternatives/);
    assert.match(problems({ userFilter: '(uid={username}' }), /userFilter is not a valid LDAP filter/);
    assert.match(problems({ groupFilter: '(member={dn}' }), /groupFilter is not a valid LDAP filter/);
    assert.match(problems({ caCertificates: ['-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----'] }), /caCertificates\[0\] is not a PEM certificate/);
  });
});
