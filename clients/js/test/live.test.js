// The client against the real stack (Redis, cache service, bridge) through four faults.
//
// Run by tests/clients/js/test_js_client.py, which starts the stack and a control server and
// sets MB_WS_URL (the bridge), MB_PROXY_WS_URL (a TCP proxy in front of it that the test can
// stall), MB_CONTROL_URL and MB_TOKEN. After each fault the client's view (tickers, orders, the
// book, trades) must end equal to the service's, with no trade lost that the service kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as MB from '../marketbridge.js';
import { scenario } from './scenario.js';

const { MB_WS_URL, MB_PROXY_WS_URL, MB_CONTROL_URL, MB_TOKEN } = process.env;
const skip = MB_WS_URL ? false : 'MB_WS_URL is not set: run tests/clients/js/test_js_client.py';

/** @param {string} fault @param {string} [url] */
const run = (fault, url = MB_WS_URL) => scenario(MB, { url, controlUrl: MB_CONTROL_URL, token: MB_TOKEN, fault, WebSocket: globalThis.WebSocket });

test('a bridge restart: reconnect, resume every subscription, nothing lost', { skip, timeout: 120000 }, async () => {
  const seen = await run('bridge');
  assert.equal(seen.closes[0].code, 1001);
  assert.equal(seen.resumedRecovered, 4, 'every subscription resumed from its last seq');
});

test('a Redis restart: streams interrupted then resumed, nothing lost', { skip, timeout: 120000 }, async () => {
  const seen = await run('redis');
  assert.ok(seen.statuses.includes('interrupted'));
  assert.equal(seen.closes.length, 0, 'the connection stays up');
});

test('a cache service restart: streams interrupted then resumed, nothing lost', { skip, timeout: 120000 }, async () => {
  const seen = await run('cache');
  assert.ok(seen.statuses.includes('interrupted'));
  assert.equal(seen.closes.length, 0, 'the connection stays up');
});

test('a stalled network: only heartbeats reveal it; reconnect and resume', { skip: skip || (!MB_PROXY_WS_URL && 'MB_PROXY_WS_URL is not set'), timeout: 120000 }, async () => {
  const seen = await run('stall', MB_PROXY_WS_URL);
  assert.equal(seen.closes[0].code, 1006);
  assert.match(seen.closes[0].reason, /heartbeat/);
  assert.ok(seen.detectedMs >= 2000, `dead only after 3 heartbeats of 1 s, not ${seen.detectedMs} ms`);
  assert.ok(seen.resumedRecovered >= 1, 'resumed after the stall');
});

test('a token callback refreshes a short-lived token: the connection outlives it', { skip, timeout: 60000 }, async () => {
  const minted = [];
  const client = new MB.Client(MB_WS_URL, {
    WebSocket: globalThis.WebSocket, heartbeatS: 1,
    token: async () => {
      const response = await fetch(`${MB_CONTROL_URL}/token?ttl=5`, { method: 'POST' });
      const body = await response.json();
      minted.push(body);
      return body.token;
    },
  });
  const closes = [];
  client.on('close', (c) => closes.push(c));
  try {
    const firstExpiry = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no refresh after the first token expired')), 30000);
      client.on('refreshed', (result) => {
        // a refresh after the first token's exp: the connection lived on the refreshed ones
        if (Date.now() > minted[0].exp * 1000 + 200) { clearTimeout(timer); resolve(result); }
      });
      client.on('error', (error) => { clearTimeout(timer); reject(error); });
    });
    await client.connect();
    const session = client.sessionId;
    const result = await firstExpiry;
    assert.ok(result.expires_at > minted[0].exp);
    assert.equal(client.sessionId, session);
    assert.equal(client.stats.connects, 1);
    assert.deepEqual(closes, []);
    assert.ok((await client.ping()) >= 0);
  } finally {
    client.close();
  }
});
