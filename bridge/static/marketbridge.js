/**
 * marketbridge: a client of the marketbridge WebSocket protocol v1.1 (docs/protocol.md).
 *
 * One ES module, no build step, no dependencies: browsers, and Node 18+ (the global `WebSocket`
 * of Node 22+, `--experimental-websocket` on Node 20.10+, or any WHATWG-style WebSocket class
 * passed in as `options.WebSocket`).
 *
 * Two layers. The protocol logic is plain objects with no socket and no timers, so it can be
 * tested alone: errors and close-code advice, seqs, backoff, liveness, decimal strings, CRC32 and
 * the order book, and `Subscription` (what one subscription does with its snapshot, updates and
 * stream statuses). `Client` is the I/O: it owns the socket, the timers, request/response
 * matching, reconnecting and resuming.
 *
 * @module marketbridge
 */

/** The protocol version this client speaks; the package version follows it. */
export const PROTOCOL_VERSION = '1.1';
export const VERSION = '1.1.0';

// ====================================================================== errors

/** Every error this module throws or reports. */
export class MarketbridgeError extends Error {
  /** @param {string} message */
  constructor(message) { super(message); this.name = new.target.name; }
}

/** A request the server answered with `success: false` (or an `error` frame). */
export class RequestError extends MarketbridgeError {
  /**
   * @param {string} code  e.g. `INVALID_PARAMS`, `NOT_FOUND`, `UNAVAILABLE` (docs/protocol.md §2)
   * @param {string} message  the server's message
   * @param {string|null} [action]
   * @param {string|number|null} [requestId]
   */
  constructor(code, message, action = null, requestId = null) {
    super(action ? `${action}: ${code}: ${message}` : `${code}: ${message}`);
    this.code = code;
    this.serverMessage = message;
    this.action = action;
    this.requestId = requestId;
  }

  /** Worth retrying as is: the upstream was down or slow, or we were over the rate limit. */
  get retryable() { return ['UNAVAILABLE', 'TIMEOUT', 'RATE_LIMITED', 'INTERNAL'].includes(this.code); }
}

/** No reply within the request timeout. */
export class RequestTimeout extends MarketbridgeError {}

/** The client is closed, or not connected within the request timeout. */
export class NotConnected extends MarketbridgeError {}

/** The connection closed (any code); subclasses name the codes a caller must act on. */
export class ConnectionClosed extends MarketbridgeError {
  /** @param {number} code @param {string} reason */
  constructor(code, reason) {
    super(`connection closed ${code}${reason ? ` ${reason}` : ''}`);
    this.code = code;
    this.reason = reason;
  }
}

/** 1008: token missing, invalid or expired, bad URL parameter, flood, per-user cap. Fix the cause. */
export class PolicyViolation extends ConnectionClosed {}

/** 1009: a message over `limits.max_frame_bytes` (also thrown before sending one). */
export class MessageTooBig extends ConnectionClosed {}

/** 1013: the process is full, or this client read too slowly; retried with backoff. */
export class TryAgainLater extends ConnectionClosed {}

/**
 * The error for a close code.
 * @param {number} code @param {string} reason
 * @returns {ConnectionClosed}
 */
export function closeError(code, reason) {
  if (code === 1008) return new PolicyViolation(code, reason);
  if (code === 1009) return new MessageTooBig(code, reason);
  if (code === 1013) return new TryAgainLater(code, reason);
  return new ConnectionClosed(code, reason);
}

/**
 * @typedef {object} CloseAdvice
 * @property {boolean} retry        reconnect (after a backoff delay)
 * @property {boolean} immediate    reconnect at once (with jitter), the backoff reset: 1001
 * @property {boolean} renewToken   ask the token callback for a fresh token first
 * @property {ConnectionClosed} error
 */

const TOKEN_REASONS = /token|authentication/i;
const RETRYABLE_1008 = /rate limit exceeded|max connections per user/i;

/**
 * What to do after a close (docs/protocol.md §7 and §9 rule 4): reconnect with backoff after
 * 1000, 1001, 1006, 1011, 1013 (and 1009: the offending message is not resent); after 1008 only
 * when the cause can change: a fresh token from the callback, a flood or a per-user cap later.
 * @param {number} code @param {string} reason
 * @param {{canRenewToken?: boolean}} [options]
 * @returns {CloseAdvice}
 */
export function closeAdvice(code, reason, { canRenewToken = false } = {}) {
  const error = closeError(code, reason || '');
  if (code === 1008) {
    if (TOKEN_REASONS.test(reason || '')) {
      return { retry: canRenewToken, immediate: false, renewToken: canRenewToken, error };
    }
    return { retry: RETRYABLE_1008.test(reason || ''), immediate: false, renewToken: false, error };
  }
  return { retry: true, immediate: code === 1001, renewToken: false, error };
}

// ====================================================================== small pure helpers

/**
 * The updates a server frame carries: one for `update`, each of `updates` for `batch`, none
 * otherwise.
 * @param {any} frame
 * @returns {any[]}
 */
export function updatesOf(frame) {
  if (frame.type === 'update') return [frame];
  if (frame.type === 'batch' && Array.isArray(frame.updates)) return frame.updates;
  return [];
}

/**
 * `"<ms>-<n>"` as two numbers (seqs compare numerically, never as strings).
 * @param {string} seq
 * @returns {[number, number]}
 */
export function parseSeq(seq) {
  const at = seq.indexOf('-');
  return [Number(seq.slice(0, at)), Number(seq.slice(at + 1))];
}

/** -1, 0 or 1. @param {string} a @param {string} b */
export function compareSeq(a, b) {
  const [am, an] = parseSeq(a);
  const [bm, bn] = parseSeq(b);
  if (am !== bm) return am < bm ? -1 : 1;
  return an === bn ? 0 : an < bn ? -1 : 1;
}

