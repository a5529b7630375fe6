/**
 * The message pane for one message: a toolbar (back, read/unread, delete), the header (subject,
 * addresses, date, size, tags to add, remove and search by) and tabs — HTML, Text, Headers, Raw,
 * Attachments, Links, Codes, Envelope, Authentication, and HTML check when there is an HTML body
 * (the Links, Codes and Envelope panels and the tag editor are in views.js and tags.js, the HTML
 * check in htmlcheck.js).
 *
 * The HTML body is never put into this page: it loads in an `<iframe sandbox="allow-popups">`
 * (no scripts, no same-origin access) from `/view/ID.html`, whose Content-Security-Policy blocks
 * remote content until the reader ticks "Load remote content". Each tab's body is built the first
 * time it is shown and kept, so switching tabs does not refetch.
 *
 * The Authentication tab shows the SPF, DKIM, ARC and DMARC results Tern recorded when the
 * message came in. Their identities are what the sender claimed (MAIL FROM, From:, d=), so
 * they go on the page as text like every other piece of the message.
 */

import * as api from './api.js';
import { addressListNode, asyncPanel, definitionList, formatSize, fullTime, h, icon } from './dom.js';
import { TagEditor } from './tags.js';
import { codesPanel, envelopePanel, linksPanel } from './views.js';
import { htmlCheckPanel } from './htmlcheck.js';

const TAB_LABELS = {
  html: 'HTML',
  text: 'Text',
  headers: 'Headers',
  raw: 'Raw',
  attachments: 'Attachments',
  links: 'Links',
  codes: 'Codes',
  envelope: 'Envelope',
  authentication: 'Authentication',
  'html-check': 'HTML check',
};

/** The properties that name what each method judged, in the order they are shown. */
const AUTH_IDENTITIES = {
  spf: ['smtp.mailfrom', 'smtp.helo'],
  dkim: ['header.d', 'header.s', 'header.i'],
  dmarc: ['header.from', 'policy.dmarc'],
};

/** The badge colour of each result (RFC 8601 §2.7); any other result is neutral. */
const VERDICT_CLASSES = {
  pass: 'verdict-pass',
  fail: 'verdict-fail',
  softfail: 'verdict-neutral',
  neutral: 'verdict-neutral',
  none: 'verdict-neutral',
  policy: 'verdict-neutral',
  temperror: 'verdict-error',
  permerror: 'verdict-error',
};

const NOT_CHECKED = 'Not checked — set [auth] verify = true (catcher) to check SPF, DKIM and DMARC';

export class MessageView {
  /**
   * Renders `message` into `root`. `options`: `tab` (preferred tab name), `read`, `linkCheck`
   * (the server answers the link check), `knownTags` (suggested when tagging), and callbacks
   * `onTab(name)`, `onBack()`, `onDelete()`, `onToggleRead()`, and `onRelease()` (only where
   * the server can release mail: the toolbar then offers it).
   */
  constructor(root, message, options) {
    this.root = root;
    this.message = message;
    this.options = options;
    this.panels = new Map();
    this.tabs = availableTabs(message);
    this.tabButtons = new Map();
    this.panel = h('div', { class: 'tab-panel', role: 'tabpanel', id: 'tab-panel', tabindex: '-1' });
    this.readButton = h('button', { class: 'icon-button', type: 'button', onclick: () => options.onToggleRead() });
    this.tags = new TagEditor(message, options.knownTags);
    root.replaceChildren(this.#toolbar(), header(message, this.tags.element), this.#tabList(), this.panel);
    this.setRead(options.read);
    this.#select(this.tabs.includes(options.tab) ? options.tab : this.tabs[0]);
  }

  /** Updates the read/unread toggle to match the message's state. */
  setRead(read) {
    const label = read ? 'Mark as unread' : 'Mark as read';
    this.readButton.replaceChildren(icon(read ? 'mail' : 'mail-open'));
    this.readButton.title = `${label} (u)`;
    this.readButton.setAttribute('aria-label', label);
  }

  /** Shows the message's tags as the server now has them. */
  setTags(tags) {
    this.tags.set(tags);
  }

  /** Switches to tab `name` at the reader's request (remembered for the next message). */
  show(name) {
    this.#select(name);
    this.options.onTab?.(name);
  }

  /** Shows tab `name`, building its body on first use. */
  #select(name) {
    this.current = name;
    for (const [tab, button] of this.tabButtons) {
      const selected = tab === name;
      button.setAttribute('aria-selected', String(selected));
      button.tabIndex = selected ? 0 : -1;
      // On a narrow screen the tab strip scrolls: keep the chosen tab in sight.
      if (selected && button.isConnected) button.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    }
    this.panel.setAttribute('aria-labelledby', `tab-${name}`);
    if (!this.panels.has(name)) this.panels.set(name, this.#buildPanel(name));
    this.panel.replaceChildren(this.panels.get(name));
  }

  #toolbar() {
    const { onBack, onDelete, onRelease } = this.options;
    return h(
      'div',
      { class: 'message-toolbar' },
      h('button', { class: 'icon-button back-button', type: 'button', title: 'Back to the list (Esc)', 'aria-label': 'Back to the list', onclick: onBack }, icon('back')),
      h('span', { class: 'spacer' }),
      this.readButton,
      onRelease ? h('button', { class: 'icon-button', type: 'button', title: 'Release: send a copy to real recipients', 'aria-label': 'Release message', onclick: onRelease }, icon('send')) : null,
      h('a', { class: 'icon-button', href: api.rawUrl(this.message.ID), download: `${this.message.ID}.eml`, title: 'Download .eml', 'aria-label': 'Download the message as .eml' }, icon('download')),
      h('button', { class: 'icon-button danger', type: 'button', title: 'Delete (Delete or #)', 'aria-label': 'Delete message', onclick: onDelete }, icon('trash')),
    );
  }

