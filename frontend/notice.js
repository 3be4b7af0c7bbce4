// The page's one panel for what went wrong: the link's bad parameters, each with its valid
// choices; a session, comparison or lesson that does not exist; a server that does not answer.
// Every message says what to do next (a link on). Used by every page.

/** "1 … 256" from meta.bounds, or the list of names; "" when the server gave neither. */
export function validText(field, choices, meta = {}) {
  if (Array.isArray(choices) && choices.length) return choices.map(String).join(", ");
  const b = (meta.bounds || {})[field];
  if (Array.isArray(b) && b.length === 2) return `${b[0] ?? "−∞"} … ${b[1] ?? "∞"}`;
  return "";
}

function el(tag, cls, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  node.append(...children);
  return node;
}

/** A link on: {href, text}, or {text, onClick} for a button. */
function action(a) {
  if (a.onClick) {
    const b = el("button", "notice-action", a.text);
    b.type = "button";
    b.addEventListener("click", a.onClick);
    return b;
  }
  const link = el("a", "notice-action", a.text);
  link.href = a.href;
  return link;
}

export class Notice {
  /** @param {HTMLElement} root  the panel (#notice), hidden while there is nothing to say */
  constructor(root) {
    this.root = root;
    this.state = { problems: null, offline: false };
  }

  /**
   * Say what is wrong with what this page was asked for, replacing what was said before.
   * @param {string} title  e.g. "This link has 2 problems"
   * @param {{field: string, value?: string, message: string, valid?: string}[]} items
   * @param {{href?: string, text: string, onClick?: Function}[]} actions  the ways on
   * @param {string} [kind]  a data-kind for styling and tests ("params", "missing", ...)
   */
  problems(title, items = [], actions = [], kind = "params") {
    this.state.problems = { title, items, actions, kind };
    this.render();
  }

  clearProblems() {
    this.state.problems = null;
    this.render();
  }

  /** The server stopped (false) or started (true) answering. */
  reachability(answering) {
    this.state.offline = !answering;
    this.render();
  }

  render() {
    const { problems: p, offline } = this.state, parts = [];
    if (offline) {
      parts.push(el("div", "notice-offline",
        el("strong", null, "The server is not answering."),
        ` ${location.host} has not replied for a few seconds; the page keeps trying and picks up where it was as soon as it does.`));
    }
    if (p) {
      const list = el("ul", "notice-items", ...p.items.map((it) => el("li", "notice-item",
        el("code", "notice-field", it.field || "link"),
        it.value !== undefined ? el("span", "notice-value", ` = "${it.value}"`) : "",
        `: ${/[.!?:;]$/.test(it.message) ? it.message : `${it.message}.`}`,
        it.valid ? el("span", "notice-valid", ` Valid: ${it.valid}.`) : "")));
      const box = el("div", "notice-problems", el("strong", "notice-title", p.title));
      if (p.items.length) box.append(list);
      if (p.actions.length) box.append(el("div", "notice-actions", ...p.actions.map(action)));
      box.dataset.kind = p.kind;
      parts.push(box);
    }
    this.root.replaceChildren(...parts);
    this.root.hidden = parts.length === 0;
    this.root.dataset.offline = String(offline);
  }
}
