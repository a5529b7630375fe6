/**
 * End-to-end test of Tern's web UI in headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core). It speaks SMTP itself (node's `net`) to a running `tern serve` and checks
 * what a person would see:
 *
 *   open the UI → send a mail over SMTP → it appears in the open list without a reload → open it
 *   → the HTML renders in the sandboxed iframe and its remote image is blocked by the CSP (and
 *   loads once "Load remote content" is ticked) → the attachment downloads with the right bytes
 *   → the other tabs show text, headers, raw source and envelope → Release (to an address typed
 *   into its dialog) puts a copy in the outbound queue for the `--relay` host → a second mail, a search that
 *   matches only it narrows the list → delete removes it (from the list and the server) →
 *   keyboard navigation → phone-sized layout.
 *
 * With `--scenario queue` it drives the outbound queue page of an MTA instead (the `--smtp`
 * listener must relay for loopback and delivery must fail, e.g. with DNS pointed at a closed
 * port): the empty queue → a relayed mail appears without a reload → its failed attempt shows
 * the attempts and the DNS error text → Hold makes it held → Release queues it again → its
 * link opens the message → it fits a phone → Delete (confirmed) removes it.
 *
 * With `--scenario active-content` it mails parts whose scripts a browser would run if it
 * rendered them (XHTML in `+xml` types, SVG, HTML, `multipart/x-mixed-replace`, a type list
 * ending in `text/html`) beside harmless ones (PNG, PDF, text), opens each part's URL as a page
 * of its own, and checks that no script ran (no console line, no `window.ran`): the dangerous
 * ones download, the harmless ones display, sandboxed. The HTML view opened on its own runs no
 * script either and still shows its `cid:` image.
 *
 * With `--scenario authentication` (against a catcher with `[auth] verify = true` whose records
 * pass ann@spf.test and fail mallory@forged.test) it opens the Authentication tab: nothing is
 * fetched before the tab opens → SPF and DMARC pass rows with green badges for the first mail →
 * DKIM and DMARC pass for a mail it signs with `--dkim-key` (d=signed.test, s=e2e) → fail rows with red badges for the forged one (tagged junk) → the keyboard reaches the tab →
 * a catcher that does not verify (`--unchecked-http`, `--unchecked-smtp`) says "Not checked".
 *
 * With `--scenario views` (views.mjs) it checks the Links, Codes and Envelope tabs, tags and the
 * colour theme, against a catcher with the link check on and a plain one (`--unchecked-*`).
 * With `--scenario html-check` or `--scenario dashboard` it runs the insight views' scenarios
 * (`insight.mjs`; the dashboard one also needs `--catcher-http` and `--catcher-smtp`).
 *
 * Usage: node e2e.mjs [--scenario mailbox|queue|active-content|authentication|views|html-check|dashboard]
 *        --http http://127.0.0.1:8025 --smtp 127.0.0.1:1025 [--relay HOST:PORT] --out DIR
 *        [--unchecked-http URL --unchecked-smtp HOST:PORT --dkim-key FILE]
 * (or TERN_HTTP, TERN_SMTP, TERN_SCREENSHOTS; CHROMIUM_PATH overrides /usr/bin/chromium).
 * Screenshots (PNG) of every step go to the output directory. Exits non-zero on the first
 * failure, after a screenshot of the page as it was.
 */

import crypto from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { launchChromium } from './chromium.mjs';
import { viewsScenario } from './views.mjs';
import { dashboardScenario, htmlCheckScenario } from './insight.mjs';

const STEP_TIMEOUT_MS = 15_000;
/** Nothing listens on port 9 (discard): the remote image can only ever fail to load. */
const REMOTE_IMAGE = 'http://127.0.0.1:9/remote.png';
/** A 2×2 red PNG, sent as an attachment and compared byte for byte after the download. */
const PIXEL_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);
const CSV = 'id,item\r\n1,anvil\r\n2,rocket skates\r\n';

/** A failed check of this test, as opposed to an error of Playwright or node. */
class CheckFailed extends Error {}

const config = readConfig();
const run = Math.random().toString(36).slice(2, 8);
/** Search tokens: one word that only the first mail holds, one that only the second holds. */
const first = { token: `quokka${run}`, subject: `Your invoice quokka${run} is ready` };
const second = { token: `wombat${run}`, subject: `Shipping notice wombat${run}` };
/** The relayed mail of the queue scenario, for a domain whose DNS lookup fails. */
const relayed = { token: `numbat${run}`, subject: `Order numbat${run} shipped`, to: `customer-${run}@remote.example` };

const pageErrors = [];
const remoteRequests = [];
let shot = 0;

main().catch((error) => {
  // Our own checks say what went wrong; anything else (a Playwright error) needs its stack.
  console.error(`e2e: FAILED: ${error instanceof CheckFailed ? error.message : error.stack || error}`);
  process.exit(1);
});

