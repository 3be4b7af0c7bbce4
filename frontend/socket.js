// WebSocket client for one session: typed handlers, request ids, reconnect with backoff. No DOM.
import { ANSWER_MS, reachable } from "./net.js";

/** Close code for a session that does not exist (any more): never reconnect to it. */
export const GONE = 4404;

/** How long a request made while the socket (re)connects waits for it before failing, ms. */
export const QUEUE_WAIT = 10000;

export class SessionSocket {
  /**
   * @param {string} url  ws(s)://host/api/sessions/{id}/ws
   * @param {string|null} token  the owner token, offered as subprotocol `bearer.TOKEN`
   *   (never in the URL, so no server or proxy log records it)
   */
  constructor(url, token = null) {
    this.url = url;
    this.protocols = ["gradscope", ...(token ? [`bearer.${token}`] : [])];
    this.handlers = new Map();
    this.pending = new Map();
    this.queued = [];  // requests made before the socket opened: sent on open, failed after QUEUE_WAIT
    this.nextId = 1;
    this.ws = null;
    this.closed = false;
    this.retry = 0;
  }

  /** Register `fn(message)` for messages of `type` (also "open" and "close"). */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }

  emit(type, message) {
    for (const fn of this.handlers.get(type) || []) fn(message);
  }

  connect() {
    this.closed = false;
    const ws = new WebSocket(this.url, this.protocols);
    this.ws = ws;
    // a socket that neither opens nor fails within ANSWER_MS: the server is not answering
    clearTimeout(this.stall);
    this.stall = setTimeout(() => { if (this.ws === ws && !this.isOpen) reachable(false); }, ANSWER_MS);
    ws.onopen = () => { clearTimeout(this.stall); reachable(true); this.retry = 0; this.emit("open", {}); this.flush(); };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onerror = () => {};  // onclose follows and handles it
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      clearTimeout(this.stall);
      const gone = ev.code === GONE;
      if (gone) this.closed = true;  // deleted: reconnecting would only be told so again
      this.emit("close", { code: ev.code, gone });
      this.failPending(gone ? "session deleted" : "connection closed");
      if (gone) this.failQueued("session deleted");
      if (!this.closed) {
        if (this.retry >= 2) reachable(false);  // refused twice in a row: no server behind the address
        const delay = Math.min(5000, 250 * 2 ** this.retry++);
        setTimeout(() => { if (!this.closed) this.connect(); }, delay);
      }
    };
    return this;
  }

  receive(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (!msg || typeof msg.type !== "string") return;
    if ((msg.type === "ack" || msg.type === "error") && this.pending.has(msg.id)) {
      const { resolve } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      resolve(msg);
    }
    this.emit(msg.type, msg);
  }

  failPending(reason) {
    for (const { resolve } of this.pending.values()) resolve({ type: "error", message: reason });
    this.pending.clear();
  }

  failQueued(reason) {
    for (const q of this.queued.splice(0)) { clearTimeout(q.timer); q.resolve({ type: "error", message: reason }); }
  }

  /** Send what was asked while the socket was connecting, in order. */
  flush() {
    for (const q of this.queued.splice(0)) { clearTimeout(q.timer); this.send(q.message, q.resolve); }
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(message, resolve) {
    const id = this.nextId++;
    this.pending.set(id, { resolve });
    this.ws.send(JSON.stringify({ ...message, id }));
  }

  /**
   * Send a message with a fresh id; resolves with its ack or error message. A request made while
   * the socket connects or reconnects (a click right after the page opened) waits for it, up to
   * QUEUE_WAIT ms, instead of being dropped.
   */
  request(message) {
    if (this.closed || this.ws === null) return Promise.resolve({ type: "error", message: "not connected" });
    return new Promise((resolve) => {
      if (this.isOpen) { this.send(message, resolve); return; }
      const q = { message, resolve };
      q.timer = setTimeout(() => {
        const i = this.queued.indexOf(q);
        if (i >= 0) { this.queued.splice(i, 1); resolve({ type: "error", message: "not connected" }); }
      }, QUEUE_WAIT);
      this.queued.push(q);
    });
  }

  set(changes) {
    return this.request({ type: "set", changes });
  }

  /** `extra`: the action's own fields (a rewind's `learning_rate`). */
  control(action, extra = {}) {
    return this.request({ type: "control", action, ...extra });
  }

  close() {
    this.closed = true;
    clearTimeout(this.stall);
    this.failQueued("connection closed");
    if (this.ws) this.ws.close();
  }
}