/**
 * Capped exponential backoff with jitter (docs/protocol.md §9 rule 4: 0.5 s doubling to 15 s,
 * times a random 0.5-1.5), so a restarted bridge is not hit by every client at once.
 */
export class Backoff {
  /**
   * @param {number} [firstMs] @param {number} [capMs]
   * @param {number} [jitter] the delay is multiplied by a random 1 - jitter .. 1 + jitter
   * @param {() => number} [random]
   */
  constructor(firstMs = 500, capMs = 15000, jitter = 0.5, random = Math.random) {
    this.firstMs = firstMs;
    this.capMs = capMs;
    this.jitter = jitter;
    this.random = random;
    this.attempt = 0;
  }

  reset() { this.attempt = 0; }

  /** The next delay in ms. */
  next() {
    const base = Math.min(this.capMs, this.firstMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(base * (1 - this.jitter + 2 * this.jitter * this.random()));
  }
}

/**
 * Liveness by `?heartbeat_s`: the server sends some frame at least every `heartbeatS` seconds,
 * so `misses` heartbeats without any frame means the connection is dead, even if TCP says
 * nothing (a stalled network).
 */
export class Liveness {
  /** @param {number} heartbeatS @param {number} [misses] */
  constructor(heartbeatS, misses = 3) {
    this.limitMs = heartbeatS * misses * 1000;
    this.checkEveryMs = Math.max(100, (heartbeatS * 1000) / 2);
    this.lastMs = 0;
  }

  /** @param {number} nowMs */
  seen(nowMs) { this.lastMs = nowMs; }

  /** @param {number} nowMs */
  expired(nowMs) { return nowMs - this.lastMs > this.limitMs; }
}

/**
 * The WebSocket URL with the connection's query parameters (existing ones kept).
 * @param {string} base  `ws://host:port/ws` (or `http(s)://`: turned into `ws(s)://`)
 * @param {{token?: string|null, batchMs?: number|null, heartbeatS?: number|null}} query
 */
export function connectionUrl(base, { token = null, batchMs = null, heartbeatS = null } = {}) {
  const url = new URL(base.replace(/^http/, 'ws'));
  if (token) url.searchParams.set('token', token);
  if (batchMs) url.searchParams.set('batch_ms', String(batchMs));
  if (heartbeatS) url.searchParams.set('heartbeat_s', String(heartbeatS));
  return url.toString();
}

/**
 * What identifies a subscription across connections: its channel and filters (docs/protocol.md
 * §9 rule 3), not its `subscription_id`, which each connection gives anew.
 * @param {Record<string, any>} params
 */
export function subscriptionKey(params) {
  const kept = Object.keys(params).filter((k) => k !== 'resume_from' && k !== 'snapshot').sort();
  return JSON.stringify(kept.map((k) => [k, params[k]]));
}

// ====================================================================== decimal strings

/** `"050000.10"` -> `["50000", "1"]`. @param {string} text @returns {[string, string]} */
function decimalParts(text) {
  const [whole = '', fraction = ''] = String(text).trim().split('.');
  return [whole.replace(/^0+/, '') || '0', fraction.replace(/0+$/, '')];
}

/** The value as a canonical string: `"50000.1"` and `"50000.10"` are one level. @param {string} text */
export function decimalKey(text) {
  const [whole, fraction] = decimalParts(text);
  return fraction ? `${whole}.${fraction}` : whole;
}

/** Any zero (`"0"`, `"0.000"`): the level is removed. @param {string} text */
export const isZero = (text) => /^0*\.?0*$/.test(String(text).trim());

/** -1, 0 or 1: two non-negative decimal strings by value, exactly. @param {string} a @param {string} b */
export function compareDecimal(a, b) {
  const [aw, af] = decimalParts(a);
  const [bw, bf] = decimalParts(b);
  if (aw.length !== bw.length) return aw.length < bw.length ? -1 : 1;
  if (aw !== bw) return aw < bw ? -1 : 1;
  const width = Math.max(af.length, bf.length);
  const x = af.padEnd(width, '0');
  const y = bf.padEnd(width, '0');
  return x === y ? 0 : x < y ? -1 : 1;
}

/** `a - b`, exact (`"50000.5" - "49999.75"` is `"0.75"`). @param {string} a @param {string} b */
export function subtractDecimal(a, b) {
  const [aw, af] = decimalParts(a);
  const [bw, bf] = decimalParts(b);
  const scale = Math.max(af.length, bf.length);
  const diff = BigInt(aw + af.padEnd(scale, '0')) - BigInt(bw + bf.padEnd(scale, '0'));
  const negative = diff < 0n;
  const digits = (negative ? -diff : diff).toString().padStart(scale + 1, '0');
  const whole = digits.slice(0, digits.length - scale);
  const fraction = scale ? digits.slice(digits.length - scale).replace(/0+$/, '') : '';
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

// ====================================================================== CRC32 and the book checksum

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * Feed `text` (ASCII) into a running CRC32 register (start with 0xFFFFFFFF, finish with `~`).
 * @param {number} crc @param {string} text
 */
function crcUpdate(crc, text) {
  for (let i = 0; i < text.length; i += 1) crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xFF] ^ (crc >>> 8);
  return crc;
}

/** CRC32 (IEEE 802.3, as zlib.crc32) of an ASCII string, unsigned. @param {string} text */
export function crc32(text) {
  return (crcUpdate(0xFFFFFFFF, text) ^ 0xFFFFFFFF) >>> 0;
}

export const CHECKSUM_LEVELS = 10;

/** A string with `.` and leading zeros removed (`"0.00100000"` -> `"100000"`). @param {string} text */
const strip = (text) => String(text).replace(/\./g, '').replace(/^0+/, '');

/** @typedef {[string, string]} Level  `[price, qty]` as the server sent them */

/**
 * The string the checksum hashes: the top 10 asks (ascending) then the top 10 bids
 * (descending), each level's price then qty with `.` and leading zeros removed.
 * @param {Level[]} bids  best first @param {Level[]} asks  best first
 */
export function checksumString(bids, asks) {
  const part = ([price, qty]) => strip(price) + strip(qty);
  return asks.slice(0, CHECKSUM_LEVELS).map(part).join('') + bids.slice(0, CHECKSUM_LEVELS).map(part).join('');
}

/** Kraken's book checksum. @param {Level[]} bids @param {Level[]} asks */
export const bookChecksum = (bids, asks) => crc32(checksumString(bids, asks));

// ====================================================================== the order book

/**
 * One level kept by a book side: the strings as sent, the price as a float to order quickly
 * (exact comparison breaks float ties), and its checksum piece, computed once.
 * @typedef {{price: string, qty: string, num: number, part: string}} Entry
 */

/** @param {string} price @param {string} qty @returns {Entry} */
const entry = (price, qty) => ({ price, qty, num: parseFloat(price), part: strip(price) + strip(qty) });

/** A level from the wire's `[price, qty]` (or `{price, qty}`). @param {any} level @returns {Level} */
function levelOf(level) {
  if (Array.isArray(level)) return [String(level[0]), String(level[1])];
  return [String(level.price), String(level.qty)];
}

/** One side, best first: bids descending (`order` -1), asks ascending (`order` 1). */
class BookSide {
  /** @param {1|-1} order */
  constructor(order) { this.order = order; /** @type {Entry[]} */ this.entries = []; }