async function main() {
  mkdirSync(config.out, { recursive: true });
  if (!existsSync(config.chromium)) {
    fail(`Chromium is not installed at ${config.chromium} (apt-get install -y chromium; scripts/test installs it)`);
  }
  const profile = mkdtempSync(path.join(os.tmpdir(), 'tern-e2e-chromium-'));
  const context = await launch(profile);
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);
  const started = Date.now();
  try {
    const scenarios = {
      mailbox: scenario,
      queue: queueScenario,
      'active-content': activeContentScenario,
      authentication: authenticationScenario,
      views: (page) => viewsScenario(page, { config, step, screenshot, openUi, arrives, plainMail, headers, sendMail, rowOf, expectText, expectClass, waitFor, fetchJson, fail, pageErrors }),
      'html-check': (page) => htmlCheckScenario(page, insightHelpers()),
      dashboard: (page) => dashboardScenario(page, insightHelpers()),
    };
    await scenarios[config.scenario](page);
  } catch (error) {
    await page.screenshot({ path: path.join(config.out, 'failure.png'), fullPage: true }).catch(() => {});
    console.error(`e2e: screenshot of the failure: ${path.join(config.out, 'failure.png')}`);
    throw error;
  } finally {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(`e2e: all steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${config.out}`);
}

async function scenario(page) {
  await step('open the UI', () => openUi(page));
  await step('a mail sent over SMTP appears without a reload', () => arrives(page, first, mailWithAttachments(first)));
  await step('opening it shows the HTML and marks it read', () => opensHtml(page));
  await step('the remote image is blocked', () => remoteBlocked(page));
  await step('"Load remote content" lets it load', () => remoteAllowed(page));
  await step('the attachment previews and downloads', () => downloads(page));
  await step('text, headers, raw and envelope tabs', () => otherTabs(page));
  await step('release queues a copy for the relay', () => releases(page));
  await step('a second mail arrives', () => arrives(page, second, plainMail(second)));
  await step('a search narrows the list to one message', () => searchNarrows(page));
  await step('delete removes it', () => deletes(page));
  await step('keyboard: / j Enter Esc', () => keyboard(page));
  await step('phone-sized screen', () => phone(page));
  if (pageErrors.length) fail(`the page threw: ${pageErrors.join('; ')}`);
}

// ---- steps ----------------------------------------------------------------------------------

async function openUi(page) {
  await page.goto(`${config.http}/`);
  await page.locator('#live.connected').waitFor({ timeout: STEP_TIMEOUT_MS });
  await expectText(page.locator('#list-summary'), /message/);
  // Set on this document only: if the page reloads, the marker is gone.
  await page.evaluate(() => {
    window.ternE2eNoReload = true;
  });
  await screenshot(page, 'empty');
}

async function arrives(page, mail, data, envelope = {}) {
  const id = await sendMail(data, envelope);
  const row = rowOf(page, mail);
  await row.waitFor({ timeout: STEP_TIMEOUT_MS });
  if (!(await page.evaluate(() => window.ternE2eNoReload === true))) fail('the page reloaded');
  await expectClass(row, 'unread', true);
  console.log(`e2e:   queued as ${id}`);
  await screenshot(page, `arrived-${mail.token}`);
}

async function opensHtml(page) {
  await rowOf(page, first).locator('a').click();
  await expectText(page.locator('.message-subject'), first.subject);
  const frame = page.locator('iframe.html-frame');
  await frame.waitFor();
  if ((await frame.getAttribute('sandbox')) !== 'allow-popups') fail('the HTML iframe is not sandboxed');
  await expectText(page.frameLocator('iframe.html-frame').locator('h1'), `Hello ${first.token}`);
  await expectClass(rowOf(page, first), 'unread', false);
  await screenshot(page, 'html');
}

async function remoteBlocked(page) {
  // Give the blocked load a moment to be reported either way.
  await page.waitForTimeout(500);
  const loaded = remoteRequests.filter((request) => request.failure !== 'csp');
  if (loaded.length) {
    const outcomes = loaded.map((request) => request.failure ?? 'pending').join(', ');
    fail(`the CSP did not block the remote image: it was requested (${outcomes})`);
  }
  const evidence = remoteRequests.length ? 'request failed with "csp"' : 'no request made';
  console.log(`e2e:   remote image blocked (${evidence})`);
}

async function remoteAllowed(page) {
  remoteRequests.length = 0;
  await page.locator('#remote-toggle').check();
  await expectText(page.frameLocator('iframe.html-frame').locator('h1'), `Hello ${first.token}`);
  await waitFor(() => remoteRequests.some((request) => request.failure !== 'csp'), 'a request for the remote image once allowed');
  await screenshot(page, 'remote-allowed');
}

async function downloads(page) {
  await page.locator('#tab-attachments').click();
  const card = page.locator('.attachment', { hasText: 'pixel.png' });
  await card.waitFor();
  await waitFor(() => card.locator('img').evaluate((img) => img.complete && img.naturalWidth === 2), 'the image preview');
  await page.locator('.attachment', { hasText: 'items.csv' }).waitFor();
  await screenshot(page, 'attachments');
  const [download] = await Promise.all([page.waitForEvent('download'), card.locator('a.attachment-download').click()]);
  const file = await download.path();
  const bytes = readFileSync(file);
  if (!bytes.equals(PIXEL_PNG)) fail(`downloaded ${bytes.length} bytes that differ from the ${PIXEL_PNG.length} sent`);
  if (download.suggestedFilename() !== 'pixel.png') fail(`download named ${download.suggestedFilename()}`);
}

async function otherTabs(page) {
  await page.locator('#tab-text').click();
  await expectText(page.locator('.text-body'), `plain text ${first.token}`);
  await page.locator('#tab-headers').click();
  await expectText(page.locator('.headers-table'), first.subject);
  await page.locator('#tab-raw').click();
  await expectText(page.locator('.raw-source'), 'Content-Type: multipart/mixed');
  await page.locator('#tab-envelope').click();
  await expectText(page.locator('.envelope'), 'sender@e2e.test');
  await expectText(page.locator('.envelope'), 'inbox@e2e.test');
  await screenshot(page, 'envelope');
}

