/**
 * The message list pane: one row per MessageSummary (sender, subject, snippet, tags, age,
 * attachment mark, unread dot), kept in step with the app state by `render`. Rows are keyed by message ID
 * and reused, so a live update only adds, moves or restyles rows and never rebuilds the list
 * under the reader's scroll position.
 */

import { displayName, fullTime, h, icon, relativeTime } from './dom.js';

export class MessageList {
  /** `element` is the `<ul>`; rows link to `#/m/ID`, which the router opens. */
  constructor(element) {
    this.element = element;
    this.rows = new Map();
  }

  /** Shows `messages` in order; `selectedId` is highlighted, `openId` marked as shown. */
  render(messages, { selectedId, openId }) {
    const seen = new Set();
    const rows = messages.map((message) => {
      seen.add(message.ID);
      const row = this.rows.get(message.ID) ?? this.#create(message);
      updateRow(row, message, selectedId, openId);
      return row;
    });
    for (const id of this.rows.keys()) {
      if (!seen.has(id)) this.rows.delete(id);
    }
    this.element.replaceChildren(...rows);
  }

  /** Rewrites every "5m ago" label; called on a timer. */
  refreshTimes(now = new Date()) {
    for (const time of this.element.querySelectorAll('time[datetime]')) {
      time.textContent = relativeTime(time.dateTime, now);
    }
  }

  /** Scrolls the row of `id` into view if it is off screen. */
  reveal(id) {
    this.rows.get(id)?.scrollIntoView({ block: 'nearest' });
  }

  /** Marks a row as just arrived (a short highlight). */
  flash(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.classList.add('row-new');
    row.addEventListener('animationend', () => row.classList.remove('row-new'), { once: true });
  }

  #create(message) {
    const row = createRow(message);
    this.rows.set(message.ID, row);
    return row;
  }
}

function createRow(message) {
  const from = message.From || {};
  const link = h(
    'a',
    { class: 'row-link', href: `#/m/${encodeURIComponent(message.ID)}` },
    h('span', { class: 'row-from', title: from.Address || '' }, displayName(from) || '(no sender)'),
    h('span', { class: 'row-meta' }, attachmentMark(message.Attachments), timeLabel(message.Created)),
    h('span', { class: 'row-subject' }, message.Subject || '(no subject)'),
    h('span', { class: 'row-snippet' }, message.Snippet || ''),
    h('span', { class: 'row-tags' }),
  );
  return h('li', { class: 'row', dataset: { id: message.ID } }, link);
}

function attachmentMark(count) {
  if (!count) return null;
  const label = count === 1 ? '1 attachment' : `${count} attachments`;
  return h('span', { class: 'row-attachments', title: label, role: 'img', 'aria-label': label }, icon('clip'));
}

function timeLabel(created) {
  return h('time', { datetime: created, title: fullTime(created) }, relativeTime(created));
}

function updateRow(row, message, selectedId, openId) {
  row.classList.toggle('unread', !message.Read);
  row.classList.toggle('selected', message.ID === selectedId);
  row.classList.toggle('open', message.ID === openId);
  const link = row.firstElementChild;
  // Tags change after arrival (the tag editor, the API): redrawn from each render's data.
  const tags = message.Tags || [];
  const shown = link.querySelector('.row-tags');
  if (shown.dataset.tags !== tags.join('\n')) {
    shown.dataset.tags = tags.join('\n');
    shown.replaceChildren(...tags.map((tag) => h('span', { class: 'tag' }, tag)));
  }
  if (message.ID === openId) link.setAttribute('aria-current', 'true');
  else link.removeAttribute('aria-current');
}
