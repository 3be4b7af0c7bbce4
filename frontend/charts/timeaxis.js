// The step axis of the time charts: the recent window or the whole run, moved in jumps so that
// the axis is redrawn a few times a minute rather than at every update.

export const RECENT = 1500;

/**
 * @param {number[]} steps  the series' steps
 * @param {"recent"|"all"} mode
 * @param {number[]|null} current  the range shown now
 * @returns {number[]|null}  a new [lo, hi], or null to keep `current`
 */
export function stepRange(steps, mode, current) {
  const last = steps[steps.length - 1], first = steps[0];
  if (last === undefined) return current ? null : [0, 100];
  const lo = mode === "recent" ? Math.max(first, last - RECENT) : first;
  if (current && current[0] <= lo && last <= current[1] && (mode !== "recent" || lo - current[0] <= 0.25 * RECENT)
      && (mode === "recent" || current[0] === lo)) return null;
  const ahead = mode === "recent" ? 0.2 * RECENT : Math.max(20, 0.25 * (last - lo));
  return [lo, Math.max(last + ahead, lo + 1)];
}

/** Index of the first step >= lo (the visible part of a series). */
export function firstVisible(steps, lo) {
  const i = steps.findIndex((t) => t >= lo);
  return i < 0 ? steps.length : i;
}
