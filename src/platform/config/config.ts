import { readFileSync } from 'node:fs';
import type { Limit } from '../../modules/limits/policy.ts';
import type { Rate } from '../../modules/limits/rate-store.ts';
import { sslModeOf } from '../db/postgres-tls.ts';
import { keyMatchesCertificate, type PemFile } from './pem-file.ts';
import { optionSpecs } from './spec.ts';

export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
  readonly databaseAdminUrl: string | undefined;
  readonly databaseAppRole: string;
  readonly databasePoolMax: number;
  readonly databaseTlsCaFile: PemFile | undefined;
  readonly databaseTlsCertFile: PemFile | undefined;
  readonly databaseTlsKeyFile: PemFile | undefined;
  readonly allowUnverifiedDatabaseTls: boolean;
  readonly redisUrl: string | undefined;
  readonly redisTlsCaFile: PemFile | undefined;
  readonly redisTlsCertFile: PemFile | undefined;
  readonly redisTlsKeyFile: PemFile | undefined;
  readonly redisTimeoutMs: number;
  readonly rateLimitRedisFailure: 'local' | 'open' | 'closed';
  readonly allowMemoryRateLimits: boolean;
  readonly rateLimitRequests: Limit<Rate>;
  readonly rateLimitLogin: Limit<Rate>;
  readonly rateLimitCrypto: Limit<Rate>;
  readonly rateLimitExport: Limit<Rate>;
  readonly rateLimitAnonymous: Limit<Rate>;
  readonly rateLimitOperator: Limit<Rate>;
  readonly quotaRecords: Limit<number>;
  readonly quotaRecordBytes: Limit<number>;
  readonly quotaApiKeys: Limit<number>;
  readonly quotaUsers: Limit<number>;
  readonly tenantMaxConcurrentRequests: Limit<number>;
  readonly databaseTenantMaxConnections: number | undefined;
  readonly databaseStatementTimeoutMs: number;
  readonly headersTimeoutSeconds: number;
  readonly requestTimeoutSeconds: number;
  readonly trustProxy: false | number | readonly string[];
  readonly tls: 'off' | 'on';
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  readonly tlsHostnames: readonly string[] | undefined;
  readonly tlsCertDays: number;
  readonly tlsClientCerts: 'request' | 'off';
  readonly corsOrigins: readonly string[] | undefined;
  readonly metricsPort: number | undefined;
  readonly metricsHost: string;
  readonly natsUrl: string | undefined;
  readonly natsCredsFile: string | undefined;
  readonly natsTlsCaFile: PemFile | undefined;
  readonly natsTlsCertFile: PemFile | undefined;
  readonly natsTlsKeyFile: PemFile | undefined;
  readonly natsAgentAccount: string | undefined;
  readonly natsAgentSigningKeyFile: string | undefined;
  readonly natsOperatorSigningKeyFile: string | undefined;
  readonly natsSystemCredsFile: string | undefined;
  readonly natsAgentServers: readonly string[] | undefined;
  readonly setupToken: string | undefined;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly regions: readonly string[];
  readonly bodyLimitBytes: number;
  readonly recordMaxBytes: number;
  readonly rootKeyProvider: 'local-file' | 'env' | 'vault-transit';
  readonly allowLocalRootKey: boolean;
  readonly rootKey: string | undefined;
  readonly vaultAddr: string | undefined;
  readonly vaultToken: string | undefined;
  readonly vaultTransitMount: string;
  readonly vaultTransitKey: string;
  readonly vaultNamespace: string | undefined;
  readonly keyCacheTtlMs: number;
  readonly customerKmsAllowedOrigins: readonly string[];
  readonly tokenIssuer: string;
  readonly publicUrl: string | undefined;
  readonly webauthnRpId: string | undefined;
  readonly webauthnOrigins: readonly string[] | undefined;
  readonly mfaIssuer: string;
  readonly dnsServers: readonly string[] | undefined;
  readonly loginAccountMaxFailures: number;
  readonly loginSourceMaxFailures: number;
  readonly loginLockoutSeconds: number;
  readonly supportGrantMaxHours: number;
  readonly agentPairingTtlSeconds: number;
  readonly agentPairingMaxLiveCodes: number;
  readonly agentPairingMaxFailures: number;
  readonly agentPairingWindowSeconds: number;
  readonly agentStaleSeconds: number;
  readonly agentStaleSweepSeconds: number;
  readonly agentCertificateDays: number;
  readonly accessTokenTtlSeconds: number;
  readonly authCacheTtlMs: number;
  readonly auditCheckpointIntervalSeconds: number;
  readonly auditPruneIntervalSeconds: number;
  readonly auditBus: boolean;
  readonly auditWebhookUrl: string | undefined;
  readonly auditWebhookSecret: string | undefined;
  readonly shutdownTimeoutMs: number;
  readonly backupTargets: Readonly<Record<string, string>> | undefined;
  readonly backupSchedule: string;
  readonly backupKeepDailyDays: number;
  readonly backupKeepWeeklyWeeks: number;
  readonly offboardingGraceHours: number;
  readonly offboardingAuditArchive: boolean;
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Source = Readonly<Record<string, string | undefined>>;

