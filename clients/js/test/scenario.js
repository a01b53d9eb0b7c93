// The fault scenarios of the live tests: the view a test keeps of the client's subscriptions,
// its comparison with the service, and the steps of each fault. Shared by the Node live tests and
// the Chromium ones (served to the page by the test's control server), so it imports nothing.

export const EXCHANGE = 'binance';
export const BOOK = { channel: 'book', exchange: EXCHANGE, symbol: 'BTC/USDT', depth: 10 };

/**
 * What the client shows: tickers by symbol, orders by id, trades by id, and the book copy;
 * `until` awaits a condition, checked at every event of any subscription.
 */
export function watch(client) {
  const view = {
    tickers: new Map(), orders: new Map(), trades: new Map(), statuses: [], resyncs: 0,
    counts: { tickers: 0, orders: 0, book: 0, trades: 0 },
    waiters: new Set(),
  };
  const notify = () => { for (const check of view.waiters) check(); };
  const keep = (name, store, id) => (event) => {
    if (event.type === 'snapshot') {
      if (event.reset && name !== 'trades') store.clear();   // trades are history: a re-snapshot adds
      for (const item of event.snapshot || []) store.set(item[id], item);
    } else if (event.type === 'update') {
      store.set(event.result[id], event.result);
      view.counts[name] += 1;
    }
    record(event);
  };
  const record = (event) => {
    if (event.type === 'status' && event.status !== 'disconnected') view.statuses.push(event.status);
    if (event.type === 'resync') view.resyncs += 1;
    notify();
  };
  view.subs = [
    client.subscribe({ channel: 'tickers', exchange: EXCHANGE }, { onEvent: keep('tickers', view.tickers, 'symbol') }),
    client.subscribe({ channel: 'orders' }, { onEvent: keep('orders', view.orders, 'order_id') }),
    client.subscribe({ channel: 'trades', exchange: EXCHANGE }, { onEvent: keep('trades', view.trades, 'trade_id') }),
    client.subscribe(BOOK, { onEvent: (event) => { if (event.type === 'update') view.counts.book += 1; record(event); } }),
  ];
  view.book = view.subs[3];
  client.on('close', notify);   // after the test's own listener: a close is seen, then checked
  client.on('state', notify);
  /** @param {() => boolean} predicate @param {number} ms @param {string|(() => string)} what */
  view.until = (predicate, ms, what) => new Promise((resolve, reject) => {
    const check = () => {
      if (!predicate()) return;
      clearTimeout(timer); view.waiters.delete(check); resolve();
    };
    const timer = setTimeout(() => {
      view.waiters.delete(check);
      reject(new Error(`timed out after ${ms} ms: ${typeof what === 'function' ? what() : what}`));
    }, ms);
    view.waiters.add(check);
    check();
  });
  return view;
}

/** The service's state, read through the bridge; retried while the service is coming back. */
export async function serviceState(client, { NotConnected, RequestError, RequestTimeout }) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const [tickers, orders, book, trades] = await Promise.all([
        client.listTickers({ exchange: EXCHANGE }), client.listOrders({ limit: 1000 }),
        client.getBook(EXCHANGE, BOOK.symbol, BOOK.depth), client.listTrades({ exchange: EXCHANGE, limit: 1000 }),
      ]);
      return { tickers, orders, book, trades };
    } catch (error) {
      const transient = (error instanceof RequestError && error.retryable) || error instanceof NotConnected || error instanceof RequestTimeout;
      if (!transient || attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));   // backoff between attempts, not a synchronisation
    }
  }
}

/** '' when the view equals the service's state; else the first difference. */
export function difference(view, service, label) {
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  if (view.tickers.size !== service.tickers.length) return `tickers: ${view.tickers.size} shown, ${service.tickers.length} kept`;
  for (const t of service.tickers) if (!same(view.tickers.get(t.symbol), t)) return `ticker ${t.symbol}: ${JSON.stringify(view.tickers.get(t.symbol))} != ${JSON.stringify(t)}`;
  if (view.orders.size !== service.orders.length) return `orders: ${view.orders.size} shown, ${service.orders.length} kept`;
  for (const o of service.orders) if (!same(view.orders.get(o.order_id), o)) return `order ${o.order_id} differs`;
  const book = view.book.book;
  if (!same(book.bids, service.book.bids) || !same(book.asks, service.book.asks)) {
    return `book: ${JSON.stringify([book.bids[0], book.asks[0]])} != ${JSON.stringify([service.book.bids[0], service.book.asks[0]])}`;
  }
  const kept = service.trades.filter((t) => t.trade_id.startsWith(`${label}-`));
  const missing = kept.filter((t) => !view.trades.has(t.trade_id)).map((t) => t.trade_id);
  if (missing.length) {
    const shown = [...view.trades.keys()].filter((id) => id.startsWith(`${label}-`));
    return `trades kept by the service, never shown: ${missing.slice(0, 10)} (${missing.length} of ${kept.length}; shown ${shown.length}: ${shown.slice(0, 10)})`;
  }
  const keptIds = new Set(kept.map((t) => t.trade_id));
  for (const id of view.trades.keys()) if (id.startsWith(`${label}-`) && !keptIds.has(id)) return `trade ${id} shown, not kept`;
  return '';
}


