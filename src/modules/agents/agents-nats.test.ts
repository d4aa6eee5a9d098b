import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, credsAuthenticator, type NatsConnection } from 'nats';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { runCli, spawnCli, type RunningCli } from '../../testing/cli.ts';
import { engineSkip } from '../../testing/engines.ts';
import { natsServerSkip, type PrivateNats, startPrivateNats } from '../../testing/nats.ts';
import { agentSubjects } from '../bus/access.ts';

interface AgentView {
  status: string;
  lastSeenAt: string | null;
  health: { status: string } | null;
}

interface NatsState {
  agentId: string;
  tenantId: string;
  bus: { kind: 'nats'; servers: string[]; creds: string; userKey: string };
}

async function eventually(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Agents over the real NATS server (a private one in operator mode): pairing hands out NATS credentials
 * of the agent's own; the agent program's heartbeats over NATS drive its status; NATS restarts under it
 * and it reconnects; revoking it closes its connection. One engine: the bus is the subject here.
 */
describe('agents over NATS', { skip: natsServerSkip() || engineSkip('pglite') }, () => {
  let nats: PrivateNats;
  let test: TestApp;
  let url: string;
  let tenant: { tenantId: string; apiKey: string };
  let other: { tenantId: string; apiKey: string };
  let dir: string;
  const running: RunningCli[] = [];
  const connections: NatsConnection[] = [];

  const call = (method: 'GET' | 'POST' | 'DELETE', path: string, as = tenant, body?: unknown) =>
    test.call({ method, url: `/v1/tenants/${as.tenantId}${path}`, token: as.apiKey, ...(body === undefined ? {} : { body }) });
  const view = async (agentId: string, as = tenant) => (await call('GET', `/agents/${agentId}`, as)).json<AgentView>();
  const pairWithCli = async (state: string, as = tenant) => {
    const code = (await call('POST', '/agents/pairing-codes', as, {})).json<{ code: string }>().code;
    const paired = await runCli(['agent', 'pair', '--server', url, '--code', code, '--state', state], {});
    assert.equal(paired.code, 0, paired.stderr);
    return JSON.parse(readFileSync(state, 'utf8')) as NatsState;
  };
  const connectAs = async (state: NatsState) => {
    const connection = await connect({
      servers: state.bus.servers,
      authenticator: credsAuthenticator(new TextEncoder().encode(state.bus.creds)),
      inboxPrefix: agentSubjects(state.tenantId, state.agentId).inbox,
      reconnect: false,
    });
    connections.push(connection);
    return connection;
  };

  before(async () => {
    nats = await startPrivateNats();
    dir = mkdtempSync(join(tmpdir(), 'bulwark-agents-nats-'));
    const file = (name: string, content: string) => {
      const path = join(dir, name);
      writeFileSync(path, content, { mode: 0o600 });
      return path;
    };
    test = await createTestApp('pglite', {
      config: {
        natsUrl: nats.url,
        natsCredsFile: file('server.creds', nats.serverCreds),
        natsAgentAccount: nats.signing.account,
        natsAgentSigningKeyFile: file('account.seed', nats.signing.accountSigningSeed),
        natsOperatorSigningKeyFile: file('operator.seed', nats.signing.operatorSigningSeed),
        natsSystemCredsFile: file('system.creds', nats.signing.systemCreds),
      },
    });
    await test.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(test.app.server.address() as AddressInfo).port}`;
    tenant = await test.tenantWithKey('NATS agents');
    other = await test.tenantWithKey('NATS other');
  });
  after(async () => {
    for (const child of running) child.child.kill('SIGKILL');
    await Promise.all(running.map((child) => child.exited));
    await Promise.all(connections.map((connection) => connection.close().catch(() => undefined)));
    await test.close();
    await nats.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the program's heartbeats over NATS drive the agent's status; it reconnects after NATS restarts; revocation disconnects it", async () => {
    const state = join(dir, 'agent.json');
    const saved = await pairWithCli(state);
    assert.equal(saved.bus.kind, 'nats');
    assert.match(saved.bus.userKey, /^U[A-Z2-7]{55}$/);
    assert.equal((await view(saved.agentId)).lastSeenAt, null);

    const agent = spawnCli(['agent', 'run', '--state', state, '--interval', '1'], {});
    running.push(agent);
    await eventually('reports over NATS', async () => {
      const seen = await view(saved.agentId);
      return seen.lastSeenAt !== null && seen.health !== null;
    });

    await nats.stop();
    const restartedAt = Date.now();
    await nats.start();
    await eventually('reports after NATS came back', async () => Date.parse((await view(saved.agentId)).lastSeenAt ?? '') > restartedAt, 20_000).catch((error: unknown) => {
      throw new Error(`${String(error)}; the agent said: ${agent.stderr()}`);
    });

    assert.equal((await call('DELETE', `/agents/${saved.agentId}`)).statusCode, 204);
    assert.equal(await agent.exited, 3, agent.stderr());
    assert.match(agent.stderr(), /NATS closed the connection|refused/);
    assert.equal((await view(saved.agentId)).status, 'revoked');
  });

  it("an agent's NATS user cannot report for another tenant or agent: the server refuses the publish and nothing is recorded", async () => {
    const mine = await pairWithCli(join(dir, 'mine.json'));
    const theirs = await pairWithCli(join(dir, 'theirs.json'), other);
    const connection = await connectAs(mine);
    const refusals: string[] = [];
    void (async () => {
      for await (const status of connection.status()) if (status.permissionContext !== undefined) refusals.push(`${status.permissionContext.operation} ${status.permissionContext.subject}`);
    })();
    connection.publish(agentSubjects(other.tenantId, theirs.agentId).heartbeat, JSON.stringify({}));
    connection.publish(`bulwark.t.${other.tenantId}.agents.${mine.agentId}.health`, JSON.stringify({ status: 'down' }));
    connection.publish(agentSubjects(mine.tenantId, mine.agentId).health, JSON.stringify({ status: 'degraded' }));
    await connection.flush();
    await eventually('its own report', async () => (await view(mine.agentId)).health?.status === 'degraded');
    await eventually('the refusals', async () => Promise.resolve(refusals.length >= 2), 5_000);
    assert.deepEqual(refusals.sort(), [`publish ${agentSubjects(other.tenantId, theirs.agentId).heartbeat}`, `publish bulwark.t.${other.tenantId}.agents.${mine.agentId}.health`].sort());
    await test.app.services.agents.settled();
    assert.equal((await view(theirs.agentId, other)).lastSeenAt, null);

    // Revoked: the server closes its connection at once.
    const closed = connection.closed();
    assert.equal((await call('DELETE', `/agents/${mine.agentId}`)).statusCode, 204);
    const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((resolve) => setTimeout(() => resolve('still open'), 2_000))]);
    assert.equal(outcome, 'closed');
    await assert.rejects(connectAs(mine));
  });
});
