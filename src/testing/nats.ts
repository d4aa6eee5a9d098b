import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds, type KeyPair } from '@nats-io/jwt';
import { connect, credsAuthenticator } from 'nats';
import { freePort } from './ports.ts';

/**
 * NATS for the bus tests. A private `nats-server` (2.9) in operator (JWT) mode, one per test file, on a
 * free loopback port with its own directory: an operator, a system account and the account of Bulwark's
 * agents, generated here. Without the binary the suites skip; with BULWARK_REQUIRE_SERVICES=1 (CI) the
 * import fails instead. The shared CI server (BULWARK_TEST_NATS_URL, default 127.0.0.1:4222, no auth)
 * serves the plain publish/subscribe/request test only.
 */
const natsServerBinary = '/usr/sbin/nats-server';
const servicesRequired = process.env['BULWARK_REQUIRE_SERVICES'] === '1';

const natsServerProblem = existsSync(natsServerBinary) ? undefined : `${natsServerBinary} is not installed (apt-get install nats-server)`;
if (natsServerProblem !== undefined && servicesRequired) throw new Error(`BULWARK_REQUIRE_SERVICES=1 but ${natsServerProblem}`);

/** `skip` option for node:test, for the suites that start a private server. */
export function natsServerSkip(): string | false {
  return natsServerProblem ?? false;
}

export const testNatsUrl = process.env['BULWARK_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';

/** `skip` option for the shared server's test: a reason when it is unreachable (an error under BULWARK_REQUIRE_SERVICES=1). */
export async function sharedNatsSkip(): Promise<string | false> {
  try {
    const connection = await connect({ servers: testNatsUrl, timeout: 10_000, reconnect: false });
    await connection.close();
    return false;
  } catch (error) {
    const problem = `NATS unreachable at ${new URL(testNatsUrl).host}: ${(error as Error).message}`;
    if (servicesRequired) throw new Error(`BULWARK_REQUIRE_SERVICES=1 but ${problem}`, { cause: error });
    return problem;
  }
}

/** What Bulwark is configured with to mint agents' users and revoke them (BULWARK_NATS_AGENT_* and friends). */
export interface NatsSigningMaterial {
  /** The agents account's public key (`A...`). */
  account: string;
  /** Seed of an (unscoped) signing key of the agents account: signs agents' user JWTs. */
  accountSigningSeed: string;
  /** Seed of an operator signing key: signs the agents account's JWT when a revocation is added. */
  operatorSigningSeed: string;
  /** Creds of a system account user: pushes account updates (`$SYS.REQ.CLAIMS.UPDATE`). */
  systemCreds: string;
}

export interface PrivateNats {
  url: string;
  port: number;
  /** Creds of Bulwark's own user in the agents account: publish and subscribe on `bulwark.>` and `_INBOX.>`. */
  serverCreds: string;
  signing: NatsSigningMaterial;
  /** Creds of an unrestricted user of another account: what the account boundary keeps out. */
  outsiderCreds: string;
  /** Stops the server as a crash would (SIGKILL); `start` brings it back on the same port with the same state. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its directory. */
  close(): Promise<void>;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const seedOf = (keyPair: KeyPair) => text(keyPair.getSeed());

export async function startPrivateNats(): Promise<PrivateNats> {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-nats-'));
  const port = await freePort();
  const operator = createOperator();
  const operatorSigning = createOperator();
  const system = createAccount();
  const agents = createAccount();
  const agentsSigning = createAccount();
  const other = createAccount();

  const operatorJwt = await encodeOperator('bulwark-test', operator, {
    signing_keys: [operatorSigning.getPublicKey()],
    system_account: system.getPublicKey(),
  });
  // An account JWT without limits means zero of everything to the server: these are "no limit".
  const limits = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
  const systemJwt = await encodeAccount('SYS', system, { limits }, { signer: operator });
  const agentsJwt = await encodeAccount('bulwark-agents', agents, { limits, signing_keys: [agentsSigning.getPublicKey()] }, { signer: operator });
  const otherJwt = await encodeAccount('other', other, { limits }, { signer: operator });

  const serverUser = createUser();
  const serverJwt = await encodeUser(
    'bulwark-server',
    serverUser,
    agents,
    { pub: { allow: ['bulwark.>', '_INBOX.>'] }, sub: { allow: ['bulwark.>', '_INBOX.>'] } },
    { signer: agentsSigning },
  );
  // The least Bulwark's system user needs (docs/bus.md): look the agents account up, push its updates, hear the answers.
  const systemUser = createUser();
  const systemUserJwt = await encodeUser('bulwark-system', systemUser, system, {
    pub: { allow: ['$SYS.REQ.CLAIMS.UPDATE', `$SYS.REQ.ACCOUNT.${agents.getPublicKey()}.CLAIMS.LOOKUP`] },
    sub: { allow: ['_INBOX.>'] },
  });
  const outsider = createUser();
  const outsiderJwt = await encodeUser('outsider', outsider, other);

  await writeFile(join(dir, 'operator.jwt'), operatorJwt);
  const configFile = join(dir, 'nats.conf');
  await writeFile(
    configFile,
    [
      `listen: "127.0.0.1:${port}"`,
      'server_name: bulwark-test',
      `operator: ${JSON.stringify(join(dir, 'operator.jwt'))}`,
      `system_account: ${system.getPublicKey()}`,
      `resolver: { type: full, dir: ${JSON.stringify(join(dir, 'jwt'))}, allow_delete: false, interval: "2m", timeout: "1.9s" }`,
      `resolver_preload: { ${system.getPublicKey()}: "${systemJwt}", ${agents.getPublicKey()}: "${agentsJwt}", ${other.getPublicKey()}: "${otherJwt}" }`,
      '',
    ].join('\n'),
  );

  const url = `nats://127.0.0.1:${port}`;
  const serverCreds = text(fmtCreds(serverJwt, serverUser));
  const systemCreds = text(fmtCreds(systemUserJwt, systemUser));
  let child: ChildProcess | undefined;
  // A test file that ends without `close` (a failed `before`, an interrupted run) leaves no server behind.
  const killOnExit = () => child?.kill('SIGKILL');
  process.once('exit', killOnExit);

  const start = async () => {
    child = spawn(natsServerBinary, ['-c', configFile], { stdio: 'ignore' });
    for (let attempt = 0; ; attempt += 1) {
      try {
        const probe = await connect({ servers: url, authenticator: credsAuthenticator(new TextEncoder().encode(systemCreds)), timeout: 500, reconnect: false });
        await probe.close();
        return;
      } catch (error) {
        if (attempt > 100 || child.exitCode !== null) {
          await stop();
          throw new Error(`nats-server on port ${port} did not come up`, { cause: error });
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };
  const stop = async () => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGKILL');
    });
  };
  await start();
  return {
    url,
    port,
    serverCreds,
    signing: {
      account: agents.getPublicKey(),
      accountSigningSeed: seedOf(agentsSigning),
      operatorSigningSeed: seedOf(operatorSigning),
      systemCreds,
    },
    outsiderCreds: text(fmtCreds(outsiderJwt, outsider)),
    stop,
    start,
    async close() {
      await stop();
      process.removeListener('exit', killOnExit);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
