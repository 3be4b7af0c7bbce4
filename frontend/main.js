// Wiring only: session lifecycle (create, join, fork), socket -> charts/controls/diagnosis, buttons.
import { Schema } from "./state.js";
import { SessionSocket } from "./socket.js";
import { Dashboard } from "./dashboard.js";
import { CHARTS } from "./charts/index.js";
import { Controls } from "./controls.js";
import { READS, fixApplies, fixChanges, fixTable, renderDiagnosis } from "./diagnosis.js";
import { SLOPED, layerFactors, expectedProfile } from "./theory.js";
import { diagnoseFor } from "./diagnoses.js";
import { GAME_READS } from "./gamediagnosis.js";
import { toColumnar } from "./series.js";
import { openExtraPage, wireLessonsMenu } from "./lessons.js";
import { errorText, isAnswering, onReachability, persistent, problems } from "./net.js";
import { api, storeToken, storedToken } from "./api.js";
import { Notice } from "./notice.js";
import { countTitle, problemItems, queryParams, unexpectedParams, withoutFields } from "./pageparams.js";
import { CompileIndicator, compileKeys } from "./compiling.js";
import { DivergedBanner } from "./banner.js";
import { initTheme } from "./theme.js";
import { drawingOf, isScripted, layerNamesOf, viewsOf } from "./models.js";
import { PlaneDrawing } from "./drawing.js";
import { retheme } from "./charts/plot.js";

const $ = (id) => document.getElementById(id);
let schema = null, controls = null;  // built from /api/meta before anything else

const app = { id: null, token: null, role: "viewer", config: null, status: "connecting", step: 0,
              meta: {}, socket: null, copied: null, errors: [], rewindTo: null, problems: null };
window.gradscope = app;  // read by the browser tests and handy in the console

let toastTimer = 0;
function toast(text, isError = false) {
  const t = $("toast");
  t.textContent = text;
  t.classList.toggle("error", isError);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 5000 : 2200);
  if (isError) app.errors.push(text);
}

const dashboard = new Dashboard($("grid"), CHARTS, { latest: [...READS, ...GAME_READS, "baseline"] });  // baseline: timediagnosis.js
app.dashboard = dashboard;
const drawing = new PlaneDrawing(dashboard.cards.get("plane"), dashboard.charts.get("plane"), (changes) => send("set", changes));
app.drawing = drawing;
const notice = new Notice($("notice"));
app.notice = notice;
const busy = new CompileIndicator($("busy"), () => showStatus());
app.busy = busy;
const banner = new DivergedBanner($("banner"), {
  onRewind: (lr) => send("control", "rewind", { learning_rate: lr }),
  onFix: (changes) => applyFix(changes),
});
onReachability((ok) => { notice.reachability(ok); showStatus(); });
initTheme($("btn-theme"), () => {
  dashboard.retheme();
  for (const gd of document.querySelectorAll("#extra-root .js-plotly-plot")) retheme(gd);  // the compare view's heat maps
  if (app.compare) app.compare.dirty = true;  // its other charts are drawn afresh with the theme's colours
});

/** The page's tables of names and limits, from the server (asked again until it answers). */
async function loadMeta() {
  const meta = await persistent("GET", "/api/meta");
  if (!meta.ok || !meta.data) throw new Error(`GET /api/meta: ${errorText(meta)}`);
  app.meta = meta.data;
  schema = new Schema(app.meta);
  app.schema = schema;
  app.compileKeys = compileKeys(app.meta);
  controls = new Controls($("controls"), schema, (changes) => { const c = withDrawing(changes); if (c) send("set", c); });
  app.controls = controls;
}

/**
 * A control's changes, fitted to the dataset drawn on the plane (models.js drawingOf), which the
 * server takes only with its points and whose points it takes with no other dataset: choosing it in
 * the menu opens the drawing mode instead (null: nothing to send; the menu shows the data trained on
 * until the points are sent), and leaving it drops its points.
 */
function withDrawing(changes) {
  const spec = drawingOf(app.meta, app.config.model);
  if (!spec || !("dataset" in changes) || spec.key in changes) return changes;
  if (changes.dataset !== spec.dataset) return app.config.dataset === spec.dataset ? { ...changes, [spec.key]: null } : changes;
  controls.setConfig(app.config);
  drawing.open();
  return null;
}

