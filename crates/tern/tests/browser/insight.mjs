/**
 * Scenarios of `e2e.mjs` for the insight views, with its helpers passed in (`t`):
 *
 * `--scenario html-check` (a catcher): a mail whose `<style>` uses flexbox and `position`
 * opens on its HTML tab → the "HTML check" tab shows the server's overall percentages and the
 * flexbox warning, opened, with Outlook's "not supported" chips → choosing the iOS platform
 * recomputes the figures and leaves only iOS clients → a text-only mail has no such tab.
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