  /** Where `price` is, or would go: `[index, found]`. @param {string} price @param {number} num */
  find(price, num) {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const other = this.entries[mid];
      let cmp = num === other.num ? compareDecimal(price, other.price) : num < other.num ? -1 : 1;
      cmp *= this.order;
      if (cmp === 0) return [mid, true];
      if (cmp > 0) lo = mid + 1; else hi = mid;
    }
    return [lo, false];
  }

  /** Set a level; qty zero removes it. @param {Level} level */
  set([price, qty]) {
    const num = parseFloat(price);
    const [at, found] = this.find(price, num);
    if (isZero(qty)) { if (found) this.entries.splice(at, 1); return; }
    if (found) this.entries[at] = entry(price, qty);
    else this.entries.splice(at, 0, entry(price, qty));
  }

  /** @param {number} depth */
  truncate(depth) { if (this.entries.length > depth) this.entries.length = depth; }

  /** @returns {Level[]} */
  levels() { return this.entries.map((e) => [e.price, e.qty]); }
}

/**
 * A client's copy of one book at one depth (docs/protocol.md §10.3 "Keeping a book"): load a
 * snapshot, set each level of an update (qty zero removes it), truncate each side to `depth`,
 * and compare the checksum with the update's.
 */
export class OrderBook {
  /** @param {number} [depth] the subscription's depth (10, 25, 100 or 500) */
  constructor(depth = 10) {
    this.depth = depth;
    this._bids = new BookSide(-1);
    this._asks = new BookSide(1);
    /** @type {number|null} the copy's checksum after the last load or apply */
    this.checksum = null;
    /** @type {boolean} the copy holds a snapshot (false until one, and while resyncing) */
    this.loaded = false;
    /** @type {string} why the server marked the book stale, or '' */
    this.stale = '';
    this.time = 0;
  }

  /** Replace the copy with a whole book; true when its checksum matches (or none is given). @param {any} book */
  load(book) {
    this._bids = new BookSide(-1);
    this._asks = new BookSide(1);
    this.loaded = true;
    this.stale = book.stale ? 'stale' : '';
    return this._apply(book);
  }

  /** Apply an update's changed levels; true when the copy's checksum equals the update's. @param {any} update */
  apply(update) { return this._apply(update); }

  /** Forget the copy (a resync is on its way). */
  clear() {
    this._bids = new BookSide(-1);
    this._asks = new BookSide(1);
    this.loaded = false;
    this.checksum = null;
  }

  /** @param {any} update */
  _apply(update) {
    for (const level of update.bids || []) this._bids.set(levelOf(level));
    for (const level of update.asks || []) this._asks.set(levelOf(level));
    this._bids.truncate(this.depth);
    this._asks.truncate(this.depth);
    if (typeof update.time === 'number') this.time = update.time;
    this.checksum = this.computeChecksum();
    const expected = update.checksum;
    return expected === undefined || expected === null || Number(expected) === this.checksum;
  }

  /** The checksum of the copy as it stands. */
  computeChecksum() {
    let crc = 0xFFFFFFFF;
    const asks = this._asks.entries;
    const bids = this._bids.entries;
    for (let i = 0; i < asks.length && i < CHECKSUM_LEVELS; i += 1) crc = crcUpdate(crc, asks[i].part);
    for (let i = 0; i < bids.length && i < CHECKSUM_LEVELS; i += 1) crc = crcUpdate(crc, bids[i].part);
    return (crc ^ 0xFFFFFFFF) >>> 0;
  }

  /** Bids, best first. @returns {Level[]} */
  get bids() { return this._bids.levels(); }
  /** Asks, best first. @returns {Level[]} */
  get asks() { return this._asks.levels(); }
  /** @returns {Level|null} */
  bestBid() { const e = this._bids.entries[0]; return e ? [e.price, e.qty] : null; }
  /** @returns {Level|null} */
  bestAsk() { const e = this._asks.entries[0]; return e ? [e.price, e.qty] : null; }
  /** Best ask minus best bid as an exact decimal string; null with a side empty. */
  spread() {
    const bid = this.bestBid();
    const ask = this.bestAsk();
    return bid && ask ? subtractDecimal(ask[0], bid[0]) : null;
  }
}

// ====================================================================== a subscription (no I/O)