async function releases(page) {
  await page.locator('button[aria-label="Release message"]').click();
  await page.locator('#release').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  await expectText(page.locator('#release-via'), config.relay);
  const proposed = await page.locator('#release-to').inputValue();
  if (proposed !== 'inbox@e2e.test') fail(`the dialog proposes ${JSON.stringify(proposed)}, not the message's To`);
  await page.locator('#release-to').fill('qa@customer.example');
  await screenshot(page, 'release-dialog');
  await page.locator('#release-ok').click();
  await expectText(page.locator('#toasts'), 'Released to qa@customer.example');
  // The relay refuses connections, so the copy waits in the queue, and the sidebar counts it.
  await expectText(page.locator('#queue-count'), '1');
  const entry = (await fetchJson('/api/v1/queue')).Entries.find((item) => item.Recipient === 'qa@customer.example');
  if (!entry) fail('the released copy is not in the outbound queue');
  await screenshot(page, 'released');
}

async function searchNarrows(page) {
  if ((await page.locator('.row').count()) < 2) fail('expected both messages in the list before searching');
  await page.locator('#search').fill(second.token);
  await page.locator('#search').press('Enter');
  await waitFor(async () => (await page.locator('.row').count()) === 1, 'the list to narrow to one row');
  await rowOf(page, second).waitFor();
  await screenshot(page, 'search');
}

async function deletes(page) {
  await rowOf(page, second).locator('a').click();
  await expectText(page.locator('.message-subject'), second.subject);
  await page.locator('button[aria-label="Delete message"]').click();
  await rowOf(page, second).waitFor({ state: 'detached', timeout: STEP_TIMEOUT_MS });
  await expectText(page.locator('#list-empty'), 'No messages match');
  await screenshot(page, 'deleted');
  // The row goes at once; the server's answer follows (the UI says so with a toast).
  await expectText(page.locator('#toasts'), 'Message deleted');
  const left = await fetchJson(`/api/v1/search?query=${encodeURIComponent(second.token)}`);
  if (left.messages_count !== 0) fail(`the server still finds the deleted message: ${JSON.stringify(left)}`);
  await page.locator('#search').fill('');
  await page.locator('#search').press('Enter');
  await rowOf(page, first).waitFor();
  if ((await page.locator('.row').count()) !== 1) fail('clearing the search should show the one message left');
}

async function keyboard(page) {
  await page.keyboard.press('Escape'); // leave the search box
  await page.keyboard.press('/');
  if (!(await page.locator('#search').evaluate((input) => input === document.activeElement))) fail('/ did not focus the search');
  await page.keyboard.press('Escape');
  await page.keyboard.press('j');
  await expectClass(rowOf(page, first), 'selected', true);
  await page.keyboard.press('Enter');
  await expectText(page.locator('.message-subject'), first.subject);
  await page.keyboard.press('Escape');
  await page.locator('#placeholder').waitFor();
}

async function phone(page) {
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, 'phone-list');
  if (await page.locator('#message-pane').isVisible()) fail('on a phone the message pane should hide behind the list');
  await rowOf(page, first).locator('a').click();
  await expectText(page.locator('.message-subject'), first.subject);
  if (await page.locator('#list-pane').isVisible()) fail('on a phone the open message should replace the list');
  await screenshot(page, 'phone-message');
  await page.locator('button[aria-label="Back to the list"]').click();
  await rowOf(page, first).waitFor();
}

// ---- the queue page -------------------------------------------------------------------------

async function queueScenario(page) {
  await step('open the queue page', () => openQueue(page));
  await step('relayed mail appears in the queue without a reload', () => queued(page));
  await step('the failed attempt shows its attempts and DNS error', () => deferred(page));
  await step('Hold changes the state to held', () => queueCommand(page, 'hold', 'held'));
  await step('Release queues it again', () => queueCommand(page, 'release', 'queued'));
  await step('the message link opens the message', () => queueLink(page));
  await step('phone-sized queue page', () => queuePhone(page));
  await step('Delete removes it from the queue', () => queueDelete(page));
  if (pageErrors.length) fail(`the page threw: ${pageErrors.join('; ')}`);
}

function queueRow(page) {
  return page.locator('#queue-rows .queue-row', { hasText: relayed.to });
}

async function openQueue(page) {
  await page.goto(`${config.http}/#/queue`);
  await page.locator('#live.connected').waitFor({ timeout: STEP_TIMEOUT_MS });
  if (!(await page.locator('#queue-pane').isVisible())) fail('the queue page is not shown at #/queue');
  if (await page.locator('#list-pane').isVisible()) fail('the message list should give way to the queue page');
  await expectText(page.locator('#queue-empty'), 'The outbound queue is empty');
  await page.evaluate(() => {
    window.ternE2eNoReload = true;
  });
  await screenshot(page, 'queue-empty');
}

async function queued(page) {
  const id = await sendMail(plainMail(relayed), { from: 'app@e2e.test', to: relayed.to });
  relayed.id = id;
  const row = queueRow(page);
  await row.waitFor({ timeout: STEP_TIMEOUT_MS });
  if (!(await page.evaluate(() => window.ternE2eNoReload === true))) fail('the page reloaded');
  await expectText(row.locator('.queue-message'), id);
  await expectText(page.locator('#queue-count'), '1');
  console.log(`e2e:   queued as ${id}`);
}

