// The data plane's drawing mode: the user draws the data the model trains on (its family's
// views.draw, models.js drawingOf). Pressing and dragging on the plane (pointer events: mouse, pen
// and touch alike) adds points along the stroke, in the plane's data coordinates; Train sends them
// as the drawn dataset's points. The plane holds its axes while the mode is open, so what is drawn
// stays where it was drawn over it. No socket here: main.js sends, and says a refusal.
import { OI, palette } from "./charts/plot.js";
import { fitBox } from "./charts/plane.js";

const BOX = [-3, 3, -3, 3];  // the axes before the plane has any: about the extent of the datasets
const SPACING = 4;  // CSS pixels between two points of a stroke (a fast drag is filled in at this step)
const DIGITS = 4;  // decimals sent per coordinate
const DOT = 2.6;

const round = (v) => +v.toFixed(DIGITS);
const tick = (v) => String(+v.toPrecision(2));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

export class PlaneDrawing {
  /**
   * @param {HTMLElement} card  the plane's card: its header gets the buttons, its chart area the drawing canvas
   * @param {import("./charts/plane.js").PlaneChart} plane  whose axes the points are drawn in
   * @param {(changes: object) => Promise<object|null>} send  sends `changes` as a set; resolves with the reply (null: not sent)
   */
  constructor(card, plane, send) {
    this.plane = plane;
    this.send = send;
    this.spec = null;  // {dataset, key, min, max} of the model shown, or null: no drawing for it
    this.enabled = false;  // the session's owner only
    this.isOpen = false;
    this.sending = false;
    this.points = [];  // [[x, y], ...] in data coordinates, as drawn
    this.box = null;  // [x0, x1, y0, y1] held while the mode is open
    this.pressing = false;  // a stroke under way
    this.last = null;  // the stroke's last point, canvas pixels; null off the plane and between strokes
    this.queued = false;  // a render asked for the next animation frame
    this.btnDraw = el("button", { id: "btn-draw", class: "owner-only", type: "button",
      title: "Draw the data to train on: press and drag on the plane" }, "Draw data");
    this.note = el("span", { id: "draw-note", class: "draw-note", role: "status" });
    this.btnClear = el("button", { id: "draw-clear", type: "button", title: "Remove every point drawn" }, "Clear");
    this.btnCancel = el("button", { id: "draw-cancel", type: "button", title: "Leave the drawing mode; the data stays as it is" }, "Cancel");
    this.btnTrain = el("button", { id: "draw-train", class: "primary", type: "button", title: "Restart the run on the points drawn" });
    this.tools = el("span", { class: "draw-tools", hidden: "" }, this.btnClear, this.btnCancel, this.btnTrain);
    this.btnDraw.hidden = true;
    card.querySelector("header").append(el("span", { class: "draw-bar" }, this.btnDraw, this.tools));
    this.canvas = el("canvas", { class: "draw-canvas", role: "img", "aria-label": "drawing the data: press and drag" });
    this.canvas.hidden = this.note.hidden = true;
    // last: over the plane and its empty note; the note too, so that its changes never move the canvas under the pointer
    card.querySelector(".chart-wrap").append(this.canvas, this.note);
    this.wire();
  }