/** Whether two values of a config key are the same (a list, such as drawn points, by its entries). */
const same = (a, b) => a === b || (Array.isArray(a) && Array.isArray(b) && JSON.stringify(a) === JSON.stringify(b));

/** Show `config`; redraw the charts from scratch when the network's shape changed. */
function applyConfig(config, redraw) {
  const prev = app.config;
  // a key the model does not take comes as null in a switch's changes (or not at all): shown at its default
  app.config = { ...schema.defaults(), ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== null && v !== undefined)) };
  const reshaped = redraw || !prev || schema.keys.some((k) => !schema.isLive(k) && !same(prev[k], app.config[k]));
  if (reshaped) {
    dashboard.reset(app.config, app.meta);
  } else {
    dashboard.updateConfig(app.config);
  }
  if (chainTheory()) updateTheory(true);  // theory "time": the time profile draws its own theory line
  controls.setConfig(app.config);
  drawing.setSpec(drawingOf(app.meta, app.config.model));
  showStatus();
}

/** What the status pill says: the server's status, unless a compile or a silent server is the news. */
function shownStatus() {
  const final = ["not found", "deleted", "not started"].includes(app.status);
  if (!final && !isAnswering()) return "not answering";
  if (!final && app.status !== "diverged" && busy.busy) return busy.busy;  // never "running" while it compiles
  return app.status;
}

/** Why the charts are empty before the first statistics arrive. */
function waitingText(shown) {
  if (shown === "compiling") return "Compiling: the first steps come as soon as it is done.";
  if (shown === "queued") return "The cluster is full: this run starts as soon as a place frees (its place in line is shown above).";
  if (shown === "not answering") return "The server is not answering: the charts fill in when it does.";
  if (app.config && isScripted(app.meta, app.config.model) && ["running", "paused"].includes(app.status)) return "Waiting for its script's first steps…";
  if (app.status === "paused") return app.role === "owner" ? `Paused at step ${app.step}: press Play or Step.` : `Paused at step ${app.step} by its owner.`;
  if (app.status === "diverged") return "The run diverged before its first recorded step.";
  return app.status === "running" ? "Waiting for the first steps…" : "Starting…";
}

function showStatus() {
  const shown = shownStatus(), s = $("status");
  s.dataset.status = shown;
  s.textContent = shown;
  $("btn-play").textContent = app.status === "running" ? "❚❚ Pause" : "▶ Play";
  $("btn-rewind").hidden = app.rewindTo === null || app.rewindTo === undefined;
  if (app.rewindTo !== null && app.rewindTo !== undefined) $("btn-rewind").dataset.title = `Back to step ${app.rewindTo}, the last finite checkpoint`;
  showButtons();
  dashboard.setWaiting(waitingText(shown));
  if (app.status !== "diverged" || !app.config) { banner.hide(); return; }
  banner.show({ config: app.config, meta: app.meta, step: app.step, diverged: app.diverged, rewindTo: app.rewindTo, canAct: app.role === "owner",
                scripted: isScripted(app.meta, app.config.model), names: layerNamesOf(app.meta, app.config) });
}

function setStatus(status, step, diverged, rewindTo) {
  app.status = status;
  if (typeof step === "number") app.step = step;
  if (diverged) app.diverged = diverged;
  if (rewindTo !== undefined) app.rewindTo = rewindTo;
  showStatus();
}

// The buttons a run trained by its own script (models.js isScripted) cannot use, and why: the server
// refuses them for it. Its knobs are changed in the control panel; Share, Export and Compare with a link stay.
const SCRIPTED = "This run is trained by its own script";
const SCRIPT_OWNS = {
  "btn-play": `${SCRIPTED}: it plays, pauses and steps as the script runs`,
  "btn-step": `${SCRIPTED}: it steps as the script runs`,
  "btn-reset": `${SCRIPTED}: restart the script to start again`,
  "btn-rewind": `${SCRIPTED}: the server keeps its statistics, not its weights, so it cannot go back`,
  "btn-fork": `${SCRIPTED}: the server keeps its statistics, not its weights, so it cannot be forked`,
  "btn-setup": `${SCRIPTED}: no link can start it; run the script again`,
  "compare-changes": `${SCRIPTED}: it cannot be forked into a run B; compare it with another session's link`,
};

