import { type Account, checkKey, type ClaimsData, createUser, decode, encodeAccount, encodeUser, fmtCreds, type KeyPair } from '@nats-io/jwt';
import { connect, credsAuthenticator, type NatsConnection } from 'nats';
import type { Config } from '../../platform/config/config.ts';
import { isId } from '../../platform/ids.ts';
import { type AgentBusAccess, type AgentBusCredentials, agentPermissions } from './access.ts';
import { BusUnavailableError } from './bus.ts';
import { natsTls, type NatsTlsFiles, natsTlsOf, readKeyFile } from './nats.ts';

/** What Bulwark needs to mint agents' NATS users and revoke them. */
export interface NatsSigning {
  /** The agents account's public key (`A...`): every agent user belongs to it. */
  account: string;
  /** Seed (`SA...`) of an unscoped signing key of that account: signs the agents' user JWTs. */
  accountSigningSeed: string;
  /** Seed (`SO...`) of an operator signing key: signs the account JWT when a revocation is added. */
  operatorSigningSeed: string;
  /** Creds of a system account user: account updates go to `$SYS.REQ.CLAIMS.UPDATE`. */
  systemCreds: string;
}

export interface NatsAgentAccessOptions {
  /** Where Bulwark reaches the NATS server (for account updates). */
  servers: readonly string[];
  /** For `tls://` servers: the bus's CA and client certificate. */
  tls?: NatsTlsFiles;
  /** The URLs handed to agents (no credentials in them). */
  agentServers: readonly string[];
  signing: NatsSigning;
  /** Per agent connection: the largest message and the most subscriptions the server lets it have. */
  limits?: { maxPayloadBytes: number; maxSubscriptions: number };
  timeoutMs?: number;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const encoder = new TextEncoder();
/** A reply to a command must come within this (nanoseconds, as NATS JWTs count durations). */
const responseWindowNs = 60 * 1_000_000_000;

/**
 * Agents' bus access with NATS in operator (JWT) mode, one account for all agents. `issue` mints a user
 * (a fresh nkey) whose JWT, signed by the account's signing key, allows exactly `agentPermissions`:
 * everything outside the allow lists is denied by the server, and a reply is allowed only to a request
 * the agent received. `revoke` adds the user key to the account JWT's revocations and pushes the
 * re-signed account JWT to the server, which closes the agent's connections at once and refuses the
 * user from then on. The account JWT is read back from the server's resolver each time, so whatever the
 * operator configured in it (limits, signing keys, earlier revocations) is kept.
 */
export class NatsAgentAccess implements AgentBusAccess {
  readonly #servers: string[];
  readonly #tls: NatsTlsFiles;
  readonly #agentServers: string[];
  readonly #account: string;
  readonly #accountSigner: KeyPair;
  readonly #operatorSigner: KeyPair;
  readonly #systemCreds: Uint8Array;
  readonly #limits: { maxPayloadBytes: number; maxSubscriptions: number };
  readonly #timeoutMs: number;
  /** Revocations are read-modify-write of one account JWT: one at a time in this process. */
  #revocations: Promise<unknown> = Promise.resolve();

  constructor(options: NatsAgentAccessOptions) {
    const { signing } = options;
    this.#servers = [...options.servers];
    this.#tls = options.tls ?? {};
    this.#agentServers = [...options.agentServers];
    this.#account = keyOf(() => checkKey(signing.account, 'A').getPublicKey(), 'the agents account must be an account public key (A...)');
    this.#accountSigner = keyOf(() => checkKey(signing.accountSigningSeed, 'A', true), 'the agents account signing key must be an account seed (SA...)');
    this.#operatorSigner = keyOf(() => checkKey(signing.operatorSigningSeed, 'O', true), 'the operator signing key must be an operator seed (SO...)');
    this.#systemCreds = encoder.encode(signing.systemCreds);
    this.#limits = options.limits ?? { maxPayloadBytes: 64 * 1024, maxSubscriptions: 16 };
    this.#timeoutMs = options.timeoutMs ?? 5_000;
  }