/**
 * Builds the configuration from the environment and the optional JSON file named by BULWARK_CONFIG_FILE
 * (environment wins). Every problem is reported together; the result is frozen.
 */
export function loadConfig(environment: Source = process.env, overrides: Partial<Record<keyof Config, string>> = {}): Config {
  const problems: string[] = [];
  const file = readConfigFile(environment['BULWARK_CONFIG_FILE'], problems);
  const values: Record<string, unknown> = {};

  for (const spec of optionSpecs) {
    // An empty value counts as unset, so `BULWARK_PORT=` falls back to the file or the default.
    const raw = [overrides[spec.key], environment[spec.env], file[spec.key], spec.default].find((value) => value !== undefined && value !== '');
    if (raw === undefined) continue;
    const parsed = spec.parse(raw);
    if ('error' in parsed) problems.push(`${spec.env} ${parsed.error}${spec.secret ? '' : ` (got ${JSON.stringify(raw)})`}`);
    else values[spec.key] = parsed.value;
  }
  const { bodyLimitBytes, recordMaxBytes } = values as { bodyLimitBytes?: number; recordMaxBytes?: number };
  if (bodyLimitBytes !== undefined && recordMaxBytes !== undefined && recordMaxBytes + 1024 > bodyLimitBytes) {
    problems.push('BULWARK_RECORD_MAX_BYTES must be at least 1024 below BULWARK_BODY_LIMIT_BYTES (room for the request envelope)');
  }
  const required: Partial<Record<string, string[]>> = {
    env: ['rootKey:BULWARK_ROOT_KEY'],
    'vault-transit': ['vaultAddr:BULWARK_VAULT_ADDR', 'vaultToken:BULWARK_VAULT_TOKEN'],
  };
  for (const needed of required[String(values['rootKeyProvider'])] ?? []) {
    const [key = '', env = ''] = needed.split(':');
    if (values[key] === undefined) problems.push(`${env} is required when BULWARK_ROOT_KEY_PROVIDER=${String(values['rootKeyProvider'])}`);
  }
  if ((values['tlsCertFile'] === undefined) !== (values['tlsKeyFile'] === undefined)) {
    problems.push('BULWARK_TLS_CERT_FILE and BULWARK_TLS_KEY_FILE go together: set both or neither');
  }
  // Certificate files with TLS off would serve plain HTTP while the operator believes otherwise.
  if (values['tls'] === 'off' && (values['tlsCertFile'] !== undefined || values['tlsKeyFile'] !== undefined)) {
    problems.push('BULWARK_TLS_CERT_FILE and BULWARK_TLS_KEY_FILE are served only with BULWARK_TLS=on: set it, or unset the files');
  }
  if (values['tlsHostnames'] !== undefined && (values['tls'] === 'off' || values['tlsCertFile'] !== undefined)) {
    problems.push('BULWARK_TLS_HOSTNAMES names the self-managed certificate: it needs BULWARK_TLS=on without BULWARK_TLS_CERT_FILE');
  }
  const { headersTimeoutSeconds, requestTimeoutSeconds } = values as { headersTimeoutSeconds?: number; requestTimeoutSeconds?: number };
  if (headersTimeoutSeconds !== undefined && requestTimeoutSeconds !== undefined && headersTimeoutSeconds > requestTimeoutSeconds) {
    problems.push('BULWARK_HEADERS_TIMEOUT_SECONDS must not exceed BULWARK_REQUEST_TIMEOUT_SECONDS');
  }
  const { backupTargets, regions } = values as { backupTargets?: Record<string, string>; regions?: string[] };
  if (backupTargets !== undefined && regions !== undefined) {
    const missing = regions.filter((region) => !Object.hasOwn(backupTargets, region));
    const unknown = Object.keys(backupTargets).filter((region) => !regions.includes(region));
    if (missing.length > 0) problems.push(`BULWARK_BACKUP_TARGETS has no target for region ${missing.join(', ')}: a tenant's backups must stay in its region`);
    if (unknown.length > 0) problems.push(`BULWARK_BACKUP_TARGETS names region ${unknown.join(', ')}, which BULWARK_REGIONS does not list`);
  }
  // Minting and revoking agents' NATS users needs all of the agent signing material, and NATS itself.
  const natsAgentOptions: [keyof Config, string][] = [
    ['natsAgentAccount', 'BULWARK_NATS_AGENT_ACCOUNT'],
    ['natsAgentSigningKeyFile', 'BULWARK_NATS_AGENT_SIGNING_KEY_FILE'],
    ['natsOperatorSigningKeyFile', 'BULWARK_NATS_OPERATOR_SIGNING_KEY_FILE'],
    ['natsSystemCredsFile', 'BULWARK_NATS_SYSTEM_CREDS_FILE'],
  ];
  const natsAgentSet = natsAgentOptions.filter(([key]) => values[key] !== undefined).length;
  if (natsAgentSet > 0 && natsAgentSet < natsAgentOptions.length) problems.push(`${natsAgentOptions.map(([, env]) => env).join(', ')} go together: set all or none`);
  const natsOptions: [keyof Config, string][] = [...natsAgentOptions, ['natsCredsFile', 'BULWARK_NATS_CREDS_FILE'], ['natsAgentServers', 'BULWARK_NATS_AGENT_SERVERS']];
  for (const [key, env] of natsOptions) {
    if (values[key] !== undefined && values['natsUrl'] === undefined) problems.push(`${env} needs BULWARK_NATS_URL`);
  }
  problems.push(...storeTlsProblems(values));
  if ((values['auditWebhookUrl'] === undefined) !== (values['auditWebhookSecret'] === undefined)) {
    problems.push('BULWARK_AUDIT_WEBHOOK_URL and BULWARK_AUDIT_WEBHOOK_SECRET go together: set both or neither');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(values) as unknown as Config;
}

/**
 * The data stores' TLS files must be used by the URL they go with (files the URL ignores would leave the
 * operator believing in TLS that is not there), a client certificate comes with its key, and verify-ca
 * comes with a CA of its own.
 */
function storeTlsProblems(values: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const urlOf = (key: string) => (typeof values[key] === 'string' ? values[key] : undefined);
  const sslModes = [urlOf('databaseUrl'), urlOf('databaseAdminUrl')].flatMap((url) => {
    const checked = url === undefined ? undefined : sslModeOf(url);
    return checked !== undefined && 'mode' in checked ? [checked.mode] : [];
  });
  const stores = [
    { store: 'DATABASE', prefix: 'databaseTls', usesTls: sslModes.some((mode) => mode !== 'disable'), needs: 'sslmode=require, verify-ca or verify-full in BULWARK_DATABASE_URL' },
    { store: 'REDIS', prefix: 'redisTls', usesTls: /^rediss:/i.test(urlOf('redisUrl') ?? ''), needs: 'a rediss:// BULWARK_REDIS_URL' },
    { store: 'NATS', prefix: 'natsTls', usesTls: /^tls:/i.test(urlOf('natsUrl') ?? ''), needs: 'a tls:// BULWARK_NATS_URL' },
  ];
  for (const { store, prefix, usesTls, needs } of stores) {
    const [ca, cert, key] = (['CaFile', 'CertFile', 'KeyFile'] as const).map((suffix) => values[`${prefix}${suffix}`] as PemFile | undefined);
    const env = (name: string) => `BULWARK_${store}_TLS_${name}_FILE`;
    const given = [ca === undefined ? [] : [env('CA')], cert === undefined ? [] : [env('CERT')], key === undefined ? [] : [env('KEY')]].flat();
    if (given.length > 0 && !usesTls) problems.push(`${given.join(', ')} ${given.length === 1 ? 'needs' : 'need'} ${needs}`);
    if ((cert === undefined) !== (key === undefined)) problems.push(`${env('CERT')} and ${env('KEY')} go together: set both or neither`);
    else if (cert !== undefined && key !== undefined && !keyMatchesCertificate(cert, key)) problems.push(`${env('KEY')} is not the private key of ${env('CERT')}`);
  }
  if (sslModes.includes('verify-ca') && values['databaseTlsCaFile'] === undefined) {
    problems.push('sslmode=verify-ca needs BULWARK_DATABASE_TLS_CA_FILE: against the public CAs, a certificate issued to anyone for any name would pass');
  }
  return problems;
}

function readConfigFile(path: string | undefined, problems: string[]): Record<string, string> {
  if (path === undefined || path === '') return {};
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    problems.push(`BULWARK_CONFIG_FILE ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    return {};
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    // JSON.parse quotes the text around the error, which may be a secret: say only that it is invalid.
    problems.push(`BULWARK_CONFIG_FILE ${path} is not valid JSON`);
    return {};
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    problems.push(`BULWARK_CONFIG_FILE ${path} must hold a JSON object`);
    return {};
  }
  const known = new Set<string>(optionSpecs.map((spec) => spec.key));
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(document)) {
    if (!known.has(key)) problems.push(`BULWARK_CONFIG_FILE has unknown option "${key}"`);
    else if (typeof value === 'string' || typeof value === 'number') values[key] = String(value);
    else if (Array.isArray(value) && value.every((item) => typeof item === 'string')) values[key] = value.join(',');
    else problems.push(`BULWARK_CONFIG_FILE option "${key}" must be a string or a number`);
  }
  return values;
}