/**
 * What a subscription reports, to its callbacks and its async iterator:
 * - `snapshot`: a subscribe succeeded. `reset` true: replace your state with `snapshot`
 *   (a fresh subscription or a re-snapshot); false: a resume that replayed what was missed
 *   (`snapshot` is `[]`), keep your state.
 * - `update`: one update (`action`, `result`, `seq`); for a book, after it was applied to `book`.
 * - `status`: `stream_status` (`status` `interrupted` | `resumed`, `recovered`); `disconnected`
 *   when the socket closed (a reconnect follows).
 * - `stale`: the book no longer matches the exchange (`reason`); a `snapshot: true` update follows.
 * - `mismatch`: the book's checksum differs from the server's (`expected`, `actual`); a
 *   `resync` follows.
 * - `resync`: the state is being re-snapshotted (`reason`: `gap` or `checksum`).
 * - `error`: the subscription failed for good (its iterator throws it).
 * An iterator queues every event until it is read: read promptly, or use callbacks.
 * @typedef {{type: 'snapshot'|'update'|'status'|'stale'|'mismatch'|'resync'|'error', [field: string]: any}} SubscriptionEvent
 */

/**
 * One logical subscription, kept across connections. It decides, from what the server sends,
 * what the client must do next; `Client` does it.
 */
export class Subscription {
  /**
   * @param {Record<string, any>} params  the subscribe params (`channel` and its filters)
   * @param {string} [key]
   */
  constructor(params, key = subscriptionKey(params)) {
    if (!params || typeof params.channel !== 'string') throw new TypeError("subscribe params need a 'channel'");
    this.params = { ...params };
    delete this.params.resume_from;
    this.key = key;
    this.channel = params.channel;
    /** @type {string|null} the seq of the last update processed, or of the subscribe result */
    this.lastSeq = null;
    /** @type {string|null} this connection's `subscription_id` */
    this.id = null;
    /** @type {'pending'|'live'|'interrupted'|'disconnected'|'resyncing'|'closed'|'failed'} */
    this.state = 'pending';
    /** @type {OrderBook|null} */
    this.book = this.channel === 'book' ? new OrderBook(params.depth || 10) : null;
    this.counts = { updates: 0, resumes: 0, resyncs: 0, mismatches: 0 };
    /** @type {Map<string, Set<(event: SubscriptionEvent) => void>>} */
    this._listeners = new Map();
    /** @type {{queue: SubscriptionEvent[], wake: (() => void)|null}[]} */
    this._iterators = [];
    this._error = null;
    // the client's bookkeeping: which socket and which attempt this subscription is on
    this._gen = -1;
    this._attempt = 0;
    /** @type {Backoff|null} */
    this._backoff = null;
  }

  /** The params of the next `subscribe`: resume from the last seq if there is one. */
  subscribeParams() {
    return this.lastSeq ? { ...this.params, resume_from: this.lastSeq } : { ...this.params };
  }

  /**
   * The `subscribe` result. Returns `'resync'` when its state must be re-snapshotted.
   * @param {any} result @returns {'ok'|'resync'}
   */
  subscribed(result) {
    const resumed = this.lastSeq !== null;
    this.id = result.subscription_id;
    if (result.seq) this.lastSeq = result.seq;
    if (resumed) this.counts.resumes += 1;
    if (resumed && result.recovered === false) return 'resync';
    this.state = 'live';
    const snapshot = result.snapshot;
    if (this.book && snapshot && !Array.isArray(snapshot)) {
      if (!this.book.load(snapshot)) return this._mismatch(snapshot.checksum);
    }
    this._emit({ type: 'snapshot', snapshot, reset: !resumed, recovered: result.recovered !== false, result });
    return 'ok';
  }

  /**
   * One update of this subscription. Returns `'resync'` on a book checksum mismatch.
   * @param {any} update @returns {'ok'|'resync'}
   */
  update(update) {
    if (update.seq) this.lastSeq = update.seq;
    this.counts.updates += 1;
    const result = update.result;
    if (this.book) {
      if (result.stale === true) {
        this.book.stale = result.reason || 'stale';
        this._emit({ type: 'stale', reason: this.book.stale, update, book: this.book });
        return 'ok';
      }
      if (result.snapshot === true) {
        if (!this.book.load(result)) return this._mismatch(result.checksum);
      } else if (!this.book.loaded) {
        return 'ok';   // a book nobody had published: its first update is a snapshot
      } else if (!this.book.apply(result)) {
        return this._mismatch(result.checksum);
      }
    }
    this._emit({ type: 'update', action: update.action, result, seq: update.seq, update, book: this.book });
    return 'ok';
  }

  /**
   * A `stream_status` frame. `interrupted`: wait; `resumed` with `recovered: false`: resync.
   * @param {any} frame @returns {'ok'|'resync'}
   */
  status(frame) {
    this._emit({ type: 'status', status: frame.status, recovered: frame.recovered, frame });
    if (frame.status === 'interrupted') { this.state = 'interrupted'; return 'ok'; }
    this.state = 'live';
    return frame.recovered === false ? 'resync' : 'ok';
  }

  /** The socket closed: this connection's id is gone; the seq stays for the resume. */
  disconnected() {
    if (this.state === 'closed' || this.state === 'failed') return;
    this.id = null;
    this.state = 'disconnected';
    this._emit({ type: 'status', status: 'disconnected', recovered: false });
  }

  /**
   * Start a re-snapshot: forget the seq (subscribe without `resume_from`) and the book.
   * @param {'gap'|'checksum'} reason
   */
  resync(reason) {
    this.counts.resyncs += 1;
    this.lastSeq = null;
    this.id = null;
    this.state = 'resyncing';
    if (this.book) this.book.clear();
    this._emit({ type: 'resync', reason });
  }

  /** @param {number} expected @returns {'resync'} */
  _mismatch(expected) {
    this.counts.mismatches += 1;
    this._emit({ type: 'mismatch', expected, actual: this.book ? this.book.checksum : null });
    return 'resync';
  }

  /** The subscription failed for good. @param {Error} error */
  fail(error) {
    if (this.state === 'closed' || this.state === 'failed') return;
    this.state = 'failed';
    this._error = error;
    this._emit({ type: 'error', error });
    this._finish();
  }

