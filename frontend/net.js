// HTTP to the server, JSON in and out, and the one place that knows whether the server answers.
// No DOM: a page shows the state through onReachability (notice.js draws it).

/** A server that has not answered a request in this long is reported as not answering, ms. */
export const ANSWER_MS = 4000;
/** A read (GET) with no answer in this long is given up and sent again, ms. */
export const RETRY_MS = 8000;

const listeners = new Set();
let answering = true;

/** Call fn(answering: boolean) whenever the server stops or starts answering. */
export function onReachability(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Whether the server answered the last request or socket that asked. */
export const isAnswering = () => answering;

/** Report what a request or a socket learned: the server answered (true) or did not (false). */
export function reachable(ok) {
  if (ok === answering) return;
  answering = ok;
  for (const fn of listeners) fn(ok);
}

/**
 * One request: {ok, status, data}; status 0 means no answer (the network failed, or a read
 * ran past RETRY_MS). A request that takes longer than ANSWER_MS reports the server as not
 * answering while it waits (unless `patient`: a command known to take long, such as a compare
 * run catching up thousands of steps); any answer reports it back.
 */
export async function request(method, path, body, headers = {}, { patient = false } = {}) {
  const ctrl = new AbortController();
  const slow = patient ? 0 : setTimeout(() => reachable(false), ANSWER_MS);
  const limit = method === "GET" ? setTimeout(() => ctrl.abort(), RETRY_MS) : 0;
  let res;
  try {
    res = await fetch(path, { method, signal: ctrl.signal, headers: { "Content-Type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    res = null;
  } finally {
    clearTimeout(slow);
    clearTimeout(limit);
  }
  // a gateway in front of a stopped server answers 502-504: that is not the server answering
  const gateway = res !== null && res.status >= 502 && res.status <= 504;
  reachable(res !== null && !gateway);
  if (res === null) return { ok: false, status: 0, data: null };
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  return { ok: res.ok, status: res.status, data };
}

/**
 * `request` again and again until the server answers (with anything but a gateway error):
 * for what a page cannot do without (its tables of names, the session it shows). Waits 1, 2,
 * 4, then 5 s between tries.
 */
export async function persistent(method, path, body, headers = {}) {
  for (let attempt = 0; ; attempt++) {
    const r = await request(method, path, body, headers);
    if (r.status !== 0 && !(r.status >= 502 && r.status <= 504)) return r;
    await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 1000 * 2 ** attempt)));
  }
}

/** The 422 body's list of problems, [{field, message, choices}], whatever shape the server sent. */
export function problems(r) {
  const d = r.data && r.data.detail;
  if (Array.isArray(d)) return d.map((p) => ({ field: String(p.field ?? "?"), message: String(p.message ?? "invalid"),
                                               choices: Array.isArray(p.choices) ? p.choices : null }));
  if (typeof d === "string") return [{ field: (r.data && r.data.field) || "", message: d, choices: (r.data && r.data.choices) || null }];
  return [{ field: "", message: r.status ? `HTTP ${r.status}` : "the server did not answer", choices: null }];
}

/** One line for a toast: "field: message" for each problem. */
export function errorText(r) {
  return problems(r).map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join("; ");
}