  #tabList() {
    const list = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Message views', onkeydown: (event) => this.#onTabKey(event) });
    for (const name of this.tabs) {
      const count = name === 'attachments' ? attachmentsOf(this.message).length : 0;
      const button = h(
        'button',
        { class: 'tab', type: 'button', role: 'tab', id: `tab-${name}`, 'aria-controls': 'tab-panel', dataset: { tab: name }, onclick: () => this.show(name) },
        TAB_LABELS[name],
        count ? h('span', { class: 'tab-count' }, count) : null,
      );
      this.tabButtons.set(name, button);
      list.append(button);
    }
    return list;
  }

  /** Left/Right/Home/End move between tabs, as in the WAI-ARIA tabs pattern. */
  #onTabKey(event) {
    const index = this.tabs.indexOf(this.current);
    const moves = { ArrowLeft: index - 1, ArrowRight: index + 1, Home: 0, End: this.tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = this.tabs[(moves[event.key] + this.tabs.length) % this.tabs.length];
    this.show(next);
    this.tabButtons.get(next).focus();
  }

  #buildPanel(name) {
    const message = this.message;
    switch (name) {
      case 'html':
        return htmlPanel(message);
      case 'text':
        return textPanel(message);
      case 'headers':
        return asyncPanel(() => api.getHeaders(message.ID), headersTable);
      case 'raw':
        return asyncPanel(() => api.getRaw(message.ID), (raw) => rawPanel(message, raw));
      case 'attachments':
        return attachmentsPanel(message);
      case 'authentication':
        return asyncPanel(() => api.getAuthentication(message.ID), authenticationPanel);
      case 'links':
        return linksPanel(message, this.options.linkCheck);
      case 'codes':
        return codesPanel(message);
      case 'html-check':
        return asyncPanel(() => api.getHtmlCheck(message.ID), htmlCheckPanel);
      default:
        return envelopePanel(message.Envelope);
    }
  }
}

function availableTabs(message) {
  const tabs = ['text', 'headers', 'raw', 'attachments', 'links', 'codes', 'envelope', 'authentication'];
  return message.HTML ? ['html', ...tabs, 'html-check'] : tabs;
}

function attachmentsOf(message) {
  return [...(message.Attachments || []), ...(message.Inline || [])];
}

function header(message, tags) {
  const rows = [
    ['From', message.From?.Address ? addressListNode([message.From]) : '(none)'],
    ['To', message.To?.length ? addressListNode(message.To) : '(none)'],
    message.Cc?.length && ['Cc', addressListNode(message.Cc)],
    message.Bcc?.length && ['Bcc', addressListNode(message.Bcc)],
    message.ReplyTo?.length && ['Reply-To', addressListNode(message.ReplyTo)],
    ['Date', h('time', { datetime: message.Date }, fullTime(message.Date))],
    ['Size', formatSize(message.Size)],
    ['Tags', tags],
  ].filter(Boolean);
  return h(
    'header',
    { class: 'message-header' },
    h('h1', { class: 'message-subject' }, message.Subject || '(no subject)'),
    definitionList(rows),
  );
}

function htmlPanel(message) {
  let frame = htmlFrame(message.ID, false);
  const toggle = h('input', {
    type: 'checkbox',
    id: 'remote-toggle',
    onchange: () => {
      // A new frame rather than a new `src`: changing `src` would add a browser history entry.
      const next = htmlFrame(message.ID, toggle.checked);
      frame.replaceWith(next);
      frame = next;
    },
  });
  const bar = h(
    'div',
    { class: 'remote-bar' },
    h('label', { for: 'remote-toggle' }, toggle, 'Load remote content'),
    h('span', {}, 'Remote images, fonts and styles are blocked until you allow them.'),
  );
  return h('div', { class: 'tab-panel html-tab' }, bar, frame);
}

