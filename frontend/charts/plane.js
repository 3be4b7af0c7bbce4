// The GAN's data plane: real points, G's samples, D's output over the plane as the background and
// grad_x D at some of G's samples (where D pushes them), from the server's `plane` messages (about
// one a second). Drawn on a canvas, not Plotly: between two messages every point glides from where
// it was to where it is (G's samples are one fixed draw of z, so sample i is the same z in both), the
// background cross-fades, and a redraw is a few hundred arcs (well under a millisecond).
import { Chart } from "./chart.js";
import { OI, palette } from "./plot.js";
import { isProbability } from "../models.js";

const GLIDE_MS = 900;  // a message's glide: about the time to the next one
const ARROW = 0.09;  // the longest arrow, as a share of the plane's larger side
const STOPS = [[0x00, 0x72, 0xB2], [0xF4, 0xF4, 0xF4], [0xE6, 0x9F, 0x00]];  // plot.js DIVERGING: low, middle, high

const ease = (t) => (t >= 1 ? 1 : t * (2 - t));
const mix = (a, b, t) => a + (b - a) * t;
const isPoint = (p) => Array.isArray(p) && typeof p[0] === "number" && typeof p[1] === "number";

/** The RGB of `v` in [0, 1] on the diverging scale. */
function colour(v) {
  const u = Math.min(1, Math.max(0, v)) * 2, i = u >= 1 ? 1 : 0, f = u - i;
  return STOPS[i].map((c, k) => Math.round(mix(c, STOPS[i + 1][k], f)));
}

/**
 * The plane's mapping of the data box [x0, x1, y0, y1] onto a W x H (CSS pixel) canvas: pixels per
 * data unit `s`, one scale for both axes (circles stay circles), the box centred; px/py map data to
 * pixels, x/y pixels back to data.
 */
export function fitBox(box, W, H) {
  const [x0, x1, y0, y1] = box, pad = 6, s = Math.min((W - 2 * pad) / (x1 - x0 || 1), (H - 2 * pad) / (y1 - y0 || 1));
  const ox = (W - s * (x1 - x0)) / 2 - s * x0, oy = (H + s * (y1 - y0)) / 2 + s * y0;
  return { s, px: (x) => ox + s * x, py: (y) => oy - s * y, x: (px) => (px - ox) / s, y: (py) => (oy - py) / s };
}

/** D's grid (n_y rows over y, n_x columns over x) painted into a small canvas, top row = largest y. */
function paint(d, probability) {
  const ny = d.length, nx = ny ? d[0].length : 0, cv = document.createElement("canvas");
  cv.width = Math.max(1, nx);
  cv.height = Math.max(1, ny);
  const vals = d.flat().filter((v) => typeof v === "number");
  const lo = probability ? 0 : Math.min(...vals), hi = probability ? 1 : Math.max(...vals), span = hi - lo || 1;
  const ctx = cv.getContext("2d"), img = ctx.createImageData(cv.width, cv.height);
  for (let r = 0; r < ny; r++) {
    for (let c = 0; c < nx; c++) {
      const v = d[r][c];
      if (typeof v !== "number") continue;  // a non-finite output: transparent
      const p = 4 * ((ny - 1 - r) * nx + c);
      img.data.set([...colour((v - lo) / span), 255], p);
    }
  }
  ctx.putImageData(img, 0, 0);
  return { canvas: cv, lo, hi };
}

/** One plane message as the chart keeps it. */
function frameOf(msg, probability) {
  const x = msg.x || [], y = msg.y || [];
  const box = [x[0], x[x.length - 1], y[0], y[y.length - 1]];
  return { msg, step: msg.step, real: msg.real || [], fake: msg.fake || [], arrows: msg.arrows || [],
           box, bg: paint(msg.d || [], probability), bgBox: box };
}

