/**
 * The message's "HTML check" tab: which HTML and CSS features its HTML uses and which email
 * clients lack them (`/api/v1/message/ID/html-check`, caniemail's data).
 *
 * The top shows the overall support as a bar (supported, partial, unsupported) and a platform
 * filter; below, one collapsible row per feature, worst first, with its share of clients and,
 * opened, its description, each client version's support and caniemail's notes. Choosing a
 * platform recomputes every score and the total over that platform's clients only, with the
 * server's rule (see `crates/http/src/htmlcheck`). Descriptions and notes are caniemail's
 * Markdown, shown as text: nothing from the check is parsed as HTML.
 */

import { h } from './dom.js';

const PLATFORM_NAMES = {
  'desktop-app': 'Desktop apps',
  'desktop-webmail': 'Desktop webmail',
  'mobile-webmail': 'Mobile webmail',
  'outlook-com': 'Outlook.com',
  'windows-mail': 'Windows Mail',
  android: 'Android',
  ios: 'iOS',
  macos: 'macOS',
  windows: 'Windows',
  webmail: 'Webmail',
};

const SUPPORT_LABELS = { yes: 'Supported', partial: 'Partial', no: 'Not supported', unknown: 'Unknown' };

/** The panel for `report` (the endpoint's JSON). */
export function htmlCheckPanel(report) {
  const root = h('div', { class: 'panel-pad html-check' });
  const warnings = report.Warnings || [];
  const platforms = Object.keys(report.Platforms || {}).sort();
  const select = h(
    'select',
    { id: 'html-check-platform', class: 'field field-inline', 'aria-label': 'Show results for platform' },
    h('option', { value: '' }, 'All platforms'),
    platforms.map((platform) => h('option', { value: platform }, platformName(platform))),
  );
  const body = h('div', { class: 'html-check-body' });
  const draw = () => body.replaceChildren(...view(report, warnings, select.value));
  select.addEventListener('change', draw);
  root.append(h('div', { class: 'html-check-toolbar' }, h('label', { for: 'html-check-platform' }, 'Platform'), select), body);
  draw();
  return root;
}

function platformName(platform) {
  return PLATFORM_NAMES[platform] || platform;
}

/** The summary and the warnings, over `platform`'s clients (all when empty). */
function view(report, warnings, platform) {
  const nodes = Math.max(1, report.Total?.Nodes || 1);
  const shown = warnings
    .map((warning) => ({ warning, results: (warning.Results || []).filter((r) => !platform || r.Platform === platform) }))
    .filter(({ warning, results }) => !platform || results.length || !(warning.Results || []).length)
    // A warning without client results (Mailpit's `html-script`) keeps its own score.
    .map((item) => ({ ...item, score: platform && item.results.length ? scoreOf(item.results, item.warning.Score.Found) : item.warning.Score }));
  const total = platform ? totalOf(shown.map((item) => item.score), nodes) : report.Total;
  shown.sort((a, b) => badness(b.score, nodes) - badness(a.score, nodes));
  return [summary(total, report.Total, shown.length), shown.length ? h('ul', { class: 'check-list' }, shown.map(warningRow)) : h('p', { class: 'muted check-clean' }, 'No HTML or CSS feature with uneven support was found.')];
}

/** The share of `results` with each support (unknown left out), as the server computes it. */
export function scoreOf(results, found) {
  const count = (support) => results.filter((r) => r.Support === support).length;
  const known = count('yes') + count('partial') + count('no');
  if (!known) return { Found: found, Supported: 0, Partial: 0, Unsupported: 0 };
  return { Found: found, Supported: (count('yes') / known) * 100, Partial: (count('partial') / known) * 100, Unsupported: (count('no') / known) * 100 };
}

