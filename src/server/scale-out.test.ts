import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
// First: it loads the whole app, which would otherwise hold up the service probes below past their timeouts.
import { testPassphrase } from '../testing/app.ts';
import { type RunningCli, spawnCli } from '../testing/cli.ts';
import { engineSkip, openTestDatabase, type TestDatabase } from '../testing/engines.ts';
import { natsServerSkip, type PrivateNats, startPrivateNats } from '../testing/nats.ts';
import { redisSkip, testRedisUrl } from '../testing/redis.ts';

/**
 * Scale-out: two real `bulwark serve` processes on their own ports over one PostgreSQL database, one Redis
 * and one NATS, as two pods behind a load balancer. What one instance changes, the other must honour: a
 * revoked session or key, a suspended tenant, a rotated key, one rate budget, one backup per schedule slot,
 * and no acknowledged write lost when an instance is killed.
 */
const skip = engineSkip('postgres') || redisSkip() || natsServerSkip();
/** The auth caches' window (sessions, keys, tenant status, limits): what bounds a revocation without the fan-out. */
const cacheTtlMs = 3_000;
/** Every two seconds: a few slots while the test runs. */
const backupSchedule = '*/2 * * * * *';

interface Instance {
  name: 'A' | 'B';
  cli: RunningCli;
  port: number;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function call(instance: Instance, method: string, path: string, options: { token?: string; body?: unknown } = {}): Promise<Answer> {
  const response = await fetch(`http://127.0.0.1:${instance.port}${path}`, {
    method,
    headers: {
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

async function expectStatus(instance: Instance, status: number, method: string, path: string, options: { token?: string; body?: unknown } = {}): Promise<Record<string, unknown>> {
  const answer = await call(instance, method, path, options);
  assert.equal(answer.status, status, `${instance.name} ${method} ${path}: ${JSON.stringify(answer.body)}`);
  return answer.body;
}

/** Polls until `check` holds; answers the milliseconds it took. */
async function within(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function logLines(instance: Instance): Record<string, unknown>[] {
  return instance.cli
    .stdout()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

const ledBackups = (instance: Instance) => logLines(instance).some((line) => line['msg'] === 'leading background job' && line['job'] === 'backups');

const sessionIdOf = (accessToken: string) => (JSON.parse(Buffer.from(accessToken.split('.')[1] ?? '', 'base64url').toString('utf8')) as { sid: string }).sid;

describe('scale-out: two instances over shared PostgreSQL, Redis and NATS', { skip }, () => {
  let storage: TestDatabase;
  let nats: PrivateNats;
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-scale-'));
  const instances: Instance[] = [];
  let a: Instance;
  let b: Instance;
  let operator: string;
  let tenantId: string;
  const admin = { email: 'ada@scale.example', password: testPassphrase('scale', 'admin') };

  const login = async (instance: Instance) => (await expectStatus(instance, 200, 'POST', '/v1/auth/login', { body: { tenantId, ...admin } })) as { accessToken: string; refreshToken: string };

  before(async () => {
    storage = await openTestDatabase('postgres');
    nats = await startPrivateNats();
    const credsFile = join(dir, 'bulwark.creds');
    writeFileSync(credsFile, nats.serverCreds, { mode: 0o600 });
    // A database of Redis's own for this test: its buckets (per tenant and per client address) meet no other suite's.
    const redis = new URL(testRedisUrl);
    redis.pathname = '/11';
    const setupToken = randomBytes(24).toString('base64url');
    const unlimited = Object.fromEntries(['REQUESTS', 'LOGIN', 'CRYPTO', 'EXPORT', 'ANONYMOUS', 'OPERATOR'].map((name) => [`BULWARK_RATE_LIMIT_${name}`, 'unlimited']));
    const env = {
      ...unlimited,
      BULWARK_HOST: '127.0.0.1',
      BULWARK_PORT: '0',
      BULWARK_LOG_LEVEL: 'info',
      BULWARK_DATABASE_URL: storage.ownerUrl ?? '',
      BULWARK_REDIS_URL: redis.toString(),
      BULWARK_NATS_URL: nats.url,
      BULWARK_NATS_CREDS_FILE: credsFile,
      // One root key for the fleet (each instance unwraps the tenants' keys the others wrapped).
      BULWARK_ROOT_KEY_PROVIDER: 'env',
      BULWARK_ROOT_KEY: randomBytes(32).toString('base64'),
      BULWARK_SETUP_TOKEN: setupToken,
      BULWARK_AUTH_CACHE_TTL_MS: String(cacheTtlMs),
      BULWARK_KEY_CACHE_TTL_MS: '60000',
      BULWARK_BACKUP_SCHEDULE: backupSchedule,
      BULWARK_BACKUP_TARGETS: `local=file://${join(dir, 'backups')}`,
    };
    for (const name of ['A', 'B'] as const) {
      const cli = spawnCli(['serve'], { ...env, BULWARK_DATA_DIR: join(dir, name) });
      instances.push({ name, cli, port: 0 });
    }
    await Promise.all(
      instances.map(async (instance) => {
        await within(`${instance.name} listening`, 60_000, async () => {
          const port = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(instance.cli.stdout())?.[1];
          if (instance.cli.child.exitCode !== null) throw new Error(`${instance.name} exited:\n${instance.cli.stdout()}\n${instance.cli.stderr()}`);
          if (port !== undefined) instance.port = Number(port);
          return port !== undefined;
        });
        // Ready includes the NATS connection: the fan-out is live.
        await within(`${instance.name} ready`, 10_000, async () => (await call(instance, 'GET', '/readyz')).status === 200);
      }),
    );
    [a, b] = instances as [Instance, Instance];
    const credentials = { email: 'ops@scale.example', password: testPassphrase('scale', 'operator') };
    await expectStatus(a, 201, 'POST', '/v1/setup', { body: { setupToken, ...credentials } });
    // Signed on A, accepted on B: one signing keyring in the database.
    operator = ((await expectStatus(b, 200, 'POST', '/v1/auth/operator/login', { body: credentials })) as { accessToken: string }).accessToken;
    tenantId = ((await expectStatus(a, 201, 'POST', '/v1/tenants', { token: operator, body: { name: 'Scale', admin } })) as { id: string }).id;
  });

  after(async () => {
    for (const instance of instances) instance.cli.child.kill('SIGKILL');
    await Promise.all(instances.map((instance) => instance.cli.exited));
    await nats.close();
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a session logged out on A is refused by B at once; revoked behind the instances\' backs, within the cache window', async () => {
    // Control first: revoked in the database directly, no instance hears of it. B has the session cached as live.
    const quiet = await login(a);
    const quietCachedAt = performance.now();
    await expectStatus(b, 200, 'GET', '/v1/me', { token: quiet.accessToken });
    await storage.asOwner("UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'admin' WHERE tenant_id = $1 AND id = $2", [tenantId, sessionIdOf(quiet.accessToken)]);
    assert.equal((await call(b, 'GET', '/v1/me', { token: quiet.accessToken })).status, 200, 'the cache, not the database, answered');
    await within('B refusing once its entry expired', cacheTtlMs + 1_000, async () => (await call(b, 'GET', '/v1/me', { token: quiet.accessToken })).status === 401);
    assert.ok(performance.now() - quietCachedAt >= cacheTtlMs - 100, 'refused only when the window ended');

    // With the fan-out: logged out through A, refused by B well inside the window of B's entry.
    const session = await login(a);
    const cachedAt = performance.now();
    await expectStatus(b, 200, 'GET', '/v1/me', { token: session.accessToken });
    await expectStatus(a, 204, 'POST', '/v1/auth/logout', { body: { refreshToken: session.refreshToken } });
    const latency = await within('B refusing the logged-out session', 1_000, async () => (await call(b, 'GET', '/v1/me', { token: session.accessToken })).status === 401);
    assert.ok(performance.now() - cachedAt < cacheTtlMs, 'B\'s entry had not expired: the invalidation dropped it');
    assert.equal((await call(a, 'GET', '/v1/me', { token: session.accessToken })).status, 401);
    assert.equal((await call(b, 'POST', '/v1/auth/refresh', { body: { refreshToken: session.refreshToken } })).status, 401);
    console.log(`# session logout on A refused by B after ${latency.toFixed(0)} ms (cache window ${cacheTtlMs} ms)`);
  });

  it('an API key revoked on A is refused by B at once', async () => {
    const { accessToken } = await login(a);
    const created = (await expectStatus(a, 201, 'POST', `/v1/tenants/${tenantId}/api-keys`, { token: accessToken, body: { name: 'scale', scopes: ['records:read'] } })) as { id: string; key: string };
    const usedAt = performance.now();
    await expectStatus(b, 200, 'GET', `/v1/tenants/${tenantId}/collections/notes/records`, { token: created.key });
    await expectStatus(a, 204, 'DELETE', `/v1/tenants/${tenantId}/api-keys/${created.id}`, { token: accessToken });
    const latency = await within('B refusing the revoked key', 1_000, async () => (await call(b, 'GET', `/v1/tenants/${tenantId}/collections/notes/records`, { token: created.key })).status === 401);
    assert.ok(performance.now() - usedAt < cacheTtlMs);
    console.log(`# API key revoked on A refused by B after ${latency.toFixed(0)} ms`);
  });

  it('a tenant suspended on A is suspended on B at once, and active again at once', async () => {
    // A tenant B has not seen: its status entry on B is loaded by B's first request, so its age is known.
    const email = 'sue@suspended.example';
    const created = (await expectStatus(a, 201, 'POST', '/v1/tenants', { token: operator, body: { name: 'Suspended', admin: { email, password: admin.password } } })) as { id: string };
    const { accessToken } = (await expectStatus(a, 200, 'POST', '/v1/auth/login', { body: { tenantId: created.id, email, password: admin.password } })) as { accessToken: string };
    const list = `/v1/tenants/${created.id}/collections/notes/records`;
    const activeCachedAt = performance.now();
    await expectStatus(b, 200, 'GET', list, { token: accessToken });
    await expectStatus(a, 200, 'PATCH', `/v1/tenants/${created.id}`, { token: operator, body: { status: 'suspended' } });
    const suspendedAt = performance.now();
    await within('B refusing the suspended tenant', 1_000, async () => (await call(b, 'GET', list, { token: accessToken })).status === 403);
    assert.ok(performance.now() - activeCachedAt < cacheTtlMs, 'B\'s "active" had not expired');
    // B's "suspended" entry is from after the suspension: reactivation must drop it as well.
    await expectStatus(a, 200, 'PATCH', `/v1/tenants/${created.id}`, { token: operator, body: { status: 'active' } });
    await within('B serving the reactivated tenant', 1_000, async () => (await call(b, 'GET', list, { token: accessToken })).status === 200);
    assert.ok(performance.now() - suspendedAt < cacheTtlMs, 'B\'s "suspended" had not expired');
  });

  it('a key rotated on A is what B seals with next', async () => {
    const { accessToken } = await login(a);
    const record = (id: string) => `/v1/tenants/${tenantId}/collections/rotation/records/${id}`;
    // B loads and caches the keyring at version 1.
    await expectStatus(b, 201, 'PUT', record('0000000000b1'), { token: accessToken, body: { data: { n: 1 } } });
    await expectStatus(a, 200, 'POST', `/v1/tenants/${tenantId}/keys/rotate`, { token: accessToken });
    // The keyring stays cached for 60 s on B: only the invalidation makes B seal under version 2.
    await within('B sealing with the new version', 1_000, async () => {
      await expectStatus(b, 201, 'PUT', record(randomBytes(6).toString('hex')), { token: accessToken, body: { data: { n: 2 } } });
      const keys = (await expectStatus(a, 200, 'GET', `/v1/tenants/${tenantId}/keys`, { token: accessToken })) as { versions: { version: number; records: number }[] };
      return (keys.versions.find((version) => version.version === 2)?.records ?? 0) > 0;
    });
  });

  it('one rate budget across the instances: 40 requests split over A and B pass exactly 30', async () => {
    const created = (await expectStatus(a, 201, 'POST', '/v1/tenants', { token: operator, body: { name: 'Budget', admin: { email: 'bea@budget.example', password: admin.password } } })) as { id: string };
    const { accessToken } = (await expectStatus(b, 200, 'POST', '/v1/auth/login', { body: { tenantId: created.id, email: 'bea@budget.example', password: admin.password } })) as { accessToken: string };
    const { key } = (await expectStatus(b, 201, 'POST', `/v1/tenants/${created.id}/api-keys`, { token: accessToken, body: { name: 'budget', scopes: ['records:read'] } })) as { key: string };
    const list = `/v1/tenants/${created.id}/collections/notes/records`;
    // B has the tenant's limits cached (unlimited) before the override: the override reaches it by the fan-out.
    await expectStatus(b, 200, 'GET', list, { token: key });
    await expectStatus(a, 200, 'PUT', `/v1/tenants/${created.id}/limits`, { token: operator, body: { rates: { requests: { limit: 30, windowSeconds: 3600 } } } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const statuses: Record<'A' | 'B', number[]> = { A: [], B: [] };
    for (let index = 0; index < 40; index += 1) {
      const instance = index % 2 === 0 ? a : b;
      statuses[instance.name].push((await call(instance, 'GET', list, { token: key })).status);
    }
    const all = [...statuses.A, ...statuses.B];
    assert.equal(all.filter((status) => status === 200).length, 30, JSON.stringify(statuses));
    assert.equal(all.filter((status) => status === 429).length, 10);
    // Each instance spent from the one budget and saw it run out: 20 each, 15 passing each, had they kept their own.
    for (const name of ['A', 'B'] as const) assert.ok(statuses[name].includes(200) && statuses[name].includes(429), `${name}: ${statuses[name].join(' ')}`);
  });

  it('one backup per schedule slot, on the leader; killing it mid-load loses no acknowledged write and moves the lead', async () => {
    const runs = async () =>
      (await storage.asOwner("SELECT slot, status, backup_id, finished_at FROM backup_runs ORDER BY slot")) as { slot: Date; status: string; backup_id: string | null; finished_at: Date | null }[];
    await within('two scheduled backups', 15_000, async () => (await runs()).filter((run) => run.status === 'done').length >= 2);
    const leaders = instances.filter(ledBackups);
    assert.equal(leaders.length, 1, 'one instance leads the backups');
    const [victim] = leaders as [Instance];
    const survivor = victim === a ? b : a;

    // A write load through the leader; SIGKILL mid-way; what was not acknowledged is retried on the survivor.
    const { accessToken } = await login(survivor);
    const record = (n: number) => `/v1/tenants/${tenantId}/collections/load/records/${n.toString(16).padStart(12, '0')}`;
    const acknowledged: { n: number; by: string }[] = [];
    let retried = 0;
    let next = 0;
    let target = victim;
    const write = async (n: number) => {
      for (;;) {
        const via = target;
        try {
          const answer = await call(via, 'PUT', record(n), { token: accessToken, body: { data: { n } } });
          if (answer.status === 200 || answer.status === 201) {
            acknowledged.push({ n, by: via.name });
            return;
          }
          if (via === survivor) assert.fail(`the survivor refused write ${n}: ${answer.status} ${JSON.stringify(answer.body)}`);
        } catch (error) {
          if (via === survivor) throw error;
        }
        retried += 1;
        target = survivor;
      }
    };
    const workers = Array.from({ length: 4 }, async () => {
      while (next < 120) await write((next += 1));
    });
    await within('writes acknowledged by the leader', 10_000, async () => acknowledged.filter((write) => write.by === victim.name).length >= 40);
    const killedAt = new Date();
    victim.cli.child.kill('SIGKILL');
    await Promise.all(workers);
    const byVictim = acknowledged.filter((write) => write.by === victim.name).length;
    assert.ok(byVictim >= 40 && acknowledged.length === 120, `${byVictim} by the victim, ${acknowledged.length} in all`);
    for (const { n } of acknowledged) {
      const stored = (await expectStatus(survivor, 200, 'GET', record(n), { token: accessToken })) as { data: { n: number } };
      assert.equal(stored.data.n, n);
    }
    const verified = (await expectStatus(survivor, 200, 'POST', `/v1/tenants/${tenantId}/audit/verify`, { token: accessToken })) as { ok: boolean };
    assert.equal(verified.ok, true, 'the audit chain is intact after the crash');

    // The lead moves: the survivor takes it on its next round and backs up the next slots.
    await within('the survivor leading the backups', 10_000, async () => ledBackups(survivor));
    await within('a backup by the new leader', 15_000, async () => (await runs()).some((run) => run.status === 'done' && run.slot > killedAt));
    const all = await runs();
    // One run per slot (the slot is the key), each on a slot of the schedule, each finished one a backup of its own;
    // only the slot the killed leader was backing up may be left unfinished.
    const done = all.filter((run) => run.status === 'done');
    assert.ok(all.every((run) => run.slot.getTime() % 2_000 === 0));
    assert.equal(new Set(done.map((run) => run.backup_id)).size, done.length);
    assert.ok(all.length - done.length <= 1, JSON.stringify(all));
    const events = (await storage.asOwner(
      "SELECT detail->>'slot' AS slot, count(*)::int AS n FROM platform_audit_events WHERE action = 'backup.create' AND outcome = 'success' GROUP BY 1",
    )) as { slot: string; n: number }[];
    assert.ok(events.length >= done.length && events.every((event) => event.n === 1), 'one backup.create event per slot');
    console.log(`# ${byVictim} writes acknowledged by the killed leader, ${acknowledged.length - byVictim} by the survivor, ${retried} retried; ${done.length} scheduled backups over ${all.length} slots`);
  });
});
