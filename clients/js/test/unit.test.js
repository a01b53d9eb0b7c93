// The sans-I/O parts, and the Client against a fake socket (the test plays the server).
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';

import {
  Backoff, Client, Liveness, MessageTooBig, OrderBook, PolicyViolation, RequestError, Subscription,
  TryAgainLater, bookChecksum, checksumString, closeAdvice, closeError, compareDecimal, compareSeq,
  connectionUrl, crc32, isZero, subscriptionKey, subtractDecimal, updatesOf,
} from '../marketbridge.js';
import { FakeSocket, until } from './fake_socket.js';

const EXAMPLE = {
  asks: [['50000.5', '0.00100000'], ['50001.0', '1.5']],
  bids: [['50000.1', '0.25000000'], ['49999.9', '2']],
};

test('crc32 is zlib.crc32', () => {
  assert.equal(crc32('123456789'), 0xCBF43926);
  assert.equal(crc32(''), 0);
});

test('the checksum of the worked example of docs/protocol.md §10.3', () => {
  assert.equal(checksumString(EXAMPLE.bids, EXAMPLE.asks), '50000510000050001015500001250000004999992');
  assert.equal(bookChecksum(EXAMPLE.bids, EXAMPLE.asks), 3211480509);
});

test('decimal strings compare, subtract and key by value', () => {
  assert.deepEqual([['50000.10', '50000.1'], ['9.99', '10'], ['0.5', '0.05']].map(([a, b]) => compareDecimal(a, b)), [0, -1, 1]);
  assert.deepEqual(['0', '0.000', '.0', '0.001'].map(isZero), [true, true, true, false]);
  assert.equal(subtractDecimal('50000.5', '49999.75'), '0.75');
});

test('an order book loads, applies deltas, truncates and verifies', () => {
  const book = new OrderBook(2);
  assert.equal(book.load({ ...EXAMPLE, checksum: 3211480509 }), true);
  assert.equal(book.checksum, 3211480509);
  // "50000.10" is the level "50000.1"; a zero qty removes; the sides stay at depth 2
  assert.equal(book.apply({ bids: [['50000.10', '0.5']], asks: [['50000.5', '0.000'], ['50002', '1'], ['50003', '1']] }), true);
  assert.deepEqual(book.bids, [['50000.10', '0.5'], ['49999.9', '2']]);
  assert.deepEqual(book.asks, [['50001.0', '1.5'], ['50002', '1']]);
  assert.equal(book.spread(), '0.9');
  assert.equal(book.checksum, bookChecksum(book.bids, book.asks));
  assert.equal(book.apply({ bids: [['50000.2', '1']], asks: [], checksum: book.checksum }), false);
});

test('an order book matches a naive model over random deltas', () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const depth = 10;
  const book = new OrderBook(depth);
  const model = { bids: new Map(), asks: new Map() };
  book.load({ bids: [], asks: [] });
  for (let i = 0; i < 2000; i += 1) {
    const side = rand() < 0.5 ? 'bids' : 'asks';
    const price = (side === 'bids' ? 100 - Math.floor(rand() * 30) / 2 : 101 + Math.floor(rand() * 30) / 2).toFixed(rand() < 0.5 ? 1 : 2);
    const qty = rand() < 0.3 ? '0' : (rand() * 5).toFixed(3);
    const key = String(Number(price));
    model[side].delete(key);
    if (Number(qty) !== 0) model[side].set(key, [price, qty]);
    const order = (m, dir) => [...m.values()].sort((a, b) => dir * (Number(a[0]) - Number(b[0]))).slice(0, depth);
    const bids = order(model.bids, -1);
    const asks = order(model.asks, 1);
    model.bids = new Map(bids.map((l) => [String(Number(l[0])), l]));
    model.asks = new Map(asks.map((l) => [String(Number(l[0])), l]));
    const update = { [side]: [[price, qty]], [side === 'bids' ? 'asks' : 'bids']: [], checksum: bookChecksum(bids, asks) };
    assert.equal(book.apply(update), true, `delta ${i}`);
    assert.deepEqual(book.bids, bids);
  }
});

test('seqs compare numerically', () => {
  assert.equal(compareSeq('9-0', '10-0'), -1);
  assert.equal(compareSeq('10-2', '10-10'), -1);
  assert.equal(compareSeq('10-1', '10-1'), 0);
});