/**
 * Enable the buttons for the role, and disable those a scripted run cannot use (SCRIPT_OWNS) with the
 * reason as their tooltip (their own tooltip, kept in data-title, otherwise).
 */
function showButtons() {
  const owner = app.role === "owner", scripted = Boolean(app.config) && isScripted(app.meta, app.config.model);
  for (const b of document.querySelectorAll(".owner-only")) b.disabled = !owner;
  for (const [id, why] of Object.entries(SCRIPT_OWNS)) {
    const b = $(id);
    if (b.dataset.title === undefined) b.dataset.title = b.title;
    b.title = scripted ? why : b.dataset.title;
    if (scripted) b.disabled = true;
    else if (!b.classList.contains("owner-only")) b.disabled = false;
  }
  $("btn-fork").hidden = owner;
}

function setRole(role) {
  app.role = role;
  const owner = role === "owner";
  $("role").textContent = owner ? "owner" : "viewing";
  $("role").dataset.role = role;
  controls.setEnabled(owner);
  drawing.setEnabled(owner);
  lastDiag = 0;  // the diagnosis and its fix buttons (enabled by role) redrawn on the next frame, never blanked
  showStatus();
}

/** "activation relu" for the keys of `changes` that may compile; null when none may. */
function compileWhat(changes) {
  const keys = Object.keys(changes).filter((k) => app.compileKeys.has(k) && changes[k] !== null);
  const text = (v) => (Array.isArray(v) ? `(${v.length})` : v);  // drawn points: how many, not every one
  return keys.length ? keys.map((k) => `${k} ${text(changes[k])}`).join(", ") : null;
}

async function send(kind, payload, extra = {}) {
  if (app.role !== "owner" || !app.socket) return null;
  const what = kind === "set" ? compileWhat(payload) : ["reset", "rewind"].includes(payload) ? payload : null;
  const token = what ? busy.applying(what) : 0;
  const reply = kind === "set" ? await app.socket.set(payload) : await app.socket.control(payload, extra);
  busy.answered(token);
  if (reply.type === "error") {
    toast(`${reply.field ? reply.field + ": " : ""}${reply.message}`, true);
    controls.setConfig(app.config);
  } else if (reply.applied && typeof reply.applied === "object") {
    const changes = {};
    for (const [k, v] of Object.entries(reply.applied.changes || {})) if (schema.has(k)) changes[k] = Array.isArray(v) ? v[1] : v;
    if (Object.keys(changes).length) applyConfig({ ...app.config, ...changes }, false);
  }
  return reply;
}

/** A fix for a run that diverged with no checkpoint: the change, then new weights (the old ones are not finite). */
async function applyFix(changes) {
  const r = await send("set", changes);
  if (!r || r.type === "error") return;
  if (!(r.applied && r.applied.kind === "reset")) await send("control", "reset");
  if (app.status !== "running") await send("control", "play");
}

function onEvent(ev) {
  if (!ev) return;
  dashboard.addEvent(ev);
  const changes = {};
  for (const [k, v] of Object.entries({ ...(ev.changes || {}), ...(ev.reapplied || {}) })) if (schema.has(k)) changes[k] = Array.isArray(v) ? v[1] : v;
  const config = ev.kind === "rewind" && ev.config ? { ...ev.config, ...changes } : { ...app.config, ...changes };
  if (Object.keys(changes).length || ev.kind === "rewind") applyConfig(config, false);
  if (ev.kind === "diverged") setStatus("diverged", ev.step, { step: ev.first_step ?? ev.step, layer: ev.layer });
}

