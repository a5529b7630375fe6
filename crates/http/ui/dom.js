/**
 * DOM and formatting helpers shared by the UI modules.
 *
 * Everything that puts message data on the page goes through `h`, which only creates elements
 * and text nodes: no HTML string is ever parsed, so a subject such as `<img onerror=…>` shows as
 * the text it is. Attribute values are set with `setAttribute`, never spliced into markup.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Creates an element. `attrs` keys are attribute names, except `class` (a string or a list,
 * falsy entries skipped), `dataset` (an object) and `on<event>` (a listener). Children may be
 * nodes, strings (inserted as text), numbers, nested arrays, or null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    setAttribute(element, name, value);
  }
  appendChildren(element, children);
  return element;
}

function setAttribute(element, name, value) {
  if (value === undefined || value === null || value === false) return;
  if (name === 'class') {
    element.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
  } else if (name === 'dataset') {
    Object.assign(element.dataset, value);
  } else if (name.startsWith('on') && typeof value === 'function') {
    element.addEventListener(name.slice(2), value);
  } else {
    element.setAttribute(name, value === true ? '' : String(value));
  }
}

function appendChildren(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    // append() turns a string into a text node: message text is never parsed as HTML.
    element.append(child instanceof Node ? child : String(child));
  }
}

/** An icon from the sprite in index.html, e.g. `icon('trash')`. */
export function icon(name, className = '') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', `icon ${className}`.trim());
  svg.setAttribute('aria-hidden', 'true');
  const use = document.createElementNS(SVG_NS, 'use');
  use.setAttribute('href', `#i-${name}`);
  svg.append(use);
  return svg;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** A short age such as "now", "5m", "3h", "Yesterday", "Mon", "12 Mar" or "12 Mar 2023". */
export function relativeTime(value, now = new Date()) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return '';
  const age = now - date;
  if (age < MINUTE) return 'now';
  if (age < HOUR) return `${Math.floor(age / MINUTE)}m`;
  if (age < 12 * HOUR || sameDay(date, now)) return `${Math.floor(age / HOUR)}h`;
  if (sameDay(date, new Date(now - DAY))) return 'Yesterday';
  if (age < 6 * DAY) return date.toLocaleDateString(undefined, { weekday: 'short' });
  const sameYear = date.getFullYear() === now.getFullYear();
  return date.toLocaleDateString(undefined, {
    day: 'numeric',
    month: 'short',
    year: sameYear ? undefined : 'numeric',
  });
}

function sameDay(a, b) {
  return a.toDateString() === b.toDateString();
}

/** The full local date and time, for titles and the message header. */
export function fullTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value ?? '');
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** "512 B", "12.3 kB", "4.1 MB". */
export function formatSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB'];
  let value = n;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** The name of an address if it has one, else the address itself. */
export function displayName(address) {
  if (!address) return '';
  return (address.Name || '').trim() || address.Address || '';
}

/** An address as `Name <a@b>` elements: the name, then the address in muted text. */
export function addressNode(address) {
  const name = (address?.Name || '').trim();
  const email = address?.Address || '';
  if (!name) return h('span', { class: 'address' }, email);
  return h('span', { class: 'address', title: email }, name, ' ', h('span', { class: 'address-email' }, `<${email}>`));
}

/** A comma-separated list of `addressNode`s. */
export function addressListNode(addresses) {
  const nodes = [];
  for (const [index, address] of (addresses || []).entries()) {
    if (index > 0) nodes.push(', ');
    nodes.push(addressNode(address));
  }
  return nodes;
}

/** Returns `fn` delayed until `ms` passed without another call. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A panel that shows "Loading…", then `render(await load())`, or the error. */
export function asyncPanel(load, render) {
  const panel = h('div', { class: 'async-panel' }, h('p', { class: 'panel-note' }, 'Loading…'));
  load()
    .then((value) => panel.replaceChildren(render(value)))
    .catch((error) => panel.replaceChildren(h('p', { class: 'panel-error' }, error.message)));
  return panel;
}

/** A `<dl class="fields">` of `[term, value]` rows. */
export function definitionList(rows) {
  return h('dl', { class: 'fields' }, rows.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}