  async issue(tenantId: string, agentId: string): Promise<AgentBusCredentials> {
    assertIds(tenantId, agentId);
    const user = createUser();
    const permissions = agentPermissions(tenantId, agentId);
    const jwt = await encodeUser(
      `agent ${tenantId}/${agentId}`,
      user,
      this.#account,
      {
        pub: { allow: [...permissions.publish] },
        sub: { allow: [...permissions.subscribe] },
        resp: { max: 1, ttl: responseWindowNs },
        subs: this.#limits.maxSubscriptions,
        payload: this.#limits.maxPayloadBytes,
        data: -1,
        // The connection must prove it holds the seed (nonce signature): the JWT alone is no credential.
        bearer_token: false,
        allowed_connection_types: ['STANDARD'],
      },
      { signer: this.#accountSigner },
    );
    return { kind: 'nats', servers: [...this.#agentServers], creds: text(fmtCreds(jwt, user)), userKey: user.getPublicKey() };
  }

  async revoke(tenantId: string, agentId: string, userKey: string | null): Promise<void> {
    assertIds(tenantId, agentId);
    // No NATS user was issued (the agent paired while the in-process bus ran): nothing to take back here.
    if (userKey === null) return;
    const key = keyOf(() => checkKey(userKey, 'U').getPublicKey(), 'bus: not a NATS user public key');
    const run = this.#revocations.then(() => this.#revoke(key));
    this.#revocations = run.catch(() => undefined);
    await run;
  }

  async #revoke(userKey: string): Promise<void> {
    const connection = await this.#connectSystem();
    try {
      const current = await this.#lookup(connection);
      if (current.nats.revocations?.[userKey] !== undefined) return;
      // NATS revokes the user's JWTs issued at or before this second; the JWT library stamps `iat` from
      // the system clock, so this compares against the same clock (not an injected test clock).
      const revokedAt = Math.floor(Date.now() / 1000);
      const updated = await encodeAccount(
        current.name,
        current.sub,
        { ...current.nats, revocations: { ...current.nats.revocations, [userKey]: revokedAt } },
        { signer: this.#operatorSigner, ...(current.exp === undefined ? {} : { exp: current.exp }), ...(current.nbf === undefined ? {} : { nbf: current.nbf }) },
      );
      const answer = await this.#request(connection, '$SYS.REQ.CLAIMS.UPDATE', encoder.encode(updated));
      const outcome = parseJson(answer) as { data?: { code?: number }; error?: { code?: number; description?: string } } | undefined;
      if (outcome?.data?.code !== 200) {
        throw new BusUnavailableError(`bus: NATS refused the account update (${String(outcome?.error?.code)}: ${String(outcome?.error?.description)})`);
      }
      // The server keeps an update only if it is not older than what it has: confirm it took.
      const after = await this.#lookup(connection);
      if (after.nats.revocations?.[userKey] === undefined) throw new BusUnavailableError('bus: the account update did not take effect on the NATS server');
    } finally {
      await connection.close();
    }
  }

  async #connectSystem(): Promise<NatsConnection> {
    try {
      return await connect({
        servers: this.#servers,
        name: 'bulwark-agent-revocations',
        authenticator: credsAuthenticator(this.#systemCreds),
        timeout: this.#timeoutMs,
        reconnect: false,
        ...natsTls(this.#servers, this.#tls),
      });
    } catch (error) {
      throw new BusUnavailableError('bus: cannot reach NATS as the system account user', { cause: error });
    }
  }

  /** The account JWT as the server's resolver holds it, its signature checked. */
  async #lookup(connection: NatsConnection): Promise<ClaimsData<Account>> {
    const answer = await this.#request(connection, `$SYS.REQ.ACCOUNT.${this.#account}.CLAIMS.LOOKUP`, new Uint8Array());
    let claims: ClaimsData<Account>;
    try {
      claims = decode<Account>(answer);
    } catch (error) {
      throw new BusUnavailableError('bus: the NATS server answered no valid account JWT for the agents account', { cause: error });
    }
    if (claims.sub !== this.#account) throw new BusUnavailableError('bus: the NATS server answered the JWT of another account');
    return claims;
  }

  async #request(connection: NatsConnection, subject: string, data: Uint8Array): Promise<string> {
    try {
      return text((await connection.request(subject, data, { timeout: this.#timeoutMs })).data);
    } catch (error) {
      throw new BusUnavailableError(`bus: no answer from NATS on ${subject}`, { cause: error });
    }
  }
}

function keyOf<T>(read: () => T, message: string): T {
  try {
    return read();
  } catch (error) {
    throw new TypeError(message, { cause: error });
  }
}

function assertIds(tenantId: string, agentId: string): void {
  // The ids become subject tokens of the permissions: anything else could widen them.
  if (!isId(tenantId) || !isId(agentId)) throw new TypeError('bus: tenant and agent ids must be ids');
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

/**
 * The agents' NATS access the configuration asks for: BULWARK_NATS_AGENT_ACCOUNT and the key files, or
 * undefined (agents then use the HTTP gateway).
 */
export function natsAgentAccessOf(config: Config): NatsAgentAccess | undefined {
  const { natsUrl, natsAgentAccount, natsAgentSigningKeyFile, natsOperatorSigningKeyFile, natsSystemCredsFile } = config;
  if (natsUrl === undefined || natsAgentAccount === undefined || natsAgentSigningKeyFile === undefined || natsOperatorSigningKeyFile === undefined || natsSystemCredsFile === undefined) {
    return undefined;
  }
  return new NatsAgentAccess({
    servers: [natsUrl],
    tls: natsTlsOf(config),
    agentServers: config.natsAgentServers ?? [withoutCredentials(natsUrl)],
    signing: {
      account: natsAgentAccount,
      accountSigningSeed: readKeyFile(natsAgentSigningKeyFile).trim(),
      operatorSigningSeed: readKeyFile(natsOperatorSigningKeyFile).trim(),
      systemCreds: readKeyFile(natsSystemCredsFile),
    },
  });
}

/** Bulwark's own URL may carry a user and password; agents are told the server without them. */
function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = '';
  parsed.password = '';
  return parsed.toString().replace(/\/$/, '');
}