/** The sandboxed frame: no scripts, no same-origin access, links may open new windows. */
function htmlFrame(messageId, remote) {
  return h('iframe', {
    class: 'html-frame',
    sandbox: 'allow-popups',
    referrerpolicy: 'no-referrer',
    title: 'Message HTML body',
    src: api.htmlViewUrl(messageId, remote),
  });
}

function textPanel(message) {
  if (!message.Text) return h('p', { class: 'panel-note' }, 'This message has no plain-text part.');
  return h('pre', { class: 'source text-body' }, message.Text);
}

function headersTable(headers) {
  const rows = [];
  for (const [name, values] of Object.entries(headers || {})) {
    for (const value of [].concat(values)) {
      rows.push(h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, value)));
    }
  }
  return h('div', { class: 'panel-pad' }, h('table', { class: 'headers-table' }, h('tbody', {}, rows)));
}

function rawPanel(message, raw) {
  return h(
    'div',
    {},
    h('div', { class: 'panel-actions' }, h('a', { class: 'button', href: api.rawUrl(message.ID), download: `${message.ID}.eml` }, icon('download'), 'Download .eml')),
    h('pre', { class: 'source raw-source' }, raw),
  );
}

function attachmentsPanel(message) {
  const parts = attachmentsOf(message);
  if (!parts.length) return h('p', { class: 'panel-note' }, 'This message has no attachments.');
  return h('ul', { class: 'attachments' }, parts.map((part) => attachmentCard(message.ID, part)));
}

function attachmentCard(messageId, part) {
  const url = api.partUrl(messageId, part.PartID);
  const name = part.FileName || `part-${part.PartID}`;
  const type = part.ContentType || 'application/octet-stream';
  const preview = type.toLowerCase().startsWith('image/')
    ? h('img', { src: url, alt: name, loading: 'lazy' })
    : icon('file');
  return h(
    'li',
    { class: 'attachment', dataset: { part: part.PartID } },
    h('div', { class: 'attachment-preview' }, preview),
    h(
      'div',
      { class: 'attachment-body' },
      h('div', { class: 'attachment-info' }, h('div', { class: 'attachment-name', title: name }, name), h('div', { class: 'attachment-meta' }, `${type} · ${formatSize(part.Size)}`)),
      h('a', { class: 'icon-button attachment-download', href: url, download: name, title: `Download ${name}`, 'aria-label': `Download ${name}` }, icon('download')),
    ),
  );
}

/** The overall line, then one row per result: method, verdict badge, identity, comment. */
function authenticationPanel(report) {
  const results = report?.Results || [];
  if (!results.length) return h('div', { class: 'panel-pad' }, h('p', { class: 'auth-summary muted' }, NOT_CHECKED));
  const rows = results.map((result) =>
    h(
      'tr',
      { class: 'auth-row', dataset: { method: result.Method } },
      h('th', { scope: 'row', class: 'auth-method' }, result.Method.toUpperCase()),
      h('td', {}, verdictBadge(result.Result)),
      h('td', { class: 'auth-identity' }, identityList(result)),
      h('td', { class: 'auth-comment' }, result.Comment || ''),
    ),
  );
  const head = h('thead', {}, h('tr', {}, ['Method', 'Result', 'Identity', 'Comment'].map((name) => h('th', { scope: 'col' }, name))));
  return h(
    'div',
    { class: 'panel-pad authentication' },
    h('p', { class: 'auth-summary' }, authSummary(results), report.AuthservID ? h('span', { class: 'muted' }, ` · checked by ${report.AuthservID}`) : null),
    h('table', { class: 'auth-table' }, head, h('tbody', {}, rows)),
  );
}

/** "DMARC pass for example.com", or the SPF verdict when there is no DMARC result. */
function authSummary(results) {
  const dmarc = results.find((result) => result.Method === 'dmarc');
  if (dmarc) {
    const domain = dmarc.Properties?.['header.from'];
    return [verdictBadge(dmarc.Result), ` DMARC ${dmarc.Result}${domain ? ` for ${domain}` : ''}`];
  }
  const spf = results.find((result) => result.Method === 'spf' && result.Properties?.['smtp.mailfrom']);
  if (spf) return [verdictBadge(spf.Result), ` SPF ${spf.Result} for ${spf.Properties['smtp.mailfrom']}, no DMARC result`];
  return 'No DMARC result';
}

function verdictBadge(result) {
  return h('span', { class: ['verdict', VERDICT_CLASSES[result] || 'verdict-neutral'] }, result);
}

/** The properties naming what `result` judged (every property, for a method not listed). */
function identityList(result) {
  const properties = result.Properties || {};
  const names = AUTH_IDENTITIES[result.Method] || Object.keys(properties);
  const shown = names.filter((name) => properties[name]);
  if (!shown.length) return h('span', { class: 'muted' }, '—');
  return h('dl', { class: 'auth-properties' }, shown.map((name) => [h('dt', {}, name), h('dd', {}, properties[name])]));
}