test('backoff doubles to its cap, with jitter 0.5-1.5', () => {
  const low = new Backoff(500, 15000, 0.5, () => 0);
  const high = new Backoff(500, 15000, 0.5, () => 0.999999);
  const lows = Array.from({ length: 8 }, () => low.next());
  const highs = Array.from({ length: 8 }, () => high.next());
  assert.deepEqual(lows, [250, 500, 1000, 2000, 4000, 7500, 7500, 7500]);
  assert.equal(highs[0], 750);
  assert.equal(highs[7], 22500);
  low.reset();
  assert.equal(low.next(), 250);
});

test('close advice follows the close-code table', () => {
  const retry = (code, reason, canRenewToken = false) => closeAdvice(code, reason, { canRenewToken }).retry;
  assert.equal(retry(1008, 'Invalid token'), false);
  assert.equal(retry(1008, 'Token expired'), false);
  assert.equal(retry(1008, 'Token expired', true), true);
  assert.equal(closeAdvice(1008, 'Token expired', { canRenewToken: true }).renewToken, true);
  assert.equal(retry(1008, 'Authentication required'), false);
  assert.equal(retry(1008, 'batch_ms must be an integer from 1 to 1000', true), false);
  assert.equal(retry(1008, 'rate limit exceeded'), true);
  assert.equal(retry(1008, 'max connections per user reached'), true);
  for (const code of [1000, 1001, 1006, 1009, 1011, 1013]) assert.equal(retry(code, ''), true);
  assert.equal(closeAdvice(1001, 'server shutting down').immediate, true);
  assert.ok(closeError(1008, 'x') instanceof PolicyViolation);
  assert.ok(closeError(1009, 'x') instanceof MessageTooBig);
  assert.ok(closeError(1013, 'slow consumer') instanceof TryAgainLater);
});

test('batch frames unwrap in order', () => {
  assert.equal(updatesOf({ type: 'batch', updates: [{ seq: '1-0' }, { seq: '2-0' }] })[1].seq, '2-0');
  assert.equal(updatesOf({ type: 'update', seq: '1-0' }).length, 1);
  assert.equal(updatesOf({ type: 'pong' }).length, 0);
});

test('liveness: dead after k heartbeats without a frame', () => {
  const live = new Liveness(2, 3);
  live.seen(1000);
  assert.equal(live.expired(6999), false);
  assert.equal(live.expired(7001), true);
});

test('url and key', () => {
  assert.equal(connectionUrl('ws://h:1/ws', { token: 't', batchMs: 100, heartbeatS: 5 }), 'ws://h:1/ws?token=t&batch_ms=100&heartbeat_s=5');
  assert.equal(connectionUrl('http://h:1/ws'), 'ws://h:1/ws');
  assert.equal(subscriptionKey({ channel: 'tickers', exchange: 'b' }), subscriptionKey({ exchange: 'b', channel: 'tickers', resume_from: '1-0' }));
});

test('a subscription resumes from its last seq and re-snapshots after a gap', async () => {
  const sub = new Subscription({ channel: 'tickers', exchange: 'binance' });
  const events = [];
  sub.on('*', (e) => events.push(e));
  assert.deepEqual(sub.subscribeParams(), { channel: 'tickers', exchange: 'binance' });
  assert.equal(sub.subscribed({ subscription_id: 'tickers-1', snapshot: [{ symbol: 'A' }], recovered: true, seq: '5-0' }), 'ok');
  assert.equal(events[0].reset, true);
  assert.equal(sub.subscribeParams().resume_from, '5-0');
  sub.update({ type: 'update', action: 'ticker_update', subscription_id: 'tickers-1', seq: '7-0', result: { symbol: 'A' } });
  sub.disconnected();
  assert.equal(sub.subscribeParams().resume_from, '7-0');
  assert.equal(sub.subscribed({ subscription_id: 'tickers-3', snapshot: [], recovered: false, seq: '7-0' }), 'resync');
  sub.resync('gap');
  assert.equal(sub.subscribeParams().resume_from, undefined);
  assert.equal(sub.status({ status: 'resumed', recovered: false }), 'resync');
  assert.equal(sub.status({ status: 'resumed', recovered: true }), 'ok');
  assert.deepEqual(events.map((e) => e.type), ['snapshot', 'update', 'status', 'resync', 'status', 'status']);
});

