import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../server/app.ts';
import { createTestApp, type TestApp } from '../../testing/app.ts';
import { runCli, spawnCli, type RunningCli } from '../../testing/cli.ts';
import { engineSkip, engines } from '../../testing/engines.ts';
import { backoff, runAgent } from '../../cli/commands/agent.ts';

interface AgentView {
  status: string;
  lastSeenAt: string | null;
  health: { status: string } | null;
  stats: { values: Record<string, number> } | null;
}

/** Polls until `check` holds (the agent reports on its own schedule), or fails after `ms`. */
async function eventually(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('agent backoff', () => {
  it('grows exponentially from 0.5 s, is capped at 30 s, and is jittered within the upper half of each step', () => {
    for (const [failures, step] of [[0, 500], [1, 1000], [3, 4000], [6, 30_000], [40, 30_000]] as const) {
      const delays = Array.from({ length: 50 }, () => backoff(failures));
      assert.ok(delays.every((delay) => delay >= step / 2 && delay <= step), `${failures}: ${delays.join(', ')}`);
      assert.ok(new Set(delays).size > 1, 'jittered');
    }
  });
});

/**
 * The agent program end to end: `bulwark agent pair` and `bulwark agent run` as separate processes against
 * a server on a real port, which is restarted under them. The program speaks HTTP only, so one engine
 * serves (agents.test.ts covers the server's side on both); each process start costs about a second.
 */
for (const engine of engines.slice(0, 1)) {
  describe(`bulwark agent [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let server: FastifyInstance;
    let url: string;
    let tenant: { tenantId: string; apiKey: string };
    let dir: string;
    const running: RunningCli[] = [];

    const newCode = async () => {
      const created = await server.inject({
        method: 'POST',
        url: `/v1/tenants/${tenant.tenantId}/agents/pairing-codes`,
        headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json' },
        payload: '{}',
      });
      assert.equal(created.statusCode, 201, created.body);
      return created.json<{ code: string }>().code;
    };
    const view = async (agentId: string) => {
      const response = await server.inject({ method: 'GET', url: `/v1/tenants/${tenant.tenantId}/agents/${agentId}`, headers: { authorization: `Bearer ${tenant.apiKey}` } });
      return response.json<AgentView>();
    };
    const pairInto = async (state: string) => {
      const paired = await runCli(['agent', 'pair', '--server', url, '--code', await newCode(), '--name', 'cli agent', '--state', state], {});
      assert.equal(paired.code, 0, paired.stderr);
      return JSON.parse(readFileSync(state, 'utf8')) as { agentId: string; tenantId: string; token: string; bus: { kind: string }; privateKey: string };
    };

    before(async () => {
      test = await createTestApp(engine);
      server = test.app;
      await server.listen({ port: 0, host: '127.0.0.1' });
      url = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
      tenant = await test.tenantWithKey('Agent program');
      dir = mkdtempSync(join(tmpdir(), 'bulwark-agent-'));
    });
    after(async () => {
      for (const child of running) child.child.kill('SIGKILL');
      await Promise.all(running.map((child) => child.exited));
      if (server !== test.app) await server.close();
      await test.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('pair writes a 0600 state file and never overwrites one; run reports, survives a server restart with backoff, and stops cleanly on SIGTERM', async () => {
      const state = join(dir, 'agent.json');
      const saved = await pairInto(state);
      assert.equal(statSync(state).mode & 0o777, 0o600);
      assert.equal(saved.tenantId, tenant.tenantId);
      assert.match(saved.token, /^bwag_/);
      assert.equal(saved.bus.kind, 'http');
      assert.match(saved.privateKey, /^-----BEGIN PRIVATE KEY-----/);

      // A second pairing on the same state file is refused before the code is spent.
      const code = await newCode();
      const again = await runCli(['agent', 'pair', '--server', url, '--code', code, '--state', state], {});
      assert.equal(again.code, 1);
      assert.match(again.stderr, /exists/);
      assert.equal((JSON.parse(readFileSync(state, 'utf8')) as { agentId: string }).agentId, saved.agentId);
      assert.equal((await runCli(['agent', 'pair', '--server', url, '--code', code, '--state', join(dir, 'other.json')], {})).code, 0, 'the code was not spent');

      const agent = spawnCli(['agent', 'run', '--state', state, '--interval', '1'], {});
      running.push(agent);
      await eventually('the first reports', async () => {
        const seen = await view(saved.agentId);
        return seen.lastSeenAt !== null && seen.health !== null && seen.stats !== null;
      });
      const first = await view(saved.agentId);
      assert.equal(first.health?.status === 'ok' || first.health?.status === 'degraded', true);
      assert.ok((first.stats?.values['uptimeSeconds'] ?? -1) >= 0);

      // The server goes away and comes back on the same port, over the same database.
      const port = (server.server.address() as AddressInfo).port;
      await server.close();
      const restartedAt = Date.now();
      await eventually('the agent to notice', async () => /retrying in/.test(agent.stderr()), 10_000);
      server = await buildApp({ config: test.storage.config, db: test.storage.db, rootKeys: test.rootKeys });
      await server.listen({ port, host: '127.0.0.1' });
      await eventually('reports after the restart', async () => Date.parse((await view(saved.agentId)).lastSeenAt ?? '') > restartedAt);
      assert.match(agent.stderr(), /reconnected/);

      agent.child.kill('SIGTERM');
      assert.equal(await agent.exited, 0);
      assert.match(agent.stderr(), /stopped/);
      assert.ok(!agent.stderr().includes(saved.token) && !agent.stdout().includes(saved.token), 'the token is never printed');
    });

    it('run refuses a state file others can read, and stops with exit code 3 once the agent is revoked', async () => {
      const state = join(dir, 'revoked.json');
      const saved = await pairInto(state);
      chmodSync(state, 0o644);
      const exposed = await runCli(['agent', 'run', '--state', state, '--interval', '1'], {});
      assert.equal(exposed.code, 4);
      assert.match(exposed.stderr, /chmod 600/);
      chmodSync(state, 0o600);

      const revoked = await server.inject({ method: 'DELETE', url: `/v1/tenants/${tenant.tenantId}/agents/${saved.agentId}`, headers: { authorization: `Bearer ${tenant.apiKey}` } });
      assert.equal(revoked.statusCode, 204);
      const refused = await runCli(['agent', 'run', '--state', state, '--interval', '1'], {});
      assert.equal(refused.code, 3, refused.stderr);
      assert.match(refused.stderr, /refused the agent \(401 invalid_credentials\)/);
    });

    it('pair refuses a wrong code (exit 3) and writes nothing; usage errors exit 2 (the command called in this process)', async () => {
      const state = join(dir, 'never.json');
      assert.equal(await runAgent(['pair', '--server', url, '--code', 'ZZZZ-ZZZZ', '--state', state]), 3);
      assert.ok(!existsSync(state));
      for (const args of [[], ['pair', '--code', 'ZZZZ-ZZZZ'], ['pair', '--server', 'http://example.com', '--code', 'ZZZZ-ZZZZ'], ['run', '--interval', '0'], ['run', '--bogus'], ['run', '--code', 'x']]) {
        assert.equal(await runAgent(args), 2, args.join(' '));
      }
      assert.equal(await runAgent(['run', '--state', join(dir, 'missing.json')]), 1);
    });
  });
}
