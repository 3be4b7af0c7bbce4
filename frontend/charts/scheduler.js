// Which charts redraw in this animation frame: the most overdue first.

/**
 * Each chart has a fastest interval (`every`, ms) and a share of the main thread (`share`); its
 * interval stretches to (its measured draw time / its share), so on a slow machine the charts
 * slow down together instead of the tab freezing. A frame draws the most overdue chart, then the
 * next most overdue while the frame's drawing has taken less than `budget` ms, so that cheap
 * charts do not each wait for a frame of their own (at most `perFrame` charts).
 */
export class Scheduler {
  constructor(budget = 4, perFrame = 3) {
    this.jobs = new Map();  // name -> {every, share, last, cost, count}
    this.budget = budget;
    this.perFrame = perFrame;
  }

  add(name, every, share) {
    this.jobs.set(name, { every, share, last: 0, cost: undefined, count: 0 });
  }

  /** Forget when `name` was drawn, so that it is due at once. */
  due(name) {
    const job = this.jobs.get(name);
    if (job) job.last = 0;
  }

  /** The name of the most overdue chart among those `wants(name)` says need drawing, or null. */
  pick(now, wants) {
    let pick = null, urgency = 1;
    for (const [name, job] of this.jobs) {
      if (!wants(name)) continue;
      const interval = Math.max(job.every, (job.cost || 0) / job.share);
      const u = (now - job.last) / interval;
      if (u >= urgency) { pick = name; urgency = u; }
    }
    return pick;
  }

  /** Run `draw()` as the job `name`, recording when and how long (a smoothed cost). */
  run(name, now, draw) {
    const job = this.jobs.get(name), t0 = performance.now();
    job.last = now;
    draw();
    const spent = performance.now() - t0;
    // smoothed, with one slow sample (a GC pause, the OS preempting the tab) counting at most 2x
    job.cost = job.cost === undefined ? spent : 0.8 * job.cost + 0.2 * Math.min(spent, 2 * job.cost + 1);
    job.count++;
    return spent;
  }

  /**
   * One animation frame: draw(name) for the most overdue chart, then more while within budget.
   * @returns {number} ms spent drawing
   */
  frame(now, wants, draw) {
    let spent = 0;
    for (let n = 0; n < this.perFrame && (n === 0 || spent < this.budget); n++) {
      const name = this.pick(now, wants);
      if (!name) break;
      spent += this.run(name, now, () => draw(name));
    }
    return spent;
  }

  /** Draws so far per chart name. */
  counts() {
    return Object.fromEntries([...this.jobs].map(([n, j]) => [n, j.count]));
  }
}
