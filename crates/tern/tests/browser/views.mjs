/**
 * The `views` scenario of e2e.mjs: the message pane's Links, Codes and Envelope tabs, tags and
 * the colour theme, against a catcher with the link check on (`[http] link_check = true`,
 * `link_check_private_addresses = true`) and, for "link check off", a second catcher with the
 * defaults (`--unchecked-http`, `--unchecked-smtp`).
 *
 * It starts a web site of its own on loopback (`/ok` answers 200, `/missing` 404) and mails
 * links to it and to a loopback port where nothing listens, then checks what a person sees:
 * the Links tab lists them and "Check links" marks 200 OK, 404 and "connection refused"; the
 * Codes tab's Copy puts the code on the clipboard (Clipboard API, with permission granted) and,
 * without the Clipboard API, through the selection fallback; a tag is added and removed in the
 * header, the sidebar's tag runs the `tag:` search, and a message tagged elsewhere joins that
 * list without a reload; the Envelope tab shows the session; the dark scheme follows the
 * system (emulated) while the mail's frame stays black on white as the mail was written; the theme button's choice
 * outlives a reload; a catcher without the link check offers no button.
 */

import http from 'node:http';
import net from 'node:net';

/** Runs the scenario; `t` holds e2e.mjs's helpers and settings. */
export async function viewsScenario(page, t) {
  const { step } = t;
  const site = await startSite();
  const refused = await closedPortUrl();
  const run = Math.random().toString(36).slice(2, 8);
  const linked = { token: `kiwi${run}`, subject: `Confirm your account kiwi${run}`, code: '482913' };
  const other = { token: `emu${run}`, subject: `Weekly digest emu${run}` };
  const links = [`${site.url}/ok`, `${site.url}/missing`, refused];
  try {
    await step('open the UI', () => t.openUi(page));
    await step('mails with links, a code and a tag arrive', async () => {
      await t.arrives(page, other, t.plainMail(other));
      await t.arrives(page, linked, linkedMail(linked, links, t));
    });
    await step('the Links tab lists the links and checks them', () => checksLinks(page, t, linked, links));
    await step('the Codes tab copies the code (Clipboard API)', () => copiesCode(page, t, linked));
    await step('Copy falls back to the selection without the Clipboard API', () => copiesWithoutClipboardApi(page, t, linked));
    await step('a tag is added and removed in the header', () => editsTags(page, t, linked));
    await step('the sidebar tag filters the list, which updates live', () => filtersByTag(page, t, linked, other));
    await step('the Envelope tab shows the session and transaction', () => showsEnvelope(page, t, linked));
    await step('dark scheme follows the system; the mail keeps its colours', () => darkScheme(page, t, linked));
    await step('the theme button overrides the system and is remembered', () => themeToggle(page, t));
    await step('phone-sized Links and Codes tabs', () => phone(page, t, linked));
    await step('a catcher without the link check offers no button', () => linkCheckOff(page, t, linked));
  } finally {
    site.server.close();
  }
  if (t.pageErrors.length) t.fail(`the page threw: ${t.pageErrors.join('; ')}`);
  if (!site.seen.some((line) => line.startsWith('HEAD /ok'))) t.fail(`the site saw no HEAD /ok: ${site.seen.join(', ')}`);
}

// ---- steps ----------------------------------------------------------------------------------

/** Opens `mail` from the whole list, unless it is the message open now. */
async function openLinked(page, t, mail) {
  const subject = page.locator('#message:not([hidden]) .message-subject');
  if ((await subject.count()) && (await subject.textContent()) === mail.subject) return;
  await page.locator('#search').fill('');
  await page.locator('#search').press('Enter');
  await t.rowOf(page, mail).locator('a').click();
  await t.expectText(page.locator('.message-subject'), mail.subject);
}

