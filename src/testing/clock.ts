import type { Clock } from '../platform/clock.ts';

/** Real time plus an offset the test moves: lockouts, delays and expiries without waiting. */
export function movableClock(): Clock & { advance(ms: number): void } {
  let offset = 0;
  return { now: () => new Date(Date.now() + offset), advance: (ms: number) => void (offset += ms) };
}
