/**
 * Three tabs of the message pane: Links (every http/https link of the message, and Mailpit's
 * link check where the server offers it), Codes (likely one-time codes, each with a Copy
 * button) and Envelope (what the store keeps of the SMTP session and transaction).
 *
 * Links, codes and envelope values come from the mail's sender: they go on the page as text
 * through `h`, and a link opens in a new tab without a referrer or an opener.
 */

import * as api from './api.js';
import { asyncPanel, definitionList, fullTime, h, icon } from './dom.js';

/** How long a Copy button says "Copied" before it reads "Copy" again. */
const COPIED_MS = 2500;

const ROUTES = {
  capture: 'kept by the catcher',
  local: 'local mailbox',
  remote: 'outbound queue',
};

// ---- links ----------------------------------------------------------------------------------

/** The Links tab; `linkCheck` says whether the server answers the link check. */
export function linksPanel(message, linkCheck) {
  return asyncPanel(
    () => api.getLinks(message.ID),
    (result) => linksList(message.ID, result.Links || [], linkCheck),
  );
}

function linksList(messageId, links, linkCheck) {
  if (!links.length) return h('p', { class: 'panel-note' }, 'This message has no http or https links.');
  const statuses = new Map();
  const rows = links.map((url) => {
    const status = h('span', { class: 'link-status' });
    statuses.set(url, status);
    return h(
      'li',
      { class: 'link-row' },
      h('a', { class: 'link-url', href: url, target: '_blank', rel: 'noopener noreferrer' }, url),
      status,
    );
  });
  const summary = h('span', { class: 'links-summary' }, count(links.length, 'link', 'links'));
  const controls = linkCheck
    ? checkControls(messageId, summary, statuses)
    : h('span', { class: 'muted links-off' }, 'Link check off: set [http] link_check = true to let the server request each link.');
  return h(
    'div',
    { class: 'panel-pad links' },
    h('div', { class: 'links-bar' }, summary, controls),
    h('ul', { class: 'link-list' }, rows),
  );
}

/** "Check links" and "Follow redirects"; the answer fills each link's status badge. */
function checkControls(messageId, summary, statuses) {
  const follow = h('input', { type: 'checkbox', id: 'link-follow' });
  const button = h('button', { id: 'check-links', class: 'button button-small', type: 'button' }, 'Check links');
  button.addEventListener('click', async () => {
    button.disabled = true;
    button.textContent = 'Checking…';
    for (const status of statuses.values()) status.replaceChildren(h('span', { class: 'muted' }, '…'));
    try {
      const report = await api.checkLinks(messageId, follow.checked);
      for (const link of report.Links || []) statuses.get(link.URL)?.replaceChildren(statusBadge(link));
      const unchecked = [...statuses.values()].filter((status) => status.textContent === '…');
      for (const status of unchecked) status.replaceChildren(h('span', { class: 'muted' }, 'not checked'));
      summary.replaceChildren(count(statuses.size, 'link', 'links'), ' · ', h('span', { class: report.Errors ? 'links-errors' : 'links-ok' }, count(report.Errors, 'error', 'errors')));
    } catch (error) {
      summary.replaceChildren(h('span', { class: 'links-errors' }, `Link check failed: ${error.message}`));
    } finally {
      button.disabled = false;
      button.textContent = 'Check again';
    }
  });
  return h('span', { class: 'links-controls' }, h('label', { for: 'link-follow' }, follow, 'Follow redirects'), button);
}

/** Green for an answer below 400, red for 400 and above or none. */
function statusBadge(link) {
  const failed = link.StatusCode === 0 || link.StatusCode >= 400;
  const text = link.StatusCode ? `${link.StatusCode} ${link.Status}` : link.Status;
  return h('span', { class: ['verdict', failed ? 'verdict-fail' : 'verdict-pass'], title: text }, text);
}

// ---- codes ----------------------------------------------------------------------------------

/** The Codes tab. */
export function codesPanel(message) {
  return asyncPanel(() => api.getCodes(message.ID), (result) => codesList(result.Codes || []));
}

function codesList(codes) {
  if (!codes.length) return h('p', { class: 'panel-note' }, 'No one-time codes found in this message.');
  const cards = codes.map((code) =>
    h(
      'li',
      { class: 'code-card' },
      h('code', { class: 'code-value' }, code.Code),
      h('button', { class: 'button button-small copy-button', type: 'button', 'aria-label': `Copy ${code.Code}`, onclick: (event) => copy(code.Code, event.currentTarget) }, icon('copy'), 'Copy'),
      h('p', { class: 'code-context' }, code.Context),
    ),
  );
  return h('ul', { class: 'codes' }, cards);
}

