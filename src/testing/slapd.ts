import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'ldapts';
import { freePort } from './ports.ts';

/**
 * A private OpenLDAP `slapd` for the LDAP tests: its own temporary directory, a free loopback port for
 * ldap:// (StartTLS) and one for ldaps://, a throwaway CA, and a seeded directory. Without slapd (or openssl)
 * the LDAP suites skip; with BULWARK_REQUIRE_SERVICES=1 (CI) the import fails instead.
 */
const slapdBinary = '/usr/sbin/slapd';
const schemaDir = '/etc/ldap/schema';
const modulePath = '/usr/lib/ldap';

function onPath(command: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, command)));
}

const slapdProblem = !existsSync(slapdBinary)
  ? `${slapdBinary} is not installed (apt-get install slapd)`
  : !existsSync(join(schemaDir, 'inetorgperson.schema')) || !existsSync(join(modulePath, 'back_mdb.so'))
    ? `slapd schemas or modules are missing under ${schemaDir} / ${modulePath}`
    : !onPath('openssl')
      ? 'openssl is not installed'
      : undefined;
if (slapdProblem !== undefined && process.env['BULWARK_REQUIRE_SERVICES'] === '1') {
  throw new Error(`BULWARK_REQUIRE_SERVICES=1 but ${slapdProblem}`);
}

/** `skip` option for node:test. */
export function slapdSkip(): string | false {
  return slapdProblem ?? false;
}

export const ldapSuffix = 'dc=example,dc=test';
export const ldapPeopleDn = `ou=people,${ldapSuffix}`;
export const ldapGroupsDn = `ou=groups,${ldapSuffix}`;

export interface SeededLdapUser {
  uid: string;
  dn: string;
  /** Random per server, stored as {SSHA}. */
  password: string;
  mail: string;
  givenName: string;
  sn: string;
  /** `cn` of the groupOfNames entries that list this user as a member. */
  groups: string[];
}

/**
 * The seeded people. `special` and `unicode` have uids with filter metacharacters and non-ASCII letters;
 * `twinA` and `twinB` share one uid (and one password) in two OUs, so a search for it matches two entries.
 */
export type SeededLdapUserName = 'alice' | 'bob' | 'special' | 'unicode' | 'twinA' | 'twinB';

export interface PrivateSlapd {
  /** ldap://127.0.0.1:PORT: StartTLS (or plain LDAP, which the server does not refuse). */
  url: string;
  /** ldaps://127.0.0.1:PORT2. */
  ldapsUrl: string;
  /** The CA that signed the server certificate (SAN IP:127.0.0.1 only). */
  caPem: string;
  /** A CA that signed nothing the server uses, for negative tests. */
  foreignCaPem: string;
  /** A service account (not the rootdn). The directory lets anyone read all but passwords, so anonymous search works too. */
  bindDn: string;
  bindPassword: string;
  users: Readonly<Record<SeededLdapUserName, SeededLdapUser>>;
  /** SIGKILLs slapd and removes its directory. */
  stop(): Promise<void>;
}

const run = promisify(execFile);

/** RFC 2307 {SSHA}: base64(SHA-1(password || salt) || salt), which slapd verifies natively. */
function ssha(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash('sha1').update(password).update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

const secret = () => randomBytes(18).toString('base64url');

async function makeCertificates(dir: string): Promise<void> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-subj', '/CN=Bulwark test LDAP CA']);
  await Promise.all([
    run('openssl', [
      'req', '-x509', ...ec, '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'),
      '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.pem'), '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'extendedKeyUsage=serverAuth',
    ]),
    run('openssl', ['req', '-x509', ...ec, '-keyout', join(dir, 'foreign-ca.key'), '-out', join(dir, 'foreign-ca.pem'), '-subj', '/CN=Unrelated test CA']),
  ]);
}

function slapdConf(dir: string, rootPassword: string): string {
  return `${['core', 'cosine', 'inetorgperson', 'nis'].map((name) => `include ${join(schemaDir, `${name}.schema`)}`).join('\n')}
modulepath ${modulePath}
moduleload back_mdb
moduleload memberof
pidfile ${join(dir, 'slapd.pid')}
argsfile ${join(dir, 'slapd.args')}
TLSCACertificateFile ${join(dir, 'ca.pem')}
TLSCertificateFile ${join(dir, 'server.pem')}
TLSCertificateKeyFile ${join(dir, 'server.key')}
database mdb
maxsize 16777216
dbnosync
suffix "${ldapSuffix}"
rootdn "cn=admin,${ldapSuffix}"
rootpw ${ssha(rootPassword)}
directory ${join(dir, 'db')}
overlay memberof
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by * read
`;
}

