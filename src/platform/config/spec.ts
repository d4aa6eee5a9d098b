/**
 * Every configuration option of Bulwark, in one table: its environment variable, its key in the optional
 * JSON config file, how it is validated and its default. docs/configuration.md is generated from it.
 */
import { isIP } from 'node:net';
import type { Config } from './config.ts';
import { pemFile } from './pem-file.ts';
import { parseRate } from '../../modules/limits/policy.ts';
import { assertValidSchedule } from '../../modules/backup/schedule.ts';
import { sslModeOf } from '../db/postgres-tls.ts';

export interface OptionSpec {
  key: keyof Config;
  env: string;
  description: string;
  /** Default as the operator would write it; undefined means unset. */
  default?: string;
  secret?: boolean;
  parse: (raw: string) => { value: unknown } | { error: string };
}

const identifier = /^[a-z_][a-z0-9_]{0,62}$/;
/** A DNS name of LDH labels, optionally a wildcard as its first label. */
const dnsName = /^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** `region=url` pairs: each region named once, each url file:///absolute or s3://bucket[/prefix]. */
function backupTargets(raw: string) {
  const targets: Record<string, string> = {};
  for (const pair of raw.split(',').map((part) => part.trim())) {
    const match = /^([a-z][a-z0-9-]{0,31})=(.+)$/.exec(pair);
    if (!match) return { error: 'must be region=url pairs separated by commas' };
    const [, region, target] = match as unknown as [string, string, string];
    if (Object.hasOwn(targets, region)) return { error: `names region ${region} twice` };
    let parsed: URL;
    try {
      parsed = new URL(target);
    } catch {
      return { error: `has a target for ${region} that is not a URL` };
    }
    if (parsed.protocol !== 'file:' && parsed.protocol !== 's3:') return { error: `has a target for ${region} that is neither file:// nor s3://` };
    if (parsed.protocol === 's3:' && parsed.hostname === '') return { error: `has an s3:// target for ${region} without a bucket` };
    targets[region] = target;
  }
  return { value: targets };
}


function integer(min: number, max: number) {
  return (raw: string) => {
    if (!/^\d+$/.test(raw)) return { error: `must be an integer between ${min} and ${max}` };
    const value = Number(raw);
    return value >= min && value <= max ? { value } : { error: `must be an integer between ${min} and ${max}` };
  };
}

function oneOf(...allowed: string[]) {
  return (raw: string) => (allowed.includes(raw) ? { value: raw } : { error: `must be one of ${allowed.join(', ')}` });
}

function url(...protocols: string[]) {
  return (raw: string) => {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      return { error: 'must be a URL' };
    }
    return protocols.includes(parsed.protocol.slice(0, -1))
      ? { value: raw }
      : { error: `must be a URL with scheme ${protocols.join(' or ')}` };
  };
}

/** A PostgreSQL URL whose TLS parameters Bulwark takes: `sslmode` only (see platform/db/postgres-tls.ts). */
function postgresUrl(raw: string) {
  const parsed = url('postgres', 'postgresql')(raw);
  if ('error' in parsed) return parsed;
  const checked = sslModeOf(raw);
  return 'error' in checked ? checked : parsed;
}

function boolean(raw: string) {
  return raw === 'true' || raw === 'false' ? { value: raw === 'true' } : { error: 'must be true or false' };
}

/** Comma-separated exact http(s) origins (scheme, host, port; no path); undefined when one is not. */
function originList(raw: string): string[] | undefined {
  const origins = raw.split(',').map((origin) => origin.trim());
  const valid = origins.every((origin) => {
    try {
      const url = new URL(origin);
      return (url.protocol === 'https:' || url.protocol === 'http:') && url.origin === origin;
    } catch {
      return false;
    }
  });
  return valid ? origins : undefined;
}

function countOrUnlimited(min: number, max: number) {
  const count = integer(min, max);
  return (raw: string) => (raw === 'unlimited' ? { value: 'unlimited' } : count(raw));
}

function text(min: number, max: number) {
  return (raw: string) =>
    raw.length >= min && raw.length <= max ? { value: raw } : { error: `must be ${min} to ${max} characters long` };
}

