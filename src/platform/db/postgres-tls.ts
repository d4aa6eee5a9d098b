import { isIP } from 'node:net';
import { checkServerIdentity, type ConnectionOptions } from 'node:tls';

/**
 * TLS to PostgreSQL, with libpq's `sslmode` meanings, built here rather than by node-postgres: its
 * connection-string parser makes `require` and `verify-ca` check the host name too (and warns), reads
 * `sslrootcert`/`sslcert`/`sslkey` paths from the URL itself, and a connection-string `ssl` overrides the
 * `ssl` option. So Bulwark takes `sslmode` from the URL, the files from BULWARK_DATABASE_TLS_*, and hands
 * pg a URL without any TLS parameter plus an explicit `ssl`.
 */
export const sslModes = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof sslModes)[number];

/** PEM texts: the CA the server's certificate must chain to, and an optional client certificate. */
export interface PostgresTlsFiles {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

/** URL parameters pg or libpq would act on for TLS, besides `sslmode`: refused, so there is one way to say it. */
const refusedParameters = [
  'ssl', 'sslrootcert', 'sslcert', 'sslkey', 'sslpassword', 'sslcrl', 'sslcrldir', 'sslnegotiation', 'sslsni',
  'sslcompression', 'ssl_min_protocol_version', 'ssl_max_protocol_version', 'requiressl', 'uselibpqcompat',
];

/** The `sslmode` of a PostgreSQL URL (absent: `disable`), or why it is refused. */
export function sslModeOf(url: string): { mode: SslMode } | { error: string } {
  const { searchParams } = new URL(url);
  const refused = refusedParameters.filter((name) => searchParams.has(name));
  if (refused.length > 0) {
    return { error: `has ${refused.join(', ')}: give only sslmode in the URL, and the files with BULWARK_DATABASE_TLS_CA_FILE, _CERT_FILE and _KEY_FILE` };
  }
  const given = searchParams.getAll('sslmode');
  if (given.length > 1) return { error: 'has sslmode twice' };
  const mode = given[0] ?? 'disable';
  if ((sslModes as readonly string[]).includes(mode)) return { mode: mode as SslMode };
  // allow and prefer fall back to plain text, which anyone on the path can force by refusing TLS.
  return { error: `has sslmode=${mode}; use one of ${sslModes.join(', ')} (allow and prefer are not supported: they fall back to plain text)` };
}

/** The server's host as pg will reach it: the `host` parameter wins over the URL's host, as in pg. */
export function postgresHost(url: string): string {
  const parsed = new URL(url);
  return parsed.searchParams.get('host') ?? decodeURIComponent(parsed.hostname).replace(/^\[(.+)\]$/, '$1');
}

/** A Unix socket or a loopback address: traffic that never leaves the machine. */
export function isLocalHost(host: string): boolean {
  return host === '' || host.startsWith('/') || host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** What pg gets for a URL: the connection string without its TLS parameter, and the `ssl` option its sslmode asks for. */
export function postgresClientConfig(url: string, files: PostgresTlsFiles = {}): { connectionString: string; ssl: false | ConnectionOptions } {
  const checked = sslModeOf(url);
  // The configuration refused these already; a caller passing its own URL gets the same answer.
  if ('error' in checked) throw new TypeError(`PostgreSQL URL ${checked.error}`);
  const parsed = new URL(url);
  parsed.searchParams.delete('sslmode');
  return { connectionString: parsed.toString(), ssl: postgresSsl(checked.mode, postgresHost(url), files) };
}

function postgresSsl(mode: SslMode, host: string, files: PostgresTlsFiles): false | ConnectionOptions {
  // An explicit `false` also keeps pg from reading PGSSLMODE behind the configuration's back.
  if (mode === 'disable') return false;
  const material: ConnectionOptions = {
    ...(files.ca === undefined ? {} : { ca: files.ca }),
    ...(files.cert === undefined || files.key === undefined ? {} : { cert: files.cert, key: files.key }),
  };
  // As in libpq: `require` without a CA encrypts but authenticates nobody; with one it is verify-ca.
  if (mode === 'require' && files.ca === undefined) return { ...material, rejectUnauthorized: false };
  if (mode === 'require' || mode === 'verify-ca') return { ...material, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  return {
    ...material,
    rejectUnauthorized: true,
    // SNI takes names only (RFC 6066 section 3); the identity check covers IP addresses too.
    ...(isIP(host) === 0 ? { servername: host } : {}),
    checkServerIdentity: (_name, certificate) => checkServerIdentity(host, certificate),
  };
}

/**
 * Why a production server must not reach this database as configured, or undefined: it is off the machine
 * and not on `verify-full`, so someone on the path could read the traffic or pose as the server.
 */
export function unverifiedTransport(url: string): string | undefined {
  const host = postgresHost(url);
  const checked = sslModeOf(url);
  const mode = 'mode' in checked ? checked.mode : 'disable';
  if (mode === 'verify-full' || isLocalHost(host)) return undefined;
  const what = mode === 'disable' ? 'in plain text' : `with sslmode=${mode}, which does not check the server's host name`;
  return `PostgreSQL at ${host} is reached ${what}`;
}
