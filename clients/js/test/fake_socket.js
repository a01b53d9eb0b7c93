/**
 * A WebSocket stand-in for the sans-network tests: the test plays the server, frame by frame.
 */

/** Resolves when `predicate()` holds, checked after every turn of the event loop; bounded. */
export async function until(predicate, what = 'condition', timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

export class FakeSocket {
  /** @type {FakeSocket[]} every socket made, newest last */
  static made = [];

  static reset() { FakeSocket.made = []; }

  static get last() { return FakeSocket.made[FakeSocket.made.length - 1]; }

  /** @param {string} url */
  constructor(url) {
    this.url = url;
    /** @type {any[]} the frames the client sent, parsed */
    this.sent = [];
    this.closed = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    FakeSocket.made.push(this);
  }

  send(text) { this.sent.push(JSON.parse(text)); }

  close(code = 1000, reason = '') { this.closed = { code, reason }; }

  /** The server sends a frame. */
  frame(frame) { if (this.onmessage) this.onmessage({ data: JSON.stringify(frame) }); }

  welcome(limits = {}) {
    this.frame({ type: 'connection', status: 'connected', session_id: `s${FakeSocket.made.length}`, protocol: 1,
      features: ['book', 'trades', 'candles', 'heartbeat', 'refresh'], limits: { idle_timeout: 300, max_frame_bytes: 65536, ...limits } });
  }

  /** The server closes the connection. */
  drop(code = 1006, reason = '') { if (this.onclose) this.onclose({ code, reason }); }

  /** The sent requests of one action. */
  requests(action) { return this.sent.filter((m) => m.action === action); }

  /** Reply to the last request of `action` that has no reply yet. */
  reply(action, result, extra = {}) {
    const request = this.requests(action).find((m) => !m.__replied);
    if (!request) throw new Error(`no ${action} request to answer`);
    request.__replied = true;
    this.frame({ type: 'response', action, request_id: request.request_id, success: true, result, ...extra });
    return request;
  }

  fail(action, code, message) {
    const request = this.requests(action).find((m) => !m.__replied);
    request.__replied = true;
    this.frame({ type: 'response', action, request_id: request.request_id, success: false, error: { code, message } });
    return request;
  }
}
