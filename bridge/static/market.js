/*
 * marketbridge live page, market depth logic (docs/protocol.md section 10): decimal strings,
 * the book checksum (CRC32), a client copy of a book, a candle series and the candle chart's
 * geometry. Pure: no DOM and no socket, so app.js renders and the page's tests check it.
 *
 * Prices and quantities stay the decimal strings the server sent; they are compared and
 * subtracted as decimals here, and turned into floats only for bar widths and chart scaling.
 */
(() => {
  'use strict';

  // ------------------------------------------------------------------ decimal strings

  /** `"050000.10"` -> `["50000", "1"]`: the integer part without leading zeros, the fraction without trailing ones. */
  function decimalParts(text) {
    const [whole = '', fraction = ''] = String(text).trim().split('.');
    return [whole.replace(/^0+/, '') || '0', fraction.replace(/0+$/, '')];
  }

  /** The decimal value as a canonical string: `"50000.1"` and `"50000.10"` are one level. */
  function decimalKey(text) {
    const [whole, fraction] = decimalParts(text);
    return fraction ? `${whole}.${fraction}` : whole;
  }

  /** Any zero (`"0"`, `"0.000"`, `".0"`): the level is removed. */
  const isZero = (text) => /^0*\.?0*$/.test(String(text).trim());

  /** -1, 0 or 1: compares two non-negative decimal strings by value, exactly. */
  function compareDecimal(a, b) {
    const [aw, af] = decimalParts(a);
    const [bw, bf] = decimalParts(b);
    if (aw.length !== bw.length) return aw.length < bw.length ? -1 : 1;
    if (aw !== bw) return aw < bw ? -1 : 1;
    const width = Math.max(af.length, bf.length);
    const x = af.padEnd(width, '0');
    const y = bf.padEnd(width, '0');
    return x === y ? 0 : x < y ? -1 : 1;
  }

  /** `a - b` for non-negative decimal strings, exact (`"50000.5" - "49999.75"` is `"0.75"`). */
  function subtractDecimal(a, b) {
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

  // ------------------------------------------------------------------ checksum

  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n += 1) {
      let c = n;
      for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  /** CRC32 (IEEE 802.3, as zlib.crc32) of an ASCII string, unsigned. */
  function crc32(text) {
    let crc = 0xFFFFFFFF;
    for (let i = 0; i < text.length; i += 1) crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xFF] ^ (crc >>> 8);
    return (crc ^ 0xFFFFFFFF) >>> 0;
  }

  const CHECKSUM_LEVELS = 10;
  const strip = (text) => String(text).replace(/\./g, '').replace(/^0+/, '');

  /** The string the checksum hashes: top 10 asks then top 10 bids, price then qty, `.` and leading zeros removed. */
  function checksumString(bids, asks) {
    const part = ([price, qty]) => strip(price) + strip(qty);
    return asks.slice(0, CHECKSUM_LEVELS).map(part).join('') + bids.slice(0, CHECKSUM_LEVELS).map(part).join('');
  }

  const bookChecksum = (bids, asks) => crc32(checksumString(bids, asks));

  // ------------------------------------------------------------------ a client copy of a book

  /** A level as `[price, qty]` strings, from the wire's `[price, qty]` or `{price, qty}`. */
  function levelOf(level) {
    if (Array.isArray(level)) return [String(level[0]), String(level[1])];
    return [String(level.price), String(level.qty)];
  }

  /**
   * The book as docs/protocol.md "Keeping a book" says: load a snapshot, set each level of an
   * update (qty zero removes it), truncate each side to `depth`, and compare the checksum.
   */
  class BookCopy {
    constructor(depth = 25) { this.depth = depth; this.bids = []; this.asks = []; this.checksum = null; }

    load(book) {
      this.bids = [];
      this.asks = [];
      this.setLevels(book.bids || [], book.asks || []);
      return this.verify(book.checksum);
    }

    /** Apply an update's changed levels; true when the copy's checksum equals the update's. */
    apply(update) {
      this.setLevels(update.bids || [], update.asks || []);
      return this.verify(update.checksum);
    }

    setLevels(bids, asks) {
      for (const level of bids) this.bids = setLevel(this.bids, levelOf(level), -1);
      for (const level of asks) this.asks = setLevel(this.asks, levelOf(level), 1);
      this.bids = this.bids.slice(0, this.depth);
      this.asks = this.asks.slice(0, this.depth);
    }

    /** A missing checksum (a server that sends none) is not a mismatch. */
    verify(expected) {
      this.checksum = bookChecksum(this.bids, this.asks);
      return expected === undefined || expected === null || Number(expected) === this.checksum;
    }

    bestBid() { return this.bids.length ? this.bids[0] : null; }
    bestAsk() { return this.asks.length ? this.asks[0] : null; }
    /** Best ask minus best bid, as an exact decimal string; null with a side empty. */
    spread() {
      const bid = this.bestBid();
      const ask = this.bestAsk();
      return bid && ask ? subtractDecimal(ask[0], bid[0]) : null;
    }
  }

  /** `side` best first; `order` 1 for asks (ascending), -1 for bids (descending). */
  function setLevel(side, [price, qty], order) {
    const key = decimalKey(price);
    const rest = side.filter(([p]) => decimalKey(p) !== key);
    if (isZero(qty)) return rest;
    let at = rest.findIndex(([p]) => compareDecimal(p, price) * order > 0);
    if (at < 0) at = rest.length;
    rest.splice(at, 0, [price, qty]);
    return rest;
  }

  /** Each level with its running total (floats: for the bars only). */
  function withTotals(side) {
    let total = 0;
    return side.map(([price, qty]) => { total += parseFloat(qty) || 0; return { price, qty, total }; });
  }

  // ------------------------------------------------------------------ candles

  /** A series of one symbol and interval, oldest first: an update replaces its `open_time` or is added. */
  class CandleSeries {
    constructor(limit = 100) { this.limit = limit; this.candles = []; }
    load(list) { this.candles = []; for (const candle of list || []) this.put(candle); }
    put(candle) {
      if (!candle || typeof candle.open_time !== 'number') return;
      const at = this.candles.findIndex((c) => c.open_time >= candle.open_time);
      if (at < 0) this.candles.push(candle);
      else if (this.candles[at].open_time === candle.open_time) this.candles[at] = candle;
      else this.candles.splice(at, 0, candle);
      if (this.candles.length > this.limit) this.candles.splice(0, this.candles.length - this.limit);
    }
  }

  /**
   * The chart's geometry in pixels: a body and a wick per candle, the price range, and a few
   * round price ticks. Floats here only: the labels the page prints are the candles' strings.
   */
  function candleLayout(candles, width, height, pad = { top: 10, right: 64, bottom: 22, left: 8 }) {
    const list = candles.filter((c) => isFinite(parseFloat(c.high)) && isFinite(parseFloat(c.low)));
    if (!list.length) return { candles: [], ticks: [], min: 0, max: 0 };
    let min = Math.min(...list.map((c) => parseFloat(c.low)));
    let max = Math.max(...list.map((c) => parseFloat(c.high)));
    if (max === min) { const d = Math.abs(max) * 0.001 || 1; min -= d; max += d; }
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const y = (value) => pad.top + (max - parseFloat(value)) / (max - min) * plotH;
    const slot = plotW / Math.max(list.length, 20);
    const body = Math.max(1, Math.min(14, slot * 0.65));
    const laid = list.map((c, i) => {
      const x = pad.left + plotW - (list.length - i - 0.5) * slot;
      const open = y(c.open);
      const close = y(c.close);
      return {
        candle: c, x, width: body, up: parseFloat(c.close) >= parseFloat(c.open),
        top: Math.min(open, close), height: Math.max(1, Math.abs(close - open)), high: y(c.high), low: y(c.low),
      };
    });
    const step = niceStep((max - min) / 4);
    const ticks = [];
    for (let v = Math.ceil(min / step) * step; v <= max; v += step) ticks.push({ value: v, y: y(v) });
    return { candles: laid, ticks, min, max, step, plot: { x: pad.left, y: pad.top, width: plotW, height: plotH } };
  }

  function niceStep(raw) {
    const power = 10 ** Math.floor(Math.log10(raw || 1));
    const unit = raw / power;
    return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
  }

  window.marketbridgeMarket = Object.freeze({
    decimalKey, isZero, compareDecimal, subtractDecimal, crc32, checksumString, bookChecksum,
    BookCopy, withTotals, CandleSeries, candleLayout,
  });
})();
