import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import https from 'node:https';
import { cpus, freemem, hostname, loadavg, totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect, credsAuthenticator, Events, NatsError, type NatsConnection } from 'nats';
import { type AgentBusCredentials, agentSubjects } from '../../modules/bus/access.ts';
import { natsTls } from '../../modules/bus/nats.ts';
import { UsageError, withUsage } from '../usage.ts';

const agentUsage = `Usage: bulwark agent pair --server <url> --code <code> [--name <name>] [--state <file>]
       bulwark agent run [--state <file>] [--interval <seconds>] [--mtls]

pair  Generates the agent's Ed25519 key pair, pairs with the tenant's one-time code and writes the state
      file (agent id, tenant id, agent token, bus credentials, client certificate, private key) with mode
      0600. An existing state file is never overwritten.
run   Reports to the server from the state file: a heartbeat every interval, health and stats every fifth
      one. Over NATS with the agent's own credentials when pairing gave them, else through the server's
      HTTP gateway. It only connects out; when the server or the bus goes away it retries with capped
      exponential backoff and jitter. SIGTERM or SIGINT stops it.

Options:
  --server <url>            The Bulwark API (https://...; http:// only to this machine)
  --code <code>             The pairing code from POST /v1/tenants/{tenantId}/agents/pairing-codes
  --name <name>             The agent's name (default: the host name)
  --state <file>            The state file (default: ./bulwark-agent.json)
  --interval <seconds>      Seconds between heartbeats, 1-3600 (default: 30)
  --mtls                    Report through the gateway over HTTPS with the agent's client certificate
                            instead of its token (also when pairing gave NATS credentials); the
                            certificate is renewed once two thirds of its lifetime have passed
  -h, --help                Show this help

Exit codes: 0 paired, or stopped by a signal; 1 failed; 2 usage error; 3 refused (a wrong, spent or expired
code; a revoked agent); 4 the state file is readable by others.`;

/** The client certificate pairing or a renewal issued (public data; its key is the agent's private key). */
interface AgentCertificate {
  certificate: string;
  caCertificate: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
}

interface AgentState {
  version: 1;
  server: string;
  agentId: string;
  tenantId: string;
  name: string;
  token: string;
  bus: AgentBusCredentials;
  /** Absent in state files from before agent certificates; `run --mtls` then gets one with the token. */
  certificate?: AgentCertificate | null;
  publicKey: { type: 'ed25519'; key: string };
  privateKey: string;
  pairedAt: string;
}

type Invocation =
  | { verb: 'pair'; server: URL; code: string; name: string; state: string }
  | { verb: 'run'; state: string; intervalMs: number; mtls: boolean };

const defaultState = 'bulwark-agent.json';
const loopbackHosts = new Set(['localhost', '127.0.0.1', '[::1]']);
const healthEvery = 5;
const backoffBaseMs = 500;
const backoffCapMs = 30_000;

/** `bulwark agent pair | run`: the agent program. It talks to Bulwark over HTTP and the bus only. */
export async function runAgent(args: string[]): Promise<number> {
  return withUsage(args, agentUsage, parseInvocation, (invocation) => (invocation.verb === 'pair' ? pair(invocation) : run(invocation)));
}

