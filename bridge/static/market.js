/*
 * marketbridge live page, market panels' logic (docs/protocol.md section 10): a candle series,
 * the candle chart's geometry and the book ladder's totals. Pure: no DOM and no socket, so
 * app.js renders and the page's tests check it. The book copy, its checksum and the decimal
 * strings are the client's (clients/js/marketbridge.js).
 *
 * Prices and quantities stay the decimal strings the server sent; they are turned into floats
 * only for bar widths and chart scaling.
 */
(() => {
  'use strict';

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

  window.marketbridgeMarket = Object.freeze({ withTotals, CandleSeries, candleLayout });
})();
