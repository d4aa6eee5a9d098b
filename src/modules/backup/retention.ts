/**
 * Backup retention as a pure function of the backups, the time and the policy, so the pruning job and
 * its tests agree on exactly what goes. Days and weeks are UTC calendar buckets (weeks start on Monday,
 * ISO 8601), not rolling 24-hour windows: a backup keeps its bucket whatever time the pruning runs at.
 */
export interface RetentionPolicy {
  keepDailyDays: number;
  keepWeeklyWeeks: number;
}

export interface BackupStamp {
  id: string;
  createdAt: Date;
}

/** `future`: dated after `now` (another instance's clock runs ahead); never pruned, never counted in a bucket. */
export type KeepReason = 'daily' | 'weekly' | 'newest' | 'future';

export interface RetentionDecision {
  /** Newest first. */
  prune: BackupStamp[];
  /** Newest first, each with every reason that keeps it. */
  keep: { backup: BackupStamp; reasons: KeepReason[] }[];
}

const dayMs = 86_400_000;

function utcDay(date: Date): number {
  return Math.floor(date.getTime() / dayMs);
}

/** Day 0 (1970-01-01) was a Thursday: shifted by 3, weeks start on Monday, across year ends and ISO week 53 alike. */
function weekOf(day: number): number {
  return Math.floor((day + 3) / 7);
}

/**
 * Which backups to prune at `now`: keep the newest backup of each of the last keepDailyDays UTC days (today
 * counts as day 1) and the newest of each of the last keepWeeklyWeeks ISO weeks (Monday start, UTC; the
 * current week counts); everything else goes. Never prunes the newest backup overall (of those not in the
 * future). Backups dated in the future are kept. Of two backups with the same time, the greater id is newer.
 */
export function backupsToPrune(backups: readonly BackupStamp[], now: Date, policy: RetentionPolicy): RetentionDecision {
  for (const [name, value] of Object.entries(policy)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`retention ${name} must be a whole number, 0 or more`);
  }
  if (Number.isNaN(now.getTime()) || backups.some((backup) => Number.isNaN(backup.createdAt.getTime()))) throw new RangeError('retention needs valid dates');

  const newestFirst = [...backups].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const today = utcDay(now);
  const thisWeek = weekOf(today);
  const daysTaken = new Set<number>();
  const weeksTaken = new Set<number>();
  let newestTaken = false;
  const decision: RetentionDecision = { prune: [], keep: [] };

  // Newest first, so the first backup met in a day or week is the one that bucket keeps.
  for (const backup of newestFirst) {
    const reasons: KeepReason[] = [];
    if (backup.createdAt > now) {
      reasons.push('future');
    } else {
      const day = utcDay(backup.createdAt);
      const week = weekOf(day);
      if (today - day < policy.keepDailyDays && !daysTaken.has(day)) {
        daysTaken.add(day);
        reasons.push('daily');
      }
      if (thisWeek - week < policy.keepWeeklyWeeks && !weeksTaken.has(week)) {
        weeksTaken.add(week);
        reasons.push('weekly');
      }
      if (!newestTaken) {
        newestTaken = true;
        reasons.push('newest');
      }
    }
    if (reasons.length === 0) decision.prune.push(backup);
    else decision.keep.push({ backup, reasons });
  }
  return decision;
}