function parseInvocation(args: string[]): Invocation | 'help' {
  const [verb, ...rest] = args;
  if (verb === '--help' || verb === '-h' || verb === 'help') return 'help';
  if (verb !== 'pair' && verb !== 'run') throw new UsageError(verb === undefined ? 'Missing agent subcommand.' : `Unknown agent subcommand: ${verb}`);
  let values: { server?: string; code?: string; name?: string; state?: string; interval?: string; mtls?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        server: { type: 'string' },
        code: { type: 'string' },
        name: { type: 'string' },
        state: { type: 'string' },
        interval: { type: 'string' },
        mtls: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) throw new UsageError(`bulwark agent ${verb}: ${error.message}`);
    throw error;
  }
  if (values.help === true) return 'help';
  const state = values.state ?? defaultState;
  if (verb === 'run') {
    if (values.server !== undefined || values.code !== undefined || values.name !== undefined) throw new UsageError('bulwark agent run takes --state, --interval and --mtls only.');
    const interval = values.interval ?? '30';
    if (!/^\d{1,4}$/.test(interval) || Number(interval) < 1 || Number(interval) > 3600) throw new UsageError('bulwark agent run: --interval must be 1 to 3600 seconds.');
    return { verb, state, intervalMs: Number(interval) * 1000, mtls: values.mtls === true };
  }
  if (values.interval !== undefined || values.mtls !== undefined) throw new UsageError('bulwark agent pair takes no --interval or --mtls.');
  if (values.server === undefined || values.code === undefined) throw new UsageError('bulwark agent pair needs --server and --code.');
  let server: URL;
  try {
    server = new URL(values.server);
  } catch {
    throw new UsageError('bulwark agent pair: --server must be a URL.');
  }
  // The code and then the token travel to this address: in clear only to this machine.
  if (server.protocol !== 'https:' && !(server.protocol === 'http:' && loopbackHosts.has(server.hostname))) {
    throw new UsageError('bulwark agent pair: --server must be https:// (http:// only to localhost).');
  }
  const name = (values.name ?? hostname()).slice(0, 100);
  return { verb, server, code: values.code, name: name.trim() === '' ? 'agent' : name, state };
}

// --- pair ---

async function pair({ server, code, name, state }: Extract<Invocation, { verb: 'pair' }>): Promise<number> {
  // Checked before the code is spent: a code used for a pairing whose state cannot be kept is lost.
  if (existsSync(state)) {
    process.stderr.write(`bulwark agent pair: ${state} exists; this machine is paired already (remove the file to pair again).\n`);
    return 1;
  }
  const keys = generateKeyPairSync('ed25519');
  const publicKey = { type: 'ed25519' as const, key: keys.publicKey.export({ format: 'jwk' }).x ?? '' };
  const response = await fetch(new URL('/v1/agents/pair', server), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code, name, publicKey }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await response.json().catch(() => null)) as {
    agentId?: string;
    tenantId?: string;
    name?: string;
    credentials?: { token: string; bus: AgentBusCredentials };
    certificate?: AgentCertificate | null;
    code?: string;
    detail?: string;
  } | null;
  if (response.status !== 201 || body?.credentials === undefined || body.agentId === undefined || body.tenantId === undefined) {
    process.stderr.write(`bulwark agent pair: the server refused: ${response.status} ${body?.code ?? ''} ${body?.detail ?? ''}\n`);
    return response.status === 401 || response.status === 429 ? 3 : 1;
  }
  const issued = body.certificate ?? null;
  const agentState: AgentState = {
    version: 1,
    server: server.origin,
    agentId: body.agentId,
    tenantId: body.tenantId,
    name: body.name ?? name,
    token: body.credentials.token,
    bus: body.credentials.bus,
    certificate: issued,
    publicKey,
    privateKey: keys.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    pairedAt: new Date().toISOString(),
  };
  writePrivateFile(state, stateText(agentState));
  const certificate = issued === null ? '' : `; client certificate until ${issued.notAfter}`;
  process.stdout.write(`Paired agent ${agentState.agentId} into tenant ${agentState.tenantId} (bus: ${agentState.bus.kind}${certificate}); state in ${state} (mode 0600).\n`);
  return 0;
}

const stateText = (state: AgentState) => `${JSON.stringify(state, null, 2)}\n`;

/**
 * Replaces the state file as a whole: a private file next to it, synced, renamed over it. A crash leaves
 * the old state or the new one, never half of either.
 */
function replacePrivateFile(path: string, text: string): void {
  const next = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writePrivateFile(next, text);
    renameSync(next, path);
  } finally {
    rmSync(next, { force: true });
  }
}

/** Created with mode 0600 and never over an existing file (O_EXCL), so no other user ever reads it. */
function writePrivateFile(path: string, text: string): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// --- run ---

