import { type CronExpression, CronExpressionParser } from 'cron-parser';

/**
 * Backup schedule math on cron expressions, always in UTC, so every instance computes the same slots
 * whatever its local time zone and daylight saving time. A slot is identified by its scheduled time, which
 * is what lets instances agree that a slot has been backed up once. Five fields (minute hour day-of-month
 * month day-of-week), or six with seconds first (`*\/10 * * * * *`: every ten seconds).
 */

function parse(expression: string, currentDate: Date): CronExpression {
  const fields = expression.trim().split(/\s+/);
  // cron-parser also takes fewer than 5 fields, which would be a different schedule than the operator read.
  if (fields.length !== 5 && fields.length !== 6) {
    throw new Error(
      `backup schedule ${JSON.stringify(expression)} must be a cron expression of 5 fields (minute hour day-of-month month day-of-week, UTC) or 6 (seconds first)`,
    );
  }
  // `H` picks a random minute per process: instances would disagree on the slots.
  if (fields.some((field) => /(?<![A-Z])H/i.test(field))) throw new Error(`backup schedule ${JSON.stringify(expression)} uses H, which is not the same slot on every instance`);
  try {
    return CronExpressionParser.parse(fields.join(' '), { currentDate, tz: 'UTC' });
  } catch (error) {
    throw new Error(`backup schedule ${JSON.stringify(expression)} is not a valid cron expression: ${(error as Error).message}`, { cause: error });
  }
}

/** Throws a clear Error for an invalid expression (used at startup so a typo fails fast). */
export function assertValidSchedule(expression: string): void {
  parse(expression, new Date()).next();
}

/**
 * The schedule slot (the scheduled time, UTC) most recently due at `now` (a slot at exactly `now` is due),
 * or undefined if none is later than `since` (the last slot already handled, or when scheduling began).
 * Several missed slots collapse into the latest one.
 */
export function dueSlot(expression: string, now: Date, since: Date): Date | undefined {
  // prev() finds slots strictly before its current date; one millisecond later makes `now` itself count.
  const slot = parse(expression, new Date(now.getTime() + 1))
    .prev()
    .toDate();
  return slot > since ? slot : undefined;
}

/** When the next slot after `now` is due. */
export function nextSlot(expression: string, now: Date): Date {
  return parse(expression, now).next().toDate();
}

/** The scheduler looks at least this often, so a changed clock or a missed timer costs at most a minute. */
const maxTickMs = 60_000;
/** A little past the slot: a timer and the wall clock may disagree by a millisecond, and early would find nothing due. */
const tickLagMs = 5;

/** How long the scheduler waits from `now` before it looks for a due slot again: until the next slot, at most a minute. */
export function nextTickMs(expression: string, now: Date): number {
  return Math.min(maxTickMs, nextSlot(expression, now).getTime() - now.getTime() + tickLagMs);
}
