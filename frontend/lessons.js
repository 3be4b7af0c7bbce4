// Lessons: the menu, a lesson's page (/lessons/{id}: predict, run, verdict) and the extra pages'
// routing (/lessons/{id}, /compare/{a}/{b}). The verdict is computed by the server (one evaluator).
import { CompareView } from "./compare.js";
import { parseChanges, startCompare } from "./comparerun.js";
import { errorText, persistent } from "./net.js";
import { api, storeToken } from "./api.js";
import { queryParams, unexpectedParams } from "./pageparams.js";

const $ = (id) => document.getElementById(id);

const text = (tag, cls, content) => {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (content !== undefined) el.textContent = content;
  return el;
};

/**
 * The page for /lessons/{id} or /compare/{a}/{b}; false on any other path (the dashboard's).
 * @param {import("./notice.js").Notice} notice  where unknown parameters and missing runs are said
 */
export async function openExtraPage(notice) {
  const lesson = location.pathname.match(/^\/lessons\/([^/]+)\/?$/);
  const pair = location.pathname.match(/^\/compare\/([^/]+)\/([^/]+)\/?$/);
  if (!lesson && !pair) return false;
  document.body.dataset.page = pair ? "compare" : "lesson";
  const root = $("extra-root");
  root.hidden = false;
  const params = queryParams(), u = unexpectedParams(params, pair ? "a comparison page" : "a lesson page");
  if (u.items.length) notice.problems(u.title, u.items, u.actions);
  if (pair) {
    const view = new CompareView(root, { a: decodeURIComponent(pair[1]), b: decodeURIComponent(pair[2]) });
    window.gradscope.compare = view;
    const missing = await view.start();
    if (missing.length) {
      root.replaceChildren();  // no empty cards: the notice says why there is nothing to show
      notice.problems(missing.length === 1 ? "No such session" : "No such sessions", [...missing.map((r) => ({ field: `run ${r.name.toUpperCase()}`,
        value: r.id, message: "the server does not know this session: it was deleted, or the link is mistyped" })), ...u.items],
      [{ href: "/", text: "Start a new run" }, ...view.runs.filter((r) => !r.missing).map((r) => ({ href: r.href, text: `Open run ${r.name.toUpperCase()} alone` }))], "missing");
    }
  } else {
    await new LessonPage(root, decodeURIComponent(lesson[1]), notice, u.items).open();
  }
  return true;
}

/** A lesson: claim, question (answered before running), the runs, the verdict. */
class LessonPage {
  /** @param {object[]} extra  the link's other problems (its parameters), listed with a missing lesson */
  constructor(root, id, notice, extra = []) {
    Object.assign(this, { root, id, notice, extra, choice: null, view: null, verdict: null });
    window.gradscope.lesson = this;
  }

  async open() {
    const r = await persistent("GET", `/api/lessons/${encodeURIComponent(this.id)}`);
    if (!r.ok) {
      const all = await persistent("GET", "/api/lessons");
      this.root.replaceChildren();
      this.missing = true;
      this.notice.problems(r.status === 404 ? "No such lesson" : `Lesson ${this.id}: ${errorText(r)}`,
        [{ field: "lesson", value: this.id, message: "there is no lesson by that name; these are the lessons:" }, ...this.extra],
        [...(all.ok ? all.data.map((l) => ({ href: `/lessons/${l.id}`, text: l.title })) : []), { href: "/", text: "Start the default run" }], "missing");
      return;
    }
    this.lesson = r.data;
    const box = text("section", "lesson");
    box.append(text("h1", null, this.lesson.title), text("p", "lesson-claim", this.lesson.claim));
    if (this.lesson.source) box.append(text("p", "lesson-source", `References: ${this.lesson.source}`));
    box.append(this.questionForm(), text("div", "lesson-verdict"));
    const runs = text("div", "lesson-runs");
    this.root.replaceChildren(box, runs);
  }

  questionForm() {
    const q = this.lesson.question;
    const form = text("form", "lesson-question");
    form.append(text("p", "lesson-prompt", `Predict first: ${q.prompt}`));
    q.choices.forEach((c, i) => {
      const label = text("label", "lesson-choice");
      const input = document.createElement("input");
      Object.assign(input, { type: "radio", name: "choice", value: String(i) });
      input.addEventListener("change", () => { this.choice = i; run.disabled = false; });
      label.append(input, ` ${c}`);
      form.append(label);
    });
    const run = text("button", "primary", "Run it");
    Object.assign(run, { type: "submit", disabled: true, id: "lesson-run" });
    form.append(run);
    form.addEventListener("submit", (e) => { e.preventDefault(); this.run(form); });
    return form;
  }