/** The server or NATS refuses the agent itself (revoked, suspended): retrying will not help. */
class Refused extends Error {
  override readonly name = 'Refused';
}

/** One way to the bus: publish a report, or throw (Refused: stop; anything else: retry later). */
interface Transport {
  send(subject: string, payload: unknown): Promise<void>;
  close(): Promise<void>;
}

async function run({ state: path, intervalMs, mtls }: Extract<Invocation, { verb: 'run' }>): Promise<number> {
  if (!existsSync(path)) {
    process.stderr.write(`bulwark agent run: no state file at ${path}; pair first (bulwark agent pair).\n`);
    return 1;
  }
  const mode = statSync(path).mode;
  if ((mode & 0o077) !== 0) {
    process.stderr.write(`bulwark agent run: ${path} is readable by other users (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${path} first.\n`);
    return 4;
  }
  let state = JSON.parse(readFileSync(path, 'utf8')) as AgentState;
  if (mtls && !state.server.startsWith('https:')) {
    process.stderr.write(`bulwark agent run: --mtls needs an https:// server; this agent paired with ${state.server}.\n`);
    return 1;
  }
  const subjects = agentSubjects(state.tenantId, state.agentId);
  const stop = new AbortController();
  // A function, not the property: the signal flips while the loop awaits.
  const stopped = () => stop.signal.aborted;
  const onSignal = () => stop.abort();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const log = (message: string) => process.stderr.write(`bulwark agent ${state.agentId}: ${message}\n`);
  const way = mtls ? `the HTTPS gateway of ${state.server} with its client certificate` : state.bus.kind === 'nats' ? 'NATS' : `the HTTP gateway of ${state.server}`;
  log(`reporting every ${intervalMs / 1000} s over ${way}`);

  let transport: Transport | undefined;
  let failures = 0;
  let round = 0;
  let nextRenewalAt = 0;
  try {
    while (!stopped()) {
      try {
        if (mtls && Date.now() >= nextRenewalAt && renewalDue(state.certificate, Date.now())) {
          try {
            const certificate = await renewCertificate(state, stop.signal);
            // Kept on disk before it is used: a restart never falls back to a certificate the agent replaced.
            replacePrivateFile(path, stateText({ ...state, certificate }));
            state = { ...state, certificate };
            log(`client certificate renewed, valid until ${certificate.notAfter}`);
            // The next connection presents the new certificate.
            await transport?.close();
            transport = undefined;
          } catch (error) {
            // While the current certificate still works, reporting goes on and renewal is tried again later.
            if (error instanceof Refused || !usable(state.certificate, Date.now())) throw error;
            nextRenewalAt = Date.now() + renewalRetryMs;
            log(`cannot renew the client certificate (${error instanceof Error ? error.message : String(error)}); trying again in ${renewalRetryMs / 60_000} minutes`);
          }
        }
        transport ??= await openTransport(state, mtls, stop.signal, log);
        await transport.send(subjects.heartbeat, { sentAt: new Date().toISOString(), uptimeSeconds: Math.floor(process.uptime()), version: 'bulwark-agent/1' });
        if (round % healthEvery === 0) {
          await transport.send(subjects.health, healthNow());
          await transport.send(subjects.stats, statsNow());
        }
        if (failures > 0) log('reconnected');
        if (round === 0 || failures > 0) log('report sent');
        failures = 0;
        round += 1;
        await sleep(intervalMs, undefined, { signal: stop.signal });
      } catch (error) {
        if (stopped()) break;
        if (error instanceof Refused) {
          log(`${error.message}; stopping`);
          return 3;
        }
        const delayMs = backoff(failures);
        failures += 1;
        // A fresh connection next time: the old one may be gone (NATS) and holds nothing worth keeping.
        await transport?.close();
        transport = undefined;
        log(`cannot report (${error instanceof Error ? error.message : String(error)}); retrying in ${(delayMs / 1000).toFixed(1)} s`);
        await sleep(delayMs, undefined, { signal: stop.signal }).catch(() => undefined);
      }
    }
    log('stopped');
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await transport?.close();
  }
}