test('a book subscription verifies every update and asks for a resync on a mismatch', () => {
  const sub = new Subscription({ channel: 'book', exchange: 'binance', symbol: 'BTC/USDT', depth: 10 });
  const snapshot = { ...EXAMPLE, checksum: 3211480509, stale: false, depth: 10 };
  assert.equal(sub.subscribed({ subscription_id: 'book-1', snapshot, recovered: true, seq: '1-0' }), 'ok');
  const good = new OrderBook(10);
  good.load(snapshot);
  good.apply({ bids: [['49999.9', '0']], asks: [] });
  assert.equal(sub.update({ seq: '2-0', result: { bids: [['49999.9', '0']], asks: [], checksum: good.checksum } }), 'ok');
  assert.equal(sub.update({ seq: '3-0', result: { bids: [['49999.8', '1']], asks: [], checksum: 1 } }), 'resync');
  assert.equal(sub.counts.mismatches, 1);
  sub.resync('checksum');
  assert.equal(sub.book.loaded, false);
  // a stale mark, then a replacing snapshot
  assert.equal(sub.subscribed({ subscription_id: 'book-2', snapshot, recovered: true, seq: '3-0' }), 'ok');
  sub.update({ seq: '4-0', result: { stale: true, reason: 'snapshot needed', sequence: 8 } });
  assert.equal(sub.book.stale, 'snapshot needed');
  assert.equal(sub.update({ seq: '5-0', result: { ...snapshot, snapshot: true } }), 'ok');
  assert.equal(sub.book.stale, '');
});

test('a subscription is an async iterator', async () => {
  const sub = new Subscription({ channel: 'bots' });
  const seen = [];
  const reader = (async () => { for await (const e of sub) seen.push(e.type); })();
  sub.subscribed({ subscription_id: 'bots-1', snapshot: [], recovered: true, seq: '0-0' });
  sub.update({ seq: '1-0', result: {} });
  sub.end();
  await reader;
  assert.deepEqual(seen, ['snapshot', 'update']);
  const failing = new Subscription({ channel: 'bots' });
  const it = failing[Symbol.asyncIterator]();
  failing.fail(new RequestError('INVALID_PARAMS', 'bad'));
  assert.equal((await it.next()).value.type, 'error');
  await assert.rejects(it.next(), RequestError);
});

// ---------------------------------------------------------------- the client, fake socket

beforeEach(() => FakeSocket.reset());

function client(options = {}) {
  return new Client('ws://bridge.test/ws', { WebSocket: FakeSocket, heartbeatS: null, backoff: { firstMs: 1, capMs: 5 }, ...options });
}

test('requests match replies by request_id, errors are RequestErrors', async () => {
  const c = client();
  const connected = c.connect();
  await until(() => FakeSocket.last, 'a socket');
  FakeSocket.last.welcome();
  await connected;
  const a = c.getTicker('binance', 'A/B');
  const b = c.listBots();
  await until(() => FakeSocket.last.sent.length === 2, 'two requests');
  FakeSocket.last.reply('list_bots', []);
  FakeSocket.last.fail('get_ticker', 'NOT_FOUND', 'no ticker');
  assert.deepEqual(await b, []);
  await assert.rejects(a, (e) => e instanceof RequestError && e.code === 'NOT_FOUND');
  await assert.rejects(c.request('get_bot', { bot_id: 'x'.repeat(70000) }), MessageTooBig);
  c.close();
});

