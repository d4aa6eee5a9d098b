import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BackupStamp, backupsToPrune, type RetentionPolicy } from './retention.ts';

/** Ids are the creation minute, so sorted ids read as a timeline. */
function stamp(iso: string): BackupStamp {
  const createdAt = new Date(iso);
  return { id: createdAt.toISOString().slice(0, 16), createdAt };
}

/**
 * The calendar: the scheduled backup at 03:00 UTC every day for 60 days (2020-11-15 .. 2021-01-13), which
 * crosses the year end inside ISO week 2020-W53 (Mon 2020-12-28 .. Sun 2021-01-03), plus on-demand backups:
 * one before the day's scheduled one (it loses its day), two later the same day (they win it), and one
 * in the last millisecond of a Sunday (it stays in its week).
 */
const scheduled = Array.from({ length: 60 }, (_, day) => stamp(new Date(Date.UTC(2020, 10, 15 + day, 3)).toISOString()));
const onDemand = ['2020-12-24T01:00:00Z', '2020-12-31T15:00:00Z', '2021-01-03T22:00:00Z', '2021-01-10T23:59:59.999Z'].map(stamp);
const calendar = [...scheduled, ...onDemand].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());

const standard: RetentionPolicy = { keepDailyDays: 7, keepWeeklyWeeks: 4 };

function existingAt(now: Date): BackupStamp[] {
  return calendar.filter((backup) => backup.createdAt <= now);
}

function keptIds(backups: readonly BackupStamp[], now: Date, policy: RetentionPolicy): string[] {
  const { keep, prune } = backupsToPrune(backups, now, policy);
  // Every backup is decided exactly once.
  assert.deepEqual([...keep.map(({ backup }) => backup.id), ...prune.map((backup) => backup.id)].sort(), backups.map((backup) => backup.id).sort());
  return keep.map(({ backup }) => backup.id).sort();
}

function reasonsOf(backups: readonly BackupStamp[], now: Date, policy: RetentionPolicy): Map<string, string[]> {
  return new Map(backupsToPrune(backups, now, policy).keep.map(({ backup, reasons }) => [backup.id, reasons]));
}

/** What a running server leaves: each backup is followed by a prune at its own time, and one more at `until`. */
function simulate(until: Date, policy: RetentionPolicy): string[] {
  let survivors: BackupStamp[] = [];
  for (const backup of existingAt(until)) {
    survivors = backupsToPrune([...survivors, backup], backup.createdAt, policy).keep.map((kept) => kept.backup);
  }
  return backupsToPrune(survivors, until, policy)
    .keep.map(({ backup }) => backup.id)
    .sort();
}

/** Sunday evening at the end of ISO week 2020-W53, in 2021. */
const endOfWeek53 = new Date('2021-01-03T23:00:00Z');
/** Wednesday of 2021-W02, after that day's scheduled backup. */
const wednesdayAfter = new Date('2021-01-13T03:30:00Z');
/** The same Wednesday before its scheduled backup. */
const wednesdayBefore = new Date('2021-01-13T02:59:00Z');

describe('backup retention on a simulated calendar', () => {
  const cases: { name: string; now: Date; policy: RetentionPolicy; survivors: string[] }[] = [
    {
      name: 'end of ISO week 53: seven dailies across the year end, and the newest of the three weeks before',
      now: endOfWeek53,
      policy: standard,
      survivors: [
        '2020-12-13T03:00',
        '2020-12-20T03:00',
        '2020-12-27T03:00',
        '2020-12-28T03:00',
        '2020-12-29T03:00',
        '2020-12-30T03:00',
        '2020-12-31T15:00',
        '2021-01-01T03:00',
        '2021-01-02T03:00',
        '2021-01-03T22:00',
      ],
    },
    {
      name: 'ten days later: week 53 (2020 and 2021 in one week) keeps one backup, its Sunday evening one',
      now: wednesdayAfter,
      policy: standard,
      survivors: [
        '2020-12-27T03:00',
        '2021-01-03T22:00',
        '2021-01-07T03:00',
        '2021-01-08T03:00',
        '2021-01-09T03:00',
        '2021-01-10T23:59',
        '2021-01-11T03:00',
        '2021-01-12T03:00',
        '2021-01-13T03:00',
      ],
    },
    {
      name: 'before the day\'s first backup: today counts, so only six days have one',
      now: wednesdayBefore,
      policy: standard,
      survivors: [
        '2020-12-27T03:00',
        '2021-01-03T22:00',
        '2021-01-07T03:00',
        '2021-01-08T03:00',
        '2021-01-09T03:00',
        '2021-01-10T23:59',
        '2021-01-11T03:00',
        '2021-01-12T03:00',
      ],
    },
    {
      name: 'the first week: nothing is old enough to go',
      now: new Date('2020-11-20T12:00:00Z'),
      policy: standard,
      survivors: ['2020-11-15T03:00', '2020-11-16T03:00', '2020-11-17T03:00', '2020-11-18T03:00', '2020-11-19T03:00', '2020-11-20T03:00'],
    },
    {
      name: 'three days and eight weeks: Sundays back to the end of November',
      now: wednesdayAfter,
      policy: { keepDailyDays: 3, keepWeeklyWeeks: 8 },
      survivors: [
        '2020-11-29T03:00',
        '2020-12-06T03:00',
        '2020-12-13T03:00',
        '2020-12-20T03:00',
        '2020-12-27T03:00',
        '2021-01-03T22:00',
        '2021-01-10T23:59',
        '2021-01-11T03:00',
        '2021-01-12T03:00',
        '2021-01-13T03:00',
      ],
    },
    {
      name: 'no weeklies: the last seven days only',
      now: endOfWeek53,
      policy: { keepDailyDays: 7, keepWeeklyWeeks: 0 },
      survivors: ['2020-12-28T03:00', '2020-12-29T03:00', '2020-12-30T03:00', '2020-12-31T15:00', '2021-01-01T03:00', '2021-01-02T03:00', '2021-01-03T22:00'],
    },
    {
      name: 'one day, one week: the newest backup alone',
      now: wednesdayAfter,
      policy: { keepDailyDays: 1, keepWeeklyWeeks: 1 },
      survivors: ['2021-01-13T03:00'],
    },
  ];

  for (const { name, now, policy, survivors } of cases) {
    it(name, () => {
      assert.deepEqual(keptIds(existingAt(now), now, policy), survivors);
      // Pruning as the days go by leaves the same: nothing pruned early would have been kept later.
      assert.deepEqual(simulate(now, policy), survivors);
    });
  }

  it('says why each backup is kept', () => {
    const atWeek53 = reasonsOf(existingAt(endOfWeek53), endOfWeek53, standard);
    assert.deepEqual(atWeek53.get('2021-01-03T22:00'), ['daily', 'weekly', 'newest']);
    assert.deepEqual(atWeek53.get('2020-12-31T15:00'), ['daily']);
    assert.deepEqual(atWeek53.get('2020-12-27T03:00'), ['weekly']);
    const later = reasonsOf(existingAt(wednesdayAfter), wednesdayAfter, standard);
    assert.deepEqual(later.get('2021-01-03T22:00'), ['weekly']);
    assert.deepEqual(later.get('2021-01-10T23:59'), ['daily', 'weekly']);
    assert.deepEqual(later.get('2021-01-13T03:00'), ['daily', 'weekly', 'newest']);
  });

  it('returns both lists newest first', () => {
    const { keep, prune } = backupsToPrune(calendar, wednesdayAfter, standard);
    for (const list of [keep.map(({ backup }) => backup), prune]) {
      assert.deepEqual(list, [...list].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime()));
    }
  });
});