/** Exponential from 0.5 s, capped at 30 s, with equal jitter: half the step fixed, half random. */
export function backoff(failures: number): number {
  const step = Math.min(backoffCapMs, backoffBaseMs * 2 ** Math.min(failures, 16));
  return step / 2 + Math.random() * (step / 2);
}

async function openTransport(state: AgentState, mtls: boolean, signal: AbortSignal, log: (message: string) => void): Promise<Transport> {
  if (mtls) return gatewayTransport(state, { tls: clientCertificateAgent(state) }, signal);
  return state.bus.kind === 'nats' ? openNats(state.bus, state, log) : gatewayTransport(state, { token: state.token }, signal);
}

/** How a request to the server proves the agent: its token, or its client certificate in the TLS handshake. */
type Credential = { token: string } | { tls: https.Agent };

interface Answer {
  status: number;
  body: ({ code?: string } & Record<string, unknown>) | null;
}

/** Connections presenting the agent's client certificate (the server's own is checked as usual: system CAs and NODE_EXTRA_CA_CERTS). */
function clientCertificateAgent(state: AgentState): https.Agent {
  if (state.certificate == null) throw new Error('the state file holds no client certificate');
  return new https.Agent({ cert: state.certificate.certificate, key: state.privateKey, keepAlive: true });
}