async function deferred(page) {
  const row = queueRow(page);
  // The scheduler tries at once; the DNS lookup fails and the row updates live.
  await expectText(row.locator('.queue-error-text'), 'DNS');
  const entry = (await fetchJson('/api/v1/queue')).Entries.find((item) => item.Recipient === relayed.to);
  if (!entry?.LastError) fail(`the server has no error for the entry: ${JSON.stringify(entry)}`);
  await expectText(row.locator('.queue-error-text'), entry.LastError);
  if (!entry.LastError.includes('remote.example')) fail(`the error does not name the domain: ${entry.LastError}`);
  const attempts = Number(await row.locator('.queue-attempts').textContent());
  if (!(attempts >= 1)) fail(`the row shows ${attempts} attempts after a failed attempt`);
  await expectText(row.locator('.state-badge'), 'queued');
  await expectText(row.locator('.queue-next'), /^in \d/);
  console.log(`e2e:   ${attempts} attempt(s), last error: ${entry.LastError}`);
  await screenshot(page, 'queue-deferred');
}

async function queueCommand(page, command, state) {
  const row = queueRow(page);
  await row.locator(`button[data-command="${command}"]`).click();
  await waitFor(async () => (await row.locator('.state-badge').textContent()) === state, `the state to become ${state}`);
  await expectText(page.locator('#toasts'), command === 'hold' ? 'held' : 'released');
  const entry = (await fetchJson('/api/v1/queue')).Entries.find((item) => item.Recipient === relayed.to);
  if (entry?.State !== state) fail(`the server says ${entry?.State}, the page ${state}`);
  if (state === 'held') {
    await expectText(row.locator('.queue-next'), 'on hold');
    if (await row.locator('button[data-command="hold"]').count()) fail('a held row still offers Hold');
  }
  await screenshot(page, `queue-${state}`);
}

async function queueLink(page) {
  // The table re-renders on every queue event; a click that lands on a row being replaced
  // is lost, as it would be for a person, who clicks again.
  await queueRow(page).locator('.queue-message a').click();
  if (!(await page.locator('#queue-pane').isHidden())) {
    await page.waitForTimeout(1000);
    if (await page.locator('#queue-pane').isVisible()) await queueRow(page).locator('.queue-message a').click();
  }
  await expectText(page.locator('.message-subject'), relayed.subject);
  if (await page.locator('#queue-pane').isVisible()) fail('the queue page should give way to the message');
  await page.locator('#queue-link').click();
  await queueRow(page).waitFor();
  if (!page.url().endsWith('#/queue')) fail(`the queue link leads to ${page.url()}`);
}

async function queuePhone(page) {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300); // the inboxes drawer slides out of view
  const row = queueRow(page);
  for (const part of ['.queue-recipient', '.queue-error-text', 'button[data-command="delete"]']) {
    if (!(await row.locator(part).isVisible())) fail(`on a phone the queue row hides ${part}`);
  }
  const overflow = await page.locator('#queue-pane').evaluate((pane) => pane.scrollWidth - pane.clientWidth);
  if (overflow > 0) fail(`on a phone the queue page scrolls sideways by ${overflow}px`);
  await screenshot(page, 'queue-phone');
  await page.setViewportSize({ width: 1360, height: 860 });
}

async function queueDelete(page) {
  await queueRow(page).locator('button[data-command="delete"]').click();
  await page.locator('#confirm[open]').waitFor();
  await page.locator('#confirm-ok').click();
  await queueRow(page).waitFor({ state: 'detached', timeout: STEP_TIMEOUT_MS });
  await expectText(page.locator('#queue-empty'), 'The outbound queue is empty');
  const left = await fetchJson('/api/v1/queue');
  if (left.Total !== 0) fail(`the server still has queue entries: ${JSON.stringify(left)}`);
  await screenshot(page, 'queue-deleted');
}

// ---- active content -------------------------------------------------------------------------

/** What every script of the active-content mail does when it runs: a line the driver hears. */
const RAN = 'tern-e2e-script-ran';
const SCRIPT = `<script>console.log('${RAN} ' + location.pathname); window.ran = 1;</script>`;
const XHTML = `<html xmlns="http://www.w3.org/1999/xhtml"><body><p>xhtml</p>${SCRIPT}</body></html>`;
/** A one-page PDF that says "Hello PDF". */
const PDF = [
  '%PDF-1.1',
  '1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj',
  '2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj',
  '3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj',
  'trailer<</Root 1 0 R>>',
  '%%EOF',
].join('\r\n');
/** [Content-Type, file name, body, shown inline?]: the parts of the active-content mail. */
const ACTIVE_PARTS = [
  ['application/foo+xml', 'a.xml', XHTML, false],
  ['application/rss+xml', 'feed.rss', XHTML, false],
  ['application/vnd.wap.xhtml+xml', 'wap.xhtml', XHTML, false],
  ['text/xml', 'doc.xml', XHTML, false],
  ['image/svg+xml', 'logo.svg', `<svg xmlns="http://www.w3.org/2000/svg">${SCRIPT}</svg>`, false],
  ['text/html', 'page.html', SCRIPT, false],
  ['multipart/x-mixed-replace', 'stream', SCRIPT, false],
  // A browser reads the last type of a list: this one is HTML to Chromium.
  ['text/plain,text/html', 'list.txt', SCRIPT, false],
  ['image/png', 'pixel.png', null, true],
  ['application/pdf', 'doc.pdf', PDF, true],
  ['text/plain', 'notes.txt', SCRIPT, true],
];

