import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { engineSkip, engines, openTestDatabase, type TestDatabase } from '../../testing/engines.ts';
import { newId } from '../ids.ts';
import { type LeaderJob, leaderJobs, Leadership } from './leader.ts';

const until = async (what: string, check: () => Promise<boolean>, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
};

for (const engine of engines) {
  describe(`background job leadership [${engine}]`, { skip: engineSkip(engine) }, () => {
    let storage: TestDatabase;
    const heldLocks = async () =>
      (await storage.asOwner(
        `SELECT objid::int AS job, pid FROM pg_locks
          WHERE locktype = 'advisory' AND classid = 724518302 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY objid`,
      )) as { job: number; pid: number }[];

    before(async () => {
      storage = await openTestDatabase(engine);
    });
    after(() => storage.close());

    it('leads alone: runs the work, keeps the lead across rounds, skips a round while one runs, and unlocks on close', async () => {
      const changes: string[] = [];
      const leadership = new Leadership(storage.db, { onChange: (job, leading) => changes.push(`${job}:${leading}`) });
      let runs = 0;
      assert.equal(await leadership.run('backups', async () => (runs += 1)), true);
      assert.equal(await leadership.run('backups', async () => (runs += 1)), true);
      assert.equal(runs, 2);
      assert.deepEqual(leadership.leading(), ['backups']);
      assert.deepEqual(changes, ['backups:true'], 'the lead is taken once');
      assert.deepEqual((await heldLocks()).map((lock) => lock.job), [leaderJobs.backups]);

      let started: () => void = () => undefined;
      const running = new Promise<void>((resolve) => (started = resolve));
      let finish: () => void = () => undefined;
      const long = leadership.run('backups', () => {
        started();
        return new Promise<void>((resolve) => (finish = resolve));
      });
      await running;
      assert.equal(await leadership.run('backups', async () => (runs += 1)), false, 'the next round waits for none: it is skipped');
      finish();
      assert.equal(await long, true);
      await assert.rejects(leadership.run('backups', async () => Promise.reject(new Error('the job failed'))), /the job failed/);
      assert.deepEqual(leadership.leading(), ['backups'], 'a failed job keeps the lead');

      await leadership.close();
      assert.deepEqual(changes, ['backups:true', 'backups:false']);
      assert.deepEqual(await heldLocks(), [], 'given up on close (on PGlite the one session stays, so it unlocks)');
      assert.equal(await leadership.run('backups', async () => (runs += 1)), false, 'closed: no more rounds');
      assert.equal(runs, 2);
    });

    it('the dedicated connection runs as the app role and sees no rows: no RLS context is ever set on it', async () => {
      const tenantId = newId();
      await storage.db.withPlatform((tx) => tx.query("INSERT INTO tenants (id, name, region) VALUES ($1, 'Leader', 'local')", [tenantId]));
      const session = await storage.db.session();
      try {
        assert.deepEqual((await session.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants')).rows, [{ n: 0 }]);
        assert.deepEqual((await session.query('SELECT current_user AS role')).rows, [{ role: storage.config.databaseAppRole }], 'as the app role, as the pool');
        // Control: the platform scope sees the tenant.
        assert.ok((await storage.db.withPlatform((tx) => tx.query('SELECT 1 FROM tenants WHERE id = $1', [tenantId]))).rowCount === 1);
      } finally {
        await session.release();
      }
    });

    it('two instances: one leads each job, the other skips; the lead moves when the leader dies or closes', { skip: engine === 'pglite' ? 'one process owns a PGlite folder' : false }, async () => {
      const changes: string[] = [];
      const a = new Leadership(storage.db, { onChange: (job, leading) => changes.push(`a ${job}:${leading}`) });
      const b = new Leadership(storage.db, { onChange: (job, leading) => changes.push(`b ${job}:${leading}`) });
      const ran: string[] = [];
      const round = (who: string, leadership: Leadership, job: LeaderJob) => leadership.run(job, async () => ran.push(`${who} ${job}`));
      try {
        assert.equal(await round('a', a, 'backups'), true);
        assert.equal(await round('b', b, 'backups'), false);
        assert.equal(await round('b', b, 'audit-prune'), true, 'jobs are led independently');
        assert.equal(await round('a', a, 'audit-prune'), false);
        assert.deepEqual(ran, ['a backups', 'b audit-prune']);

        // The leader's connection dies (a crash, a network cut): the server ends its session and its locks.
        const leaderPid = (await heldLocks()).find((lock) => lock.job === leaderJobs.backups)?.pid;
        assert.ok(leaderPid !== undefined);
        await storage.asOwner('SELECT pg_terminate_backend($1)', [leaderPid]);
        await until('b taking over the backups', () => round('b', b, 'backups'));
        await assert.rejects(round('a', a, 'backups'), 'the old leader notices on its next round');
        assert.ok(changes.includes('a backups:false'));
        assert.equal(await round('a', a, 'backups'), false, 'and then, on a new connection, is no longer the leader');
        assert.deepEqual(b.leading().sort(), ['audit-prune', 'backups']);

        await b.close();
        assert.equal(await round('a', a, 'backups'), true, 'a closed leader hands over at once');
        assert.equal(await round('a', a, 'audit-prune'), true);
        assert.deepEqual(ran.slice(2), ['b backups', 'a backups', 'a audit-prune']);
      } finally {
        await a.close();
        await b.close();
      }
      assert.deepEqual(await heldLocks(), []);
    });
  });
}