export const optionSpecs: readonly OptionSpec[] = [
  {
    key: 'env',
    env: 'BULWARK_ENV',
    description:
      'Run mode. `production` refuses to serve through a privileged database login (superuser or BYPASSRLS) and warns about the embedded database; `development` and `test` warn only.',
    default: 'development',
    parse: oneOf('development', 'production', 'test'),
  },
  {
    key: 'host',
    env: 'BULWARK_HOST',
    description: 'Address the HTTP server binds to.',
    default: '127.0.0.1',
    parse: (raw: string) => (/^[A-Za-z0-9.:[\]-]{1,253}$/.test(raw) ? { value: raw } : { error: 'must be a host name or IP address' }),
  },
  {
    key: 'port',
    env: 'BULWARK_PORT',
    description: 'TCP port of the HTTP server (0 picks a free one).',
    default: '8080',
    parse: integer(0, 65535),
  },
  {
    key: 'dataDir',
    env: 'BULWARK_DATA_DIR',
    description: 'Folder for embedded state: the PGlite database (`<dir>/pglite`, locked by `<dir>/pglite.lock`) and the local root key file (`<dir>/root-key.json`).',
    default: './data',
    parse: text(1, 4096),
  },
  {
    key: 'databaseUrl',
    env: 'BULWARK_DATABASE_URL',
    description:
      'PostgreSQL connection URL (`postgres://user:pass@host:5432/db?sslmode=verify-full`). Unset: embedded PGlite in the data folder. The server connects with `role=<app role>`, so the login user must be a member of the app role. `sslmode` is `disable` (the default), `require` (encrypted, the server unauthenticated; with a CA file as verify-ca), `verify-ca` (the certificate chains to `BULWARK_DATABASE_TLS_CA_FILE`) or `verify-full` (and names the URL\'s host); production refuses anything but verify-full off loopback unless `BULWARK_ALLOW_UNVERIFIED_DATABASE_TLS=true`. Other TLS parameters (`sslrootcert`, `sslcert`, ...) are refused: use the files below. See docs/data-store-tls.md.',
    secret: true,
    parse: postgresUrl,
  },
  {
    key: 'databaseAdminUrl',
    env: 'BULWARK_DATABASE_ADMIN_URL',
    description:
      'PostgreSQL URL of the schema owner, used only to run migrations (which create the app role and grant it table privileges; membership for the login user is granted by the operator). Defaults to `BULWARK_DATABASE_URL`. Its own `sslmode` applies, with the same TLS files.',
    secret: true,
    parse: postgresUrl,
  },
  {
    key: 'databaseTlsCaFile',
    env: 'BULWARK_DATABASE_TLS_CA_FILE',
    description:
      "PEM CA certificate(s) the PostgreSQL server's certificate must chain to (`sslmode=verify-ca` needs it; `verify-full` without it trusts Node's bundled public CAs). Read at start.",
    parse: pemFile('certificates'),
  },
  {
    key: 'databaseTlsCertFile',
    env: 'BULWARK_DATABASE_TLS_CERT_FILE',
    description: 'PEM client certificate presented to PostgreSQL (for `cert` authentication or `clientcert=verify-full` in pg_hba.conf), with `BULWARK_DATABASE_TLS_KEY_FILE`.',
    parse: pemFile('certificates'),
  },
  {
    key: 'databaseTlsKeyFile',
    env: 'BULWARK_DATABASE_TLS_KEY_FILE',
    description: 'Unencrypted PEM private key of `BULWARK_DATABASE_TLS_CERT_FILE`; refused when group or others can read it (`chmod 600`).',
    parse: pemFile('private key'),
  },
  {
    key: 'allowUnverifiedDatabaseTls',
    env: 'BULWARK_ALLOW_UNVERIFIED_DATABASE_TLS',
    description:
      'Accept in production a PostgreSQL server off loopback reached without `sslmode=verify-full` (`true`): in plain text, or over TLS that does not check the host name, where anyone on the path can read the traffic or pose as the database.',
    default: 'false',
    parse: boolean,
  },
  {
    key: 'databaseAppRole',
    env: 'BULWARK_DATABASE_APP_ROLE',
    description: 'Database role the API runs as: no ownership, no BYPASSRLS. Migrations create it when missing.',
    default: 'bulwark_app',
    parse: (raw: string) => (identifier.test(raw) ? { value: raw } : { error: 'must be a lowercase SQL identifier' }),
  },
  {
    key: 'databasePoolMax',
    env: 'BULWARK_DATABASE_POOL_MAX',
    description: 'Maximum PostgreSQL connections in the pool.',
    default: '10',
    parse: integer(1, 1000),
  },
  {
    key: 'redisUrl',
    env: 'BULWARK_REDIS_URL',
    description:
      'Redis URL for the rate-limit buckets, shared by every instance so a tenant has one budget across them: `rediss://` for TLS (the server certificate and the URL\'s host name are checked). Unset: buckets in each process (production refuses that unless `BULWARK_ALLOW_MEMORY_RATE_LIMITS=true`).',
    secret: true,
    parse: url('redis', 'rediss'),
  },
  {
    key: 'redisTlsCaFile',
    env: 'BULWARK_REDIS_TLS_CA_FILE',
    description: "PEM CA certificate(s) the Redis server's certificate must chain to (a `rediss://` URL). Unset: Node's bundled public CAs.",
    parse: pemFile('certificates'),
  },
  {
    key: 'redisTlsCertFile',
    env: 'BULWARK_REDIS_TLS_CERT_FILE',
    description: 'PEM client certificate presented to Redis (`tls-auth-clients yes`), with `BULWARK_REDIS_TLS_KEY_FILE`.',
    parse: pemFile('certificates'),
  },
  {
    key: 'redisTlsKeyFile',
    env: 'BULWARK_REDIS_TLS_KEY_FILE',
    description: 'Unencrypted PEM private key of `BULWARK_REDIS_TLS_CERT_FILE`; refused when group or others can read it.',
    parse: pemFile('private key'),
  },
  {
    key: 'redisTimeoutMs',
    env: 'BULWARK_REDIS_TIMEOUT_MS',
    description: 'How long a rate-limit call to Redis may take before it counts as a failure (then `BULWARK_RATE_LIMIT_REDIS_FAILURE` decides).',
    default: '200',
    parse: integer(10, 10_000),
  },
  {
    key: 'rateLimitRedisFailure',
    env: 'BULWARK_RATE_LIMIT_REDIS_FAILURE',
    description:
      'While Redis is unreachable: `local` limits with each instance\'s own buckets (the budget multiplies by the instances), `open` allows every request, `closed` refuses every limited request with 503 `rate_limiter_unavailable`. Each decision counts in `bulwark_rate_limit_degraded_decisions_total`; Redis is retried every second.',
    default: 'local',
    parse: oneOf('local', 'open', 'closed'),
  },
  {
    key: 'allowMemoryRateLimits',
    env: 'BULWARK_ALLOW_MEMORY_RATE_LIMITS',
    description: 'Accept per-process rate-limit buckets in production (`true`): with several instances each one allows the full budget.',
    default: 'false',
    parse: boolean,
  },
  {
    key: 'rateLimitRequests',
    env: 'BULWARK_RATE_LIMIT_REQUESTS',
    description:
      'Default rate of every authenticated request of one tenant, `<limit>/<window>` (a token bucket of `limit` that refills over the window) or `unlimited`. Operators override it per tenant (`PUT /v1/tenants/{tenantId}/limits`).',
    default: '2000/10s',
    parse: parseRate,
  },
  {
    key: 'rateLimitLogin',
    env: 'BULWARK_RATE_LIMIT_LOGIN',
    description:
      'Default rate of logins into one tenant (all its users together: passwords, second factors, SSO starts and callbacks, SAML posts, LDAP binds), on top of the per-account and per-address lockouts.',
    default: '300/1m',
    parse: parseRate,
  },
  {
    key: 'rateLimitCrypto',
    env: 'BULWARK_RATE_LIMIT_CRYPTO',
    description: 'Default rate of transit items (encrypt, decrypt, rewrap; a batch costs its items) of one tenant.',
    default: '10000/10s',
    parse: parseRate,
  },
  {
    key: 'rateLimitExport',
    env: 'BULWARK_RATE_LIMIT_EXPORT',
    description: 'Default rate of audit exports of one tenant.',
    default: '10/1m',
    parse: parseRate,
  },
  {
    key: 'rateLimitAnonymous',
    env: 'BULWARK_RATE_LIMIT_ANONYMOUS',
    description:
      'Rate of unauthenticated calls (login, refresh, setup, public keys, docs) and failed authentications per client address. Over it, the address gets 429 also with credentials until its bucket refills. Behind a proxy set `BULWARK_TRUST_PROXY`, or every client shares the proxy\'s address.',
    default: '600/1m',
    parse: parseRate,
  },
  {
    key: 'rateLimitOperator',
    env: 'BULWARK_RATE_LIMIT_OPERATOR',
    description: 'Rate of every request of one platform operator.',
    default: '2000/10s',
    parse: parseRate,
  },
  {
    key: 'quotaRecords',
    env: 'BULWARK_QUOTA_RECORDS',
    description: 'Default quota: records one tenant may store (`unlimited` lifts it). Over it, writes answer 403 `quota_exceeded`.',
    default: '1000000',
    parse: countOrUnlimited(0, Number.MAX_SAFE_INTEGER),
  },
  {
    key: 'quotaRecordBytes',
    env: 'BULWARK_QUOTA_RECORD_BYTES',
    description: 'Default quota: total bytes of record data (the JSON of each `data`) one tenant may store.',
    default: '1073741824',
    parse: countOrUnlimited(0, Number.MAX_SAFE_INTEGER),
  },
  {
    key: 'quotaApiKeys',
    env: 'BULWARK_QUOTA_API_KEYS',
    description: 'Default quota: live (unrevoked, unexpired) API keys of one tenant.',
    default: '100',
    parse: countOrUnlimited(0, 1_000_000),
  },
  {
    key: 'quotaUsers',
    env: 'BULWARK_QUOTA_USERS',
    description: 'Default quota: users of one tenant.',
    default: '10000',
    parse: countOrUnlimited(0, 100_000_000),
  },
  {
    key: 'tenantMaxConcurrentRequests',
    env: 'BULWARK_TENANT_MAX_CONCURRENT_REQUESTS',
    description:
      'Default cap on one tenant\'s requests in progress on one instance; more answer 429 `concurrency_limit_exceeded`. (Its database work is bounded separately: `BULWARK_DATABASE_TENANT_MAX_CONNECTIONS`.)',
    default: '64',
    parse: countOrUnlimited(1, 100_000),
  },
  {
    key: 'databaseTenantMaxConnections',
    env: 'BULWARK_DATABASE_TENANT_MAX_CONNECTIONS',
    description:
      'PostgreSQL: the most pool connections one tenant\'s transactions hold at once; its further transactions wait for one of its own, so a slow tenant cannot take the whole pool. Default: half of `BULWARK_DATABASE_POOL_MAX`.',
    parse: integer(1, 1000),
  },
  {
    key: 'databaseStatementTimeoutMs',
    env: 'BULWARK_DATABASE_STATEMENT_TIMEOUT_MS',
    description: 'PostgreSQL `statement_timeout` of the app\'s connections (0: none); a transaction idle for 6 times as long is ended by the server.',
    default: '10000',
    parse: integer(0, 600_000),
  },
  {
    key: 'headersTimeoutSeconds',
    env: 'BULWARK_HEADERS_TIMEOUT_SECONDS',
    description: 'A client must send the request headers within this time (slowloris).',
    default: '10',
    parse: integer(1, 300),
  },
  {
    key: 'requestTimeoutSeconds',
    env: 'BULWARK_REQUEST_TIMEOUT_SECONDS',
    description: 'A client must send the whole request (headers and body) within this time.',
    default: '30',
    parse: integer(1, 3600),
  },
  {
    key: 'trustProxy',
    env: 'BULWARK_TRUST_PROXY',
    description:
      'Proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed: `false`, a number of hops, or comma-separated addresses and CIDRs (`10.0.0.0/8,127.0.0.1`). The client address feeds rate limits, lockouts and the audit trail, so trust only your own proxies.',
    default: 'false',
    parse: (raw: string) => {
      if (raw === 'false') return { value: false };
      if (/^\d{1,2}$/.test(raw)) return { value: Number(raw) };
      const entries = raw.split(',').map((entry) => entry.trim());
      return entries.every((entry) => /^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(entry))
        ? { value: entries }
        : { error: 'must be false, a hop count, or comma-separated IP addresses / CIDRs' };
    },
  },
  {
    key: 'tls',
    env: 'BULWARK_TLS',
    description:
      'Built-in HTTPS: `on` serves TLS 1.2 and 1.3 only (ECDHE with AEAD ciphers) and sends `Strict-Transport-Security`, with the certificate of `BULWARK_TLS_CERT_FILE` / `BULWARK_TLS_KEY_FILE`, or without them one this server issues itself from a local CA kept in the database (ECDSA P-384, renewed at two thirds of its life). `off`: plain HTTP (behind a TLS-terminating proxy). See docs/tls.md.',
    default: 'off',
    parse: oneOf('off', 'on'),
  },
  {
    key: 'tlsCertFile',
    env: 'BULWARK_TLS_CERT_FILE',
    description: 'PEM certificate chain served with `BULWARK_TLS=on` instead of a self-managed one; re-read when it changes (checked every minute; a broken replacement is logged and the old certificate kept).',
    parse: text(1, 4096),
  },
  {
    key: 'tlsKeyFile',
    env: 'BULWARK_TLS_KEY_FILE',
    description: 'PEM private key of `BULWARK_TLS_CERT_FILE`.',
    parse: text(1, 4096),
  },
  {
    key: 'tlsHostnames',
    env: 'BULWARK_TLS_HOSTNAMES',
    description:
      'Names of the self-managed certificate (its subject alternative names): comma-separated DNS names (`*.` allowed as the first label) and IP addresses. Unset: the host of `BULWARK_PUBLIC_URL` if set, and `localhost`, `127.0.0.1`, `::1`.',
    parse: (raw: string) => {
      const names = raw.split(',').map((name) => name.trim().toLowerCase());
      const valid = names.length <= 32 && names.every((name) => isIP(name) !== 0 || (name.length <= 253 && dnsName.test(name)));
      return valid ? { value: [...new Set(names)] } : { error: 'must be up to 32 comma-separated DNS names or IP addresses' };
    },
  },
  {
    key: 'tlsCertDays',
    env: 'BULWARK_TLS_CERT_DAYS',
    description: 'Lifetime of each self-managed server certificate; a new one is issued and served at two thirds of it, without dropping connections.',
    default: '90',
    parse: integer(1, 90),
  },
  {
    key: 'tlsClientCerts',
    env: 'BULWARK_TLS_CLIENT_CERTS',
    description:
      'With `BULWARK_TLS=on`: `request` asks every client for a certificate without requiring one (agents may present theirs; the handshake never fails over it, and a route decides what a certificate is worth), `off` never asks.',
    default: 'request',
    parse: oneOf('request', 'off'),
  },
  {
    key: 'corsOrigins',
    env: 'BULWARK_CORS_ORIGINS',
    description:
      'Browser origins allowed to call the API cross-origin (comma-separated, exact: `https://app.example.com`). Unset: CORS is off and browsers allow same-origin only. No wildcard: bearer tokens are never meant for any site.',
    parse: (raw: string) => {
      const origins = originList(raw);
      return origins !== undefined ? { value: origins } : { error: 'must be comma-separated origins such as https://app.example.com (no wildcard)' };
    },
  },
  {
    key: 'metricsPort',
    env: 'BULWARK_METRICS_PORT',
    description: 'Port of the Prometheus endpoint (`GET /metrics`), a listener of its own so it never shares the API\'s exposure. Unset: no metrics listener.',
    parse: integer(0, 65535),
  },
  {
    key: 'metricsHost',
    env: 'BULWARK_METRICS_HOST',
    description: 'Address the metrics listener binds to.',
    default: '127.0.0.1',
    parse: (raw: string) => (/^[A-Za-z0-9.:[\]-]{1,253}$/.test(raw) ? { value: raw } : { error: 'must be a host name or IP address' }),
  },
  {
    key: 'natsUrl',
    env: 'BULWARK_NATS_URL',
    description:
      'NATS URL of the message bus (`nats://` or `tls://`); the server reconnects forever with backoff and `/readyz` reports the bus while it is down. Unset: the in-process bus (agents reach it through the HTTP gateway). See docs/bus.md.',
    secret: true,
    parse: url('nats', 'tls'),
  },
  {
    key: 'natsCredsFile',
    env: 'BULWARK_NATS_CREDS_FILE',
    description:
      "Creds file (user JWT and nkey seed) of Bulwark's own NATS user, in the agents account, allowed to publish and subscribe on `bulwark.>` and `_INBOX.>`. Unset: connect without credentials (a server without auth).",
    parse: text(1, 4096),
  },
  {
    key: 'natsTlsCaFile',
    env: 'BULWARK_NATS_TLS_CA_FILE',
    description:
      "PEM CA certificate(s) the NATS server's certificate must chain to (a `tls://` URL; the URL's host name is checked too). Also used by the revocation connection of the system account user. Unset: Node's bundled public CAs.",
    parse: pemFile('certificates'),
  },
  {
    key: 'natsTlsCertFile',
    env: 'BULWARK_NATS_TLS_CERT_FILE',
    description: 'PEM client certificate presented to NATS (`verify: true` in the server\'s `tls` block), with `BULWARK_NATS_TLS_KEY_FILE`.',
    parse: pemFile('certificates'),
  },
  {
    key: 'natsTlsKeyFile',
    env: 'BULWARK_NATS_TLS_KEY_FILE',
    description: 'Unencrypted PEM private key of `BULWARK_NATS_TLS_CERT_FILE`; refused when group or others can read it.',
    parse: pemFile('private key'),
  },
  {
    key: 'natsAgentAccount',
    env: 'BULWARK_NATS_AGENT_ACCOUNT',
    description:
      'Public key (`A...`) of the NATS account agents connect to. With the three key options below, pairing hands each agent NATS credentials of its own (a user JWT allowing only its subjects) and revoking an agent revokes that user on the account.',
    parse: (raw: string) => (/^A[A-Z2-7]{55}$/.test(raw) ? { value: raw } : { error: 'must be a NATS account public key (A followed by 55 base32 characters)' }),
  },
  {
    key: 'natsAgentSigningKeyFile',
    env: 'BULWARK_NATS_AGENT_SIGNING_KEY_FILE',
    description:
      "File holding the seed (`SA...`) of a signing key of the agents account that signs agents' user JWTs. An unscoped key: a scoped one would replace the per-agent permissions with its template.",
    parse: text(1, 4096),
  },
  {
    key: 'natsOperatorSigningKeyFile',
    env: 'BULWARK_NATS_OPERATOR_SIGNING_KEY_FILE',
    description:
      "File holding the seed (`SO...`) of an operator signing key: it re-signs the agents account's JWT when a revocation is added. Give Bulwark a signing key of its own, not the operator's identity key.",
    parse: text(1, 4096),
  },
  {
    key: 'natsSystemCredsFile',
    env: 'BULWARK_NATS_SYSTEM_CREDS_FILE',
    description: 'Creds file of a system account user: revocations are pushed to the server as account updates (`$SYS.REQ.CLAIMS.UPDATE`, resolver `full`).',
    parse: text(1, 4096),
  },
  {
    key: 'natsAgentServers',
    env: 'BULWARK_NATS_AGENT_SERVERS',
    description: 'Comma-separated NATS URLs handed to agents at pairing (how they reach NATS from their network). Defaults to `BULWARK_NATS_URL` without its credentials.',
    parse: (raw: string) => {
      const servers = raw.split(',').map((server) => server.trim());
      const valid = servers.length <= 16 && servers.every((server) => 'value' in url('nats', 'tls')(server) && new URL(server).username === '' && new URL(server).password === '');
      return valid ? { value: servers } : { error: 'must be up to 16 comma-separated nats:// or tls:// URLs without credentials' };
    },
  },
  {
    key: 'setupToken',
    env: 'BULWARK_SETUP_TOKEN',
    description:
      'Presets the one-time setup token (at least 32 characters) for automation. Unset: one is generated on first start and printed once. Only its hash is stored. `POST /v1/setup` spends it on the first operator; once an operator exists it is ignored.',
    secret: true,
    parse: text(32, 512),
  },
  {
    key: 'logLevel',
    env: 'BULWARK_LOG_LEVEL',
    description: 'Log level of the JSON logs on stdout.',
    default: 'info',
    parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  },
  {
    key: 'regions',
    env: 'BULWARK_REGIONS',
    description: 'Comma-separated regions a tenant may be placed in; the first is the default.',
    default: 'local',
    parse: (raw: string) => {
      const regions = raw.split(',').map((region) => region.trim());
      return regions.every((region) => /^[a-z][a-z0-9-]{0,31}$/.test(region)) && new Set(regions).size === regions.length
        ? { value: regions }
        : { error: 'must be distinct region names (lowercase letters, digits, dashes) separated by commas' };
    },
  },
  {
    key: 'bodyLimitBytes',
    env: 'BULWARK_BODY_LIMIT_BYTES',
    description: 'Largest request body the server reads, in bytes.',
    default: '1048576',
    parse: integer(1024, 64 * 1024 * 1024),
  },
  {
    key: 'recordMaxBytes',
    env: 'BULWARK_RECORD_MAX_BYTES',
    description: 'Largest record body (the JSON of its `data`), in bytes; at least 1024 below `BULWARK_BODY_LIMIT_BYTES`.',
    default: '65536',
    parse: integer(16, 16 * 1024 * 1024),
  },
  {
    key: 'rootKeyProvider',
    env: 'BULWARK_ROOT_KEY_PROVIDER',
    description:
      'Where the root key lives: `local-file` (`<data dir>/root-key.json`, mode 0600, created on first start), `env` (`BULWARK_ROOT_KEY`) or `vault-transit` (HashiCorp Vault / OpenBao transit). Production refuses `local-file` unless `BULWARK_ALLOW_LOCAL_ROOT_KEY=true`.',
    default: 'local-file',
    parse: oneOf('local-file', 'env', 'vault-transit'),
  },
  {
    key: 'allowLocalRootKey',
    env: 'BULWARK_ALLOW_LOCAL_ROOT_KEY',
    description: 'Accept the local key file in production (`true`), knowing that whoever reads the data folder can read every tenant.',
    default: 'false',
    parse: boolean,
  },
  {
    key: 'rootKey',
    env: 'BULWARK_ROOT_KEY',
    description:
      'Root key for the `env` provider: one base64 256-bit key, or versions `1:<base64>,2:<base64>` (the highest encrypts, all decrypt).',
    secret: true,
    parse: text(44, 8192),
  },
  {
    key: 'vaultAddr',
    env: 'BULWARK_VAULT_ADDR',
    description: 'Vault / OpenBao address for the `vault-transit` provider, e.g. `https://vault.internal:8200`.',
    parse: url('http', 'https'),
  },
  {
    key: 'vaultToken',
    env: 'BULWARK_VAULT_TOKEN',
    description: 'Vault token with the transit policy in docs/root-keys.md.',
    secret: true,
    parse: text(1, 4096),
  },
  {
    key: 'vaultTransitMount',
    env: 'BULWARK_VAULT_TRANSIT_MOUNT',
    description: 'Mount path of the transit secrets engine.',
    default: 'transit',
    parse: (raw: string) => (/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(raw) ? { value: raw } : { error: 'must be a mount path' }),
  },
  {
    key: 'vaultTransitKey',
    env: 'BULWARK_VAULT_TRANSIT_KEY',
    description: 'Name of the transit key (type aes256-gcm96) that wraps the tenant data keys.',
    default: 'bulwark-root',
    parse: (raw: string) => (/^[A-Za-z0-9_.-]{1,128}$/.test(raw) ? { value: raw } : { error: 'must be a transit key name' }),
  },
  {
    key: 'vaultNamespace',
    env: 'BULWARK_VAULT_NAMESPACE',
    description: 'Vault Enterprise / HCP namespace, sent as `X-Vault-Namespace`.',
    parse: text(1, 256),
  },
  {
    key: 'keyCacheTtlMs',
    env: 'BULWARK_KEY_CACHE_TTL_MS',
    description:
      'How long unwrapped tenant data keys stay in memory (then dropped; Node cleanses their memory when it frees it). A KMS revocation takes effect for a tenant within this window.',
    default: '60000',
    parse: integer(0, 3_600_000),
  },
  {
    key: 'customerKmsAllowedOrigins',
    env: 'BULWARK_CUSTOMER_KMS_ALLOWED_ORIGINS',
    description:
      'Origins (`https://host:port`, comma-separated) of the Vault / OpenBao servers tenants may use for customer-managed keys (BYOK); the server calls them, so list only what customers need. `*` allows any, `none` turns BYOK off.',
    default: 'none',
    parse: (raw: string) => {
      if (raw === 'none') return { value: [] };
      if (raw === '*') return { value: ['*'] };
      const origins = originList(raw);
      return origins !== undefined ? { value: origins } : { error: 'must be `none`, `*`, or comma-separated origins such as https://vault.example.com:8200' };
    },
  },
  {
    key: 'tokenIssuer',
    env: 'BULWARK_TOKEN_ISSUER',
    description: 'The `iss` (and `aud`) of access tokens: usually the public base URL of this deployment. Every instance must share it.',
    default: 'bulwark',
    parse: text(1, 256),
  },
  {
    key: 'publicUrl',
    env: 'BULWARK_PUBLIC_URL',
    description:
      'The base URL browsers and identity providers reach this deployment at (`https://auth.example.com`): SSO redirect and ACS URLs, SAML entity ids and the default WebAuthn origin are made from it. Unset: `http://localhost:<port>`.',
    parse: (raw: string) => {
      const parsed = url('http', 'https')(raw);
      return 'value' in parsed && new URL(raw).pathname !== '/' ? { error: 'must be a base URL without a path' } : parsed;
    },
  },
  {
    key: 'webauthnRpId',
    env: 'BULWARK_WEBAUTHN_RP_ID',
    description: "The WebAuthn relying-party id: the domain passkeys are bound to (`example.com` covers its subdomains). Unset: the public URL's host.",
    parse: (raw: string) => (/^[a-z0-9.-]{1,253}$/.test(raw) ? { value: raw } : { error: 'must be a domain name' }),
  },
  {
    key: 'webauthnOrigins',
    env: 'BULWARK_WEBAUTHN_ORIGINS',
    description: "Origins a WebAuthn ceremony may come from (comma-separated, exact), e.g. the admin console's. Unset: the public URL's origin.",
    parse: (raw: string) => {
      const origins = originList(raw);
      return origins !== undefined ? { value: origins } : { error: 'must be comma-separated origins such as https://app.example.com' };
    },
  },
  {
    key: 'mfaIssuer',
    env: 'BULWARK_MFA_ISSUER',
    description: 'The name authenticator apps show next to a TOTP code.',
    default: 'Bulwark',
    parse: text(1, 64),
  },
  {
    key: 'dnsServers',
    env: 'BULWARK_DNS_SERVERS',
    description: "DNS servers (comma-separated `ip` or `ip:port`) asked for e-mail domains' verification TXT records. Unset: the system's resolvers.",
    parse: (raw: string) => {
      const servers = raw.split(',').map((server) => server.trim());
      return servers.every((server) => /^[0-9a-f.:[\]]{2,47}$/i.test(server)) ? { value: servers } : { error: 'must be comma-separated addresses such as 10.0.0.2 or 127.0.0.1:5353' };
    },
  },
  {
    key: 'loginAccountMaxFailures',
    env: 'BULWARK_LOGIN_ACCOUNT_MAX_FAILURES',
    description:
      'Failed logins per account (e-mail address, known or not) within 15 minutes before it is locked; from the third on, each check waits twice as long as the last (1 s, 2 s, ...).',
    default: '5',
    parse: integer(3, 100),
  },
  {
    key: 'loginSourceMaxFailures',
    env: 'BULWARK_LOGIN_SOURCE_MAX_FAILURES',
    description: 'Failed logins per source address and tenant within 15 minutes before that address is locked out of every account of the tenant.',
    default: '50',
    parse: integer(5, 100_000),
  },
  {
    key: 'loginLockoutSeconds',
    env: 'BULWARK_LOGIN_LOCKOUT_SECONDS',
    description: 'How long a locked account or source address stays locked (an admin can unlock an account earlier).',
    default: '900',
    parse: integer(60, 86_400),
  },
  {
    key: 'supportGrantMaxHours',
    env: 'BULWARK_SUPPORT_GRANT_MAX_HOURS',
    description: 'The longest support-access grant a tenant admin may give platform operators (hours).',
    default: '72',
    parse: integer(1, 720),
  },
  {
    key: 'agentPairingTtlSeconds',
    env: 'BULWARK_AGENT_PAIRING_TTL_SECONDS',
    description: 'How long a new agent pairing code may be used, unless its creator gives `ttlSeconds` (60 to 3600).',
    default: '600',
    parse: integer(60, 3600),
  },
  {
    key: 'agentPairingMaxLiveCodes',
    env: 'BULWARK_AGENT_PAIRING_MAX_LIVE_CODES',
    description:
      'Unexpired pairing codes one tenant may hold at once. Every live code is a target for guessing (docs/agents.md works out the odds), so keep it small.',
    default: '20',
    parse: integer(1, 100_000),
  },
  {
    key: 'agentPairingMaxFailures',
    env: 'BULWARK_AGENT_PAIRING_MAX_FAILURES',
    description:
      'Wrong pairing codes per client address within BULWARK_AGENT_PAIRING_WINDOW_SECONDS; past it the address is refused (429 too_many_attempts), right codes included, until the window ends.',
    default: '10',
    parse: integer(1, 10_000),
  },
  {
    key: 'agentPairingWindowSeconds',
    env: 'BULWARK_AGENT_PAIRING_WINDOW_SECONDS',
    description: "The window of BULWARK_AGENT_PAIRING_MAX_FAILURES: it starts at an address's first attempt (right codes do not reset it).",
    default: '900',
    parse: integer(60, 86_400),
  },
  {
    key: 'agentStaleSeconds',
    env: 'BULWARK_AGENT_STALE_SECONDS',
    description: 'An active agent silent this long (no heartbeat, health or stats report) is stale; its next report clears it.',
    default: '90',
    parse: integer(10, 86_400),
  },
  {
    key: 'agentStaleSweepSeconds',
    env: 'BULWARK_AGENT_STALE_SWEEP_SECONDS',
    description: 'How often agents gone silent are marked stale (each audited once, as `agent.stale`); 0: never on a timer.',
    default: '30',
    parse: integer(0, 3600),
  },
  {
    key: 'agentCertificateDays',
    env: 'BULWARK_AGENT_CERTIFICATE_DAYS',
    description:
      "Lifetime in days of the client certificates agents get at pairing and renewal (mutual TLS with the gateway, docs/agents.md). `bulwark agent run --mtls` renews once two thirds of it have passed.",
    default: '30',
    parse: integer(1, 90),
  },
  {
    key: 'accessTokenTtlSeconds',
    env: 'BULWARK_ACCESS_TOKEN_TTL_SECONDS',
    description: 'Lifetime of an access token (JWT), 5 to 15 minutes; refresh tokens renew it.',
    default: '600',
    parse: integer(300, 900),
  },
  {
    key: 'authCacheTtlMs',
    env: 'BULWARK_AUTH_CACHE_TTL_MS',
    description:
      'How long a verified credential, a session\'s liveness, a tenant\'s status and limits and a user\'s roles stay cached in memory. A revocation or suspension on another instance takes effect there at once over the bus (`bulwark.internal.invalidate`), and within this window when the instance missed it (NATS down).',
    default: '5000',
    parse: integer(0, 60000),
  },
  {
    key: 'auditCheckpointIntervalSeconds',
    env: 'BULWARK_AUDIT_CHECKPOINT_INTERVAL_SECONDS',
    description:
      'How often every audit chain that moved is pinned by a signed checkpoint (0: never on a timer). Cutting the tail of a chain after its last checkpoint and rewriting the head goes unnoticed, so this bounds what such an attack can hide.',
    default: '60',
    parse: integer(0, 86_400),
  },
  {
    key: 'auditPruneIntervalSeconds',
    env: 'BULWARK_AUDIT_PRUNE_INTERVAL_SECONDS',
    description: 'How often audit events past their retention period are pruned (0: never on a timer).',
    default: '3600',
    parse: integer(0, 604_800),
  },
  {
    key: 'auditBus',
    env: 'BULWARK_AUDIT_BUS',
    description:
      'Publish every committed audit event on the bus, in order: `bulwark.t.<tenantId>.audit` and `bulwark.platform.audit` (with NATS, SIEMs and other consumers subscribe there with their own account permissions; with the in-process bus, in-process subscribers only).',
    default: 'false',
    parse: boolean,
  },
  {
    key: 'auditWebhookUrl',
    env: 'BULWARK_AUDIT_WEBHOOK_URL',
    description:
      'Optional sink: every committed audit event, of every chain, is POSTed here in order (batches of up to 100, JSON), signed with BULWARK_AUDIT_WEBHOOK_SECRET, retried with backoff until a 2xx. At least once: receivers drop repeats by event id.',
    secret: true,
    parse: url('https', 'http'),
  },
  {
    key: 'auditWebhookSecret',
    env: 'BULWARK_AUDIT_WEBHOOK_SECRET',
    description:
      'HMAC-SHA256 key for the audit webhook (at least 32 characters): `x-bulwark-signature: t=<unix seconds>,v1=<hex HMAC of "<t>.<body>">`. Required with BULWARK_AUDIT_WEBHOOK_URL.',
    secret: true,
    parse: text(32, 512),
  },
  {
    key: 'shutdownTimeoutMs',
    env: 'BULWARK_SHUTDOWN_TIMEOUT_MS',
    description: 'How long a graceful shutdown waits for in-flight requests before closing anyway.',
    default: '10000',
    parse: integer(0, 600000),
  },
  {
    key: 'backupTargets',
    env: 'BULWARK_BACKUP_TARGETS',
    description:
      'Where backups go, per region: `region=url` pairs separated by commas. A url is `file:///absolute/folder` or `s3://bucket/prefix` (optional query: `endpoint`, `region`, `forcePathStyle=true`; credentials from the AWS SDK chain). A tenant\'s backup segments and key escrow go only to its region\'s target; the platform segment and manifests to the first region\'s. Every configured region needs one. Default: `<dataDir>/backups/<region>` for each region.',
    parse: backupTargets,
  },
  {
    key: 'backupSchedule',
    env: 'BULWARK_BACKUP_SCHEDULE',
    description:
      'When scheduled backups run: a cron expression in UTC of 5 fields, or 6 with seconds first (`*/30 * * * * *`), or `off`. Each schedule slot is backed up once, across every instance; one instance (the leader) runs them, and looks again at the next slot or after a minute, whichever comes first.',
    default: '0 3 * * *',
    parse: (raw) => {
      const value = raw.trim();
      if (value === 'off') return { value };
      try {
        assertValidSchedule(value);
        return { value };
      } catch (error) {
        return { error: `must be a cron expression (5 fields, or 6 with seconds first) or off: ${(error as Error).message}` };
      }
    },
  },
  {
    key: 'backupKeepDailyDays',
    env: 'BULWARK_BACKUP_KEEP_DAILY_DAYS',
    description: 'Retention: the newest backup of each of the last N days (UTC) is kept.',
    default: '7',
    parse: integer(1, 3650),
  },
  {
    key: 'backupKeepWeeklyWeeks',
    env: 'BULWARK_BACKUP_KEEP_WEEKLY_WEEKS',
    description: 'Retention: the newest backup of each of the last M ISO weeks is kept as well (0: none beyond the dailies). Everything else is pruned, audited.',
    default: '4',
    parse: integer(0, 520),
  },
  {
    key: 'offboardingGraceHours',
    env: 'BULWARK_OFFBOARDING_GRACE_HOURS',
    description: 'How long after an offboarding request (`DELETE /v1/tenants/{t}`) it can be confirmed; until then it can be cancelled and nothing is destroyed.',
    default: '72',
    parse: integer(0, 8760),
  },
  {
    key: 'offboardingAuditArchive',
    env: 'BULWARK_OFFBOARDING_AUDIT_ARCHIVE',
    description: "Before a tenant's data is destroyed, export its audit chain (as stored: hashes intact, personal data sealed) to the operator archive in its region's backup target (`archive/<tenantId>/`).",
    default: 'false',
    parse: boolean,
  },
];