function seededUsers(): Record<SeededLdapUserName, SeededLdapUser> {
  // `mail` is an IA5String: ASCII only, whatever the name.
  const person = (uid: string, parentDn: string, mailbox: string, givenName: string, sn: string, groups: string[], password = secret()): SeededLdapUser => ({
    uid,
    // None of these uids holds a DN metacharacter (, + " \ < > ; =), so the RDN needs no RFC 4514 escaping.
    dn: `uid=${uid},${parentDn}`,
    password,
    mail: `${mailbox}@example.test`,
    givenName,
    sn,
    groups,
  });
  const twinPassword = secret();
  return {
    alice: person('alice', ldapPeopleDn, 'alice', 'Alice', 'Liddell', ['admins', 'engineers']),
    bob: person('bob', ldapPeopleDn, 'bob', 'Bob', 'Builder', ['engineers']),
    special: person('o*brien(x)', ldapPeopleDn, 'owen', 'Owen', 'Obrien', ['support']),
    unicode: person('zoë', ldapPeopleDn, 'zoe', 'Zoë', 'Åström', ['engineers']),
    twinA: person('twin', ldapPeopleDn, 'tom', 'Tom', 'Twin', [], twinPassword),
    twinB: person('twin', `ou=contractors,${ldapPeopleDn}`, 'tim', 'Tim', 'Twin', [], twinPassword),
  };
}

async function seed(url: string, rootPassword: string, readerDn: string, readerPassword: string, users: SeededLdapUser[]): Promise<void> {
  // Generous: on a busy 2-core CI machine one add once took over 5 s and failed the whole LDAP suite.
  const client = new Client({ url, timeout: 30_000, connectTimeout: 10_000 });
  try {
    await client.bind(`cn=admin,${ldapSuffix}`, rootPassword);
    await client.add(ldapSuffix, { objectClass: ['dcObject', 'organization'], dc: 'example', o: 'Example' });
    for (const ou of [ldapPeopleDn, ldapGroupsDn, `ou=contractors,${ldapPeopleDn}`]) {
      await client.add(ou, { objectClass: 'organizationalUnit', ou: /^ou=([^,]+)/.exec(ou)?.[1] ?? '' });
    }
    await client.add(readerDn, { objectClass: ['applicationProcess', 'simpleSecurityObject'], cn: 'reader', userPassword: ssha(readerPassword) });
    for (const user of users) {
      await client.add(user.dn, {
        objectClass: 'inetOrgPerson',
        uid: user.uid,
        cn: `${user.givenName} ${user.sn}`,
        sn: user.sn,
        givenName: user.givenName,
        mail: user.mail,
        userPassword: ssha(user.password),
      });
    }
    // After the people, so the memberof overlay can write each member's memberOf.
    for (const group of [...new Set(users.flatMap((user) => user.groups))]) {
      await client.add(`cn=${group},${ldapGroupsDn}`, {
        objectClass: 'groupOfNames',
        cn: group,
        member: users.filter((user) => user.groups.includes(group)).map((user) => user.dn),
      });
    }
  } finally {
    await client.unbind();
  }
}

async function waitUntilServing(url: string, child: ChildProcess, log: () => string): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`slapd exited during start-up: ${log()}`);
    const client = new Client({ url, timeout: 1_000, connectTimeout: 1_000 });
    try {
      await client.search('', { scope: 'base', attributes: ['namingContexts'] });
      return;
    } catch (error) {
      if (attempt > 100) throw new Error(`slapd did not come up on ${url}: ${log()}`, { cause: error });
    } finally {
      await client.unbind().catch(() => undefined);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts a seeded slapd of the test's own. Call `stop()` in an `after` hook; a process that dies first
 * still kills slapd on exit.
 */
export async function startPrivateSlapd(): Promise<PrivateSlapd> {
  if (slapdProblem !== undefined) throw new Error(slapdProblem);
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-slapd-'));
  let child: ChildProcess | undefined;
  const killOnExit = () => {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const stop = async () => {
    process.off('exit', killOnExit);
    const running = child;
    if (running !== undefined && running.exitCode === null && running.signalCode === null) {
      await new Promise<void>((resolve) => {
        running.once('exit', () => resolve());
        running.kill('SIGKILL');
      });
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const port = await freePort();
    let ldapsPort = await freePort();
    while (ldapsPort === port) ldapsPort = await freePort();
    const url = `ldap://127.0.0.1:${port}`;
    const ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}`;
    const rootPassword = secret();
    const bindDn = `cn=reader,${ldapSuffix}`;
    const bindPassword = secret();
    const users = seededUsers();

    await Promise.all([makeCertificates(dir), mkdir(join(dir, 'db'))]);
    await writeFile(join(dir, 'slapd.conf'), slapdConf(dir, rootPassword), { mode: 0o600 });
    let stderr = '';
    // -d 0 keeps slapd in the foreground (so SIGKILL reaches it) without debug output.
    child = spawn(slapdBinary, ['-d', '0', '-f', join(dir, 'slapd.conf'), '-h', `${url}/ ${ldapsUrl}/`], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2_000);
    });
    process.once('exit', killOnExit);
    await waitUntilServing(url, child, () => stderr);
    await seed(url, rootPassword, bindDn, bindPassword, Object.values(users));

    const [caPem, foreignCaPem] = await Promise.all([readFile(join(dir, 'ca.pem'), 'utf8'), readFile(join(dir, 'foreign-ca.pem'), 'utf8')]);
    return { url, ldapsUrl, caPem, foreignCaPem, bindDn, bindPassword, users, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