test('a reconnect resumes every subscription from its last seq, a gap re-snapshots', async () => {
  const c = client();
  c.connect();
  await until(() => FakeSocket.last, 'a socket');
  FakeSocket.last.welcome();
  const tickers = c.subscribe({ channel: 'tickers', exchange: 'binance' });
  const orders = c.subscribe({ channel: 'orders' });
  await until(() => FakeSocket.last.requests('subscribe').length === 2, 'two subscribes');
  FakeSocket.last.reply('subscribe', { subscription_id: 'tickers-1', channel: 'tickers', snapshot: [], recovered: true, seq: '1-0' });
  FakeSocket.last.reply('subscribe', { subscription_id: 'orders-2', channel: 'orders', snapshot: [], recovered: true, seq: '3-0' });
  await until(() => orders.id === 'orders-2', 'orders subscribed');
  FakeSocket.last.frame({ type: 'batch', updates: [
    { type: 'update', action: 'ticker_update', subscription_id: 'tickers-1', seq: '4-0', result: { symbol: 'A' } },
    { type: 'update', action: 'ticker_update', subscription_id: 'tickers-1', seq: '5-0', result: { symbol: 'B' } },
  ] });
  assert.equal(tickers.lastSeq, '5-0');
  const first = FakeSocket.last;
  first.drop(1006);
  await until(() => FakeSocket.made.length === 2, 'a new socket');
  FakeSocket.last.welcome();
  await until(() => FakeSocket.last.requests('subscribe').length === 2, 'two resubscribes');
  const params = FakeSocket.last.requests('subscribe').map((m) => m.params);
  assert.deepEqual(params, [
    { channel: 'tickers', exchange: 'binance', resume_from: '5-0' },
    { channel: 'orders', resume_from: '3-0' },
  ]);
  FakeSocket.last.reply('subscribe', { subscription_id: 'tickers-1', channel: 'tickers', snapshot: [], recovered: true, seq: '5-0' });
  FakeSocket.last.reply('subscribe', { subscription_id: 'orders-2', channel: 'orders', snapshot: [], recovered: false, seq: '3-0' });
  // the gap: unsubscribe, then subscribe again without resume_from
  await until(() => FakeSocket.last.requests('subscribe').length === 3, 're-snapshot');
  assert.deepEqual(FakeSocket.last.requests('unsubscribe').map((m) => m.params), [{ subscription_id: 'orders-2' }]);
  assert.deepEqual(FakeSocket.last.requests('subscribe')[2].params, { channel: 'orders' });
  c.close();
});

test('a fixed token refused with 1008 fails connect with PolicyViolation', async () => {
  const c = client({ token: 'bad' });
  const connected = c.connect();
  await until(() => FakeSocket.last, 'a socket');
  assert.ok(FakeSocket.last.url.includes('token=bad'));
  FakeSocket.last.drop(1008, 'Invalid token');
  await assert.rejects(connected, (e) => e instanceof PolicyViolation && e.reason === 'Invalid token');
  assert.equal(c.state, 'closed');
});

test('a token callback is used on reconnect and to refresh on token_expiring', async () => {
  let n = 0;
  const c = client({ token: async () => `t${++n}` });
  c.connect();
  await until(() => FakeSocket.last, 'a socket');
  assert.ok(FakeSocket.last.url.includes('token=t1'));
  FakeSocket.last.welcome();
  FakeSocket.last.frame({ type: 'token_expiring', expires_at: 1 });
  await until(() => FakeSocket.last.requests('refresh').length === 1, 'a refresh');
  assert.deepEqual(FakeSocket.last.requests('refresh')[0].params, { token: 't2' });
  FakeSocket.last.drop(1008, 'Token expired');
  await until(() => FakeSocket.made.length === 2, 'a reconnect');
  assert.ok(FakeSocket.last.url.includes('token=t3'));
  c.close();
});

test('no frame for k heartbeats: the socket is dropped and a new one made', async () => {
  const c = client({ heartbeatS: 0.05, heartbeatMisses: 2 });
  c.connect();
  await until(() => FakeSocket.last, 'a socket');
  assert.ok(FakeSocket.last.url.includes('heartbeat_s=0.05'));
  FakeSocket.last.welcome({ heartbeat_s: 0.05 });
  await until(() => FakeSocket.made.length === 2, 'a reconnect after silence', 3000);
  assert.equal(FakeSocket.made[0].closed.code, 4000);
  c.close();
});

test('1013 is retried and reported as TryAgainLater', async () => {
  const c = client();
  const errors = [];
  c.on('error', (e) => errors.push(e));
  c.connect();
  await until(() => FakeSocket.last, 'a socket');
  FakeSocket.last.drop(1013, 'max connections reached, try another instance later');
  await until(() => FakeSocket.made.length === 2, 'a retry');
  assert.ok(errors[0] instanceof TryAgainLater);
  c.close();
});

test('a book checksum mismatch resubscribes for a fresh snapshot', async () => {
  const c = client();
  c.connect();
  await until(() => FakeSocket.last, 'a socket');
  FakeSocket.last.welcome();
  const sub = c.subscribe({ channel: 'book', exchange: 'binance', symbol: 'BTC/USDT', depth: 10 });
  await until(() => FakeSocket.last.requests('subscribe').length === 1, 'subscribe');
  FakeSocket.last.reply('subscribe', { subscription_id: 'book-1', snapshot: { ...EXAMPLE, checksum: 3211480509 }, recovered: true, seq: '1-0' });
  await until(() => sub.id === 'book-1', 'subscribed');
  FakeSocket.last.frame({ type: 'update', action: 'book_update', subscription_id: 'book-1', seq: '2-0', result: { bids: [], asks: [['50003', '1']], checksum: 42 } });
  await until(() => FakeSocket.last.requests('subscribe').length === 2, 'the resubscribe');
  assert.deepEqual(FakeSocket.last.requests('unsubscribe')[0].params, { subscription_id: 'book-1' });
  assert.equal(FakeSocket.last.requests('subscribe')[1].params.resume_from, undefined);
  c.close();
});