describe('backup retention edge cases', () => {
  const now = new Date('2021-06-15T12:00:00Z');

  it('keeps nothing and prunes nothing when there are no backups', () => {
    assert.deepEqual(backupsToPrune([], now, standard), { prune: [], keep: [] });
  });

  it('keeps a lone backup older than every window, as the newest', () => {
    const old = stamp('2019-02-01T03:00:00Z');
    assert.deepEqual(backupsToPrune([old], now, standard), { prune: [], keep: [{ backup: old, reasons: ['newest'] }] });
  });

  it('with no days and no weeks kept, keeps the newest backup only', () => {
    assert.deepEqual(keptIds(calendar, new Date('2021-01-20T00:00:00Z'), { keepDailyDays: 0, keepWeeklyWeeks: 0 }), ['2021-01-13T03:00']);
  });

  it('keeps backups dated after now without letting them take a day, a week or the newest slot', () => {
    const past = [stamp('2021-06-14T03:00:00Z'), stamp('2021-06-15T03:00:00Z')];
    const ahead = [stamp('2021-06-15T12:05:00Z'), stamp('2022-01-01T00:00:00Z')];
    const reasons = reasonsOf([...past, ...ahead], now, { keepDailyDays: 1, keepWeeklyWeeks: 0 });
    assert.deepEqual(Object.fromEntries(reasons), {
      '2022-01-01T00:00': ['future'],
      '2021-06-15T12:05': ['future'],
      '2021-06-15T03:00': ['daily', 'newest'],
    });
  });

  it('puts the first millisecond of Monday in the new week and the last of Sunday in the old one', () => {
    const monday = new Date('2021-01-04T00:00:00.000Z');
    const backups = [stamp('2021-01-03T23:59:59.999Z'), stamp('2021-01-04T00:00:00.000Z')];
    assert.deepEqual(keptIds(backups, monday, { keepDailyDays: 1, keepWeeklyWeeks: 1 }), ['2021-01-04T00:00']);
    assert.deepEqual(keptIds(backups, monday, { keepDailyDays: 1, keepWeeklyWeeks: 2 }), ['2021-01-03T23:59', '2021-01-04T00:00']);
  });

  it('breaks a tie in time by id, whatever the input order', () => {
    const createdAt = new Date('2021-06-15T03:00:00Z');
    const [a, b] = [{ id: 'aaaaaaaaaaaa', createdAt }, { id: 'bbbbbbbbbbbb', createdAt }];
    for (const backups of [[a, b], [b, a]]) {
      assert.deepEqual(backupsToPrune(backups, now, { keepDailyDays: 1, keepWeeklyWeeks: 1 }).prune, [a]);
    }
  });

  it('refuses a policy that is not whole numbers of 0 or more, and invalid dates', () => {
    for (const policy of [{ keepDailyDays: -1, keepWeeklyWeeks: 0 }, { keepDailyDays: 1.5, keepWeeklyWeeks: 0 }, { keepDailyDays: 7, keepWeeklyWeeks: Number.NaN }]) {
      assert.throws(() => backupsToPrune([], now, policy), RangeError);
    }
    assert.throws(() => backupsToPrune([], new Date('nope'), standard), RangeError);
    assert.throws(() => backupsToPrune([{ id: 'x', createdAt: new Date('nope') }], now, standard), RangeError);
  });
});