  /** Ended by the user (or the client's close): iterators finish. */
  end() {
    if (this.state === 'closed' || this.state === 'failed') return;
    this.state = 'closed';
    this.id = null;
    this._finish();
  }

  get active() { return this.state !== 'closed' && this.state !== 'failed'; }

  /**
   * Listen to one event type (`'*'`: all). Returns a function that removes the listener.
   * @param {string} type @param {(event: SubscriptionEvent) => void} listener
   */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this._listeners.get(type).delete(listener);
  }

  /** @param {SubscriptionEvent} event */
  _emit(event) {
    for (const type of [event.type, '*']) {
      const set = this._listeners.get(type);
      if (!set) continue;
      for (const listener of set) {
        // a listener's bug surfaces as an uncaught error, without breaking the protocol state
        try { listener(event); } catch (error) { queueMicrotask(() => { throw error; }); }
      }
    }
    for (const it of this._iterators) {
      it.queue.push(event);
      if (it.wake) { const wake = it.wake; it.wake = null; wake(); }
    }
  }

  _finish() {
    for (const it of this._iterators) if (it.wake) { const wake = it.wake; it.wake = null; wake(); }
  }

  /**
   * Every event from now on, until the subscription ends (a failure is thrown). Events are
   * queued only for iterators that exist, so a subscription used with callbacks keeps nothing.
   * @returns {AsyncIterator<SubscriptionEvent>}
   */
  [Symbol.asyncIterator]() {
    const it = { queue: /** @type {SubscriptionEvent[]} */ ([]), wake: /** @type {(() => void)|null} */ (null) };
    this._iterators.push(it);
    const done = () => { this._iterators = this._iterators.filter((x) => x !== it); return { value: undefined, done: true }; };
    return {
      next: async () => {
        for (;;) {
          if (it.queue.length) return { value: it.queue.shift(), done: false };
          if (this._error && this.state === 'failed') { done(); throw this._error; }
          if (!this.active) return done();
          await new Promise((resolve) => { it.wake = resolve; });
        }
      },
      return: async () => done(),
      [Symbol.asyncIterator]() { return this; },
    };
  }
}

// ====================================================================== the client (I/O)

/**
 * @typedef {object} ClientOptions
 * @property {string|null|(() => string|Promise<string>)} [token]  a JWT, or a function returning a
 *   fresh one: called at every connect and on `token_expiring` (to `refresh`)
 * @property {number|null} [batchMs]  `?batch_ms`: updates in batch frames
 * @property {number|null} [heartbeatS]  `?heartbeat_s`: liveness (default 10); null: none
 * @property {number} [heartbeatMisses]  heartbeats without any frame before the socket is dead (3)
 * @property {any} [WebSocket]  a WebSocket class (default: the global one)
 * @property {number} [requestTimeoutMs]  (10000)
 * @property {number} [openTimeoutMs]  socket open + welcome (10000)
 * @property {number} [pingIntervalMs]  `ping` action interval, kept under the idle timeout (30000)
 * @property {{firstMs?: number, capMs?: number, jitter?: number}} [backoff]
 * @property {number} [maxTokenRetries]  consecutive token refusals before giving up (3)
 */

/** @typedef {(payload: any) => void} Listener */

/**
 * One logical session over successive sockets: requests, subscriptions that resume after every
 * reconnect, books that verify themselves.
 *
 * Events (`client.on(name, fn)`): `state` ({state, detail}: idle, connecting, open, waiting,
 * closed), `welcome` (frame), `close` ({code, reason, advice}), `error` (an Error that is not a
 * request's), `updates` ({count, batched}), `latency` (ms), `token_expiring` (frame),
 * `refreshed` (result), `resubscribed` ({key, recovered, subscription}), `frame` (every frame).
 */