async function activeContentScenario(page) {
  const ran = [];
  page.on('console', (message) => {
    if (message.text().startsWith(RAN)) ran.push(message.text());
  });
  const mail = { token: `numbat${run}`, subject: `Active content numbat${run}` };
  let message;
  await step('a mail with active parts arrives', async () => {
    const id = await sendMail(activeContentMail(mail));
    message = await fetchJson(`/api/v1/message/${id}`);
  });
  await step('no part runs script when opened as a page', async () => {
    const parts = [...(message.Attachments || []), ...(message.Inline || [])];
    for (const [type, name, , inline] of ACTIVE_PARTS) {
      const part = parts.find((item) => item.FileName === name);
      if (!part) fail(`the part ${name} (${type}) is not listed`);
      const shown = await openAsPage(page, `/api/v1/message/${message.ID}/part/${part.PartID}`);
      if (shown && (await page.evaluate(() => window.ran))) fail(`${type} ran its script`);
      if (shown !== inline) fail(`${type} was ${shown ? 'displayed' : 'downloaded'}`);
      console.log(`e2e:   ${type}: ${shown ? 'displayed' : 'downloaded'}`);
      if (shown) await screenshot(page, `part-${name}`);
    }
    if (ran.length) fail(`scripts ran: ${ran.join('; ')}`);
  });
  await step('the HTML view on its own runs nothing and shows its cid image', async () => {
    if (!(await openAsPage(page, `/view/${message.ID}.html`))) fail('the HTML view downloaded');
    await expectText(page.locator('h1'), mail.token);
    const width = await page.locator('img').evaluate((img) => img.naturalWidth);
    if (width !== 2) fail(`the cid image did not load (naturalWidth ${width})`);
    if (await page.evaluate(() => window.ran)) fail('the HTML view ran its script');
    await screenshot(page, 'html-view-alone');
    if (ran.length) fail(`scripts ran: ${ran.join('; ')}`);
  });
}

/** Navigates the tab to `pathAndQuery`; true when it displayed a page, false when it downloaded. */
async function openAsPage(page, pathAndQuery) {
  try {
    await page.goto(`${config.http}${pathAndQuery}`, { waitUntil: 'load' });
    return true;
  } catch (error) {
    if (/Download is starting/.test(error.message)) return false;
    throw error;
  }
}

function activeContentMail(mail) {
  const parts = ACTIVE_PARTS.map(([type, name, body]) => [
    '--active-b',
    `Content-Type: ${type}`,
    `Content-Disposition: inline; filename="${name}"`,
    ...(body === null ? ['Content-Transfer-Encoding: base64', '', PIXEL_PNG.toString('base64')] : ['', body]),
  ]);
  return [
    ...headers(mail, 'multipart/mixed; boundary="active-b"'),
    '',
    '--active-b',
    'Content-Type: text/html; charset=utf-8',
    '',
    `<html><body><h1>Hello ${mail.token}</h1><img src="cid:pixel@e2e.test" alt="pixel">${SCRIPT}</body></html>`,
    ...parts.flat(),
    '--active-b',
    'Content-Type: image/png',
    'Content-ID: <pixel@e2e.test>',
    'Content-Transfer-Encoding: base64',
    '',
    PIXEL_PNG.toString('base64'),
    '--active-b--',
    '',
  ].join('\r\n');
}

// ---- authentication -------------------------------------------------------------------------

/** Mail from a domain whose SPF and DMARC pass from loopback, and from one whose both fail. */
const genuine = { token: `kiwi${run}`, subject: `Genuine kiwi${run}`, from: 'ann@spf.test' };
const signed = { token: `tui${run}`, subject: `Signed tui${run}`, from: 'bob@signed.test' };
const forged = { token: `kea${run}`, subject: `Forged kea${run}`, from: 'mallory@forged.test' };
/** A DKIM selector that is markup (browser.rs publishes no key for it): the tab shows it as text. */
const HOSTILE_SELECTOR = 'x<b>hostile</b>';
const unchecked = { token: `weka${run}`, subject: `Unchecked weka${run}`, from: 'sender@e2e.test' };

