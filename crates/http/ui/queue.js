/**
 * The outbound queue page: one table row per queue entry — a remote recipient of a message
 * waiting for delivery — with its state, attempts, next attempt and the last error exactly as
 * the remote server (or the DNS lookup) gave it, per-row Retry / Hold / Release / Delete and a
 * "Retry all" button.
 *
 * The page owns the `#queue-pane` section and the sidebar's queue count, nothing else. It
 * reloads the whole queue on `refresh()` (when it opens, and on the server's `queue` event,
 * since one delivery attempt changes several columns at once). Commands apply to a message,
 * that is to every one of its recipients, because that is what the queue API changes.
 */

import * as api from './api.js';
import { debounce, fullTime, h } from './dom.js';

const COMMANDS = {
  retry: { label: 'Retry', done: 'due for delivery now', title: 'Try every recipient of this message again now' },
  hold: { label: 'Hold', done: 'held', title: 'No more delivery attempts until released' },
  release: { label: 'Release', done: 'released', title: 'Queue again and try at once' },
  delete: { label: 'Delete', done: 'deleted from the queue', title: 'Remove from the queue without delivering' },
};

export class QueuePage {
  /**
   * `elements`: `rows` (the `<tbody>`), `table`, `summary`, `empty`, `retryAll` (a button),
   * `link` and `count` (the sidebar entry and its badge). `options`: `toast(text, kind)` and
   * `confirm(text)` (resolves true when the reader agrees).
   */
  constructor(elements, options) {
    this.elements = elements;
    this.options = options;
    this.visible = false;
    this.queue = null;
    this.error = null;
    /** The server said only the admin may see the queue: stop asking. */
    this.forbidden = false;
    /** Bumped by each load so that a late answer of an older one is dropped. */
    this.generation = 0;
    this.refreshSoon = debounce(() => this.refresh(), 200);
    elements.retryAll.addEventListener('click', () => this.run('retry', 'all'));
  }

  /** Shows the page and loads the queue. */
  open() {
    this.visible = true;
    this.render();
    this.refresh();
  }

  close() {
    this.visible = false;
  }

  /**
   * Reloads the queue when the page is shown, else only the sidebar count. A 401 or 403 hides
   * the sidebar entry: only the admin may see the queue.
   */
  async refresh() {
    if (this.forbidden && !this.visible) return;
    const generation = ++this.generation;
    try {
      const queue = await api.getQueue(this.visible ? {} : { limit: 1 });
      if (generation !== this.generation) return;
      this.error = null;
      this.forbidden = false;
      if (this.visible) this.queue = queue;
      this.#count(queue.Queued + queue.Held);
    } catch (error) {
      if (generation !== this.generation) return;
      this.error = error.message;
      this.forbidden = error.status === 401 || error.status === 403;
      if (this.forbidden) this.#count(null);
    }
    if (this.visible) this.render();
  }

  render() {
    const { rows, table, summary, empty, retryAll } = this.elements;
    const entries = this.queue?.Entries ?? [];
    rows.replaceChildren(...entries.map((entry) => this.#row(entry)));
    table.hidden = entries.length === 0;
    let note = '';
    if (this.error) note = `Could not load the queue: ${this.error}`;
    else if (this.queue && !entries.length) note = 'The outbound queue is empty. Mail for other servers waits here between delivery attempts.';
    empty.textContent = note;
    empty.hidden = !note;
    summary.textContent = this.queue ? describe(this.queue, entries.length) : 'Loading…';
    retryAll.disabled = !this.queue?.Queued;
  }

  /** Rewrites the "in 4m" labels; called on a timer. */
  refreshTimes(now = new Date()) {
    for (const time of this.elements.rows.querySelectorAll('time[datetime]')) {
      time.textContent = untilLabel(time.dateTime, now);
    }
  }

  /** Runs a queue command for one message id, or for `'all'`. */
  async run(command, ids) {
    const what = ids === 'all' ? 'every message in the queue' : 'this message';
    if (command === 'delete' && !(await this.options.confirm(`Delete ${what} from the queue without delivering it? This cannot be undone.`))) return;
    try {
      const count = await api.queueCommand(command, ids === 'all' ? 'all' : [ids]);
      const messages = count === 1 ? '1 message' : `${count} messages`;
      this.options.toast(`${messages} ${COMMANDS[command].done}`);
    } catch (error) {
      this.options.toast(`Could not ${command}: ${error.message}`, 'error');
    }
    this.refresh();
  }

  #row(entry) {
    const id = entry.MessageID;
    const held = entry.State === 'held';
    const commands = held ? ['release', 'delete'] : ['retry', 'hold', 'delete'];
    return h(
      'tr',
      { class: ['queue-row', `state-${entry.State}`], dataset: { id, entry: entry.ID } },
      h('td', { class: 'queue-message', 'data-label': 'Message' }, h('a', { href: `#/m/${encodeURIComponent(id)}`, title: 'Open the message' }, id)),
      h('td', { class: 'queue-recipient', 'data-label': 'Recipient' }, entry.Recipient),
      h('td', { 'data-label': 'State' }, h('span', { class: ['state-badge', `state-${entry.State}`] }, entry.State)),
      h('td', { class: 'queue-attempts', 'data-label': 'Attempts' }, String(entry.Attempts)),
      h('td', { class: 'queue-next', 'data-label': 'Next attempt' }, held ? h('span', { class: 'muted' }, 'on hold') : nextAttempt(entry.NextAttempt)),
      h('td', { class: 'queue-error', 'data-label': 'Last error' }, lastError(entry)),
      h(
        'td',
        { class: 'queue-actions' },
        commands.map((command) =>
          h('button', { class: ['button', 'button-small', command === 'delete' && 'button-quiet-danger'], type: 'button', title: COMMANDS[command].title, dataset: { command }, onclick: () => this.run(command, id) }, COMMANDS[command].label),
        ),
      ),
    );
  }

  #count(count) {
    const { link, count: badge } = this.elements;
    link.hidden = count === null;
    badge.textContent = count ? String(count) : '';
  }
}

function describe(queue, shown) {
  const parts = [`${queue.Queued} queued`, `${queue.Held} held`, queue.Messages === 1 ? '1 message' : `${queue.Messages} messages`];
  if (shown < queue.Total) parts.push(`showing ${shown} of ${queue.Total}`);
  return parts.join(' · ');
}

function nextAttempt(value) {
  return h('time', { datetime: value, title: fullTime(value) }, untilLabel(value));
}

function lastError(entry) {
  if (!entry.LastError) return h('span', { class: 'muted' }, entry.Attempts ? '—' : 'not tried yet');
  const title = entry.LastAttempt ? `Last attempt: ${fullTime(entry.LastAttempt)}` : undefined;
  return h('div', { class: 'queue-error-text', title }, entry.LastError);
}

/** "due now", "in 45s", "in 4m", "in 2h 5m", "in 3d". */
export function untilLabel(value, now = new Date()) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return '';
  const seconds = Math.round((date - now) / 1000);
  if (seconds <= 0) return 'due now';
  if (seconds < 60) return `in ${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `in ${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `in ${hours}h ${minutes % 60}m`;
  return `in ${Math.floor(hours / 24)}d`;
}
