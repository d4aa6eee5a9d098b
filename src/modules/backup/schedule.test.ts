import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertValidSchedule, dueSlot, nextSlot, nextTickMs } from './schedule.ts';

const at = (iso: string) => new Date(iso);
const hourMs = 3_600_000;

describe('backup schedule: daily at 03:00 UTC', () => {
  const daily = '0 3 * * *';

  it('is due from the slot itself, once per slot', () => {
    const slot = at('2021-01-01T03:00:00.000Z');
    const before = at('2020-12-31T03:00:00.000Z');
    assert.deepEqual(dueSlot(daily, slot, before), slot);
    assert.deepEqual(dueSlot(daily, at('2021-01-01T14:00:00Z'), before), slot);
    // Handled: not due again until the next one.
    assert.equal(dueSlot(daily, at('2021-01-01T14:00:00Z'), slot), undefined);
    assert.equal(dueSlot(daily, at('2021-01-01T02:59:59.999Z'), before), undefined);
    assert.deepEqual(dueSlot(daily, at('2021-01-02T03:00:00Z'), slot), at('2021-01-02T03:00:00Z'));
  });

  it('collapses missed slots into the latest one', () => {
    assert.deepEqual(dueSlot(daily, at('2021-01-10T12:00:00Z'), at('2021-01-01T00:00:00Z')), at('2021-01-10T03:00:00Z'));
    assert.deepEqual(dueSlot(daily, at('2021-01-10T02:00:00Z'), at('2021-01-01T00:00:00Z')), at('2021-01-09T03:00:00Z'));
  });

  it('is undefined when nothing fell due since `since`, including a `since` after now', () => {
    assert.equal(dueSlot(daily, at('2021-01-01T12:00:00Z'), at('2021-01-01T03:00:00.001Z')), undefined);
    assert.equal(dueSlot(daily, at('2021-01-01T12:00:00Z'), at('2021-01-02T00:00:00Z')), undefined);
  });

  it('names the next slot strictly after now, across the year end', () => {
    assert.deepEqual(nextSlot(daily, at('2021-01-01T02:59:59.999Z')), at('2021-01-01T03:00:00Z'));
    assert.deepEqual(nextSlot(daily, at('2021-01-01T03:00:00Z')), at('2021-01-02T03:00:00Z'));
    assert.deepEqual(nextSlot(daily, at('2020-12-31T04:00:00Z')), at('2021-01-01T03:00:00Z'));
  });
});

describe('backup schedule: hourly and every 15 minutes', () => {
  it('hourly: the top of the hour', () => {
    assert.deepEqual(dueSlot('0 * * * *', at('2021-05-05T10:30:00Z'), at('2021-05-05T09:00:00Z')), at('2021-05-05T10:00:00Z'));
    assert.equal(dueSlot('0 * * * *', at('2021-05-05T10:30:00Z'), at('2021-05-05T10:00:00Z')), undefined);
    assert.deepEqual(nextSlot('0 * * * *', at('2021-05-05T10:30:00Z')), at('2021-05-05T11:00:00Z'));
    assert.deepEqual(nextSlot('0 * * * *', at('2021-12-31T23:00:00Z')), at('2022-01-01T00:00:00Z'));
  });

  it('every 15 minutes: four slots an hour, each due once', () => {
    const slots: Date[] = [];
    for (let now = at('2021-05-05T00:00:00Z'); slots.length < 5; ) {
      now = nextSlot('*/15 * * * *', now);
      slots.push(now);
    }
    assert.deepEqual(
      slots.map((slot) => slot.toISOString()),
      ['2021-05-05T00:15:00.000Z', '2021-05-05T00:30:00.000Z', '2021-05-05T00:45:00.000Z', '2021-05-05T01:00:00.000Z', '2021-05-05T01:15:00.000Z'],
    );
    assert.deepEqual(dueSlot('*/15 * * * *', at('2021-05-05T00:44:59Z'), at('2021-05-05T00:15:00Z')), at('2021-05-05T00:30:00Z'));
    assert.equal(dueSlot('*/15 * * * *', at('2021-05-05T00:44:59Z'), at('2021-05-05T00:30:00Z')), undefined);
  });

  it('names of days and leap days work', () => {
    assert.deepEqual(nextSlot('0 3 * * THU', at('2021-03-01T00:00:00Z')), at('2021-03-04T03:00:00Z'));
    assert.deepEqual(nextSlot('0 0 29 2 *', at('2021-03-01T00:00:00Z')), at('2024-02-29T00:00:00Z'));
    assert.deepEqual(dueSlot('0 0 29 2 *', at('2023-06-01T00:00:00Z'), at('2019-01-01T00:00:00Z')), at('2020-02-29T00:00:00Z'));
  });
});

