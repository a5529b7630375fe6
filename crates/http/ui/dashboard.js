/**
 * The dashboard page (`#/dashboard`): what the server has been doing, from `/api/v1/stats` —
 * totals, messages received per minute over the last hour and, where mail goes out, the
 * queue by state, delivery outcomes per hour over the last day, and the top destinations and
 * error replies in the queue. A catcher without a relay has no outbound queue: those cards
 * are hidden and a note says why.
 *
 * Charts are SVG drawn here by hand (bars and axis labels: a charting library would be most of
 * the UI's weight for four simple charts). Their colours are CSS classes over the theme's
 * variables, so the dark theme covers them. The page owns `#dashboard-pane` only; it reloads
 * every `REFRESH_MS` while shown and soon after the server reports new mail or a queue change.
 */

import * as api from './api.js';
import { debounce, formatSize, fullTime, h } from './dom.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
/** Reload period while the page is shown. */
const REFRESH_MS = 5000;
const CHART_WIDTH = 600;
const CHART_HEIGHT = 160;
/** Room under the bars for the axis labels. */
const AXIS_HEIGHT = 18;

export class DashboardPage {
  /** `root`: the `#dashboard-pane` section. */
  constructor(root) {
    this.root = root;
    this.visible = false;
    this.timer = null;
    this.generation = 0;
    this.stats = null;
    this.error = null;
    this.refreshSoon = debounce(() => this.visible && this.refresh(), 500);
  }