/** POST to the test's control server; its error (a failed fault) is thrown. */
async function control(controlUrl, path) {
  const response = await fetch(`${controlUrl}${path}`, { method: 'POST', signal: AbortSignal.timeout(60000) });
  const body = await response.json();
  if (!response.ok) throw new Error(`${path}: ${body.error}`);
  return body;
}

/**
 * How each fault is caused, and what the client must have seen of it.
 * @type {Record<string, (ctl: (path: string) => Promise<any>, view: any, seen: any) => Promise<void>>}
 */
const FAULTS = {
  async bridge(ctl) { await ctl('/fault/bridge'); },   // close 1001, a new bridge on the same port
  async redis(ctl, view) {
    await ctl('/fault/redis');
    await view.until(() => view.statuses.includes('resumed'), 30000, () => `stream statuses ${view.statuses}`);
  },
  async cache(ctl, view) {
    await ctl('/fault/cache');
    await view.until(() => view.statuses.includes('resumed'), 30000, () => `stream statuses ${view.statuses}`);
  },
  async stall(ctl, view, seen) {
    const stalledAt = Date.now();
    await ctl('/fault/stall');   // the proxy stops forwarding and closes nothing
    await view.until(() => seen.closes.length > 0, 15000, 'the client declaring the connection dead');
    seen.detectedMs = Date.now() - stalledAt;
    await ctl('/fault/unstall');
  },
};

/**
 * One fault: subscribe, publish, see updates, cause the fault, see updates again, stop
 * publishing, and await the view to equal the service's. Returns what the client went through.
 * @param {any} MB  the marketbridge module
 * @param {{url: string, controlUrl: string, token: string, fault: string, WebSocket?: any}} options
 */
export async function scenario(MB, { url, controlUrl, token, fault, WebSocket }) {
  const ctl = (path) => control(controlUrl, path);
  const label = fault;
  const client = new MB.Client(url, {
    token: async () => token, heartbeatS: 1, heartbeatMisses: 3, WebSocket,
    backoff: { firstMs: 200, capMs: 2000 }, openTimeoutMs: 5000, requestTimeoutMs: 8000,
  });
  const seen = { closes: [], resumedRecovered: 0, resumedLost: 0, detectedMs: null };
  client.on('close', ({ code, reason }) => seen.closes.push({ code, reason }));
  client.on('resubscribed', ({ recovered }) => { if (recovered) seen.resumedRecovered += 1; else seen.resumedLost += 1; });
  try {
    await client.connect();
    const view = watch(client);
    await view.until(() => view.subs.every((s) => s.state === 'live'), 15000, 'every subscription live');
    await ctl(`/publish?label=${label}`);
    const moved = (from) => () => Object.entries(view.counts).every(([k, n]) => n >= from[k] + (k === 'tickers' ? 20 : 3));
    await view.until(moved({ tickers: 0, orders: 0, book: 0, trades: 0 }), 20000, () => `updates before the fault: ${JSON.stringify(view.counts)}`);
    const before = { ...view.counts };
    await FAULTS[fault](ctl, view, seen);
    await view.until(moved(before), 60000, () => `updates after the fault: ${JSON.stringify(view.counts)} (before ${JSON.stringify(before)})`);
    const published = await ctl('/quiesce');
    const service = await serviceState(client, MB);
    if (!service.trades.some((t) => t.trade_id.startsWith(`${label}-`))) throw new Error('the service kept no trade of this run');
    await view.until(() => difference(view, service, label) === '', 20000, () => difference(view, service, label));
    return {
      ...seen, published, statuses: view.statuses, resyncs: view.resyncs, counts: view.counts,
      connects: client.stats.connects, kept: service.trades.filter((t) => t.trade_id.startsWith(`${label}-`)).length,
    };
  } finally {
    client.close();
  }
}