describe('backup schedule: seconds (6 fields) and the scheduler\'s tick', () => {
  it('six fields put seconds first: every 2 s is one slot per even second, each due once', () => {
    const every2s = '*/2 * * * * *';
    assert.deepEqual(nextSlot(every2s, at('2021-05-05T10:00:00.000Z')), at('2021-05-05T10:00:02Z'));
    assert.deepEqual(nextSlot(every2s, at('2021-05-05T10:00:01.999Z')), at('2021-05-05T10:00:02Z'));
    assert.deepEqual(dueSlot(every2s, at('2021-05-05T10:00:03.500Z'), at('2021-05-05T10:00:00Z')), at('2021-05-05T10:00:02Z'));
    assert.equal(dueSlot(every2s, at('2021-05-05T10:00:03.500Z'), at('2021-05-05T10:00:02Z')), undefined);
    // Read as 5 fields, `0 3 * * *` is 03:00 daily; with a leading seconds field it is minute 3 of every hour.
    assert.deepEqual(nextSlot('0 3 * * * *', at('2021-05-05T10:00:00Z')), at('2021-05-05T10:03:00Z'));
  });

  it('waits until just past the next slot, and never more than a minute', () => {
    assert.equal(nextTickMs('*/2 * * * * *', at('2021-05-05T10:00:00.500Z')), 1_505);
    assert.equal(nextTickMs('*/15 * * * *', at('2021-05-05T10:14:59.000Z')), 1_005);
    assert.equal(nextTickMs('0 3 * * *', at('2021-05-05T10:00:00Z')), 60_000);
    // A tick that fires at its time finds that slot due (it is `now` plus the lag).
    const now = at('2021-05-05T10:00:00.500Z');
    const fired = new Date(now.getTime() + nextTickMs('*/2 * * * * *', now));
    assert.deepEqual(dueSlot('*/2 * * * * *', fired, now), at('2021-05-05T10:00:02Z'));
  });
});

describe('backup schedule: UTC whatever the local time zone', () => {
  it('slots stay 24 hours apart at 03:00 UTC through daylight saving changes in Berlin and New York', () => {
    const original = process.env['TZ'];
    try {
      for (const zone of ['Europe/Berlin', 'America/New_York']) {
        process.env['TZ'] = zone;
        // Proof that the zone took effect: the local offset differs between winter and summer.
        assert.notEqual(at('2021-01-15T12:00:00Z').getTimezoneOffset(), at('2021-07-15T12:00:00Z').getTimezoneOffset(), zone);
        for (const [from, to] of [
          ['2021-03-10T00:00:00Z', '2021-04-02T00:00:00Z'],
          ['2021-10-25T00:00:00Z', '2021-11-10T00:00:00Z'],
        ] as const) {
          let slot = nextSlot('0 3 * * *', at(from));
          while (slot < at(to)) {
            assert.equal(slot.getUTCHours(), 3, `${zone} ${slot.toISOString()}`);
            const next = nextSlot('0 3 * * *', slot);
            assert.equal(next.getTime() - slot.getTime(), 24 * hourMs, `${zone} ${slot.toISOString()}`);
            slot = next;
          }
        }
        // 02:30 does not exist in Berlin on 2021-03-28 and 01:30 happens twice in New York on 2021-11-07; in UTC both are one slot.
        assert.deepEqual(dueSlot('30 2 * * *', at('2021-03-28T12:00:00Z'), at('2021-03-27T12:00:00Z')), at('2021-03-28T02:30:00Z'));
        assert.deepEqual(nextSlot('30 1 * * *', at('2021-11-07T01:30:00Z')), at('2021-11-08T01:30:00Z'));
      }
    } finally {
      if (original === undefined) delete process.env['TZ'];
      else process.env['TZ'] = original;
    }
  });
});

describe('backup schedule: invalid expressions', () => {
  const invalid = [
    '',
    'off',
    '* * *',
    '0 0 3 * * * 2030',
    '61 * * * * *',
    '61 * * * *',
    '0 24 * * *',
    '0 0 0 * *',
    '0 0 * 13 *',
    '0 0 * * 8',
    '0 0 31 2 *',
    '5-1 * * * *',
    '*/0 * * * *',
    'a b c d e',
    'H 3 * * *',
    'H/15 * * * *',
    '@daily',
  ];

  for (const expression of invalid) {
    it(`refuses ${JSON.stringify(expression)} with a message naming it`, () => {
      for (const use of [() => assertValidSchedule(expression), () => nextSlot(expression, new Date()), () => dueSlot(expression, new Date(), new Date(0))]) {
        assert.throws(use, (error: unknown) => error instanceof Error && error.message.startsWith(`backup schedule ${JSON.stringify(expression)} `));
      }
    });
  }

  it('accepts the default, day names, seconds and surrounding or repeated whitespace', () => {
    for (const expression of ['0 3 * * *', '0 3 * * THU', '0 3 * * mon-fri', '  0  3 * *\t* ', '0 0 29 2 *', '0 3 1,15 * *', '*/10 * * * * *', '30 0 3 * * *']) assert.doesNotThrow(() => assertValidSchedule(expression), expression);
  });
});
