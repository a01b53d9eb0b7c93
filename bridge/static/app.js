/*
 * marketbridge live page, on the JavaScript client (clients/js/marketbridge.js, served here as
 * /marketbridge.js): the client owns the socket, requests, subscriptions that resume after a
 * reconnect, re-snapshots after a gap, and the order book copy with its checksum checks. This
 * file is the view: it renders what the client reports, batched into animation frames so a
 * burst of updates costs one layout, not hundreds.
 */
import * as MB from './marketbridge.js';

(() => {
  'use strict';

  const TOKEN_KEY = 'marketbridge.token';
  const EXCHANGE_KEY = 'marketbridge.exchange';
  const DEFAULT_EXCHANGES = ['binance', 'kraken'];
  const PING_EVERY_MS = 5000;
  const REQUEST_TIMEOUT_MS = 10000;
  const MAX_ORDERS_SHOWN = 10;
  const SYMBOL_KEY = 'marketbridge.symbol';
  const INTERVAL_KEY = 'marketbridge.interval';
  const MARKET_KEYS = ['book', 'trades', 'candles'];   // channels a welcome's `features` may offer
  const BOOK_DEPTH = 25;
  const MAX_TRADES_SHOWN = 50;
  const CANDLE_LIMIT = 80;
  const INTERVALS = ['1m', '5m', '15m', '1h'];

  // ------------------------------------------------------------------ pure helpers

  const updatesOf = MB.updatesOf;

  /** The page's backoff: the client's, with a narrower jitter (0.75-1.25) than the default. */
  class Backoff extends MB.Backoff {
    constructor(firstMs = 500, capMs = 15000) { super(firstMs, capMs, 0.25); }
  }

  /** Events per second over a sliding one-second window. */
  class RateMeter {
    constructor(windowMs = 1000) { this.windowMs = windowMs; this.marks = []; }
    add(count, now) { if (count > 0) this.marks.push([now, count]); }
    perSecond(now) {
      while (this.marks.length && now - this.marks[0][0] > this.windowMs) this.marks.shift();
      return this.marks.reduce((sum, [, n]) => sum + n, 0) * (1000 / this.windowMs);
    }
  }

  const GET_A_TOKEN = 'Paste a new token or open the URL `make up` printed.';

  /**
   * What to do after a close (docs/protocol.md close codes): retry later, or wait for a new token.
   * `dropToken`: the token itself was refused (`make up` signs with a new secret on every run),
   * so keeping it would only refuse the next reload too.
   */
  function closeAdvice(code, reason) {
    const text = reason ? `${code} ${reason}` : `${code}`;
    if (code === 1008 && /auth|token/i.test(reason || '')) {
      const advice = { retry: false, message: `${reason}: paste a valid token`, needToken: true, dropToken: false };
      if (reason === 'Invalid token') {
        return Object.assign(advice, { dropToken: true, help: `Invalid token: this token is not valid for this server (was it restarted?). ${GET_A_TOKEN}` });
      }
      if (reason === 'Token expired') return Object.assign(advice, { dropToken: true, help: `Token expired. ${GET_A_TOKEN}` });
      return Object.assign(advice, { help: `${reason}: this server needs a token. ${GET_A_TOKEN}` });
    }
    if (code === 1001) return { retry: true, message: 'server restarting', fast: true };
    if (code === 1000 && /idle/i.test(reason || '')) return { retry: true, message: 'idle timeout' };
    return { retry: true, message: code === 1006 ? 'connection lost' : `closed (${text})` };
  }

  /**
   * What each panel can be trusted for: `loading` until its subscription's snapshot is in,
   * `live` while its stream flows, `stale` while the stream is interrupted or the socket is
   * down (the data stays, marked old), `failed` when the subscription was refused. The LIVE
   * badge summarises them with the socket: a page that only looks connected is not live.
   */
  class PanelStates {
    constructor(keys) { this.states = new Map(keys.map((key) => [key, 'loading'])); this.connected = false; }
    get(key) { return this.states.get(key); }
    has(key) { return this.states.has(key); }
    set(key, state) { if (this.states.has(key)) this.states.set(key, state); }
    /** A panel that comes and goes (the market panels, with `features` and a selected symbol). */
    add(key) { this.states.set(key, 'loading'); }
    remove(key) { this.states.delete(key); }
    /** The socket closed: what was live is now old, what was loading still is. */
    disconnected() {
      this.connected = false;
      for (const [key, state] of this.states) if (state === 'live') this.states.set(key, 'stale');
    }
    badge() {
      const states = Array.from(this.states.values());
      if (!this.connected) return 'offline';
      if (states.every((state) => state === 'live')) return 'live';
      return states.includes('loading') && !states.includes('stale') ? 'loading' : 'stale';
    }
  }

  /** The JWT's claims, for display only (the bridge verifies the signature, not the page). */
  function jwtClaims(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    } catch (_) {
      return null;
    }
  }

  const numberFormats = new Map();
  function decimalsFor(value) {
    const magnitude = Math.floor(Math.log10(Math.abs(value) || 1));
    return Math.min(8, Math.max(2, 5 - magnitude));
  }
  function fmtPrice(value) {
    if (typeof value !== 'number' || !isFinite(value)) return '–';
    const digits = decimalsFor(value);
    if (!numberFormats.has(digits)) {
      numberFormats.set(digits, new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
    }
    return numberFormats.get(digits).format(value);
  }
  const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });
  const fmtVolume = (value) => (typeof value === 'number' ? compact.format(value) : '–');
  const fmtChange = (value) => (typeof value === 'number' ? `${value > 0 ? '+' : ''}${value.toFixed(2)}%` : '–');
  const fmtAmount = (value) => (typeof value === 'number' ? +value.toPrecision(6) + '' : '–');
  function fmtAge(unixSeconds, nowMs) {
    if (!unixSeconds) return '–';
    const age = Math.max(0, nowMs / 1000 - unixSeconds);
    if (age < 1) return 'just now';
    if (age < 60) return `${Math.floor(age)}s ago`;
    return new Date(unixSeconds * 1000).toLocaleTimeString('en-GB');
  }
  const STATUS_LABELS = { partially_filled: 'partial', stop_limit: 'stop limit' };
  const fmtStatus = (status) => STATUS_LABELS[status] || (status || '').replace(/_/g, ' ');

  // ------------------------------------------------------------------ the protocol client

  /**
   * A page handler ({snapshot, update, failed}) as a subscription's event listener; stream
   * statuses go to `events.streamStatus` with the subscription's key, as before.
   */
  function listen(key, handler, events) {
    return (event) => {
      if (event.type === 'snapshot') handler.snapshot(event.snapshot || [], event.result, event);
      else if (event.type === 'update') handler.update(event.result, event.update, event);
      else if (event.type === 'error') handler.failed(event.error);
      else if (event.type === 'status' && event.status !== 'disconnected') events.streamStatus(event.frame, key);
      else if (handler[event.type]) handler[event.type](event);   // the book's stale, mismatch, resync
    };
  }

  /**
   * The page's session: a marketbridge Client per token (a new token is a new user: every
   * subscription starts over), with the page's events wired to it.
   */
  function makeClient(url, token, events) {
    const c = new MB.Client(url, {
      token: token || null, batchMs: batchMs > 0 ? batchMs : null, heartbeatS: 10,
      pingIntervalMs: PING_EVERY_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS, backoff: { jitter: 0.25 },
    });
    c.on('state', ({ state, detail }) => events.state(state, detail));
    c.on('welcome', (frame) => { events.welcome(frame); c.ping().catch(() => {}); });
    c.on('close', ({ code, reason }) => events.closed(code, reason, closeAdvice(code, reason)));
    c.on('updates', ({ count, batched }) => events.received(count, batched));
    c.on('latency', (ms) => events.latency(ms));
    c.on('resubscribed', ({ key, recovered }) => events.resubscribed(key, recovered));
    c.on('error', (error) => { if (error instanceof MB.RequestError) events.error(error); });
    /** Register (or replace) the subscription under `key`; it follows every reconnect. */
    c.track = (key, params, handler) => c.subscribe(params, { key, onEvent: listen(key, handler, events) });
    return c;
  }

  // ------------------------------------------------------------------ the view

  const $ = (id) => document.getElementById(id);
  const pageParams = new URLSearchParams(location.search);
  const batchMs = parseInt(pageParams.get('batch_ms') || '', 10);

  function takeToken() {
    const fromUrl = pageParams.get('token');
    if (fromUrl) {
      localStorage.setItem(TOKEN_KEY, fromUrl);
      // Keep the token out of the address bar, history and screenshots.
      pageParams.delete('token');
      const rest = pageParams.toString();
      history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
    }
    return localStorage.getItem(TOKEN_KEY) || '';
  }

  let token = takeToken();
  let exchange = pageParams.get('exchange') || localStorage.getItem(EXCHANGE_KEY) || DEFAULT_EXCHANGES[0];
  let exchanges = Array.from(new Set([...DEFAULT_EXCHANGES, exchange]));
  let symbol = pageParams.get('symbol') || localStorage.getItem(SYMBOL_KEY) || '';
  let interval = pageParams.get('interval') || localStorage.getItem(INTERVAL_KEY) || INTERVALS[0];
  if (!INTERVALS.includes(interval)) interval = INTERVALS[0];
  let features = new Set();        // what the welcome offers (none when it has no `features`)
  let tickersLoaded = false;       // the current exchange's ticker snapshot is in
  const M = window.marketbridgeMarket;
  const market = {                 // the selected symbol's book, tape and candles
    subscribed: false,             // subscriptions are set up for (exchange, symbol)
    book: new MB.OrderBook(BOOK_DEPTH),
    bookLoaded: false,             // the copy holds a snapshot (false while resyncing)
    bookStale: '',                 // why the book is stale (the server said so), or ''
    verified: 0,                   // updates whose checksum matched
    mismatches: 0,                 // updates whose checksum did not: each one resubscribes
    trades: [],                    // newest first
    tradeIds: new Set(),
    freshTrades: 0,                // rows to flash at the next render
    series: new M.CandleSeries(CANDLE_LIMIT),
    dirty: new Set(),
  };
  const rows = new Map();          // symbol -> {ticker, tr, cells}
  const dirty = new Set();
  const orders = new Map();
  const bots = new Map();
  const meter = new RateMeter();
  let bannerTimer = null;
  const interrupted = new Set();   // keys whose upstream stream is interrupted now
  const missed = new Set();        // keys that lost events in the current outage
  const panels = new PanelStates(['tickers', 'orders', 'bots']);
  const failures = new Map();      // key -> why its subscription was refused
  const resumed = { recovered: [], gaps: [] };  // outcome of the resubscriptions after a reconnect

  /** The endpoint; the client adds `?token=`, `?batch_ms=` and `?heartbeat_s=`. */
  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    $('endpoint').textContent = `/ws${batchMs > 0 ? `?batch_ms=${batchMs}` : ''}`;
    return `${scheme}://${location.host}/ws`;
  }

  function banner(kind, text, hideAfterMs) {
    const el = $('banner');
    clearTimeout(bannerTimer);
    if (!text) { el.hidden = true; return; }
    el.dataset.kind = kind;
    el.textContent = text;
    el.hidden = false;
    if (hideAfterMs) bannerTimer = setTimeout(() => { el.hidden = true; }, hideAfterMs);
  }

  function showUser() {
    const claims = token ? jwtClaims(token) : null;
    $('user').textContent = claims && claims.sub ? claims.sub : (token ? '?' : 'anonymous');
    if (claims && claims.exp && claims.exp * 1000 < Date.now()) banner('error', 'This token has expired: paste a new one.');
  }

  // ---- panel states (loading / live / stale / failed) and the LIVE badge

  const PANELS = {
    tickers: { card: 'tickers-card', empty: 'tickers-empty', size: () => rows.size, none: () => `No tickers on ${exchange} yet.` },
    orders: { card: 'orders-card', empty: 'orders-empty', size: () => orders.size, none: () => 'No orders for this user.' },
    bots: { card: 'bots-card', empty: 'bots-empty', size: () => bots.size, none: () => 'No bots for this user.' },
    book: { card: 'book-card', empty: 'book-empty', size: () => market.book.bids.length + market.book.asks.length, none: () => `No book for ${symbol} on ${exchange} yet.` },
    trades: { card: 'trades-card', empty: 'trades-empty', size: () => market.trades.length, none: () => `No trades for ${symbol} on ${exchange} yet.` },
    candles: { card: 'candles-card', empty: 'candles-empty', size: () => market.series.candles.length, none: () => `No ${interval} candles for ${symbol} yet.` },
  };

  /** A panel's frame and its empty line: "no orders" is only said once the snapshot said so. */
  function renderPanel(key) {
    const panel = PANELS[key];
    const empty = $(panel.empty);
    if (!panels.has(key)) {  // a market panel with no subscription: no symbol picked yet
      const waiting = !tickersLoaded;  // the tickers' snapshot picks one
      $(panel.card).dataset.state = waiting ? 'loading' : 'idle';
      empty.hidden = false;
      empty.textContent = waiting ? `Loading ${key}…` : 'Pick a symbol in the tickers table.';
      return;
    }
    const state = panels.get(key);
    $(panel.card).dataset.state = state;
    empty.hidden = state !== 'failed' && panel.size() > 0;
    empty.textContent = state === 'loading' ? `Loading ${key}…` : state === 'failed' ? failures.get(key) : panel.none();
  }

  function renderBadge() {
    const state = panels.badge();
    $('live-badge').dataset.state = state;
    $('live-badge').textContent = state;
  }

  function setPanel(key, state) {
    panels.set(key, state);
    renderPanel(key);
    renderBadge();
  }

  function failPanel(key, message) {
    failures.set(key, message);
    setPanel(key, 'failed');
  }

  function showInterruption() {
    const what = interrupted.has('tickers') ? 'prices' : 'this data';
    banner('warn', `Data interrupted (${Array.from(interrupted).join(', ')}): ${what} may be stale; reconnecting to the feed…`);
  }

  // ---- tickers

  function tickerRow(symbol) {
    const tr = document.createElement('tr');
    tr.dataset.symbol = symbol;
    tr.tabIndex = 0;
    tr.addEventListener('click', () => selectSymbol(symbol));
    tr.addEventListener('keydown', (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); selectSymbol(symbol); } });
    const cells = {};
    for (const name of ['sym', 'price', 'bid', 'ask', 'change', 'volume', 'age']) {
      const td = document.createElement('td');
      td.className = name === 'sym' ? 'sym' : `num ${name}`;
      tr.appendChild(td);
      cells[name] = td;
    }
    const [base, quote] = symbol.split('/');
    cells.sym.innerHTML = '';
    cells.sym.append(base || symbol);
    if (quote) {
      const span = document.createElement('span');
      span.className = 'quote';
      span.textContent = ` / ${quote}`;
      cells.sym.append(span);
    }
    return { ticker: null, tr, cells, direction: 0 };
  }

  function markSelectedRow() {
    for (const [sym, row] of rows) row.tr.setAttribute('aria-selected', String(sym === symbol));
  }

  function placeRow(row) {
    const body = $('tickers').querySelector('tbody');
    const after = Array.from(body.children).find((tr) => tr.dataset.symbol > row.tr.dataset.symbol);
    body.insertBefore(row.tr, after || null);
  }

  function applyTicker(ticker) {
    if (!ticker || ticker.exchange !== exchange || !ticker.symbol) return;
    let row = rows.get(ticker.symbol);
    if (!row) {
      row = tickerRow(ticker.symbol);
      rows.set(ticker.symbol, row);
      placeRow(row);
      applyFilter();
      row.tr.setAttribute('aria-selected', String(ticker.symbol === symbol));
      if (tickersLoaded && !market.subscribed) ensureSymbol();  // the first symbol of an empty exchange
    }
    const previous = row.ticker;
    // Replayed events can be older than a snapshot just applied: exchange time decides.
    if (previous && typeof ticker.time === 'number' && ticker.time < previous.time) return;
    if (previous && ticker.price !== previous.price) row.direction = ticker.price > previous.price ? 1 : -1;
    row.flash = previous && ticker.price !== previous.price ? row.direction : 0;
    row.ticker = ticker;
    dirty.add(row);
    scheduleRender();
  }

  function renderRow(row, now) {
    const t = row.ticker;
    row.cells.price.textContent = fmtPrice(t.price);
    row.cells.price.classList.toggle('up', row.direction > 0);
    row.cells.price.classList.toggle('down', row.direction < 0);
    row.cells.bid.textContent = fmtPrice(t.bid);
    row.cells.ask.textContent = fmtPrice(t.ask);
    row.cells.change.textContent = fmtChange(t.change_24h);
    row.cells.change.className = `num change ${t.change_24h > 0 ? 'up' : t.change_24h < 0 ? 'down' : ''}`;
    row.cells.volume.textContent = fmtVolume(t.volume);
    row.cells.age.textContent = fmtAge(t.time, now);
    if (row.flash && row.tr.animate) {
      const color = row.flash > 0 ? 'var(--up-bg)' : 'var(--down-bg)';
      row.tr.animate([{ backgroundColor: color }, { backgroundColor: 'transparent' }], { duration: 650, easing: 'ease-out' });
      row.flash = 0;
    }
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      const now = Date.now();
      for (const row of dirty) renderRow(row, now);
      dirty.clear();
      renderPanel('tickers');
      $('count').textContent = `${rows.size} symbol${rows.size === 1 ? '' : 's'}`;
    });
  }

  function resetTickers() {
    tickersLoaded = false;
    rows.clear();
    dirty.clear();
    $('tickers').querySelector('tbody').replaceChildren();
    setPanel('tickers', 'loading');
    scheduleRender();
  }

  function applyFilter() {
    const needle = $('filter').value.trim().toUpperCase();
    for (const [symbol, row] of rows) row.tr.hidden = needle !== '' && !symbol.toUpperCase().includes(needle);
  }

  /** Tab buttons for `names` in `box` (exchanges, intervals); `data-<field>` names each. */
  function renderTabs(box, names, selected, field, choose) {
    box.replaceChildren(...names.map((name) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.role = 'tab';
      button.textContent = name;
      button.dataset[field] = name;
      button.setAttribute('aria-selected', String(name === selected));
      button.addEventListener('click', () => choose(name));
      return button;
    }));
  }

  const renderExchanges = () => renderTabs($('exchanges'), exchanges, exchange, 'exchange', selectExchange);

  /** Streams that were replaced (another exchange, symbol or interval): their interruption no longer applies. */
  function forgetInterruptions(keys) {
    let cleared = false;
    for (const key of keys) cleared = interrupted.delete(key) || cleared;
    if (cleared) { if (interrupted.size) showInterruption(); else banner(null, null); }
  }

  function selectExchange(name) {
    if (name === exchange) return;
    exchange = name;
    localStorage.setItem(EXCHANGE_KEY, name);
    renderExchanges();
    resetTickers();
    dropMarket();  // the book, chart and tape of the old exchange; back with the new snapshot
    forgetInterruptions(['tickers', ...MARKET_KEYS]);  // the new exchange's streams are others
    subscribeTickers();
  }

  const tickerHandler = {
    snapshot(list) {
      for (const ticker of list) applyTicker(ticker);
      tickersLoaded = true;
      setPanel('tickers', 'live');
      ensureSymbol();
    },
    update(ticker) { applyTicker(ticker); },
    failed(error) { failPanel('tickers', `Could not subscribe to ${exchange}: ${error.message}`); },
  };

  function subscribeTickers() {
    client.track('tickers', { channel: 'tickers', exchange }, tickerHandler);
  }

  async function discoverExchanges() {
    try {
      const list = await client.request('list_tickers', {});
      const found = new Set(exchanges);
      for (const t of list || []) if (t.exchange) found.add(t.exchange);
      exchanges = Array.from(found).sort();
      renderExchanges();
    } catch (_) { /* keep the defaults */ }
  }

  // ---- the selected symbol: order book, candle chart, trades tape (offered by `features`)

  function ensureSymbol() {
    if (!tickersLoaded) return;
    if (symbol && rows.has(symbol)) { if (!market.subscribed) subscribeMarket(); return; }
    if (!rows.size) { for (const key of MARKET_KEYS) renderPanel(key); return; }
    selectSymbol(rows.has('BTC/USDT') ? 'BTC/USDT' : Array.from(rows.keys()).sort()[0], false);
  }

  function selectSymbol(name, remember = true) {
    if (remember) localStorage.setItem(SYMBOL_KEY, name);
    if (name === symbol && market.subscribed) return;
    symbol = name;
    markSelectedRow();
    subscribeMarket();
  }

  function marketParams(key) {
    if (key === 'book') return { channel: 'book', exchange, symbol, depth: BOOK_DEPTH };
    if (key === 'trades') return { channel: 'trades', exchange, symbols: [symbol] };
    return { channel: 'candles', exchange, symbol, interval, limit: CANDLE_LIMIT };
  }

  function resetMarket(key) {
    if (key === 'book') {
      market.book = new MB.OrderBook(BOOK_DEPTH);
      market.bookLoaded = false;
      market.bookStale = '';
      market.verified = 0;
    } else if (key === 'trades') {
      market.trades = [];
      market.tradeIds.clear();
    } else {
      market.series = new M.CandleSeries(CANDLE_LIMIT);
    }
    markMarket(key);
  }

  /** (Re)subscribe every offered market channel for the selected exchange and symbol. */
  function subscribeMarket() {
    market.subscribed = true;
    forgetInterruptions(MARKET_KEYS);  // another symbol's streams
    for (const key of MARKET_KEYS) {
      resetMarket(key);
      if (features.has(key)) {
        panels.add(key);
        const sub = client.track(key, marketParams(key), marketHandlers[key]);
        if (key === 'book') market.book = sub.book;   // the client's copy, kept and verified by it
      } else {
        client.unsubscribe(key);
        panels.remove(key);
      }
      renderPanel(key);
    }
    showMarket();
    renderBadge();
  }

  function dropMarket() {
    market.subscribed = false;
    for (const key of MARKET_KEYS) {
      client.unsubscribe(key);
      panels.remove(key);
      resetMarket(key);
      renderPanel(key);
    }
    renderBadge();
  }

  /** The welcome says what this server offers: panels come and go with it. */
  function applyFeatures(list) {
    features = new Set(Array.isArray(list) ? list : []);
    for (const key of MARKET_KEYS) {
      if (!features.has(key)) {
        client.unsubscribe(key);
        panels.remove(key);
        interrupted.delete(key);
      } else if (market.subscribed && !client.subs.has(key)) {
        panels.add(key);
        const sub = client.track(key, marketParams(key), marketHandlers[key]);
        if (key === 'book') market.book = sub.book;
      }
      renderPanel(key);
    }
    showMarket();
  }

  function showMarket() {
    const offered = MARKET_KEYS.filter((key) => features.has(key));
    $('market').hidden = offered.length === 0;
    $('market').dataset.panels = String(offered.length);
    for (const key of MARKET_KEYS) $(PANELS[key].card).hidden = !features.has(key);
    for (const el of document.querySelectorAll('[data-symbol-label]')) el.textContent = symbol ? `${symbol} · ${exchange}` : '';
  }

  function markMarket(key) {
    market.dirty.add(key);
    if (market.renderQueued) return;
    market.renderQueued = true;
    requestAnimationFrame(() => {
      market.renderQueued = false;
      if (market.dirty.has('book')) renderBook();
      if (market.dirty.has('trades')) renderTrades();
      if (market.dirty.has('candles')) renderChart();
      for (const dirtyKey of market.dirty) if (panels.has(dirtyKey)) renderPanel(dirtyKey);
      market.dirty.clear();
    });
  }

  // The book: the client keeps the copy (`market.book` is the subscription's OrderBook), applies
  // each update, verifies its checksum and re-subscribes on a mismatch; the page counts and shows.

  /** The copy was replaced by a whole book (a subscribe snapshot, or a `snapshot: true` update). */
  function bookReplaced(book) {
    market.bookLoaded = true;
    market.bookStale = book && book.stale ? 'waiting for a fresh snapshot' : '';
    setPanel('book', market.bookStale || interrupted.has('book') ? 'stale' : 'live');
    markMarket('book');
  }

  const bookHandler = {
    snapshot(snapshot, _result, event) {
      if (!event.reset && market.bookLoaded) { setPanel('book', market.bookStale ? 'stale' : 'live'); return; }  // resumed
      bookReplaced(Array.isArray(snapshot) ? snapshot[0] : snapshot);
    },
    update(update) {
      if (update.snapshot === true) { bookReplaced(update); return; }  // the book was replaced
      market.verified += 1;
      markMarket('book');
    },
    stale(event) {  // no longer the exchange's book: kept, marked, until a snapshot
      market.bookStale = event.reason || 'the feed missed an update';
      setPanel('book', 'stale');
      markMarket('book');
    },
    mismatch() {  // the client resubscribes for a fresh snapshot
      market.mismatches += 1;
      market.bookLoaded = false;
      markMarket('book');
    },
    failed(error) { failPanel('book', `No book for ${symbol}: ${error.message}`); },
  };

  function ladderRows(body, count) {
    while (body.children.length < count) {
      const tr = document.createElement('tr');
      tr.innerHTML = '<td class="num"></td><td class="num"></td><td class="num"></td>';
      body.appendChild(tr);
    }
    while (body.children.length > count) body.lastChild.remove();
  }

  function renderLadder(id, levels, scale, priceFirst) {
    const body = $(id).querySelector('tbody');
    ladderRows(body, levels.length);
    levels.forEach((level, i) => {
      const tr = body.children[i];
      const [a, b, c] = tr.children;
      const [priceCell, totalCell] = priceFirst ? [a, c] : [c, a];
      priceCell.textContent = level.price;          // the strings as the server sent them
      priceCell.className = `num price ${priceFirst ? 'down' : 'up'}`;
      b.textContent = level.qty;
      b.className = 'num qty';
      totalCell.textContent = fmtAmount(level.total);
      totalCell.className = 'num total';
      tr.dataset.price = level.price;
      tr.style.setProperty('--depth', `${scale > 0 ? Math.min(100, (level.total / scale) * 100) : 0}%`);
    });
  }

  function renderBook() {
    const book = market.book;
    const bids = M.withTotals(book.bids);
    const asks = M.withTotals(book.asks);
    const scale = Math.max(bids.length ? bids[bids.length - 1].total : 0, asks.length ? asks[asks.length - 1].total : 0);
    renderLadder('book-bids', bids, scale, false);
    renderLadder('book-asks', asks, scale, true);
    const el = $('book');
    el.hidden = bids.length + asks.length === 0;
    const bestBid = book.bestBid();
    const bestAsk = book.bestAsk();
    el.dataset.bestBid = bestBid ? bestBid[0] : '';
    el.dataset.bestAsk = bestAsk ? bestAsk[0] : '';
    const spread = book.spread();
    const mid = bestBid && bestAsk ? (parseFloat(bestBid[0]) + parseFloat(bestAsk[0])) / 2 : 0;
    $('book-spread').textContent = spread === null ? '' : `spread ${spread}`;
    $('book-spread').title = spread === null ? 'Best ask minus best bid'
      : `Best ask minus best bid${mid > 0 ? `: ${((parseFloat(spread) / mid) * 10000).toFixed(2)} bp of the mid` : ''}`;
    $('book-spread').dataset.spread = spread || '';
    const check = $('book-check');
    const state = market.bookStale ? 'stale'
      : market.bookLoaded ? (market.mismatches ? 'recovered' : 'ok') : (market.mismatches ? 'resync' : '');
    check.dataset.state = state;
    check.dataset.mismatches = String(market.mismatches);
    check.dataset.verified = String(market.verified);
    check.dataset.checksum = book.checksum === null ? '' : String(book.checksum);
    const misses = market.mismatches ? ` · ${market.mismatches} mismatch${market.mismatches === 1 ? '' : 'es'}` : '';
    check.textContent = state === '' ? '' : state === 'stale' ? `book stale: ${market.bookStale}`
      : state === 'resync' ? `checksum mismatch: resyncing${misses}` : `checksum ok${misses}`;
    check.title = `CRC32 ${check.dataset.checksum || '–'}: ${market.verified} updates verified${misses}`;
  }

  // The trades tape: newest first, the last few dozen.

  function addTrades(list, newestFirst) {
    const fresh = [];
    for (const trade of list) {
      if (!trade || (trade.symbol && trade.symbol !== symbol)) continue;
      const id = `${trade.trade_id}`;
      if (market.tradeIds.has(id)) continue;  // a replay after a resume repeats what was shown
      market.tradeIds.add(id);
      fresh.push(trade);
    }
    if (!newestFirst) fresh.reverse();
    market.trades = fresh.concat(market.trades);
    for (const old of market.trades.splice(MAX_TRADES_SHOWN)) market.tradeIds.delete(`${old.trade_id}`);
    return fresh.length;
  }

  const tradesHandler = {
    snapshot(list) {
      addTrades(Array.isArray(list) ? list : [], false);  // newest last on the wire
      setPanel('trades', 'live');
      markMarket('trades');
    },
    update(trade) {
      market.freshTrades += addTrades([trade], true);
      markMarket('trades');
    },
    failed(error) { failPanel('trades', `No trades for ${symbol}: ${error.message}`); },
  };

  const fmtClock = (unixSeconds) => (typeof unixSeconds === 'number'
    ? new Date(unixSeconds * 1000).toLocaleTimeString('en-GB') : '–');

  function renderTrades() {
    const body = $('trades').querySelector('tbody');
    const flash = market.freshTrades;
    market.freshTrades = 0;
    body.replaceChildren(...market.trades.map((t, i) => {
      const tr = document.createElement('tr');
      tr.dataset.tradeId = t.trade_id;
      const side = t.side === 'buy' ? 'up' : t.side === 'sell' ? 'down' : '';
      tr.innerHTML = `<td class="num price ${side}"></td><td class="num"></td><td class="side-cell ${side}"></td><td class="num age"></td>`;
      const [price, amount, sideCell, time] = tr.children;
      price.textContent = t.price;
      amount.textContent = t.amount;
      sideCell.textContent = t.side || '–';
      time.textContent = fmtClock(t.time);
      if (i < flash && tr.animate) {
        tr.animate([{ backgroundColor: side === 'up' ? 'var(--up-bg)' : 'var(--down-bg)' }, { backgroundColor: 'transparent' }],
          { duration: 650, easing: 'ease-out' });
      }
      return tr;
    }));
    $('trades-count').textContent = market.trades.length ? `last ${market.trades.length}` : '';
  }

  // The candle chart: SVG, redrawn from the series on each change.

  const candlesHandler = {
    snapshot(list) {
      if (Array.isArray(list) && list.length) market.series.load(list.filter((c) => !c.interval || c.interval === interval));
      setPanel('candles', 'live');
      markMarket('candles');
    },
    update(candle) {
      if (!candle || (candle.symbol && candle.symbol !== symbol) || (candle.interval && candle.interval !== interval)) return;
      market.series.put(candle);
      markMarket('candles');
    },
    failed(error) { failPanel('candles', `No candles for ${symbol}: ${error.message}`); },
  };

  const SVG = 'http://www.w3.org/2000/svg';
  function svgEl(name, attrs, text) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function fmtTick(value, step) {
    const digits = Math.max(0, Math.min(8, -Math.floor(Math.log10(step || 1))));
    return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function renderChart() {
    const svg = $('chart');
    const width = Math.max(240, Math.round(svg.parentElement.clientWidth || 600));
    const height = 420;
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('width', width);
    svg.setAttribute('height', height);
    const candles = market.series.candles;
    const volumeH = 44;
    const layout = M.candleLayout(candles, width, height - volumeH);
    const parts = [];
    for (const tick of layout.ticks) {
      parts.push(svgEl('line', { class: 'grid', x1: layout.plot.x, x2: layout.plot.x + layout.plot.width, y1: tick.y, y2: tick.y }));
      parts.push(svgEl('text', { class: 'axis', x: width - 6, y: tick.y + 4, 'text-anchor': 'end' }, fmtTick(tick.value, layout.step)));
    }
    const maxVolume = Math.max(0, ...candles.map((c) => parseFloat(c.volume) || 0));
    const every = Math.max(1, Math.ceil(layout.candles.length / 6));
    layout.candles.forEach((item, i) => {
      const cls = item.up ? 'up' : 'down';
      const g = svgEl('g', { class: `candle ${cls}`, 'data-open-time': item.candle.open_time });
      g.appendChild(svgEl('title', {}, `${fmtClock(item.candle.open_time)} O ${item.candle.open} H ${item.candle.high} L ${item.candle.low} C ${item.candle.close} V ${item.candle.volume}`));
      g.appendChild(svgEl('line', { class: 'wick', x1: item.x, x2: item.x, y1: item.high, y2: item.low }));
      g.appendChild(svgEl('rect', { class: 'body', x: item.x - item.width / 2, y: item.top, width: item.width, height: item.height }));
      const vol = maxVolume > 0 ? ((parseFloat(item.candle.volume) || 0) / maxVolume) * (volumeH - 14) : 0;
      g.appendChild(svgEl('rect', { class: 'volume', x: item.x - item.width / 2, y: height - 14 - vol, width: item.width, height: Math.max(0, vol) }));
      parts.push(g);
      if ((layout.candles.length - 1 - i) % every === 0) {
        const t = new Date(item.candle.open_time * 1000);
        const label = interval.endsWith('d') ? t.toLocaleDateString('en-GB') : t.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
        parts.push(svgEl('text', { class: 'axis', x: item.x, y: height - 2, 'text-anchor': 'middle' }, label));
      }
    });
    const last = candles[candles.length - 1];
    if (last && layout.candles.length) {
      const y = layout.candles[layout.candles.length - 1];
      const closeY = y.up ? y.top : y.top + y.height;
      parts.push(svgEl('line', { class: `last ${y.up ? 'up' : 'down'}`, x1: layout.plot.x, x2: layout.plot.x + layout.plot.width, y1: closeY, y2: closeY }));
    }
    svg.replaceChildren(...parts);
    svg.dataset.candles = String(layout.candles.length);
    svg.dataset.interval = interval;
    svg.parentElement.hidden = layout.candles.length === 0;
    $('candle-last').textContent = last ? `C ${last.close}` : '';
    $('candle-last').title = last ? `${fmtClock(last.open_time)} O ${last.open} H ${last.high} L ${last.low} C ${last.close} V ${last.volume}${last.closed ? '' : ' (open)'}` : '';
  }

  const renderIntervals = () => renderTabs($('intervals'), INTERVALS, interval, 'interval', selectInterval);

  function selectInterval(name) {
    if (name === interval) return;
    interval = name;
    localStorage.setItem(INTERVAL_KEY, name);
    renderIntervals();
    if (!market.subscribed || !features.has('candles')) return;
    forgetInterruptions(['candles']);
    resetMarket('candles');
    panels.add('candles');
    renderPanel('candles');
    renderBadge();
    client.track('candles', marketParams('candles'), candlesHandler);
  }

  const marketHandlers = { book: bookHandler, trades: tradesHandler, candles: candlesHandler };

  // ---- orders and bots (private channels: shown when the user has any)

  function renderOrders() {
    const list = Array.from(orders.values()).sort((a, b) => (b.updated_at || 0) - (a.updated_at || 0)).slice(0, MAX_ORDERS_SHOWN);
    const body = $('orders').querySelector('tbody');
    body.replaceChildren(...list.map((o) => {
      const tr = document.createElement('tr');
      const side = o.side === 'buy' ? 'up' : 'down';
      tr.innerHTML = `<td class="oid"></td><td class="side-cell ${side}"></td><td class="num"></td>` +
        '<td class="num"><div class="fill"><span></span><div class="bar"><span></span></div></div></td><td><span class="pill"></span></td>';
      const [idCell, sideCell, priceCell, filledCell, statusCell] = tr.children;
      idCell.textContent = o.order_id;
      const meta = document.createElement('small');
      meta.textContent = `${o.symbol} · ${o.exchange}`;
      idCell.appendChild(meta);
      sideCell.textContent = o.side;
      const kind = document.createElement('small');
      kind.textContent = fmtStatus(o.order_type);
      sideCell.appendChild(kind);
      priceCell.textContent = fmtPrice(o.price);
      const share = o.amount > 0 ? Math.min(1, (o.filled || 0) / o.amount) : 0;
      const [label, bar] = filledCell.firstChild.children;
      label.textContent = `${Math.round(share * 100)}%`;
      label.title = `${fmtAmount(o.filled)} of ${fmtAmount(o.amount)}`;
      bar.firstChild.style.width = `${share * 100}%`;
      statusCell.firstChild.textContent = fmtStatus(o.status);
      statusCell.firstChild.classList.add(o.status);
      return tr;
    }));
    renderPanel('orders');
    $('orders-count').textContent = orders.size ? `${orders.size} total` : '';
  }

  function renderBots() {
    const list = Array.from(bots.values()).sort((a, b) => a.bot_id.localeCompare(b.bot_id));
    $('bots').replaceChildren(...list.map((b) => {
      const li = document.createElement('li');
      li.innerHTML = '<span class="bot-name"></span><span class="bot-pnl"></span><span class="bot-meta"></span><span><span class="pill"></span></span>';
      const [name, pnl, meta, status] = li.children;
      name.textContent = b.name || b.bot_id;
      pnl.textContent = `${b.pnl >= 0 ? '+' : ''}${(b.pnl || 0).toFixed(2)}`;
      pnl.className = `bot-pnl ${b.pnl >= 0 ? 'up' : 'down'}`;
      meta.textContent = `${b.exchange} · ${(b.symbols || []).join(', ')}${b.message ? ` · ${b.message}` : ''}`;
      status.firstChild.textContent = fmtStatus(b.status);
      status.firstChild.classList.add(b.status);
      return li;
    }));
    renderPanel('bots');
    $('bots-count').textContent = bots.size ? `${bots.size} total` : '';
  }

  function recordHandler(store, idField, render, key) {
    return {
      snapshot(list) { for (const item of list) store.set(item[idField], item); panels.set(key, 'live'); render(); renderBadge(); },
      update(item) { if (item && item[idField]) { store.set(item[idField], item); render(); } },
      failed(error) { failPanel(key, `Not available: ${error.message}`); },
    };
  }

  // ---- connection events

  const events = {
    state(state, text) {
      $('conn').dataset.state = state;
      $('conn-text').textContent = text;
      panels.connected = state === 'open';
      renderBadge();
    },
    welcome(frame) {
      $('session').textContent = String(frame.session_id || '–').slice(0, 12);
      $('session').title = frame.session_id || '';
      const limits = frame.limits || {};
      $('limits').textContent = Object.keys(limits).length
        ? `limits: ${Object.entries(limits).filter(([, v]) => v !== null && v !== undefined)
          .map(([k, v]) => `${k.replace(/_/g, ' ')} ${v}`).join(' · ')}`
        : '';
      applyFeatures(frame.features);
      if (!interrupted.size) banner(null, null);
      resumed.recovered = [];
      resumed.gaps = [];
      discoverExchanges();
    },
    closed(code, reason, advice) {
      $('latency').textContent = '–';
      interrupted.clear();  // stream statuses belong to the subscriptions of the closed socket
      missed.clear();
      panels.disconnected();
      for (const key of Object.keys(PANELS)) renderPanel(key);
      if (market.subscribed) markMarket('book');
      if (advice.needToken) {
        if (advice.dropToken) { token = ''; localStorage.removeItem(TOKEN_KEY); }
        banner('error', advice.help);
        openTokenPanel(true);
      } else {
        banner('warn', `Connection ${advice.message}: reconnecting, subscriptions resume where they left off.`);
      }
    },
    received(count, batched) {
      meter.add(count, performance.now());
      if (batched) $('batch').textContent = `${batchMs} ms`;
    },
    resubscribed(key, recovered) {
      (recovered ? resumed.recovered : resumed.gaps).push(key);
      // a gap (recovered: false) is re-snapshotted by the client itself
      if (interrupted.size) return;
      const text = [
        resumed.recovered.length ? `${resumed.recovered.join(', ')} resumed where they left off` : '',
        resumed.gaps.length ? `${resumed.gaps.join(', ')} refreshed from a snapshot (updates were missed)` : '',
      ].filter(Boolean).join('; ');
      banner('ok', `Reconnected: ${text}.`, 5000);
    },
    latency(ms) { $('latency').textContent = `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`; },
    streamStatus(frame, key) {
      document.body.dataset.stream = frame.status;  // the last upstream status, for tools and tests
      if (!key) return;  // a subscription this page has already replaced
      if (frame.status === 'interrupted') {
        interrupted.add(key);
        if (panels.get(key) === 'live') setPanel(key, 'stale');
        showInterruption();
        return;
      }
      interrupted.delete(key);
      if (panels.get(key) === 'stale' && !(key === 'book' && market.bookStale)) setPanel(key, 'live');
      if (!frame.recovered) missed.add(key);   // the client re-snapshots it
      if (interrupted.size) { showInterruption(); return; }
      const lost = Array.from(missed);
      missed.clear();
      banner('ok', lost.length
        ? `Feed back: updates were missed during the outage, so ${lost.join(', ')} reloaded from a fresh snapshot.`
        : 'Feed back: no updates were lost.', 5000);
    },
    error(error) { banner('error', `Server: ${error.message || error.code || 'error'}`, 5000); },
  };

  let client = null;

  /** A new session (the first load, or another token): every subscription starts over on it. */
  function startClient() {
    if (client) client.close();
    client = makeClient(wsUrl(), token, events);
    market.subscribed = false;
    subscribeAll();
    client.connect().catch(() => {});   // a refusal is shown by the close event
  }

  // ---- token panel

  function openTokenPanel(open) {
    $('token-panel').hidden = !open;
    $('token-toggle').setAttribute('aria-expanded', String(open));
    if (open) { $('token-input').value = token; $('token-input').focus(); }
  }

  $('token-toggle').addEventListener('click', () => openTokenPanel($('token-panel').hidden));
  $('token-panel').addEventListener('submit', (event) => {
    event.preventDefault();
    token = $('token-input').value.trim();
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
    openTokenPanel(false);
    banner(null, null);
    showUser();
    orders.clear(); bots.clear();
    panels.set('orders', 'loading'); panels.set('bots', 'loading');
    renderOrders(); renderBots();
    resetTickers();
    startClient();
  });
  $('token-forget').addEventListener('click', () => {
    token = '';
    localStorage.removeItem(TOKEN_KEY);
    $('token-input').value = '';
    showUser();
  });
  $('filter').addEventListener('input', applyFilter);
  window.addEventListener('resize', () => { if (market.series.candles.length) markMarket('candles'); });

  function subscribeAll() {
    subscribeTickers();
    client.track('orders', { channel: 'orders' }, recordHandler(orders, 'order_id', renderOrders, 'orders'));
    client.track('bots', { channel: 'bots' }, recordHandler(bots, 'bot_id', renderBots, 'bots'));
  }

  // Ages and the rate counter tick once a second, updates or not.
  setInterval(() => {
    $('rate').textContent = String(Math.round(meter.perSecond(performance.now())));
    const now = Date.now();
    for (const row of rows.values()) if (row.ticker) row.cells.age.textContent = fmtAge(row.ticker.time, now);
  }, 1000);

  // The pure helpers, for the browser console and the page's tests.
  // `market`: the client's book and checksum helpers with the page's chart helpers.
  const marketHelpers = Object.freeze({
    ...M, crc32: MB.crc32, checksumString: MB.checksumString, bookChecksum: MB.bookChecksum, BookCopy: MB.OrderBook,
    decimalKey: MB.decimalKey, isZero: MB.isZero, compareDecimal: MB.compareDecimal, subtractDecimal: MB.subtractDecimal,
  });
  window.marketbridge = Object.freeze({
    updatesOf, Backoff, RateMeter, closeAdvice, PanelStates, jwtClaims, fmtPrice, fmtChange, fmtAge,
    get client() { return client; }, market: marketHelpers, module: MB,
  });

  if (batchMs > 0) { $('batch-stat').hidden = false; $('batch').textContent = `${batchMs} ms`; }
  showUser();
  renderExchanges();
  renderIntervals();
  for (const key of MARKET_KEYS) renderPanel(key);
  showMarket();
  renderOrders();
  renderBots();
  renderBadge();
  startClient();
})();