  wire() {
    this.btnDraw.addEventListener("click", () => this.open());
    this.btnClear.addEventListener("click", () => { this.points = []; this.update(); });
    this.btnCancel.addEventListener("click", () => this.close());
    this.btnTrain.addEventListener("click", () => this.submit());
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      c.setPointerCapture(e.pointerId);
      this.pressing = true;
      this.last = null;
      this.stroke(e);
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.pressing) return;
      for (const ev of e.getCoalescedEvents ? e.getCoalescedEvents() : [e]) this.stroke(ev);
    });
    const end = () => { this.pressing = false; this.last = null; };
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) c.addEventListener(type, end);
    new ResizeObserver(() => this.isOpen && this.render()).observe(c);
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && this.isOpen) this.close(); });
  }

  /** The model shown changed: its drawing spec (models.js drawingOf), or null (the mode closes). */
  setSpec(spec) {
    this.spec = spec;
    this.btnDraw.hidden = !spec;
    if (!spec) this.close();
  }

  /** Only the session's owner draws (the button is `owner-only`: main.js disables it for viewers). */
  setEnabled(enabled) {
    this.enabled = enabled;
    if (!enabled) this.close();
  }

  /** Enter the mode, on the plane's current axes (BOX before it has any); false where there is nothing to draw. */
  open() {
    if (!this.spec || !this.enabled) return false;
    if (this.isOpen) return true;
    this.isOpen = true;
    this.box = [...(this.plane.axes() || BOX)];
    this.plane.hold(this.box);
    this.points = [];
    this.pressing = false;
    this.last = null;
    this.btnDraw.hidden = true;
    this.tools.hidden = this.canvas.hidden = this.note.hidden = false;
    this.update();
    return true;
  }

  close() {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.plane.hold(null);
    this.points = [];
    this.pressing = false;
    this.last = null;
    this.btnDraw.hidden = !this.spec;
    this.tools.hidden = this.canvas.hidden = this.note.hidden = true;
  }

  /** The canvas' mapping between data and CSS pixels: the plane's own (charts/plane.js fitBox). */
  mapping() {
    return fitBox(this.box, this.canvas.clientWidth, this.canvas.clientHeight);
  }

  /** The pointer at event `e` in the stroke under way: points from the last one to it, SPACING pixels apart. */
  stroke(e) {
    const r = this.canvas.getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top;
    if (x < 0 || y < 0 || x > r.width || y > r.height) { this.last = null; return; }  // off the plane: the stroke resumes where it comes back
    const m = this.mapping(), from = this.last;
    const n = from ? Math.floor(Math.hypot(x - from[0], y - from[1]) / SPACING) : 1;
    for (let i = 1; i <= n && this.points.length < this.spec.max; i++) {
      const t = from ? i / n : 1, px = from ? from[0] + t * (x - from[0]) : x, py = from ? from[1] + t * (y - from[1]) : y;
      this.points.push([m.x(px), m.y(py)]);
      this.last = [px, py];
    }
    if (n > 0) this.update();
  }

  /** The buttons and the note for the points drawn so far, and the canvas. */
  update() {
    const n = this.points.length, { min, max } = this.spec || { min: 0, max: 0 };
    this.btnTrain.textContent = this.sending ? "Sending…" : `Train on ${n} point${n === 1 ? "" : "s"}`;
    this.btnTrain.disabled = this.sending || n < min;
    this.btnClear.disabled = this.sending || n === 0;
    this.note.textContent = n >= max ? `The most a drawing takes: ${max} points.`
      : n < min ? `Press and drag on the plane to draw the data (at least ${min} points).` : "Drag again to add strokes.";
    this.note.dataset.full = String(n >= max);
    if (!this.queued) {
      this.queued = true;
      requestAnimationFrame(() => { this.queued = false; this.render(); });
    }
  }

  /** Send the points (rounded to DIGITS decimals) as the drawn dataset; the mode closes once the server takes them. */
  async submit() {
    if (!this.isOpen || this.sending || !this.spec) return;
    const { dataset, key } = this.spec, points = this.points.map(([x, y]) => [round(x), round(y)]);
    this.sending = true;
    this.update();
    const reply = await this.send({ dataset, [key]: points });
    this.sending = false;
    if (reply && reply.type !== "error") this.close();  // a refusal keeps the drawing (main.js says why)
    else this.update();
  }

  /** A veil over the plane, the held box with its bounds (top right), the points drawn. */
  render() {
    if (!this.isOpen) return;
    const c = this.canvas, dpr = window.devicePixelRatio || 1, W = c.clientWidth, H = c.clientHeight;
    if (!W || !H) return;
    if (c.width !== Math.round(W * dpr) || c.height !== Math.round(H * dpr)) {
      c.width = Math.round(W * dpr);
      c.height = Math.round(H * dpr);
    }
    const ctx = c.getContext("2d"), p = palette(), m = this.mapping(), [x0, x1, y0, y1] = this.box;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.globalAlpha = 0.7;
    ctx.fillStyle = p.plot;
    ctx.fillRect(0, 0, W, H);
    ctx.globalAlpha = 1;
    ctx.strokeStyle = p.strong;
    ctx.lineWidth = 1;
    ctx.setLineDash([4, 4]);
    ctx.strokeRect(m.px(x0), m.py(y1), m.s * (x1 - x0), m.s * (y1 - y0));
    ctx.setLineDash([]);
    ctx.font = "10px Inter, system-ui, sans-serif";
    ctx.fillStyle = p.strong;
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    ctx.fillText(`x ${tick(x0)} … ${tick(x1)}, y ${tick(y0)} … ${tick(y1)}`, m.px(x1) - 4, m.py(y1) + 4);
    ctx.textAlign = "start";
    ctx.fillStyle = OI.green;
    ctx.beginPath();
    for (const [x, y] of this.points) {
      ctx.moveTo(m.px(x) + DOT, m.py(y));
      ctx.arc(m.px(x), m.py(y), DOT, 0, 2 * Math.PI);
    }
    ctx.fill();
  }
}