/** POSTs JSON (or nothing) to the server with the agent's credential; 10 s for the answer. */
async function post(url: URL, credential: Credential, payload: unknown, signal: AbortSignal): Promise<Answer> {
  const body = payload === undefined ? undefined : JSON.stringify(payload);
  const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
  const deadline = AbortSignal.any([signal, AbortSignal.timeout(10_000)]);
  if ('token' in credential) {
    const response = await fetch(url, { method: 'POST', headers: { ...headers, authorization: `Bearer ${credential.token}` }, ...(body === undefined ? {} : { body }), signal: deadline });
    return { status: response.status, body: response.status === 204 ? null : ((await response.json().catch(() => null)) as Answer['body']) };
  }
  return new Promise((resolve, reject) => {
    const request = https.request(url, { method: 'POST', agent: credential.tls, headers, signal: deadline }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: Answer['body'] = null;
        try {
          parsed = text === '' ? null : (JSON.parse(text) as Answer['body']);
        } catch {
          // Not JSON (a proxy's error page): the status says enough.
        }
        resolve({ status: response.statusCode ?? 0, body: parsed });
      });
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** The credential is unknown, expired or revoked, or the tenant is suspended: retrying will not help. */
function refusal(answer: Answer): Refused | undefined {
  if (answer.status === 401 || (answer.status === 403 && answer.body?.code === 'tenant_suspended')) return new Refused(`the server refused the agent (${answer.status} ${answer.body?.code ?? ''})`);
  return undefined;
}

function gatewayTransport(state: AgentState, credential: Credential, signal: AbortSignal): Transport {
  const url = new URL(`/v1/agents/${state.agentId}/messages`, state.server);
  return {
    async send(subject, payload) {
      const answer = await post(url, credential, { subject, payload }, signal);
      if (answer.status === 204) return;
      throw refusal(answer) ?? new Error(`the server answered ${answer.status} ${answer.body?.code ?? ''}`);
    },
    close: () => {
      if ('tls' in credential) credential.tls.destroy();
      return Promise.resolve();
    },
  };
}

// --- the client certificate ---

/** After a failed renewal, while the certificate still works. */
const renewalRetryMs = 5 * 60_000;

function usable(certificate: AgentCertificate | null | undefined, now: number): certificate is AgentCertificate {
  return certificate != null && Date.parse(certificate.notBefore) <= now && now < Date.parse(certificate.notAfter);
}

/** Renewal is due once two thirds of the certificate's lifetime have passed (or there is none yet). */
export function renewalDue(certificate: AgentCertificate | null | undefined, now: number): boolean {
  if (certificate == null) return true;
  const from = Date.parse(certificate.notBefore);
  return now >= from + ((Date.parse(certificate.notAfter) - from) * 2) / 3;
}

/**
 * A fresh client certificate from `POST /v1/agents/{agentId}/certificate`, asked with the current one while
 * it works, else with the token (a state file from before certificates, or one whose certificate expired).
 */
async function renewCertificate(state: AgentState, signal: AbortSignal): Promise<AgentCertificate> {
  const url = new URL(`/v1/agents/${state.agentId}/certificate`, state.server);
  const viaCertificate = usable(state.certificate, Date.now());
  const tls = viaCertificate ? clientCertificateAgent(state) : undefined;
  try {
    const answer = await post(url, tls === undefined ? { token: state.token } : { tls }, undefined, signal);
    if (answer.status === 201 && answer.body !== null) return answer.body as unknown as AgentCertificate;
    throw refusal(answer) ?? new Error(`the server answered ${answer.status} ${answer.body?.code ?? ''}`);
  } finally {
    tls?.destroy();
  }
}

/**
 * The agent's own NATS connection (its user allows only its subjects). The client does not reconnect by
 * itself: a lost connection fails the next report and the run loop connects again with its backoff. The
 * server refusing the user (revoked: it closes the connection and refuses a new one) stops the agent.
 */
async function openNats(bus: Extract<AgentBusCredentials, { kind: 'nats' }>, state: AgentState, log: (message: string) => void): Promise<Transport> {
  let connection: NatsConnection;
  try {
    connection = await connect({
      servers: bus.servers,
      authenticator: credsAuthenticator(new TextEncoder().encode(bus.creds)),
      inboxPrefix: agentSubjects(state.tenantId, state.agentId).inbox,
      name: `bulwark-agent ${state.agentId}`,
      reconnect: false,
      timeout: 10_000,
      ...natsTls(bus.servers),
    });
  } catch (error) {
    throw refusedByNats(error) ?? error;
  }
  let closedWith: Error | undefined;
  void connection.closed().then((error) => {
    closedWith = error ?? new Error('the NATS connection closed');
    log('NATS connection lost');
  });
  void (async () => {
    for await (const status of connection.status()) {
      if (status.type === Events.Error && status.permissionContext !== undefined) log(`NATS refused ${status.permissionContext.operation} ${status.permissionContext.subject}`);
    }
  })();
  return {
    async send(subject, payload) {
      if (closedWith !== undefined) throw refusedByNats(closedWith) ?? closedWith;
      connection.publish(subject, JSON.stringify(payload));
      // The server has it once a ping round trip comes back; bounded, as a half-open connection never answers.
      await Promise.race([
        connection.flush(),
        sleep(10_000, undefined, { ref: false }).then(() => {
          throw new Error('NATS did not confirm within 10 s');
        }),
      ]);
    },
    async close() {
      if (!connection.isClosed()) await connection.drain().catch(() => connection.close());
    },
  };
}

/** NATS refusing the agent's user itself (revoked, or never valid): no retry helps. */
function refusedByNats(error: unknown): Refused | undefined {
  if (!(error instanceof NatsError) || !error.isAuthError()) return undefined;
  return new Refused(`NATS refused the agent (${error.message})`);
}

function healthNow(): { status: 'ok' | 'degraded'; message: string } {
  const [load = 0] = loadavg();
  const busy = load > cpus().length * 2;
  return { status: busy ? 'degraded' : 'ok', message: busy ? `load ${load.toFixed(2)} on ${cpus().length} CPUs` : 'running' };
}

function statsNow(): Record<string, number> {
  const [load1 = 0, load5 = 0] = loadavg();
  return {
    'load.1m': load1,
    'load.5m': load5,
    'memory.freeBytes': freemem(),
    'memory.totalBytes': totalmem(),
    'process.rssBytes': process.memoryUsage.rss(),
    uptimeSeconds: Math.floor(process.uptime()),
  };
}
