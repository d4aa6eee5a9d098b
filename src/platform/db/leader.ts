import type { Database, DbSession } from './database.ts';

/**
 * The fleet's background jobs that should run on one instance at a time. Each has a PostgreSQL advisory lock
 * (key pair `lockSpace`, the number here); the instance holding it leads that job, the others skip their
 * rounds. Different jobs may be led by different instances.
 */
export const leaderJobs = { 'audit-checkpoints': 1, 'audit-prune': 2, 'agent-stale-sweep': 3, backups: 4 } as const;
export type LeaderJob = keyof typeof leaderJobs;

/** The first key of the two-key advisory locks; the other lock spaces of Bulwark are 724_518_300 and _301. */
const lockSpace = 724_518_302;
/** A check on the held connection that takes longer counts as a lost connection (a half-open socket). */
const checkTimeoutMs = 10_000;

export interface LeadershipOptions {
  /** Told when this instance takes or loses a job's lead (for the logs). */
  onChange?: (job: LeaderJob, leading: boolean) => void;
}

/**
 * Leader election for background jobs, with session-level advisory locks (`pg_try_advisory_lock`) held on a
 * dedicated connection (`Database.session`) for as long as this instance leads.
 *
 * Why a session lock, and not `pg_try_advisory_xact_lock` in the job's own transaction: none of the jobs is
 * one transaction (checkpoints sign chain by chain, pruning goes tenant by tenant, the stale sweep marks each
 * agent under its own tenant, a backup reads a snapshot, writes objects and two more rows), and a transaction
 * lock only serialises: every instance would take it in turn and run every round, one after the other. A lock
 * that lives with a connection elects one instance; the others skip until it is gone.
 *
 * It is gone with its connection: when a leader is killed the server ends its session as the socket closes,
 * and another instance takes the lock on its next round. (A host that vanishes without closing its sockets is
 * noticed by the server's TCP keepalive, `tcp_keepalives_idle`.) A leader whose connection fails gives up its
 * jobs and tries again on the next round. For the window in which an old leader has not yet noticed the loss
 * of its connection while another already leads, each job stays safe to run twice, as it was when every
 * instance ran them: a second checkpoint or prune at the same point is refused by the checkpoint's primary
 * key (that round fails and rolls back), the sweep re-checks each agent under its row
 * lock, and a backup slot is claimed once in `backup_runs`. Leadership keeps the others from even trying;
 * exactly-once is still each job's own guarantee.
 *
 * On PGlite one process owns the data folder and there is one session: this instance always leads, through
 * the same calls.
 */
export class Leadership {
  readonly #db: Database;
  readonly #onChange: (job: LeaderJob, leading: boolean) => void;
  readonly #held = new Set<LeaderJob>();
  readonly #running = new Map<LeaderJob, Promise<boolean>>();
  #session: Promise<DbSession> | undefined;
  /** The session `#session` resolved to: a failure on an older one must not end a newer one's leads. */
  #current: DbSession | undefined;
  #closed = false;

  constructor(db: Database, options: LeadershipOptions = {}) {
    this.#db = db;
    this.#onChange = options.onChange ?? (() => undefined);
  }

  /**
   * Runs `work` if this instance leads `job`, taking the lead when no instance holds it; answers whether it
   * ran. A round while the job's previous one still runs here is skipped as well. Throws what the work or
   * the database threw (the lead is kept when only the work failed).
   */
  async run(job: LeaderJob, work: () => Promise<unknown>): Promise<boolean> {
    if (this.#closed || this.#running.has(job)) return false;
    const round = (async () => {
      if (!(await this.#lead(job))) return false;
      await work();
      return true;
    })();
    this.#running.set(job, round);
    try {
      return await round;
    } finally {
      this.#running.delete(job);
    }
  }

  /** The jobs this instance leads now. */
  leading(): LeaderJob[] {
    return [...this.#held];
  }

  /** Takes no more rounds, waits for those running, and gives up every lead: another instance takes over on its next round. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled(this.#running.values());
    const opening = this.#session;
    this.#session = undefined;
    this.#current = undefined;
    const session = await opening?.catch(() => undefined);
    if (session === undefined) return;
    // On PostgreSQL releasing the connection would end the locks anyway; PGlite's one session stays, so unlock.
    for (const job of this.#held) await session.query('SELECT pg_advisory_unlock($1, $2)', [lockSpace, leaderJobs[job]]).catch(() => undefined);
    this.#dropAll();
    await session.release();
  }

  async #lead(job: LeaderJob): Promise<boolean> {
    const session = await this.#connected();
    try {
      if (this.#held.has(job)) {
        // A session that still answers still holds its locks: they end only with it, or with an unlock.
        await withTimeout(session.query('SELECT 1'), checkTimeoutMs);
        return true;
      }
      const { rows } = await withTimeout(session.query<{ acquired: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS acquired', [lockSpace, leaderJobs[job]]), checkTimeoutMs);
      if (rows[0]?.acquired !== true) return false;
      this.#held.add(job);
      this.#onChange(job, true);
      return true;
    } catch (error) {
      await this.#lost(session);
      throw error;
    }
  }

  #connected(): Promise<DbSession> {
    if (this.#session === undefined) {
      const opening = this.#db.session();
      opening.then(
        (session) => {
          if (this.#session === opening) this.#current = session;
        },
        // A failed connect is retried on the next round.
        () => {
          if (this.#session === opening) this.#session = undefined;
        },
      );
      this.#session = opening;
    }
    return this.#session;
  }

  /** The connection failed: whatever it held ends with it (the server ends the session, or will once it notices). */
  async #lost(session: DbSession): Promise<void> {
    if (this.#current === session) {
      this.#session = undefined;
      this.#current = undefined;
      this.#dropAll();
    }
    await session.release().catch(() => undefined);
  }

  #dropAll(): void {
    for (const job of this.#held) this.#onChange(job, false);
    this.#held.clear();
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`leadership: the database did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