  async run(form) {
    for (const el of form.elements) el.disabled = true;
    // created paused and played once this page watches: a run nobody watches would idle-pause
    const r = await api("POST", `/api/lessons/${encodeURIComponent(this.id)}/start`, { paused: true });
    if (!r.ok) { this.showError(`Could not start: ${errorText(r)}`); for (const el of form.elements) el.disabled = false; return; }
    this.runs = { a: r.data.a.id, b: r.data.b ? r.data.b.id : null };
    for (const key of ["a", "b"]) if (r.data[key]) storeToken(r.data[key].id, r.data[key].token);
    const holder = this.root.querySelector(".lesson-runs");
    this.view = new CompareView(holder, { a: this.runs.a, b: this.runs.b, look: this.lesson.look });
    window.gradscope.compare = this.view;
    this.view.onChange(() => this.maybeJudge());
    await this.view.start();
    await this.view.whenConnected();
    await this.view.control("play");
  }

  /** Once every run is paused at the last step (or diverged), ask the server for the verdict. */
  async maybeJudge() {
    if (this.verdict || this.judging) return;
    const done = this.view.runs.every((r) => r.status === "diverged" || (r.status === "paused" && r.step >= this.lesson.steps));
    if (!done) return;
    this.judging = true;
    const q = new URLSearchParams({ a: this.runs.a, ...(this.runs.b ? { b: this.runs.b } : {}) });
    const r = await api("GET", `/api/lessons/${encodeURIComponent(this.id)}/verdict?${q}`);
    this.judging = false;
    if (r.ok && r.data.ready) this.showVerdict(r.data);
  }

  showVerdict(v) {
    this.verdict = v;
    const box = this.root.querySelector(".lesson-verdict");
    const choices = this.lesson.question.choices;
    const right = this.choice === v.answer;
    box.dataset.holds = String(v.holds);
    box.replaceChildren(
      text("p", `lesson-prediction ${right ? "right" : "wrong"}`,
        `You predicted "${choices[this.choice]}". ${right ? "Right." : `The run says: "${choices[v.answer]}".`}`),
      text("p", "lesson-message", v.message),
      ...v.checks.map((c) => text("p", `lesson-check ${c.passed ? "passed" : "failed"}`, `${c.passed ? "✓" : "✗"} ${c.says}`)),
      text("p", "lesson-explain", this.lesson.explain),
    );
  }

  showError(message) {
    this.root.querySelector(".lesson-verdict").replaceChildren(text("p", "lesson-error", message));
  }
}

/** The Lessons menu (every page) and the Compare button (a session page). */
export function wireLessonsMenu(app) {
  const menu = $("lessons-menu");
  $("btn-lessons").addEventListener("click", async () => {
    menu.hidden = !menu.hidden;
    if (menu.hidden || menu.dataset.loaded) return;
    const r = await api("GET", "/api/lessons");
    if (!r.ok) return;
    menu.dataset.loaded = "1";
    // grouped by model (the server sends them in the models' order), each group headed by the model's label
    menu.replaceChildren(...r.data.flatMap((l, k) => {
      const a = text("a", "lesson-link", l.title);
      a.href = `/lessons/${l.id}`;
      a.title = l.claim;
      a.dataset.model = l.model;
      return k === 0 || r.data[k - 1].model !== l.model ? [text("span", "lesson-group", l.model_label), a] : [a];
    }));
  });
  const dialog = $("compare-dialog");
  $("btn-compare").addEventListener("click", () => { dialog.hidden = !dialog.hidden; });
  $("compare-go").addEventListener("click", async () => {
    const link = $("compare-link").value.trim().match(/\/s\/([^/?#]+)/);
    if (link) { location.assign(`/compare/${app.id}/${link[1]}`); return; }
    const r = await startCompare(app, parseChanges($("compare-changes").value));
    if (r.ok) location.assign(`/compare/${app.id}/${r.data.b.id}`);
    else $("compare-error").textContent = errorText(r);
  });
}