async function authenticationScenario(page) {
  const fetched = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/authentication')) fetched.push(request.url());
  });
  await step('open the UI of the verifying catcher', () => openUi(page));
  await step('a genuine mail: SPF and DMARC pass', async () => {
    await arrives(page, genuine, authMail(genuine), { from: genuine.from });
    await rowOf(page, genuine).locator('a').click();
    await expectText(page.locator('.message-subject'), genuine.subject);
    if (fetched.length) fail(`the results were fetched before the tab opened: ${fetched.join(', ')}`);
    await page.locator('#tab-authentication').click();
    await expectText(page.locator('.auth-summary'), 'DMARC pass for spf.test');
    await expectVerdict(page, 'spf', 'pass', 'ann@spf.test');
    await expectVerdict(page, 'dmarc', 'pass', 'spf.test');
    await expectText(authRow(page, 'dmarc', 'spf.test'), 'reject');
    await expectVerdict(page, 'spf', 'none', 'e2e.test', 'neutral'); // the HELO name has no SPF record
    if (fetched.length !== 1) fail(`opening the tab fetched the results ${fetched.length} times`);
    await screenshot(page, 'auth-pass');
  });
  await step('a DKIM-signed mail: DKIM and DMARC pass', async () => {
    await arrives(page, signed, dkimSign(authMail(signed), config.dkimKey), { from: signed.from });
    await rowOf(page, signed).locator('a').click();
    await expectText(page.locator('.message-subject'), signed.subject);
    // The tab chosen last is the one the next message opens on.
    await expectText(page.locator('.auth-summary'), 'DMARC pass for signed.test');
    await expectVerdict(page, 'dkim', 'pass', 'signed.test');
    await expectText(authRow(page, 'dkim', 'signed.test'), DKIM_SELECTOR);
    await expectVerdict(page, 'spf', 'none', 'bob@signed.test', 'neutral');
    await screenshot(page, 'auth-dkim');
  });
  await step('a forged mail: SPF and DMARC fail, tagged junk', async () => {
    await arrives(page, forged, dkimSign(authMail(forged), config.dkimKey, HOSTILE_SELECTOR), { from: forged.from });
    await rowOf(page, forged).locator('a').click();
    await expectText(page.locator('.message-subject'), forged.subject);
    await expectText(page.locator('.message-header .tags'), 'junk');
    await expectText(page.locator('.auth-summary'), 'DMARC fail for forged.test');
    await expectVerdict(page, 'spf', 'fail', 'mallory@forged.test');
    await expectText(authRow(page, 'dkim', 'forged.test'), HOSTILE_SELECTOR);
    await expectVerdict(page, 'dmarc', 'fail', 'forged.test');
    if (await page.locator('.authentication b').count()) fail('the selector\'s markup became an element');
    await screenshot(page, 'auth-fail');
  });
  await step('keyboard: the tab is reached with the arrow keys', async () => {
    await page.locator('#tab-text').click();
    await page.keyboard.press('End');
    await expectAttribute(page.locator('#tab-authentication'), 'aria-selected', 'true');
    if (!(await page.locator('#tab-authentication').evaluate((tab) => tab === document.activeElement))) fail('End did not focus the Authentication tab');
    await expectText(page.locator('.auth-summary'), 'DMARC fail for forged.test');
    await page.keyboard.press('ArrowLeft');
    await expectAttribute(page.locator('#tab-envelope'), 'aria-selected', 'true');
    await page.keyboard.press('ArrowRight');
    await expectAttribute(page.locator('#tab-authentication'), 'aria-selected', 'true');
  });
  await step('a catcher that does not verify says "Not checked"', async () => {
    await page.goto(`${config.uncheckedHttp}/`);
    await page.locator('#live.connected').waitFor({ timeout: STEP_TIMEOUT_MS });
    await sendMail(authMail(unchecked), { smtp: config.uncheckedSmtp });
    await rowOf(page, unchecked).locator('a').click();
    await expectText(page.locator('.message-subject'), unchecked.subject);
    await page.locator('#tab-authentication').click();
    await expectText(page.locator('.auth-summary'), 'Not checked — set [auth] verify = true (catcher) to check SPF, DKIM and DMARC');
    if (await page.locator('.auth-row').count()) fail('an unchecked message shows result rows');
    await screenshot(page, 'auth-unchecked');
  });
  if (pageErrors.length) fail(`the page threw: ${pageErrors.join('; ')}`);
}

/** The result row of `method` that names `identity` (SPF has one for HELO and one for MAIL FROM). */
function authRow(page, method, identity) {
  return page.locator(`.auth-row[data-method="${method}"]`, { has: page.locator('.auth-identity', { hasText: identity }) });
}

/** The `method` row for `identity` shows `result` in a badge of colour class `badge`. */
async function expectVerdict(page, method, result, identity, badge = result) {
  const row = authRow(page, method, identity);
  await expectText(row.locator('.verdict'), result);
  await expectClass(row.locator('.verdict'), `verdict-${badge}`, true);
  await expectText(row.locator('.auth-identity'), identity);
}

async function expectAttribute(locator, name, value) {
  await waitFor(async () => (await locator.getAttribute(name)) === value, `${locator} to have ${name}=${value}`);
}

/** The selector of the key `--dkim-key` holds (browser.rs publishes it in `auth.records`). */
const DKIM_SELECTOR = 'e2e';

/**
 * `message` with a DKIM-Signature (RFC 6376, ed25519-sha256 of RFC 8463, relaxed/relaxed) by
 * the key in `keyFile` for the domain of its From: address, naming `selector`.
 */
function dkimSign(message, keyFile, selector = DKIM_SELECTOR) {
  const split = message.indexOf('\r\n\r\n');
  const fields = message.slice(0, split).split(/\r\n(?![ \t])/);
  const body = message.slice(split + 4).split('\r\n').map((line) => line.replace(/[ \t]+/g, ' ').replace(/ $/, ''));
  const canonicalBody = `${body.join('\r\n').replace(/(\r\n)+$/, '')}\r\n`;
  const names = ['from', 'to', 'subject', 'date', 'message-id'];
  const relaxed = (field) => {
    const colon = field.indexOf(':');
    return `${field.slice(0, colon).trim().toLowerCase()}:${field.slice(colon + 1).replace(/\r\n/g, '').replace(/[ \t]+/g, ' ').trim()}`;
  };
  const signedFields = names.map((name) => fields.find((field) => field.toLowerCase().startsWith(`${name}:`)));
  const domain = /@([^>\s]+)/.exec(signedFields[0])[1];
  const bodyHash = crypto.createHash('sha256').update(canonicalBody).digest('base64');
  const field = `DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=${domain}; s=${selector}; h=${names.join(':')}; bh=${bodyHash}; b=`;
  const signedData = [...signedFields.map((item) => `${relaxed(item)}\r\n`), relaxed(field)].join('');
  // Ed25519 signs the SHA-256 hash of the header data (RFC 8463 §3).
  const hash = crypto.createHash('sha256').update(signedData).digest();
  const signature = crypto.sign(null, hash, ed25519Key(keyFile)).toString('base64');
  return `${field}${signature}\r\n${message}`;
}