async function checksLinks(page, t, mail, links) {
  await openLinked(page, t, mail);
  await page.locator('#tab-links').click();
  const rows = page.locator('.link-row');
  await t.waitFor(async () => (await rows.count()) === links.length, `${links.length} links listed`);
  for (const [index, url] of links.entries()) await t.expectText(rows.nth(index).locator('.link-url'), url);
  await t.expectText(page.locator('.links-summary'), '3 links');
  await t.screenshot(page, 'links');
  await page.locator('#check-links').click();
  await t.expectText(rows.nth(0).locator('.verdict-pass'), '200 OK');
  await t.expectText(rows.nth(1).locator('.verdict-fail'), '404 Not Found');
  await t.expectText(rows.nth(2).locator('.verdict-fail'), 'connection refused');
  await t.expectText(page.locator('.links-summary'), '2 errors');
  await t.screenshot(page, 'links-checked');
}

async function copiesCode(page, t, mail) {
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: t.config.http });
  await page.locator('#tab-codes').click();
  const card = page.locator('.code-card', { hasText: mail.code });
  await t.expectText(card.locator('.code-value'), mail.code);
  await t.expectText(card.locator('.code-context'), 'verification code');
  await card.locator('.copy-button').click();
  await t.expectText(card.locator('.copy-button'), 'Copied');
  const pasted = await page.evaluate(() => navigator.clipboard.readText());
  if (pasted !== mail.code) t.fail(`the clipboard holds ${JSON.stringify(pasted)}, not the code`);
  await t.screenshot(page, 'codes-copied');
}

async function copiesWithoutClipboardApi(page, t, mail) {
  // A browser without the Clipboard API (or one refusing it): the copy event shows what the
  // selection fallback put on the clipboard.
  await page.evaluate(() => {
    window.ternCopied = null;
    Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined, configurable: true });
    document.addEventListener('copy', () => {
      window.ternCopied = document.getSelection().toString() || document.activeElement?.value?.slice(document.activeElement.selectionStart, document.activeElement.selectionEnd);
    });
  });
  const button = page.locator('.code-card', { hasText: mail.code }).locator('.copy-button');
  await t.waitFor(async () => (await button.textContent()).includes('Copy') && !(await button.textContent()).includes('Copied'), 'the Copy button to reset');
  await button.click();
  await t.expectText(button, 'Copied');
  const copied = await page.evaluate(() => window.ternCopied);
  if (copied !== mail.code) t.fail(`the fallback copied ${JSON.stringify(copied)}, not the code`);
  if (await page.locator('.copy-buffer').count()) t.fail('the fallback left its field in the page');
  // Back to the real Clipboard API for the rest of the run.
  await page.reload();
  await page.locator('#live.connected').waitFor();
  await page.evaluate(() => {
    window.ternE2eNoReload = true;
  });
}

async function editsTags(page, t, mail) {
  await t.expectText(page.locator('.message-header .tag[data-tag="signup"]'), 'signup');
  await page.locator('.tag-add').click();
  await page.locator('.tag-input').fill('vip');
  await page.locator('.tag-input').press('Enter');
  await t.expectText(page.locator('.message-header .tag[data-tag="vip"]'), 'vip');
  await page.locator('button[aria-label="Remove tag signup"]').click();
  await page.locator('.message-header .tag[data-tag="signup"]').waitFor({ state: 'detached' });
  const id = currentId(page);
  const stored = (await t.fetchJson(`/api/v1/message/${id}`)).Tags;
  if (JSON.stringify(stored) !== '["vip"]') t.fail(`the server has tags ${JSON.stringify(stored)}, not ["vip"]`);
  // The list row and the sidebar follow through the server's tags event.
  await t.expectText(t.rowOf(page, mail).locator('.row-tags'), 'vip');
  await t.expectText(page.locator('#tag-list'), 'vip');
  await t.screenshot(page, 'tags-edited');
}

