/**
 * A hostile page in headless Chromium against a running `tern serve`: run by
 * crates/tern/tests/http_security.rs, which checks the server's store afterwards.
 *
 * The page is served by this script from its own HTTP server on another loopback port, so it
 * is another origin than Tern (a different port is a different origin). From there it tries:
 *   - a "simple" POST /api/v1/send with a text/plain body (sent without a CORS preflight),
 *     once in `cors` mode and once in `no-cors` mode;
 *   - a POST /api/v1/send with a JSON body (preflighted);
 *   - a DELETE /api/v1/messages (preflighted);
 *   - a websocket to /api/events (CORS does not cover websockets).
 * Then, as a control, Tern's own page (same origin) POSTs one JSON message, which must work.
 *
 * Usage: node crossorigin.mjs --http http://127.0.0.1:PORT
 * Prints one line `RESULT {json}` with what each attempt saw.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { launchChromium } from './chromium.mjs';

const { values } = parseArgs({ options: { http: { type: 'string' } } });
const tern = (values.http || process.env.TERN_HTTP || '').replace(/\/$/, '');
if (!tern) {
  console.error('usage: node crossorigin.mjs --http http://127.0.0.1:PORT');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** The attacker's page: a blank document; the attempts run through `page.evaluate`. */
const attacker = http.createServer((_, response) => {
  response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  response.end('<!doctype html><title>elsewhere</title><p>another origin</p>');
});
await new Promise((resolve) => attacker.listen(0, '127.0.0.1', resolve));
const elsewhere = `http://127.0.0.1:${attacker.address().port}/`;

const profile = mkdtempSync(path.join(os.tmpdir(), 'tern-crossorigin-chromium-'));
const context = await launchChromium(executablePath, profile);

try {
  const page = context.pages()[0] || (await context.newPage());
  await page.goto(elsewhere);
  const foreign = await page.evaluate(attempts, tern);
  await page.goto(`${tern}/`);
  const own = await page.evaluate(ownPost, tern);
  console.log(`RESULT ${JSON.stringify({ page: elsewhere, foreign, own })}`);
} finally {
  await context.close();
  attacker.close();
  rmSync(profile, { recursive: true, force: true });
}

/** Runs in the foreign page: every attempt, each reporting what the page could see. */
async function attempts(tern) {
  const mail = (subject) =>
    JSON.stringify({ From: { Email: 'page@evil.test' }, To: [{ Email: 'dev@example.com' }], Subject: subject, Text: 'x' });
  const outcome = async (promise) => {
    try {
      const response = await promise;
      return `status ${response.status} (${response.type})`;
    } catch (error) {
      return `failed: ${error.message}`;
    }
  };
  const send = `${tern}/api/v1/send`;
  const simple = await outcome(fetch(send, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: mail('simple text/plain') }));
  const noCors = await outcome(fetch(send, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: mail('no-cors text/plain') }));
  const json = await outcome(fetch(send, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: mail('json') }));
  const remove = await outcome(fetch(`${tern}/api/v1/messages`, { method: 'DELETE' }));
  const websocket = await new Promise((resolve) => {
    const seen = { opened: false, messages: 0, closed: false };
    const socket = new WebSocket(`${tern.replace(/^http/, 'ws')}/api/events`);
    const finish = () => resolve(seen);
    socket.onopen = () => { seen.opened = true; };
    socket.onmessage = () => { seen.messages += 1; };
    socket.onerror = () => { seen.error = true; };
    socket.onclose = (event) => { seen.closed = true; seen.code = event.code; finish(); };
    // An opened socket gets the mailbox's stats at once; give it a moment, then stop.
    setTimeout(() => { socket.close(); setTimeout(finish, 500); }, 3000);
  });
  return { simple, noCors, json, remove, websocket };
}

/** Runs in Tern's own page: the same-origin write the web UI makes. */
async function ownPost(tern) {
  const body = JSON.stringify({ From: { Email: 'ui@example.com' }, To: [{ Email: 'dev@example.com' }], Subject: 'same-origin', Text: 'x' });
  const response = await fetch(`${tern}/api/v1/send`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  return { status: response.status, body: await response.text() };
}