async function fetchHistory(since) {
  const q = since === undefined ? "" : `&since=${since}`;
  const h = await api("GET", `/api/sessions/${app.id}/history?max_points=800&hist=true${q}`, undefined, { token: app.token });
  if (h.ok) dashboard.ingest(toColumnar(h.data));
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const sock = new SessionSocket(`${proto}://${location.host}/api/sessions/${app.id}/ws`, app.token);
  let hellos = 0;
  sock.on("hello", async (m) => {
    app.meta = { ...app.meta, ...(m.meta || {}) };
    dashboard.setMeta(app.meta);
    setRole(m.role);
    if (m.config) applyConfig(m.config, false);
    if ("compiling" in m) busy.compile(m.compiling);
    setStatus(m.status, m.step, m.diverged, m.rewind_to);
    if (hellos++ > 0) await fetchHistory(dashboard.series.lastStep + 1);
  });
  sock.on("preview", (m) => { if (dashboard.preview(m)) busy.preview(true); });
  sock.on("stats", (m) => {
    if (busy.first) busy.preview(false);
    dashboard.ingest(m);
    const last = m.step && m.step[m.step.length - 1];
    if (typeof last === "number") app.step = last;
  });
  sock.on("event", (m) => onEvent(m.event));
  sock.on("status", (m) => setStatus(m.status, m.step, m.diverged, m.rewind_to));
  sock.on("compile", (m) => busy.compile(m));
  sock.on("boundary", (m) => dashboard.setBoundary(m));
  sock.on("plane", (m) => dashboard.setPlane(m));
  sock.on("close", (m) => setStatus(m.gone ? "deleted" : "reconnecting"));
  app.socket = sock;
  sock.connect();
}

/** This page shows no session: hide what would act on one, and say why and where to go. */
function noSession(status, title, items, actions, kind) {
  document.body.dataset.page = "nosession";
  app.problems = items;
  setStatus(status);
  notice.problems(title, items, actions, kind);
}

/**
 * An owner link (`/s/ID#token=TOKEN`, as a script attached to the server prints it): keep its token as
 * this browser's for the session, and take it out of the address bar, so that copying the address
 * shares a viewer's link.
 */