export class PlaneChart extends Chart {
  static spec = {
    name: "plane", requires: ["d_fake"], views: { plane: true }, title: "Data plane", span: 3, tall: true, every: 33, share: 0.15,
    sub: "G's samples, real points, where D pushes G · background: D(x), orange = real",
    help: "Every point the two networks play over. Green: real data; dark: G's samples (one fixed draw of z, so you watch the same samples move); the background is D's output, orange where D says real and blue where it says fake (for the Wasserstein critic its raw value, from its lowest to its highest on the plane). The arrows at some of G's samples are grad_x D, the direction G's update pushes them, scaled to the longest: where D is flat the arrows vanish and G learns nothing.",
  };

  constructor(el, view) {
    super(el, view);
    this.canvas = document.createElement("canvas");
    this.canvas.style.cssText = "width:100%;height:100%;display:block";
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "data plane: real and generated points over D's output");
    el.append(this.canvas);
    this.frames = 0;
    this.held = null;  // the drawing mode's box (hold)
  }

  reset() {
    this.prev = null;
    this.cur = null;
  }

  decorate() {}  // not a Plotly plot: no markers, no highlighted layer

  emptyReason() {
    return this.cur || this.view.plane ? null : "The data plane is sent about once a second while the run trains.";
  }

  /** A new message: what is on screen now becomes where the glide starts. */
  take(msg, now) {
    const probability = msg.d_output ? msg.d_output === "probability" : isProbability(this.view.meta, this.view.config);
    const next = frameOf(msg, probability);
    this.prev = this.cur ? this.shown(now) : null;
    this.cur = { ...next, at: now };
    this.frames++;
  }

  /** The frame as drawn at `now`: the glide from prev to cur, `t` its progress. */
  shown(now) {
    const c = this.cur, p = this.prev, t = p ? ease((now - c.at) / GLIDE_MS) : 1;
    if (t >= 1) return { ...c, t: 1, bgPrev: null };
    const lerp = (a, b) => b.map((q, i) => (isPoint(q) && isPoint(a[i]) ? [mix(a[i][0], q[0], t), mix(a[i][1], q[1], t)] : q));
    return { ...c, real: lerp(p.real, c.real), fake: lerp(p.fake, c.fake), arrows: lerp(p.arrows, c.arrows),
             box: c.box.map((v, i) => mix(p.box[i], v, t)), t, bgPrev: p.bg, bgPrevBox: p.bgBox };
  }

  /** The data box [x0, x1, y0, y1] the plane shows (the one held, else the latest message's), or null before any. */
  axes() {
    return this.held || (this.cur ? this.cur.box : null);
  }

  /** Keep the axes at `box` whatever the messages' extents (the drawing mode draws over them), or follow them again (null). */
  hold(box) {
    this.held = box;
    this.dirty = true;
  }

  draw(now) {
    const msg = this.view.plane;
    if (!msg) return;
    if (!this.cur || msg !== this.cur.msg) this.take(msg, now);
    const dpr = window.devicePixelRatio || 1, W = this.el.clientWidth, H = this.el.clientHeight;
    if (!W || !H) return;
    if (this.canvas.width !== Math.round(W * dpr) || this.canvas.height !== Math.round(H * dpr)) {
      this.canvas.width = Math.round(W * dpr);
      this.canvas.height = Math.round(H * dpr);
    }
    const f = this.shown(now), m = fitBox(this.held || f.box, W, H), ctx = this.canvas.getContext("2d"), p = palette();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = p.plot;
    ctx.fillRect(0, 0, W, H);
    ctx.imageSmoothingEnabled = true;
    const image = (bg, box, alpha) => {
      const [x0, x1, y0, y1] = box;
      ctx.globalAlpha = alpha;
      ctx.drawImage(bg.canvas, m.px(x0), m.py(y1), m.s * (x1 - x0), m.s * (y1 - y0));
    };
    // the new background over the old one, fading in; only inside the new one's extent (the old
    // one's edges would show as a frame where the extents differ)
    const [bx0, bx1, by0, by1] = f.bgBox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(m.px(bx0), m.py(by1), m.s * (bx1 - bx0), m.s * (by1 - by0));
    ctx.clip();
    if (f.bgPrev) image(f.bgPrev, f.bgPrevBox, 1);
    image(f.bg, f.bgBox, f.bgPrev ? f.t : 1);
    ctx.restore();
    ctx.globalAlpha = 1;
    const dots = (points, fill) => {
      ctx.fillStyle = fill;
      ctx.beginPath();
      let n = 0;
      for (const q of points) {
        if (!isPoint(q)) continue;
        const x = m.px(q[0]), y = m.py(q[1]);
        ctx.moveTo(x + 2.4, y);
        ctx.arc(x, y, 2.4, 0, 2 * Math.PI);
        n++;
      }
      ctx.fill();
      return n;
    };
    const real = dots(f.real, OI.green), fake = dots(f.fake, p.strong);
    ctx.lineCap = "round";
    this.arrows(ctx, m, f, p.plot, 3.2);  // a halo in the plot's colour: the arrows read over points and background alike
    const arrows = this.arrows(ctx, m, f, p.strong, 1.4);
    this.legend(ctx, p);
    this.view.info.plane = { step: f.step, real, fake, arrows, frames: this.frames, range: [f.bg.lo, f.bg.hi] };
    if (f.t < 1) this.dirty = true;  // the glide goes on at the next frame
  }

  /** What the marks are, in the top left corner. */
  legend(ctx, p) {
    const items = [["real", OI.green], ["generated", p.strong], ["grad_x D", null]];
    ctx.font = "10px Inter, system-ui, sans-serif";
    ctx.fillStyle = p.label;
    ctx.fillRect(4, 4, 74, 44);
    items.forEach(([text, color], i) => {
      const y = 15 + 12 * i;
      ctx.fillStyle = p.strong;
      ctx.fillText(text, 22, y + 3.5);
      if (color) {
        ctx.fillStyle = color;
        ctx.beginPath();
        ctx.arc(14, y, 2.6, 0, 2 * Math.PI);
        ctx.fill();
      } else {
        ctx.strokeStyle = p.strong;
        ctx.lineWidth = 1.4;
        ctx.beginPath();
        ctx.moveTo(8, y);
        ctx.lineTo(19, y);
        ctx.moveTo(19, y);
        ctx.lineTo(15.5, y - 2.5);
        ctx.moveTo(19, y);
        ctx.lineTo(15.5, y + 2.5);
        ctx.stroke();
      }
    });
  }

  /** grad_x D at the first samples, scaled so that the longest is ARROW of the plane; returns how many were drawn. */
  arrows(ctx, m, f, color, width) {
    const [x0, x1, y0, y1] = f.box, n = f.arrows.length;
    const norms = f.arrows.map((a) => (isPoint(a) ? Math.hypot(a[0], a[1]) : 0)), top = Math.max(0, ...norms.filter(Number.isFinite));
    if (!(top > 0)) return 0;
    const k = (ARROW * Math.max(x1 - x0, y1 - y0) * m.s) / top;
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    let drawn = 0;
    for (let i = 0; i < n; i++) {
      const q = f.fake[i], a = f.arrows[i];
      if (!isPoint(q) || !isPoint(a) || !Number.isFinite(norms[i])) continue;
      const x = m.px(q[0]), y = m.py(q[1]), dx = k * a[0], dy = -k * a[1], len = Math.hypot(dx, dy);
      ctx.moveTo(x, y);
      ctx.lineTo(x + dx, y + dy);
      if (len > 4) {  // the head: two strokes back from the tip
        const ux = dx / len, uy = dy / len, h = Math.min(5, len / 2);
        ctx.moveTo(x + dx, y + dy);
        ctx.lineTo(x + dx - h * (ux - 0.5 * uy), y + dy - h * (uy + 0.5 * ux));
        ctx.moveTo(x + dx, y + dy);
        ctx.lineTo(x + dx - h * (ux + 0.5 * uy), y + dy - h * (uy - 0.5 * ux));
      }
      drawn++;
    }
    ctx.stroke();
    return drawn;
  }
}
