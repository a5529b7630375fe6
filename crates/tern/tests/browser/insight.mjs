/**
 * Two scenarios of `e2e.mjs` for the insight views, with its helpers passed in (`t`):
 *
 * `--scenario html-check` (a catcher): a mail whose `<style>` uses flexbox and `position`
 * opens on its HTML tab → the "HTML check" tab shows the server's overall percentages and the
 * flexbox warning, opened, with Outlook's "not supported" chips → choosing the iOS platform
 * recomputes the figures and leaves only iOS clients → a text-only mail has no such tab.
 *
 * `--scenario dashboard` (an MTA whose relayed mail stays queued with a DNS error, and with
 * `--catcher-http` a catcher without a relay): the dashboard at `#/dashboard` → a relayed mail
 * shows up without a reload in "received per minute", the queue by state, the top destinations
 * and, after its failed attempt, the top errors and the deferred outcomes → the catcher's
 * dashboard shows what applies and hides the queue's cards → a phone-sized layout.
 */

/** A mail whose HTML uses features that some clients lack. */
function flexMail(t, mail) {
  const html = [
    '<!DOCTYPE html><html><head><style>',
    '.row { display: flex; gap: 8px } .badge { position: absolute; top: 0 }',
    '</style></head><body>',
    `<div class="row"><h1>Hello ${mail.token}</h1><span class="badge">new</span></div>`,
    '</body></html>',
  ].join('\r\n');
  return [...t.headers(mail, 'text/html; charset=utf-8'), '', html, ''].join('\r\n');
}

export async function htmlCheckScenario(page, t) {
  const mail = { token: `flexbox${t.run}`, subject: `Styled flexbox${t.run}` };
  const text = { token: `textonly${t.run}`, subject: `Text only textonly${t.run}` };
  let id;
  await t.step('open the UI and a styled mail', async () => {
    await page.goto(`${t.config.http}/`);
    await page.locator('#live.connected').waitFor({ timeout: t.timeout });
    id = await t.sendMail(flexMail(t, mail));
    await t.rowOf(page, mail).locator('a').click();
    await t.expectText(page.locator('.message-subject'), mail.subject);
  });
  let report;
  await t.step('the HTML check tab shows the totals and the flexbox warning', async () => {
    await page.locator('#tab-html-check').click();
    await page.locator('.check-summary').waitFor();
    report = await t.fetchJson(`/api/v1/message/${id}/html-check`);
    const shown = await figure(page, 'unsupported');
    const expected = `${Math.round(report.Total.Unsupported * 10) / 10}%`;
    if (shown !== expected) t.fail(`the tab shows ${shown} unsupported, the API says ${expected}`);
    const flex = page.locator('.check-item[data-slug="css-display-flex"]');
    await flex.locator('summary').click();
    await t.expectText(flex.locator('.check-clients'), 'Outlook');
    const outlook = flex.locator('.check-clients tr', { hasText: 'Outlook Windows' }).first();
    if ((await outlook.locator('.support-chip.support-no').count()) === 0) t.fail('Outlook on Windows is not shown as lacking flexbox');
    if ((await page.locator('.check-item').count()) !== report.Warnings.length) t.fail('not every warning is listed');
    await t.screenshot(page, 'html-check');
  });
  await t.step('the iOS filter recomputes the figures over iOS clients', async () => {
    const before = await figure(page, 'supported');
    await page.locator('#html-check-platform').selectOption('ios');
    const flex = page.locator('.check-item[data-slug="css-display-flex"]');
    await flex.locator('summary').click();
    const names = await flex.locator('.check-clients th').allTextContents();
    if (!names.length || names.some((name) => !name.includes('iOS'))) t.fail(`clients other than iOS are shown: ${names.join(', ')}`);
    const after = await figure(page, 'supported');
    console.log(`e2e:   supported: all platforms ${before}, iOS ${after}`);
    await t.screenshot(page, 'html-check-ios');
  });
  await t.step('a text-only mail has no HTML check tab', async () => {
    await t.sendMail(t.plainMail(text));
    await t.rowOf(page, text).locator('a').click();
    await t.expectText(page.locator('.message-subject'), text.subject);
    if ((await page.locator('#tab-html-check').count()) !== 0) t.fail('a text-only message offers the HTML check');
  });
}

async function figure(page, kind) {
  return (await page.locator(`.check-figure[data-kind="${kind}"] .check-figure-value`).textContent()).trim();
}

export async function dashboardScenario(page, t) {
  const relayed = { token: `dingo${t.run}`, subject: `Dashboard dingo${t.run}`, to: `buyer-${t.run}@far.example` };
  await t.step('open the dashboard', async () => {
    await page.goto(`${t.config.http}/#/dashboard`);
    await page.locator('#live.connected').waitFor({ timeout: t.timeout });
    await page.locator('[data-card="received"]').waitFor();
    if (await page.locator('#list-pane').isVisible()) t.fail('the message list should give way to the dashboard');
    await page.evaluate(() => {
      window.ternE2eNoReload = true;
    });
    await t.screenshot(page, 'dashboard-empty');
  });
  await t.step('relayed mail shows up live: received, queue, destination', async () => {
    await t.sendMail(t.plainMail(relayed), { from: 'app@e2e.test', to: relayed.to });
    await t.waitFor(async () => (await page.locator('[data-card="received"] rect.chart-bar').count()) >= 1, 'a bar in received per minute');
    await t.expectText(page.locator('[data-card="destinations"] .hbar-row'), 'far.example');
    await t.expectText(page.locator('[data-card="queue"] .dash-figure'), /^1 entry for 1 message/);
    if (!(await page.evaluate(() => window.ternE2eNoReload === true))) t.fail('the page reloaded');
  });
  await t.step('its failed attempt shows in top errors and outcomes', async () => {
    await t.expectText(page.locator('[data-card="errors"] .hbar-row'), 'DNS');
    await t.waitFor(async () => (await page.locator('[data-card="outcomes"] rect.fill-deferred').count()) >= 1, 'a deferred bar');
    const stats = await t.fetchJson('/api/v1/stats');
    const deferred = stats.OutcomesPerHour.reduce((sum, hour) => sum + hour.Deferred, 0);
    if (deferred < 1) t.fail(`the API counts ${deferred} deferred attempts`);
    await t.screenshot(page, 'dashboard-mta');
  });
  await t.step('a catcher without a relay shows what applies', async () => {
    await page.goto(`${t.config.catcherHttp}/#/dashboard`);
    await page.locator('[data-card="outbound"]').waitFor();
    await t.expectText(page.locator('[data-card="outbound"]'), 'no outbound queue');
    for (const card of ['queue', 'outcomes', 'destinations', 'errors']) {
      if ((await page.locator(`[data-card="${card}"]`).count()) !== 0) t.fail(`the catcher shows the ${card} card`);
    }
    await t.sendMail(t.plainMail({ token: `kiwi${t.run}`, subject: `Caught kiwi${t.run}` }), { smtp: t.config.catcherSmtp });
    await t.expectText(page.locator('[data-card="received"] .dash-figure'), /^1 in the last hour/);
    await t.screenshot(page, 'dashboard-catcher');
  });
  await t.step('phone-sized dashboard', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('[data-card="received"]').waitFor();
    // The sidebar slides away as a drawer on a phone.
    await t.waitFor(async () => (await page.locator('#sidebar').boundingBox()).x + 1 < -200, 'the sidebar to slide away');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    if (overflow) t.fail('the dashboard is wider than a phone screen');
    await t.screenshot(page, 'dashboard-phone');
    await page.setViewportSize({ width: 1360, height: 860 });
  });
}