  open() {
    this.visible = true;
    this.render();
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  close() {
    this.visible = false;
    clearInterval(this.timer);
    this.timer = null;
  }

  async refresh() {
    const generation = ++this.generation;
    try {
      const stats = await api.getStats();
      if (generation !== this.generation) return;
      this.stats = stats;
      this.error = null;
    } catch (error) {
      if (generation !== this.generation) return;
      this.error = error.message;
    }
    if (this.visible) this.render();
  }

  render() {
    const stats = this.stats;
    const head = h(
      'div',
      { class: 'list-toolbar dashboard-toolbar' },
      h('h1', { class: 'queue-title' }, 'Dashboard'),
      h('span', { class: 'list-summary', id: 'dashboard-updated' }, stats ? `Updated ${fullTime(stats.Time)}` : 'Loading…'),
    );
    if (this.error) {
      this.root.replaceChildren(head, h('p', { class: 'empty' }, `Could not load the numbers: ${this.error}`));
      return;
    }
    if (!stats) {
      this.root.replaceChildren(head);
      return;
    }
    this.root.replaceChildren(head, h('div', { class: 'dashboard-grid' }, cards(stats)));
  }
}

function cards(stats) {
  const list = [totalsCard(stats.Totals), receivedCard(stats.ReceivedPerMinute || [])];
  if (!stats.Outbound) {
    list.push(card('outbound', 'Outbound', h('p', { class: 'muted' }, 'This catcher keeps all mail: there is no outbound queue. Set [outbound] relay_host to release messages through a relay.')));
    return list;
  }
  list.push(queueCard(stats.Queue), outcomesCard(stats.OutcomesPerHour), topCard('destinations', 'Top destinations', 'Queue entries per recipient domain', stats.TopDestinations.map((d) => [d.Domain, d.Entries]), stats.QueueSampled), topCard('errors', 'Top error replies', 'Last errors of queue entries', stats.TopErrors.map((e) => [e.Error, e.Entries]), stats.QueueSampled));
  return list;
}

function card(name, title, ...body) {
  return h('section', { class: ['dash-card', `dash-${name}`], dataset: { card: name }, 'aria-label': title }, h('h2', { class: 'dash-title' }, title), ...body);
}

function totalsCard(totals) {
  const tile = (label, value) => h('div', { class: 'dash-tile' }, h('span', { class: 'dash-tile-value' }, value), h('span', { class: 'dash-tile-label' }, label));
  return card(
    'totals',
    'Totals',
    h(
      'div',
      { class: 'dash-tiles' },
      tile('messages stored', String(totals.Messages)),
      tile('unread', String(totals.Unread)),
      tile('accepted since start', String(totals.AcceptedSinceStart)),
      tile('store size', formatSize(totals.DatabaseSize)),
      tile('uptime', duration(totals.Uptime)),
    ),
  );
}

function receivedCard(minutes) {
  const total = minutes.reduce((sum, m) => sum + m.Count, 0);
  const chart = barChart(
    minutes.map((m) => ({ label: clock(m.Start), parts: [['received', m.Count]] })),
    { caption: `Messages received per minute, last hour: ${total} in all`, ticks: ['-60 min', '-30 min', 'now'] },
  );
  return card('received', 'Received per minute', h('p', { class: 'dash-figure' }, `${total} in the last hour`), chart);
}

function queueCard(queue) {
  const rows = [['Queued', queue.Queued, 'queued'], ['Held', queue.Held, 'held']];
  const max = Math.max(1, ...rows.map((r) => r[1]));
  return card(
    'queue',
    'Queue by state',
    h('p', { class: 'dash-figure' }, `${plural(queue.Queued + queue.Held, 'entry', 'entries')} for ${plural(queue.Messages, 'message', 'messages')}`),
    hbars(rows.map(([label, value, kind]) => ({ label, value, kind })), max),
  );
}

function outcomesCard(hours) {
  if (!hours) return card('outcomes', 'Deliveries per hour', h('p', { class: 'muted' }, 'Metrics are off: outcomes are counted only when they are on.'));
  const sum = (key) => hours.reduce((total, hour) => total + hour[key], 0);
  const chart = barChart(
    hours.map((hour) => ({ label: clock(hour.Start), parts: [['delivered', hour.Delivered], ['deferred', hour.Deferred], ['bounced', hour.Bounced]] })),
    { caption: `Delivery outcomes per hour, last 24 hours: ${sum('Delivered')} delivered, ${sum('Deferred')} deferred, ${sum('Bounced')} bounced`, ticks: ['-24 h', '-12 h', 'now'] },
  );
  const legend = h('p', { class: 'dash-legend' }, ['delivered', 'deferred', 'bounced'].map((kind) => h('span', { class: ['dash-key', `fill-${kind}`] }, `${kind} ${sum(kind[0].toUpperCase() + kind.slice(1))}`)));
  return card('outcomes', 'Deliveries and bounces per hour', legend, chart, h('p', { class: 'muted dash-note' }, 'Counted since the server started.'));
}

function topCard(name, title, what, rows, sampled) {
  const body = rows.length
    ? hbars(rows.map(([label, value]) => ({ label, value, kind: name })), Math.max(1, ...rows.map((r) => r[1])))
    : h('p', { class: 'muted' }, 'Nothing in the queue.');
  return card(name, title, h('p', { class: 'muted dash-note' }, `${what}, over ${plural(sampled, 'entry', 'entries')}.`), body);
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Labelled horizontal bars: `rows` of `{label, value, kind}`, scaled to `max`. */
function hbars(rows, max) {
  return h(
    'ul',
    { class: 'hbars' },
    rows.map((row) =>
      h('li', { class: 'hbar-row' }, h('span', { class: 'hbar-label', title: row.label }, row.label), h('span', { class: 'hbar-track' }, h('span', { class: ['hbar', `fill-${row.kind}`], style: `width: ${(row.value / max) * 100}%` })), h('span', { class: 'hbar-value' }, String(row.value))),
    ),
  );
}

/**
 * A bar chart of `bars` (`{label, parts: [[kind, value], …]}`, parts stacked bottom up) as an
 * SVG that scales to its card's width; `caption` is its accessible name, `ticks` the labels
 * under its start, middle and end.
 */
export function barChart(bars, { caption, ticks }) {
  const max = Math.max(1, ...bars.map((bar) => bar.parts.reduce((sum, [, value]) => sum + value, 0)));
  const plot = CHART_HEIGHT - AXIS_HEIGHT;
  const slot = CHART_WIDTH / Math.max(1, bars.length);
  const svg = svgElement('svg', { class: 'chart', viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': caption });
  svg.append(svgElement('line', { class: 'chart-axis', x1: 0, x2: CHART_WIDTH, y1: plot + 0.5, y2: plot + 0.5 }));
  bars.forEach((bar, index) => {
    let top = plot;
    for (const [kind, value] of bar.parts) {
      if (!value) continue;
      const height = Math.max(1, (value / max) * (plot - 4));
      top -= height;
      const rect = svgElement('rect', { class: ['chart-bar', `fill-${kind}`].join(' '), x: index * slot + slot * 0.15, y: top, width: slot * 0.7, height, 'data-value': value });
      rect.append(svgElement('title', {}, `${bar.label}: ${value} ${kind}`));
      svg.append(rect);
    }
  });
  const frame = h('figure', { class: 'chart-frame' }, svg);
  const scale = h('span', { class: 'chart-max' }, `max ${max}`);
  const axis = h('div', { class: 'chart-ticks' }, ticks.map((tick) => h('span', {}, tick)));
  return h('div', { class: 'chart-box' }, scale, frame, axis);
}

function svgElement(tag, attrs, text) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function clock(value) {
  return new Date(value).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function duration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}