async function filtersByTag(page, t, mail, other) {
  await page.locator('#tag-list a', { hasText: 'vip' }).click();
  await t.waitFor(async () => (await page.locator('#search').inputValue()) === 'tag:vip', 'the search to read tag:vip');
  await t.waitFor(async () => (await page.locator('.row').count()) === 1, 'the list to narrow to the tagged message');
  await t.rowOf(page, mail).waitFor();
  await t.expectClass(page.locator('#tag-list a', { hasText: 'vip' }), 'active', true);
  // Tagged elsewhere (another page, a script): the filtered list gains it without a reload.
  const otherId = (await t.fetchJson(`/api/v1/search?query=${encodeURIComponent(other.token)}`)).messages[0].ID;
  const response = await fetch(`${t.config.http}/api/v1/tags`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ IDs: [otherId], Tags: ['vip'] }),
  });
  if (!response.ok) t.fail(`PUT /api/v1/tags → ${response.status}`);
  await t.rowOf(page, other).waitFor();
  if (!(await page.evaluate(() => window.ternE2eNoReload === true))) t.fail('the page reloaded');
  await t.screenshot(page, 'tag-filter');
  // A tag in the open message's header runs the same search.
  await openLinked(page, t, mail);
  await page.locator('.message-header .tag-link', { hasText: 'vip' }).click();
  await t.waitFor(async () => (await page.locator('#search').inputValue()) === 'tag:vip', 'the header tag to search tag:vip');
  await t.waitFor(async () => (await page.locator('.row').count()) === 2, 'both tagged messages listed');
}

async function showsEnvelope(page, t, mail) {
  await openLinked(page, t, mail);
  await page.locator('#tab-envelope').click();
  const envelope = page.locator('.envelope');
  await t.expectText(envelope, 'e2e.test'); // HELO
  await t.expectText(envelope, '<sender@e2e.test>');
  await t.expectText(envelope.locator('.envelope-rcpt'), '<inbox@e2e.test>');
  await t.expectText(envelope.locator('.envelope-rcpt'), 'kept by the catcher');
  await t.expectText(envelope, '127.0.0.1');
  await t.expectText(envelope, 'None (plain text)');
  await t.expectText(envelope, 'not a transcript');
  await t.screenshot(page, 'envelope');
}

async function darkScheme(page, t, mail) {
  await page.emulateMedia({ colorScheme: 'dark' });
  await t.waitFor(async () => isDark(await background(page, 'html')), 'a dark page background');
  await page.locator('#tab-html').click();
  const frame = page.locator('iframe.html-frame');
  await frame.waitFor();
  const heading = page.frameLocator('iframe.html-frame').locator('h1');
  await t.expectText(heading, mail.token);
  // The mail sets no colours: in the dark page it must still be black on white, as written.
  const colour = await heading.evaluate((element) => getComputedStyle(element).color);
  if (colour !== 'rgb(0, 0, 0)') t.fail(`the mail's heading is ${colour} in the dark page, not black`);
  const corner = await cornerPixel(page, frame);
  if (corner.join(',') !== '255,255,255,255') t.fail(`the mail's background is rgba(${corner}) in the dark page, not white`);
  await t.screenshot(page, 'dark-html');
  await page.locator('#tab-links').click();
  await page.locator('#check-links').click();
  await t.expectText(page.locator('.links-summary'), '2 errors');
  await t.screenshot(page, 'dark-links');
  await page.locator('#tab-codes').click();
  await t.screenshot(page, 'dark-codes');
}

async function themeToggle(page, t) {
  // The system is dark (emulated); the button moves system → light → dark → system.
  const button = page.locator('#theme-button');
  await button.click();
  await t.waitFor(async () => !isDark(await background(page, 'html')), 'the light theme despite a dark system');
  await t.screenshot(page, 'theme-light-forced');
  await page.reload();
  await page.locator('#live.connected').waitFor();
  if (isDark(await background(page, 'html'))) t.fail('the light choice did not outlive a reload');
  if ((await button.getAttribute('data-theme')) !== 'light') t.fail('the button does not show the light choice');
  await page.emulateMedia({ colorScheme: 'light' });
  await button.click();
  await t.waitFor(async () => isDark(await background(page, 'html')), 'the dark theme despite a light system');
  await t.screenshot(page, 'theme-dark-forced');
  await button.click();
  await t.waitFor(async () => !isDark(await background(page, 'html')), 'the system (light) scheme again');
  if (await page.evaluate(() => localStorage.getItem('tern-theme')) !== null) t.fail('"system" should forget the stored choice');
  await page.evaluate(() => {
    window.ternE2eNoReload = true;
  });
}