function takeOwnerLink(id) {
  const m = location.hash.match(/^#(?:.*&)?token=([^&]*)/);
  if (!m) return;
  if (m[1]) storeToken(id, decodeURIComponent(m[1]));
  history.replaceState(history.state, "", `${location.pathname}${location.search}`);
}

async function join(id) {
  app.id = id;
  takeOwnerLink(id);
  app.token = storedToken(id);
  const s = await persistent("GET", `/api/sessions/${id}`);
  if (s.status === 404) {
    app.errors.push(`Session ${id}: ${errorText(s)}`);
    noSession("not found", "No such session", [{ field: "session", value: id,
      message: "the server does not know it: it was deleted, or the link is mistyped" }],
    [{ href: "/", text: "Start a new run" }, { text: "Browse the lessons", onClick: () => $("btn-lessons").click() }], "missing");
    return;
  }
  if (!s.ok) { setStatus("not found"); toast(`Session ${id}: ${errorText(s)}`, true); return; }
  setRole(app.token ? "owner" : "viewer");
  applyConfig(s.data.config, true);
  dashboard.setEvents(s.data.events || []);
  if ("compiling" in s.data) busy.compile(s.data.compiling);
  setStatus(s.data.status, s.data.step, s.data.diverged, s.data.rewind_to);
  for (const [format, link] of [["jsonl", $("export-jsonl")], ["csv", $("export-csv")]]) link.href = `/api/sessions/${id}/export?format=${format}`;
  await fetchHistory();
  connect();
}

async function start() {
  await loadMeta();
  const params = queryParams();
  const m = location.pathname.match(/^\/s\/([^/]+)/);
  if (m) {
    if (Object.keys(params).length) {
      const u = unexpectedParams(params, "a session page", (k) => schema.has(k));
      app.problems = u.items;
      notice.problems(u.title, u.items, u.actions);
    }
    return join(decodeURIComponent(m[1]));
  }
  setStatus("starting");
  const token = busy.applying("the first run");
  const r = await persistent("POST", "/api/sessions", params);  // as text: the server parses and checks every key
  busy.answered(token);
  if (r.status === 422) {
    const list = problems(r), fields = list.map((p) => p.field), rest = withoutFields(params, fields);
    noSession("not started", `${countTitle(list.length)}: no run was started`, problemItems(list, params, app.meta),
      [{ href: "/", text: "Start the default run" }, ...(rest ? [{ href: rest, text: "Start without the bad parameters" }] : [])]);
    return;
  }
  if (!r.ok) { toast(`Could not start a session: ${errorText(r)}`, true); setStatus("not started"); return; }
  storeToken(r.data.id, r.data.token);
  history.replaceState(null, "", `/s/${r.data.id}`);
  return join(r.data.id);
}

async function copy(text, what) {
  app.copied = text;
  try { await navigator.clipboard.writeText(text); toast(`${what} copied`); } catch { toast(`${what}: ${text}`); }
}

/**
 * Copy the link that starts a fresh run with this setup. A drawing (models.js drawingOf) cannot
 * travel in a link: the link starts the model's default dataset instead, and says so (Fork keeps it).
 */
function copySetup() {
  const spec = drawingOf(app.meta, app.config.model);
  if (!spec || app.config.dataset !== spec.dataset) {
    copy(`${location.origin}/${schema.toQuery(app.config)}`, "Setup link");
    return;
  }
  const { [spec.key]: _points, dataset: _dataset, ...rest } = app.config;
  copy(`${location.origin}/${schema.toQuery(rest)}`, "Setup link (without the drawing, which a link cannot carry: Fork keeps it)");
}

function wireButtons() {
  $("btn-play").addEventListener("click", () => send("control", app.status === "running" ? "pause" : "play"));
  $("btn-step").addEventListener("click", () => send("control", "step"));
  $("btn-reset").addEventListener("click", () => send("control", "reset"));
  $("btn-rewind").addEventListener("click", () => send("control", "rewind"));
  $("btn-share").addEventListener("click", () => copy(`${location.origin}/s/${app.id}`, "Session link"));
  $("btn-setup").addEventListener("click", () => copySetup());
  $("btn-export").addEventListener("click", () => { $("export-menu").hidden = !$("export-menu").hidden; });
  $("btn-settings").addEventListener("click", () => document.body.classList.toggle("show-controls"));
  $("btn-fork").addEventListener("click", async () => {
    const r = await api("POST", `/api/sessions/${app.id}/fork`, {}, { token: app.token });
    if (!r.ok) { toast(`Fork failed: ${errorText(r)}`, true); return; }
    storeToken(r.data.id, r.data.token);
    location.assign(`/s/${r.data.id}`);
  });
  document.addEventListener("keydown", (e) => {
    if (e.code !== "Space" || e.target.closest("input, select, textarea, button")) return;
    e.preventDefault();
    $("btn-play").click();
  });
}

/** A fix's `changes`, with what a switch of model needs besides (the control panel's fitModel) where it switches one. */
const withModel = (changes) => (changes && "model" in changes ? { ...controls.fitModel(changes.model), ...changes } : changes);

/** Whether the model's family asks for the chain-rule theory curve (models.js viewsOf: theory "chain"). */
const chainTheory = () => viewsOf(app.meta, app.config.model).theory === "chain";

/** The theory curve for the config and the negative slopes in use (PReLU learns its own). */
function updateTheory(force = false) {
  const latest = dashboard.series.latest;
  const slopes = SLOPED.includes(app.config.activation) && latest && latest.neg_slope ? latest.neg_slope : null;
  const key = JSON.stringify([slopes && slopes.map((v) => (typeof v === "number" ? +v.toFixed(3) : null))]);
  if (!force && key === app.theoryKey) return;
  app.theoryKey = key;
  const factors = layerFactors(app.config, slopes);
  dashboard.setTheory(factors, (anchor) => expectedProfile(factors, anchor));
}

let lastDiag = 0, rateRef = { t: 0, step: 0 };
function frame(now) {
  dashboard.render(now);
  if (now - lastDiag > 250 && app.config) {
    lastDiag = now;
    if (chainTheory()) updateTheory();
    const result = diagnoseFor(app.meta, app.config, dashboard.series.latest), fixes = fixTable(app.meta, app.config.model);
    app.diagnosis = result;
    // a fix the server would refuse for this run is not a button: a scripted run's are advice for its script
    renderDiagnosis($("diagnosis"), result, { canFix: app.role === "owner", fixes,
      offered: (name) => fixApplies(app.meta, app.config, name, fixes),
      advice: isScripted(app.meta, app.config.model) ? "In your script" : null,
      onFix: (name) => send("set", withModel(fixChanges(name, app.config, fixes))) });
    $("step").textContent = String(app.step);
    if (now - rateRef.t > 1000) {
      const rate = rateRef.t ? ((app.step - rateRef.step) * 1000) / (now - rateRef.t) : 0;
      $("rate").textContent = rate > 0 ? `${Math.round(rate)} steps/s` : "";
      rateRef = { t: now, step: app.step };
    }
  }
  requestAnimationFrame(frame);
}

wireButtons();
wireLessonsMenu(app);
requestAnimationFrame(frame);
openExtraPage(notice).then((extra) => extra || start()).catch((err) => toast(String(err), true));
