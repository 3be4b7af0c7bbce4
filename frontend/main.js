// Wiring only: session lifecycle (create, join, fork), socket -> charts/controls/diagnosis, buttons.
import { Schema } from "./state.js";
import { SessionSocket } from "./socket.js";
import { Dashboard } from "./dashboard.js";
import { CHARTS } from "./charts/index.js";
import { Controls } from "./controls.js";
import { READS, diagnose, fixChanges, renderDiagnosis } from "./diagnosis.js";
import { SLOPED, layerFactors, expectedProfile } from "./theory.js";
import { diagnoseTime } from "./timediagnosis.js";
import { toColumnar } from "./series.js";
import { openExtraPage, wireLessonsMenu } from "./lessons.js";

const $ = (id) => document.getElementById(id);
const tokenKey = (id) => `gradscope.token.${id}`;
let schema = null, controls = null;  // built from /api/meta before anything else

const app = { id: null, token: null, role: "viewer", config: null, status: "connecting", step: 0,
              meta: {}, socket: null, copied: null, errors: [] };
window.gradscope = app;  // read by the browser tests and handy in the console

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (app.token) headers.Authorization = `Bearer ${app.token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  return { ok: res.ok, status: res.status, data };
}

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
const errorText = (r) => (r.data && (r.data.detail ? JSON.stringify(r.data.detail) : r.data.message)) || `HTTP ${r.status}`;

const dashboard = new Dashboard($("grid"), CHARTS, { latest: [...READS, "baseline"] });  // baseline: timediagnosis.js
app.dashboard = dashboard;

/** The page's tables of names and limits, from the server. */
async function loadMeta() {
  const meta = await api("GET", "/api/meta");
  if (!meta.ok || !meta.data) throw new Error(`GET /api/meta: ${errorText(meta)}`);
  app.meta = { ...meta.data, ...(meta.data.meta || {}) };
  schema = new Schema(app.meta);
  app.schema = schema;
  controls = new Controls($("controls"), schema, (changes) => send("set", changes));
  app.controls = controls;
}

/** Show `config`; redraw the charts from scratch when the network's shape changed. */
function applyConfig(config, redraw) {
  const prev = app.config;
  app.config = { ...schema.defaults(), ...config };
  const reshaped = redraw || !prev || schema.keys.some((k) => !schema.isLive(k) && prev[k] !== app.config[k]);
  if (reshaped) {
    dashboard.reset(app.config, app.meta);
  } else {
    dashboard.updateConfig(app.config);
  }
  if ((app.config.model || "mlp") === "mlp") updateTheory(true);  // recurrent models: the time profile draws its own theory line
  controls.setConfig(app.config);
}

function setStatus(status, step, diverged) {
  app.status = status;
  if (typeof step === "number") app.step = step;
  const s = $("status");
  s.dataset.status = status;
  s.textContent = status;
  $("btn-play").textContent = status === "running" ? "❚❚ Pause" : "▶ Play";
  const banner = $("banner");
  banner.hidden = status !== "diverged";
  if (status === "diverged") {
    const d = diverged || app.diverged || {};
    const where = typeof d.layer === "number" ? `; layer ${d.layer + 1} went non-finite first` : "";
    $("banner-text").textContent = `Training diverged at step ${d.step ?? app.step}${where}. Rewind to the last finite checkpoint, then lower the learning rate or clip.`;
  }
  if (diverged) app.diverged = diverged;
}

function setRole(role) {
  app.role = role;
  const owner = role === "owner";
  $("role").textContent = owner ? "owner" : "viewing";
  $("role").dataset.role = role;
  for (const b of document.querySelectorAll(".owner-only")) b.disabled = !owner;
  $("btn-fork").hidden = owner;
  controls.setEnabled(owner);
  $("diagnosis").replaceChildren();
}

async function send(kind, payload) {
  if (app.role !== "owner" || !app.socket) return;
  const reply = kind === "set" ? await app.socket.set(payload) : await app.socket.control(payload);
  if (reply.type === "error") {
    toast(`${reply.field ? reply.field + ": " : ""}${reply.message}`, true);
    controls.setConfig(app.config);
  } else if (reply.applied && typeof reply.applied === "object") {
    const changes = {};
    for (const [k, v] of Object.entries(reply.applied)) if (schema.has(k)) changes[k] = Array.isArray(v) ? v[1] : v;
    if (Object.keys(changes).length) applyConfig({ ...app.config, ...changes }, false);
  }
  return reply;
}

function onEvent(ev) {
  if (!ev) return;
  dashboard.addEvent(ev);
  const changes = {};
  for (const [k, v] of Object.entries(ev.changes || {})) if (schema.has(k)) changes[k] = Array.isArray(v) ? v[1] : v;
  if (Object.keys(changes).length) applyConfig({ ...app.config, ...changes }, false);
  if (ev.kind === "diverged") setStatus("diverged", ev.step, { step: ev.first_step ?? ev.step, layer: ev.layer });
}

async function fetchHistory(since) {
  const q = since === undefined ? "" : `&since=${since}`;
  const h = await api("GET", `/api/sessions/${app.id}/history?max_points=800&hist=true${q}`);
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
    setStatus(m.status, m.step, m.diverged);
    if (hellos++ > 0) await fetchHistory(dashboard.series.lastStep + 1);
  });
  sock.on("stats", (m) => {
    dashboard.ingest(m);
    const last = m.step && m.step[m.step.length - 1];
    if (typeof last === "number") app.step = last;
  });
  sock.on("event", (m) => onEvent(m.event));
  sock.on("status", (m) => setStatus(m.status, m.step, m.diverged));
  sock.on("boundary", (m) => dashboard.setBoundary(m));
  sock.on("close", (m) => setStatus(m.gone ? "deleted" : "reconnecting"));
  app.socket = sock;
  sock.connect();
}

async function join(id) {
  app.id = id;
  app.token = localStorage.getItem(tokenKey(id));
  const s = await api("GET", `/api/sessions/${id}`);
  if (!s.ok) { setStatus("not found"); toast(`Session ${id}: ${errorText(s)}`, true); return; }
  setRole(app.token ? "owner" : "viewer");
  applyConfig(s.data.config, true);
  dashboard.setEvents(s.data.events || []);
  setStatus(s.data.status, s.data.step, s.data.diverged);
  await fetchHistory();
  connect();
}

async function start() {
  await loadMeta();
  const m = location.pathname.match(/^\/s\/([^/]+)/);
  if (m) return join(decodeURIComponent(m[1]));
  const r = await api("POST", "/api/sessions", schema.fromQuery(location.search));
  if (!r.ok) { toast(`Could not start a session: ${errorText(r)}`, true); return; }
  localStorage.setItem(tokenKey(r.data.id), r.data.token);
  history.replaceState(null, "", `/s/${r.data.id}`);
  return join(r.data.id);
}

async function copy(text, what) {
  app.copied = text;
  try { await navigator.clipboard.writeText(text); toast(`${what} copied`); } catch { toast(text); }
}

function wireButtons() {
  $("btn-play").addEventListener("click", () => send("control", app.status === "running" ? "pause" : "play"));
  $("btn-step").addEventListener("click", () => send("control", "step"));
  $("btn-reset").addEventListener("click", () => send("control", "reset"));
  $("btn-rewind").addEventListener("click", () => send("control", "rewind"));
  $("banner-rewind").addEventListener("click", () => send("control", "rewind"));
  $("btn-share").addEventListener("click", () => copy(`${location.origin}/s/${app.id}`, "Session link"));
  $("btn-setup").addEventListener("click", () => copy(`${location.origin}/${schema.toQuery(app.config)}`, "Setup link"));
  $("btn-fork").addEventListener("click", async () => {
    const r = await api("POST", `/api/sessions/${app.id}/fork`, {});
    if (!r.ok) { toast(`Fork failed: ${errorText(r)}`, true); return; }
    localStorage.setItem(tokenKey(r.data.id), r.data.token);
    location.assign(`/s/${r.data.id}`);
  });
  document.addEventListener("keydown", (e) => {
    if (e.code !== "Space" || e.target.closest("input, select, textarea, button")) return;
    e.preventDefault();
    $("btn-play").click();
  });
}

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
    const mlp = (app.config.model || "mlp") === "mlp";
    if (mlp) updateTheory();
    const result = mlp ? diagnose(app.config, dashboard.series.latest) : diagnoseTime(app.config, dashboard.series.latest);
    app.diagnosis = result;
    renderDiagnosis($("diagnosis"), result, { canFix: app.role === "owner",
      onFix: (name) => send("set", fixChanges(name, app.config)) });
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
openExtraPage().then((extra) => extra || start()).catch((err) => toast(String(err), true));