test('stream_status: interrupted waits, resumed without recovery re-snapshots', async () => {
  const c = client();
  c.connect();
  await until(() => FakeSocket.last, 'a socket');
  FakeSocket.last.welcome();
  const sub = c.subscribe({ channel: 'bots' });
  const statuses = [];
  sub.on('status', (e) => statuses.push(`${e.status}:${e.recovered}`));
  await until(() => FakeSocket.last.requests('subscribe').length === 1, 'subscribe');
  FakeSocket.last.reply('subscribe', { subscription_id: 'bots-1', snapshot: [], recovered: true, seq: '1-0' });
  FakeSocket.last.frame({ type: 'stream_status', subscription_id: 'bots-1', status: 'interrupted', recovered: false });
  assert.equal(sub.state, 'interrupted');
  assert.equal(FakeSocket.last.requests('subscribe').length, 1, 'no resubscribe while interrupted');
  FakeSocket.last.frame({ type: 'stream_status', subscription_id: 'bots-1', status: 'resumed', recovered: false });
  await until(() => FakeSocket.last.requests('subscribe').length === 2, 'the re-snapshot');
  assert.deepEqual(FakeSocket.last.requests('subscribe')[1].params, { channel: 'bots' });
  // frames still arriving for the old id are ignored
  FakeSocket.last.frame({ type: 'update', action: 'bot_update', subscription_id: 'bots-1', seq: '9-0', result: {} });
  assert.equal(sub.counts.updates, 0);
  assert.deepEqual(statuses, ['interrupted:false', 'resumed:false']);
  c.close();
});

test('updates right behind a subscribe reply in the same task are not lost', async () => {
  const c = client();
  c.connect();
  await until(() => FakeSocket.last, 'a socket');
  FakeSocket.last.welcome();
  const sub = c.subscribe({ channel: 'tickers', exchange: 'binance' });
  await until(() => FakeSocket.last.requests('subscribe').length === 1, 'subscribe');
  // Node's WebSocket dispatches a whole TCP read at once: the reply and the next frames together
  FakeSocket.last.reply('subscribe', { subscription_id: 'tickers-1', snapshot: [], recovered: true, seq: '1-0' });
  FakeSocket.last.frame({ type: 'update', action: 'ticker_update', subscription_id: 'tickers-1', seq: '2-0', result: { symbol: 'A' } });
  assert.equal(sub.counts.updates, 1);
  assert.equal(sub.lastSeq, '2-0');
  c.close();
});

test('a refused subscription fails with its RequestError; a retryable one is retried', async () => {
  const c = client();
  c.connect();
  await until(() => FakeSocket.last, 'a socket');
  FakeSocket.last.welcome();
  const bad = c.subscribe({ channel: 'tickers' });
  const flaky = c.subscribe({ channel: 'orders' });
  await until(() => FakeSocket.last.requests('subscribe').length === 2, 'two subscribes');
  const it = bad[Symbol.asyncIterator]();
  FakeSocket.last.fail('subscribe', 'INVALID_PARAMS', "'exchange' is required");
  FakeSocket.last.fail('subscribe', 'UNAVAILABLE', 'Upstream service unavailable, try again');
  assert.equal((await it.next()).value.type, 'error');
  assert.equal(bad.state, 'failed');
  await assert.rejects(it.next(), (e) => e instanceof RequestError && e.code === 'INVALID_PARAMS');
  await until(() => FakeSocket.last.requests('subscribe').length === 3, 'the retry', 3000);
  assert.equal(flaky.state, 'pending');
  c.close();
});

test('without any WebSocket class, connect says how to get one', async () => {
  const global = globalThis.WebSocket;   // Node 22+ has one: hidden for this test
  globalThis.WebSocket = undefined;
  try {
    const c = new Client('ws://bridge.test/ws');
    await assert.rejects(c.connect(), /no WebSocket: pass options.WebSocket/);
  } finally {
    globalThis.WebSocket = global;
  }
});