/**
 * The Ed25519 key of a `tern dkim generate` file. It is PKCS#8 v2 (RFC 5958, with the public
 * key), which OpenSSL 3 does not read from ring's encoding: rewrap its 32-byte seed as v1.
 */
function ed25519Key(keyFile) {
  const der = Buffer.from(readFileSync(keyFile, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const v1Prefix = Buffer.from('302e020100300506032b657004220420', 'hex');
  return crypto.createPrivateKey({ key: Buffer.concat([v1Prefix, der.subarray(16, 48)]), format: 'der', type: 'pkcs8' });
}

function authMail(mail) {
  return [
    `From: <${mail.from}>`,
    'To: Inbox <inbox@e2e.test>',
    `Subject: ${mail.subject}`,
    `Message-ID: <${mail.token}@e2e.test>`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Checked or not, ${mail.token}.`,
    '',
  ].join('\r\n');
}

// ---- mail -----------------------------------------------------------------------------------

function mailWithAttachments(mail) {
  const html = [
    '<!doctype html><html><body style="font-family: sans-serif">',
    `<h1>Hello ${mail.token}</h1>`,
    '<p>This HTML part carries a remote image that must stay blocked.</p>',
    `<img src="${REMOTE_IMAGE}" alt="remote" width="40" height="40">`,
    '</body></html>',
  ].join('\r\n');
  return [
    ...headers(mail, 'multipart/mixed; boundary="mixed-b"'),
    '',
    '--mixed-b',
    'Content-Type: multipart/alternative; boundary="alt-b"',
    '',
    '--alt-b',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `The plain text ${mail.token} part.`,
    '--alt-b',
    'Content-Type: text/html; charset=utf-8',
    '',
    html,
    '--alt-b--',
    '--mixed-b',
    'Content-Type: image/png; name="pixel.png"',
    'Content-Disposition: attachment; filename="pixel.png"',
    'Content-Transfer-Encoding: base64',
    '',
    PIXEL_PNG.toString('base64'),
    '--mixed-b',
    'Content-Type: text/csv; name="items.csv"',
    'Content-Disposition: attachment; filename="items.csv"',
    '',
    CSV.trimEnd(),
    '--mixed-b--',
    '',
  ].join('\r\n');
}

function plainMail(mail) {
  return [...headers(mail, 'text/plain; charset=utf-8'), '', `A second message, ${mail.token}.`, ''].join('\r\n');
}

function headers(mail, contentType) {
  return [
    'From: "E2E Sender" <sender@e2e.test>',
    'To: Inbox <inbox@e2e.test>',
    `Subject: ${mail.subject}`,
    `Message-ID: <${mail.token}@e2e.test>`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    'MIME-Version: 1.0',
    `Content-Type: ${contentType}`,
  ];
}

/** EHLO, MAIL, RCPT, DATA, QUIT over a plain socket (to `smtp`); returns the queue id from the 250 reply. */
async function sendMail(data, { from = 'sender@e2e.test', to = 'inbox@e2e.test', smtp = config.smtp } = {}) {
  const [host, port] = splitHostPort(smtp);
  const socket = net.connect({ host, port });
  socket.setTimeout(STEP_TIMEOUT_MS, () => socket.destroy(new Error('SMTP timeout')));
  const replies = replyReader(socket);
  const command = async (line, code) => {
    if (line !== null) socket.write(`${line}\r\n`);
    const reply = await replies.next();
    if (!reply.startsWith(String(code))) fail(`SMTP ${line ?? 'banner'} → ${reply.trim()} (wanted ${code})`);
    return reply;
  };
  try {
    await command(null, 220);
    await command('EHLO e2e.test', 250);
    await command(`MAIL FROM:<${from}>`, 250);
    await command(`RCPT TO:<${to}>`, 250);
    await command('DATA', 354);
    const stuffed = data.replace(/^\./gm, '..');
    const queued = await command(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.`, 250);
    await command('QUIT', 221);
    return queued.trim().split(' ').pop();
  } finally {
    socket.destroy();
  }
}

/** Complete SMTP replies (multi-line ones joined), one per `next()`. */
function replyReader(socket) {
  let buffer = '';
  let lines = [];
  const ready = [];
  const waiting = [];
  let failure = null;
  const settle = () => {
    while (ready.length && waiting.length) waiting.shift().resolve(ready.shift());
    while (failure && waiting.length) waiting.shift().reject(failure);
  };
  socket.on('data', (chunk) => {
    buffer += chunk.toString('utf8');
    let end;
    while ((end = buffer.indexOf('\r\n')) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      lines.push(line);
      if (line.length < 4 || line[3] !== '-') {
        ready.push(lines.join('\n'));
        lines = [];
      }
    }
    settle();
  });
  const stop = (error) => {
    failure = failure ?? error ?? new Error('SMTP connection closed');
    settle();
  };
  socket.on('error', stop);
  socket.on('close', () => stop());
  return { next: () => new Promise((resolve, reject) => { waiting.push({ resolve, reject }); settle(); }) };
}

function splitHostPort(address) {
  const index = address.lastIndexOf(':');
  return [address.slice(0, index).replace(/^\[|\]$/g, ''), Number(address.slice(index + 1))];
}

// ---- browser and helpers --------------------------------------------------------------------

/** What `insight.mjs`'s scenarios use of this file. */
function insightHelpers() {
  return { config, run, timeout: STEP_TIMEOUT_MS, step, screenshot, sendMail, plainMail, headers, rowOf, expectText, waitFor, fetchJson, fail };
}

async function launch(profile) {
  return launchChromium(config.chromium, profile, {
    viewport: { width: 1360, height: 860 },
    acceptDownloads: true,
  });
}

/** Records page errors and every request for the remote image, with how it failed. */
function watch(page) {
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('request', (request) => {
    if (request.url() === REMOTE_IMAGE) remoteRequests.push({ url: request.url(), failure: null, request });
  });
  page.on('requestfailed', (request) => {
    const entry = remoteRequests.find((item) => item.request === request);
    if (entry) entry.failure = request.failure()?.errorText ?? 'failed';
  });
  page.on('requestfinished', (request) => {
    const entry = remoteRequests.find((item) => item.request === request);
    if (entry) entry.failure = 'loaded';
  });
}

async function step(name, fn) {
  const started = Date.now();
  await fn();
  console.log(`e2e: ok  ${name} (${Date.now() - started} ms)`);
}

async function screenshot(page, name) {
  shot += 1;
  const file = path.join(config.out, `${String(shot).padStart(2, '0')}-${name.replace(/[^a-z0-9-]+/gi, '-')}.png`);
  await page.screenshot({ path: file });
}

function rowOf(page, mail) {
  return page.locator('#message-list .row', { hasText: mail.subject });
}

async function expectText(locator, expected) {
  await waitFor(async () => {
    const text = await locator.first().textContent({ timeout: 1000 }).catch(() => null);
    if (text === null) return false;
    return expected instanceof RegExp ? expected.test(text) : text.includes(expected);
  }, `${locator} to contain ${expected}`);
}

async function expectClass(locator, name, present) {
  await waitFor(
    () => locator.evaluate((element, name) => element.classList.contains(name), name).then((has) => has === present),
    `${locator} ${present ? 'to have' : 'not to have'} class ${name}`,
  );
}

/** Polls `condition` until it is true, failing with `what` after the step timeout. */
async function waitFor(condition, what) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let lastError = null;
  while (Date.now() < deadline) {
    try {
      if (await condition()) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  fail(`timed out waiting for ${what}${lastError ? ` (last error: ${lastError.message})` : ''}`);
}

async function fetchJson(pathAndQuery) {
  const response = await fetch(`${config.http}${pathAndQuery}`);
  if (!response.ok) fail(`GET ${pathAndQuery} → ${response.status} ${await response.text()}`);
  return response.json();
}

function fail(message) {
  throw new CheckFailed(message);
}

function readConfig() {
  const { values } = parseArgs({
    options: {
      http: { type: 'string' },
      smtp: { type: 'string' },
      out: { type: 'string' },
      relay: { type: 'string', default: '' },
      scenario: { type: 'string', default: 'mailbox' },
      'unchecked-http': { type: 'string', default: '' },
      'unchecked-smtp': { type: 'string', default: '' },
      'dkim-key': { type: 'string', default: '' },
      'catcher-http': { type: 'string', default: '' },
      'catcher-smtp': { type: 'string', default: '' },
    },
  });
  const http = values.http ?? process.env.TERN_HTTP;
  const smtp = values.smtp ?? process.env.TERN_SMTP;
  const out = values.out ?? process.env.TERN_SCREENSHOTS ?? path.join(os.tmpdir(), 'tern-e2e-screenshots');
  const scenarios = ['mailbox', 'queue', 'active-content', 'authentication', 'views', 'html-check', 'dashboard'];
  const uncheckedMissing =
    (values.scenario === 'authentication' && !(values['unchecked-http'] && values['unchecked-smtp'] && values['dkim-key'])) ||
    (values.scenario === 'views' && !(values['unchecked-http'] && values['unchecked-smtp']));
  if (!http || !smtp || !scenarios.includes(values.scenario) || uncheckedMissing) {
    console.error(
      'usage: node e2e.mjs [--scenario mailbox|queue|active-content|authentication|views] --http http://127.0.0.1:8025 --smtp 127.0.0.1:1025 [--relay HOST:PORT] [--out DIR] [--unchecked-http URL --unchecked-smtp HOST:PORT --dkim-key FILE]',
    );
    process.exit(2);
  }
  return {
    http: http.replace(/\/$/, ''),
    smtp,
    out,
    relay: values.relay,
    scenario: values.scenario,
    uncheckedHttp: values['unchecked-http'].replace(/\/$/, ''),
    uncheckedSmtp: values['unchecked-smtp'],
    dkimKey: values['dkim-key'],
    catcherHttp: values['catcher-http'].replace(/\/$/, ''),
    catcherSmtp: values['catcher-smtp'],
    chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  };
}