export class Client {
  /** @param {string} url  `ws://host:port/ws` @param {ClientOptions} [options] */
  constructor(url, options = {}) {
    this.url = url;
    this.options = {
      token: null, batchMs: null, heartbeatS: 10, heartbeatMisses: 3, WebSocket: null,
      requestTimeoutMs: 10000, openTimeoutMs: 10000, pingIntervalMs: 30000, maxTokenRetries: 3,
      ...options,
    };
    const b = this.options.backoff || {};
    this.backoff = new Backoff(b.firstMs ?? 500, b.capMs ?? 15000, b.jitter ?? 0.5);
    /** @type {Map<string, Subscription>} */
    this.subs = new Map();
    /** @type {Map<string, Subscription>} subscription_id -> subscription, this connection only */
    this._byId = new Map();
    /** @type {Map<string|number, {resolve: Function, reject: Function, timer: any, action: string}>} */
    this._pending = new Map();
    /** @type {Map<string, Set<Listener>>} */
    this._listeners = new Map();
    this._nextId = 1;
    this._socket = null;
    this._gen = 0;            // counts sockets: replies of an older one are stale
    this._timers = new Set();
    this._tokenRefusals = 0;
    this._refreshing = false;
    this._lastRefreshMs = 0;
    this.state = 'idle';
    /** @type {any} the welcome frame of the current connection */
    this.welcome = null;
    this.sessionId = null;
    this.stopped = true;
    this.stats = { frames: 0, updates: 0, connects: 0 };
    this._firstWelcome = null;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Connect; resolves with the first welcome frame, rejects on a close that is not retried. */
  connect() {
    if (!this.stopped && this._firstWelcome) return this._firstWelcome.promise;
    this.stopped = false;
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    promise.catch(() => {});
    this._firstWelcome = { promise, resolve, reject, settled: false };
    this._open();
    return promise;
  }

  /** Close for good: unsubscribe nothing (the server forgets on close), end every subscription. */
  close() {
    this.stopped = true;
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    this._stopConnectionTimers();
    const socket = this._socket;
    this._detach();
    if (socket) { try { socket.close(1000, 'bye'); } catch (_) { /* already closed */ } }
    this._rejectPending(new NotConnected('client closed'));
    for (const sub of this.subs.values()) sub.end();
    this.subs.clear();
    this._setState('closed', 'closed');
    this._settleFirst(new NotConnected('client closed'));
  }

  /** @param {string} state @param {string} detail */
  _setState(state, detail) {
    this.state = state;
    this._emit('state', { state, detail });
  }

  async _open() {
    if (this.stopped) return;
    const gen = ++this._gen;
    this._setState('connecting', 'connecting');
    let token = null;
    try {
      token = await this._token();
    } catch (error) {
      this._emit('error', error);
      this._retry({ retry: true, immediate: false, renewToken: false, error }, 'token callback failed');
      return;
    }
    if (this.stopped || gen !== this._gen) return;
    const WS = this.options.WebSocket || globalThis.WebSocket;
    if (!WS) {
      this._fail(new MarketbridgeError('no WebSocket: pass options.WebSocket (Node < 22: --experimental-websocket)'));
      return;
    }
    const { batchMs, heartbeatS } = this.options;
    let socket;
    try {
      socket = new WS(connectionUrl(this.url, { token, batchMs, heartbeatS }));
    } catch (error) {
      this._fail(error);
      return;
    }
    this._socket = socket;
    this.stats.connects += 1;
    // Handlers are properties, not listeners, and read only `event.data`: wrappers of the
    // WebSocket class (tests, proxies) see exactly what the client reads.
    socket.onmessage = (event) => { if (socket === this._socket) this._receive(event.data); };
    socket.onclose = (event) => { if (socket === this._socket) this._closed(event.code, event.reason || ''); };
    socket.onerror = () => { /* a close event follows */ };
    this._openTimer = this._later(this.options.openTimeoutMs, () => {
      if (socket === this._socket && !this.welcome) this._abandon(`no welcome within ${this.options.openTimeoutMs} ms`);
    });
  }

  /** The token for the next connect: the callback's fresh one, or the fixed one. */
  async _token() {
    const { token } = this.options;
    return typeof token === 'function' ? await token() : token;
  }

  /** Drop the socket without waiting for its close (a stalled one may never report it). @param {string} why */
  _abandon(why) {
    const socket = this._socket;
    this._detach();
    if (socket) { try { socket.close(4000, 'dead connection'); } catch (_) { /* ignore */ } }
    this._closed(1006, why, true);
  }

  _detach() {
    const socket = this._socket;
    if (!socket) return;
    // no-ops rather than null: a frame already on its way finds a handler that ignores it
    socket.onmessage = ignore;
    socket.onclose = ignore;
    socket.onerror = ignore;
    this._socket = null;
  }

  /**
   * The socket closed (or was declared dead).
   * @param {number} code @param {string} reason @param {boolean} [detached]
   */
  _closed(code, reason, detached = false) {
    if (!detached) this._detach();
    this._stopConnectionTimers();
    this.welcome = null;
    this._byId.clear();
    const error = closeError(code, reason);
    this._rejectPending(error);
    for (const sub of this.subs.values()) sub.disconnected();
    if (this.stopped) return;
    const advice = closeAdvice(code, reason, { canRenewToken: typeof this.options.token === 'function' });
    this._emit('close', { code, reason, advice });
    if (code === 1009 || code === 1013) this._emit('error', error);
    if (advice.renewToken) {
      this._tokenRefusals += 1;
      if (this._tokenRefusals > this.options.maxTokenRetries) { this._fail(error); return; }
    }
    if (!advice.retry) { this._fail(error); return; }
    this._retry(advice, code === 1006 ? (reason || 'connection lost') : `closed ${code}${reason ? ` ${reason}` : ''}`);
  }

  /** @param {CloseAdvice} advice @param {string} why */
  _retry(advice, why) {
    if (advice.immediate) this.backoff.reset();
    const delay = this.backoff.next();
    this._setState('waiting', `${why}; retry in ${(delay / 1000).toFixed(1)} s`);
    this._later(delay, () => this._open());
  }

  /** A close that is not retried: every subscription and the first connect fail with it. @param {Error} error */
  _fail(error) {
    this.stopped = true;
    this._setState('closed', error.message);
    this._emit('error', error);
    for (const sub of this.subs.values()) sub.fail(error);
    this._settleFirst(error);
  }

  /** @param {Error|null} error @param {any} [welcome] */
  _settleFirst(error, welcome) {
    const first = this._firstWelcome;
    if (!first || first.settled) return;
    first.settled = true;
    if (error) first.reject(error); else first.resolve(welcome);
  }

  /** @param {number} ms @param {() => void} fn */
  _later(ms, fn) {
    const timer = setTimeout(() => { this._timers.delete(timer); fn(); }, ms);
    this._timers.add(timer);
    return timer;
  }

  _stopConnectionTimers() {
    clearTimeout(this._openTimer);
    clearInterval(this._pingTimer);
    clearInterval(this._livenessTimer);
  }

  // ---------------------------------------------------------------- frames in

  /** @param {any} data */
  _receive(data) {
    if (this._liveness) this._liveness.seen(Date.now());
    this.stats.frames += 1;
    let frame;
    try { frame = JSON.parse(data); } catch (_) { return; }
    if (frame === null || typeof frame !== 'object') return;
    this._emit('frame', frame);
    switch (frame.type) {
      case 'batch':
      case 'update': return this._deliver(updatesOf(frame), frame.type === 'batch');
      case 'response':
      case 'pong': return this._settle(frame);
      case 'stream_status': return this._streamStatus(frame);
      case 'connection': return this._welcomed(frame);
      case 'token_expiring': return this._tokenExpiring(frame);
      case 'error': return this._errorFrame(frame);
      default: return undefined;   // heartbeat, and types of later versions
    }
  }

  /** @param {any} frame */
  _welcomed(frame) {
    this.welcome = frame;
    this.sessionId = frame.session_id;
    this._tokenRefusals = 0;
    this.backoff.reset();
    clearTimeout(this._openTimer);
    this._startConnectionTimers(frame.limits || {});
    this._setState('open', 'connected');
    this._emit('welcome', frame);
    this._settleFirst(null, frame);
    const gen = this._gen;
    for (const sub of this.subs.values()) {
      // a subscription the welcome's listeners just (re)made is already on its way
      if (sub.active && sub._gen !== gen) this._establish(sub);
    }
  }

  /** @param {Record<string, any>} limits */
  _startConnectionTimers(limits) {
    const idleMs = typeof limits.idle_timeout === 'number' ? limits.idle_timeout * 1000 : Infinity;
    const pingMs = Math.min(this.options.pingIntervalMs, idleMs / 3);
    this._pingTimer = setInterval(() => { this.ping().catch(() => {}); }, pingMs);
    const heartbeatS = limits.heartbeat_s || null;
    this._liveness = heartbeatS ? new Liveness(heartbeatS, this.options.heartbeatMisses) : null;
    if (this._liveness) {
      const liveness = this._liveness;
      liveness.seen(Date.now());
      this._livenessTimer = setInterval(() => {
        if (liveness === this._liveness && liveness.expired(Date.now())) {
          this._abandon(`no frame for ${liveness.limitMs / 1000} s (heartbeat_s ${heartbeatS})`);
        }
      }, liveness.checkEveryMs);
    }
  }

  /** @param {any[]} updates @param {boolean} batched */
  _deliver(updates, batched) {
    this.stats.updates += updates.length;
    this._emit('updates', { count: updates.length, batched });
    for (const update of updates) {
      const sub = this._byId.get(update.subscription_id);
      if (sub && sub.update(update) === 'resync') this._resync(sub, 'checksum');
    }
  }

  /** @param {any} frame */
  _streamStatus(frame) {
    const sub = this._byId.get(frame.subscription_id);
    if (sub && sub.status(frame) === 'resync') this._resync(sub, 'gap');
  }

  /** @param {any} frame */
  _settle(frame) {
    const waiter = this._pending.get(frame.request_id);
    if (!waiter) return;
    this._pending.delete(frame.request_id);
    clearTimeout(waiter.timer);
    if (frame.type === 'pong') waiter.resolve(frame);
    else if (frame.success) {
      // at once, not in a later microtask: the frames after this reply may be dispatched in
      // the same task (Node's WebSocket delivers a whole TCP read at once)
      if (waiter.onResult) waiter.onResult(frame.result);
      waiter.resolve(frame.result);
    }
    else {
      const e = frame.error || {};
      waiter.reject(new RequestError(e.code || 'INTERNAL', e.message || 'request failed', frame.action, frame.request_id));
    }
  }

  /** @param {any} frame */
  _errorFrame(frame) {
    const e = frame.error || {};
    const error = new RequestError(e.code || 'INVALID_MESSAGE', e.message || 'error', null, frame.request_id ?? null);
    const waiter = frame.request_id !== undefined ? this._pending.get(frame.request_id) : undefined;
    if (waiter) {
      this._pending.delete(frame.request_id);
      clearTimeout(waiter.timer);
      waiter.reject(error);
    } else {
      this._emit('error', error);
    }
  }

  /** `token_expiring`: with a token callback, `refresh` with a fresh token. @param {any} frame */
  async _tokenExpiring(frame) {
    this._emit('token_expiring', frame);
    if (typeof this.options.token !== 'function' || this._refreshing) return;
    // A callback whose tokens expire within the server's warning window gets a warning at once
    // after each refresh: at most one refresh a second, so that is not a tight loop.
    const wait = (this._lastRefreshMs || 0) + 1000 - Date.now();
    this._refreshing = true;
    try {
      if (wait > 0) await new Promise((resolve) => this._later(wait, resolve));
      const token = await this.options.token();
      this._lastRefreshMs = Date.now();
      this._emit('refreshed', await this.request('refresh', { token }));
    } catch (error) {
      this._emit('error', error);   // the connection ends at the old exp; the reconnect takes a fresh token
    } finally {
      this._refreshing = false;
    }
  }

  // ---------------------------------------------------------------- requests

  /**
   * Send a request; resolves with its `result` (a `pong` frame for `ping`), rejects with a
   * RequestError, RequestTimeout, NotConnected or the ConnectionClosed that cut it off.
   * Waits for the connection when it is being (re)made.
   * @param {string} action @param {Record<string, any>} [params]
   * @param {{timeoutMs?: number, onResult?: (result: any) => void}} [options]  `onResult` runs
   *   synchronously with the reply, before any later frame is processed
   */
  async request(action, params, { timeoutMs = this.options.requestTimeoutMs, onResult } = {}) {
    const deadline = Date.now() + timeoutMs;
    await this._whenOpen(timeoutMs);
    const id = this._nextId++;
    const message = params === undefined ? { action, request_id: id } : { action, request_id: id, params };
    const text = JSON.stringify(message);
    const max = this.welcome && this.welcome.limits && this.welcome.limits.max_frame_bytes;
    if (max && text.length * 3 > max && byteLength(text) > max) {
      throw new MessageTooBig(1009, `${action}: ${byteLength(text)} bytes exceeds max_frame_bytes ${max}`);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new RequestTimeout(`${action}: no reply within ${timeoutMs} ms`));
      }, Math.max(1, deadline - Date.now()));
      this._pending.set(id, { resolve, reject, timer, action, onResult });
      this._socket.send(text);
    });
  }

  /** @param {number} timeoutMs */
  _whenOpen(timeoutMs) {
    if (this.stopped) return Promise.reject(new NotConnected('client is not connected (call connect())'));
    if (this.welcome && this._socket) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { off(); reject(new NotConnected(`not connected within ${timeoutMs} ms`)); }, timeoutMs);
      const off = this.on('state', ({ state }) => {
        if (state === 'open') { clearTimeout(timer); off(); resolve(); }
        if (state === 'closed') { clearTimeout(timer); off(); reject(new NotConnected('client closed')); }
      });
    });
  }

  /** @param {Error} error */
  _rejectPending(error) {
    for (const waiter of this._pending.values()) { clearTimeout(waiter.timer); waiter.reject(error); }
    this._pending.clear();
  }

  /** Round trip in ms (also keeps the connection active under `idle_timeout`). */
  async ping() {
    const sent = now();
    await this.request('ping');
    const ms = now() - sent;
    this._emit('latency', ms);
    return ms;
  }

  getTicker(exchange, symbol) { return this.request('get_ticker', { exchange, symbol }); }
  listTickers(params = {}) { return this.request('list_tickers', params); }
  getOrder(orderId) { return this.request('get_order', { order_id: orderId }); }
  listOrders(params = {}) { return this.request('list_orders', params); }
  getBot(botId) { return this.request('get_bot', { bot_id: botId }); }
  listBots() { return this.request('list_bots'); }
  getBook(exchange, symbol, depth) { return this.request('get_book', { exchange, symbol, ...(depth ? { depth } : {}) }); }
  listTrades(params) { return this.request('list_trades', params); }
  listCandles(params) { return this.request('list_candles', params); }

  // ---------------------------------------------------------------- subscriptions

  /**
   * Subscribe; the subscription follows every reconnect (resumed from its last seq) until
   * `unsubscribe`. A subscription with the same key is replaced. Use its events through
   * `on(type, fn)`, `onEvent`, or `for await (const event of sub)`.
   * @param {Record<string, any>} params  `{channel, ...filters}` (docs/protocol.md §3, §10.2)
   * @param {{key?: string, onEvent?: (event: SubscriptionEvent) => void}} [options]
   * @returns {Subscription}
   */
  subscribe(params, { key, onEvent } = {}) {
    const sub = new Subscription(params, key);
    const previous = this.subs.get(sub.key);
    if (previous) this.unsubscribe(previous);
    if (onEvent) sub.on('*', onEvent);
    this.subs.set(sub.key, sub);
    if (this.welcome && this._socket) this._establish(sub);
    return sub;
  }

  /** End a subscription (by object or key) and tell the server. @param {Subscription|string} subOrKey */
  unsubscribe(subOrKey) {
    const sub = typeof subOrKey === 'string' ? this.subs.get(subOrKey) : subOrKey;
    if (!sub) return;
    if (this.subs.get(sub.key) === sub) this.subs.delete(sub.key);
    const id = sub.id;
    sub.end();
    if (id) this._forget(id);
  }

  /** Drop a server subscription of this connection (a replaced or re-snapshotted one). @param {string} id */
  _forget(id) {
    this._byId.delete(id);
    if (this.welcome && this._socket) this.request('unsubscribe', { subscription_id: id }).catch(() => {});
  }

  /** (Re)establish `sub` on this connection. @param {Subscription} sub */
  _establish(sub) {
    const gen = this._gen;
    const attempt = sub._attempt + 1;
    sub._attempt = attempt;
    sub._gen = gen;
    const params = sub.subscribeParams();
    const current = () => sub._attempt === attempt && sub.active && gen === this._gen;
    const onResult = (result) => {
      if (!current()) { this._forget(result.subscription_id); return; }   // replaced meanwhile: do not leave it running
      this._subscribed(sub, params, result);
    };
    this.request('subscribe', params, { onResult }).catch((error) => {
      if (current()) this._subscribeFailed(sub, error, current);
    });
  }

  /** @param {Subscription} sub @param {Record<string, any>} params @param {any} result */
  _subscribed(sub, params, result) {
    if (sub._backoff) sub._backoff.reset();
    this._byId.set(result.subscription_id, sub);
    const resumed = 'resume_from' in params;
    const outcome = sub.subscribed(result);
    if (resumed) this._emit('resubscribed', { key: sub.key, recovered: result.recovered !== false, subscription: sub });
    if (outcome === 'resync') this._resync(sub, resumed && result.recovered === false ? 'gap' : 'checksum');
  }

  /** @param {Subscription} sub @param {Error} error @param {() => boolean} current */
  _subscribeFailed(sub, error, current) {
    if (error instanceof RequestError && error.retryable) {
      // the upstream is down or slow: try again with backoff on this connection
      const delay = (sub._backoff ||= new Backoff(500, 10000)).next();
      this._later(delay, () => { if (current()) this._establish(sub); });
    } else if (error instanceof RequestError) {
      sub.fail(error);
      if (this.subs.get(sub.key) === sub) this.subs.delete(sub.key);
    } else if (error instanceof RequestTimeout && this.welcome) {
      this._establish(sub);
    }
    // a closed connection: the next welcome establishes it
  }

  /**
   * Re-snapshot (docs/protocol.md §4): unsubscribe, then subscribe without `resume_from`;
   * frames still arriving for the old id are ignored.
   * @param {Subscription} sub @param {'gap'|'checksum'} reason
   */
  _resync(sub, reason) {
    const id = sub.id;
    sub.resync(reason);
    if (id) this._forget(id);
    if (this.welcome && this._socket) this._establish(sub);
  }

  // ---------------------------------------------------------------- events

  /** @param {string} name @param {Listener} listener @returns {() => void} removes it */
  on(name, listener) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(listener);
    return () => { this._listeners.get(name).delete(listener); };
  }

  /** @param {string} name @param {any} payload */
  _emit(name, payload) {
    const set = this._listeners.get(name);
    if (!set) return;
    for (const listener of set) {
      try { listener(payload); } catch (error) { if (name !== 'error') this._emit('error', error); }
    }
  }
}

const ignore = () => {};
const encoder = new TextEncoder();

/** UTF-8 size; the exact count only when the text could be over a limit. @param {string} text */
const byteLength = (text) => encoder.encode(text).length;

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());