async function phone(page, t, mail) {
  await page.setViewportSize({ width: 390, height: 844 });
  // The inboxes slide away into a drawer; shoot once they are gone.
  await t.waitFor(() => page.locator('#sidebar').evaluate((bar) => bar.getBoundingClientRect().right <= 0), 'the drawer to close');
  await openLinked(page, t, mail);
  await page.locator('#tab-links').click();
  await page.locator('.link-row').first().waitFor();
  await t.screenshot(page, 'phone-links');
  await page.locator('#tab-codes').click();
  await page.locator('.code-card').waitFor();
  await t.screenshot(page, 'phone-codes');
  await page.setViewportSize({ width: 1360, height: 860 });
}

async function linkCheckOff(page, t, mail) {
  const plain = { token: `off${mail.token}`, subject: `Unchecked links ${mail.token}` };
  await page.goto(`${t.config.uncheckedHttp}/`);
  await page.locator('#live.connected').waitFor();
  await t.sendMail(linkedMail(plain, ['http://127.0.0.1:9/x'], t), { smtp: t.config.uncheckedSmtp });
  await t.rowOf(page, plain).locator('a').click();
  await page.locator('#tab-links').click();
  await t.expectText(page.locator('.links-off'), 'set [http] link_check = true');
  if (await page.locator('#check-links').count()) t.fail('a "Check links" button is offered where the check is off');
  await t.screenshot(page, 'links-check-off');
}

// ---- helpers --------------------------------------------------------------------------------

function linkedMail(mail, links, t) {
  const html = [
    '<!doctype html><html><body>',
    `<h1>Welcome ${mail.token}</h1>`,
    ...links.map((url, index) => `<p><a href="${url}">link ${index + 1}</a></p>`),
    '</body></html>',
  ].join('\r\n');
  return [
    ...t.headers(mail, 'multipart/alternative; boundary="alt-v"'),
    'X-Tags: signup',
    '',
    '--alt-v',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Welcome ${mail.token}. Your verification code is ${mail.code ?? '000000'}.`,
    '--alt-v',
    'Content-Type: text/html; charset=utf-8',
    '',
    html,
    '--alt-v--',
    '',
  ].join('\r\n');
}

/** A site on loopback: `/ok` 200, `/missing` 404; `seen` records each request line. */
function startSite() {
  const seen = [];
  const server = http.createServer((request, response) => {
    seen.push(`${request.method} ${request.url}`);
    response.writeHead(request.url === '/missing' ? 404 : 200, { 'Content-Type': 'text/plain' });
    response.end(request.method === 'HEAD' ? undefined : 'ok');
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, seen, url: `http://127.0.0.1:${server.address().port}` }));
  });
}

/** A loopback URL where nothing listens (the port was free a moment ago). */
function closedPortUrl() {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(`http://127.0.0.1:${port}/gone`));
    });
  });
}

function currentId(page) {
  const match = decodeURIComponent(new URL(page.url()).hash).match(/^#\/m\/(.+)$/);
  return match ? match[1] : null;
}

/** The colour of a pixel near the bottom right of `element` as drawn (RGBA). */
async function cornerPixel(page, element) {
  const png = (await element.screenshot()).toString('base64');
  return page.evaluate(async (data) => {
    const image = new Image();
    image.src = `data:image/png;base64,${data}`;
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = image.width;
    canvas.height = image.height;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    return [...context.getImageData(image.width - 12, image.height - 12, 1, 1).data];
  }, png);
}

function background(page, selector) {
  return page.locator(selector).evaluate((element) => getComputedStyle(element).backgroundColor);
}

/** True for a colour darker than mid-grey. */
function isDark(rgb) {
  const [r, g, b] = (rgb.match(/\d+/g) || []).map(Number);
  return 0.299 * r + 0.587 * g + 0.114 * b < 128;
}