/** The worst weighted partial and unsupported shares; supported is what remains. */
export function totalOf(scores, nodes) {
  const weight = (score) => Math.min(1, score.Found / nodes);
  const partial = Math.max(0, ...scores.map((s) => s.Partial * weight(s)));
  const unsupported = Math.max(0, ...scores.map((s) => s.Unsupported * weight(s)));
  return { Supported: Math.max(0, 100 - partial - unsupported), Partial: partial, Unsupported: unsupported };
}

function badness(score, nodes) {
  return ((score.Partial + score.Unsupported) * Math.min(1, score.Found / nodes));
}

function percent(value) {
  return `${Math.round(value * 10) / 10}%`;
}

function summary(total, all, count) {
  return h(
    'div',
    { class: 'check-summary' },
    h(
      'div',
      { class: 'check-figures' },
      figure('supported', 'Supported', total.Supported),
      figure('partial', 'Partial', total.Partial),
      figure('unsupported', 'Not supported', total.Unsupported),
    ),
    supportBar(total),
    h('p', { class: 'muted check-note' }, `${count} ${count === 1 ? 'feature' : 'features'} found among ${all.Tests} tested, in ${all.Nodes} ${all.Nodes === 1 ? 'element' : 'elements'}. Support data: caniemail.com.`),
  );
}

function figure(kind, label, value) {
  return h('div', { class: ['check-figure', `support-${kind}`], dataset: { kind } }, h('span', { class: 'check-figure-value' }, percent(value)), h('span', { class: 'check-figure-label' }, label));
}

/** A bar split into supported, partial and unsupported shares. */
function supportBar(score) {
  const part = (kind, value) => (value > 0 ? h('span', { class: `bar-${kind}`, style: `width: ${value}%`, title: `${SUPPORT_LABELS[kind === 'supported' ? 'yes' : kind === 'partial' ? 'partial' : 'no']}: ${percent(value)}` }) : null);
  return h('div', { class: 'support-bar', role: 'img', 'aria-label': `Supported ${percent(score.Supported)}, partial ${percent(score.Partial)}, not supported ${percent(score.Unsupported)}` }, part('supported', score.Supported), part('partial', score.Partial), part('unsupported', score.Unsupported));
}

function warningRow({ warning, results, score }) {
  return h(
    'li',
    { class: 'check-item', dataset: { slug: warning.Slug } },
    h(
      'details',
      {},
      h(
        'summary',
        { class: 'check-head' },
        h('span', { class: 'check-title' }, warning.Title),
        h('span', { class: 'check-category' }, warning.Category),
        h('span', { class: 'check-found', title: 'Uses in this message' }, `×${score.Found}`),
        h('span', { class: 'check-score' }, supportBar(score), h('span', { class: 'check-score-text' }, `${percent(score.Supported)} supported`)),
      ),
      warningBody(warning, results),
    ),
  );
}

function warningBody(warning, results) {
  const notes = Object.entries(warning.NotesByNumber || {});
  return h(
    'div',
    { class: 'check-body' },
    warning.Description ? h('p', { class: 'check-description' }, warning.Description) : null,
    warning.URL ? h('p', {}, h('a', { href: warning.URL, target: '_blank', rel: 'noopener noreferrer' }, 'caniemail.com: ', warning.Title)) : null,
    clientTable(results),
    notes.length ? h('ol', { class: 'check-notes' }, notes.map(([number, text]) => h('li', { value: number }, text))) : null,
  );
}

/** One row per client family and platform, its versions as support chips. */
function clientTable(results) {
  if (!results.length) return h('p', { class: 'muted' }, 'No client results for this feature.');
  const groups = new Map();
  for (const result of results) {
    const name = result.Name.replace(/\s*\([^)]*\)$/, '');
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(result);
  }
  const rows = [...groups].map(([name, versions]) =>
    h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, versions.map((r) => h('span', { class: ['support-chip', `support-${r.Support}`], title: SUPPORT_LABELS[r.Support] || r.Support }, r.Version, r.NoteNumber ? h('sup', {}, r.NoteNumber) : null)))),
  );
  return h('table', { class: 'check-clients' }, h('tbody', {}, rows));
}
