// WebSocket client for one session: typed handlers, request ids, reconnect with backoff. No DOM.

/** Close code for a session that does not exist (any more): never reconnect to it. */
export const GONE = 4404;

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
    ws.onopen = () => { this.retry = 0; this.emit("open", {}); };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onerror = () => {};  // onclose follows and handles it
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const gone = ev.code === GONE;
      if (gone) this.closed = true;  // deleted: reconnecting would only be told so again
      this.emit("close", { code: ev.code, gone });
      this.failPending(gone ? "session deleted" : "connection closed");
      if (!this.closed) {
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

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a message with a fresh id; resolves with its ack or error message. */
  request(message) {
    if (!this.isOpen) return Promise.resolve({ type: "error", message: "not connected" });
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, { resolve });
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  set(changes) {
    return this.request({ type: "set", changes });
  }

  control(action) {
    return this.request({ type: "control", action });
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}