/** Copies `text` with the Clipboard API, or by selecting it where that is missing or refused. */
async function copy(text, button) {
  let copied = false;
  try {
    if (navigator.clipboard?.writeText) {
      await navigator.clipboard.writeText(text);
      copied = true;
    }
  } catch {
    // Refused (no permission, not a secure context): select and copy instead.
  }
  if (!copied) copied = copyBySelection(text);
  button.focus();
  button.classList.toggle('copied', copied);
  button.replaceChildren(icon(copied ? 'check' : 'copy'), copied ? 'Copied' : 'Copy failed');
  setTimeout(() => {
    button.classList.remove('copied');
    button.replaceChildren(icon('copy'), 'Copy');
  }, COPIED_MS);
}

/** The pre-Clipboard-API way: select the text in a hidden field and run the copy command. */
function copyBySelection(text) {
  const field = h('textarea', { class: 'copy-buffer', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
  field.value = text;
  document.body.append(field);
  field.select();
  let copied = false;
  try {
    copied = document.execCommand('copy');
  } catch {
    copied = false;
  }
  field.remove();
  return copied;
}

// ---- envelope -------------------------------------------------------------------------------

/**
 * The Envelope tab: the session (client, HELO, TLS, AUTH, trust) and the transaction (MAIL FROM
 * and its parameters, each RCPT TO with its DSN parameters and route). Tern does not keep the
 * SMTP dialogue itself, and the tab says so rather than make one up.
 */
export function envelopePanel(envelope) {
  if (!envelope) return h('p', { class: 'panel-note' }, 'The server reported no envelope for this message.');
  const tls = envelope.TLS ? `${envelope.TLS.Protocol || 'TLS'} · ${envelope.TLS.Cipher || ''}` : 'None (plain text)';
  const session = [
    ['Client', envelope.ClientAddress || 'unknown'],
    ['HELO / EHLO', envelope.Helo || 'unknown'],
    ['TLS', tls],
    ['AUTH', envelope.Auth || 'None (not authenticated)'],
    ['Trusted', trustText(envelope.TrustedClient)],
    ['Received', envelope.ReceivedAt ? fullTime(envelope.ReceivedAt) : 'unknown'],
  ];
  const mailFrom = [
    h('span', { class: 'envelope-address' }, envelope.MailFrom ? `<${envelope.MailFrom}>` : '<> (null sender)'),
    mailParameters(envelope).map((parameter) => h('span', { class: 'envelope-param' }, parameter)),
  ];
  return h(
    'div',
    { class: 'panel-pad envelope' },
    h('h2', { class: 'envelope-heading' }, 'Session'),
    definitionList(session),
    h('h2', { class: 'envelope-heading' }, 'Transaction'),
    definitionList([['MAIL FROM', h('span', { class: 'envelope-line' }, mailFrom)]]),
    recipientsTable(envelope),
    h('p', { class: 'envelope-note muted' }, 'Tern keeps these facts of the SMTP session, not a transcript of its commands and replies.'),
  );
}

function trustText(trusted) {
  if (trusted === undefined) return 'unknown';
  return trusted ? 'Yes (authenticated, from a trusted network, or caught)' : 'No: delivery notices are not sent to this sender';
}

/** `BODY=`, `SMTPUTF8`, `RET=` and `ENVID=` as the client gave them. */
function mailParameters(envelope) {
  return [
    envelope.Body && `BODY=${envelope.Body}`,
    envelope.SMTPUTF8 && 'SMTPUTF8',
    envelope.Ret && `RET=${envelope.Ret}`,
    envelope.EnvID && `ENVID=${envelope.EnvID}`,
  ].filter(Boolean);
}

/** One row per RCPT TO: the address, its NOTIFY and ORCPT, and where the copy went. */
function recipientsTable(envelope) {
  const details = envelope.RecipientDetails || (envelope.Recipients || []).map((address) => ({ Address: address }));
  const head = h('thead', {}, h('tr', {}, ['RCPT TO', 'NOTIFY', 'ORCPT', 'Route'].map((name) => h('th', { scope: 'col' }, name))));
  const rows = details.map((rcpt) =>
    h(
      'tr',
      { class: 'envelope-rcpt' },
      h('td', { class: 'envelope-address' }, `<${rcpt.Address}>`),
      h('td', {}, rcpt.Notify?.length ? rcpt.Notify.join(',') : h('span', { class: 'muted' }, '—')),
      h('td', {}, rcpt.ORCPT || h('span', { class: 'muted' }, '—')),
      h('td', {}, ROUTES[rcpt.Route] || rcpt.Route || ''),
    ),
  );
  return h('table', { class: 'envelope-table' }, head, h('tbody', {}, rows));
}

function count(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}
