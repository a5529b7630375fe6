/**
 * Tern's web UI: the entry point, the state, and everything that changes it.
 *
 * Three panes — inboxes, the message list, the open message — are drawn from one `state`
 * object. It changes in a handful of ways, each a small function below: loading and paging the
 * list (`loadList`, `loadMore`), live events from `/api/v1/events` (`live`), opening and closing
 * a message (`route`), marking read (`setRead`), deleting (`deleteMessage`, `deleteAll`) and
 * the keyboard (`KEYS`). Each change updates `state` first and then redraws with `renderList`.
 *
 * The open message is in the URL hash (`#/m/ID`) and the search in `?q=`, so reloads, links and
 * the Back button work; `#/queue` shows the outbound queue in place of the list and message,
 * `#/dashboard` the dashboard (`dashboard.js`).
 * Modules: `api.js` (HTTP), `list.js` (list rows), `message.js` (message pane; its Links, Codes
 * and Envelope tabs in `views.js`, its HTML check in `htmlcheck.js`), `tags.js` (tag editor and
 * the sidebar's tags), `theme.js` (light, dark or the system's), `queue.js` (the queue page),
 * `dom.js` (safe element building and formatting; message text is never parsed as HTML).
 */

import * as api from './api.js';
import { debounce, h, icon } from './dom.js';
import { MessageList } from './list.js';
import { MessageView } from './message.js';
import { QueuePage } from './queue.js';
import { TagList } from './tags.js';
import { initTheme } from './theme.js';
import { DashboardPage } from './dashboard.js';

/** Most messages a background resync reloads at once (the reader may have paged further). */
const MAX_RESYNC = 500;
const SEARCH_DELAY_MS = 250;
/** EventSource retries dropped connections itself, but not refused ones (a non-200 answer). */
const RECONNECT_DELAY_MS = 5000;

const $ = (id) => document.getElementById(id);

const state = {
  query: '',
  /** MessageSummary objects, newest first: the pages loaded so far. */
  messages: [],
  counts: { total: 0, unread: 0, matched: 0, matchedUnread: 0 },
  listError: null,
  loaded: false,
  /** Bumped by each full reload so that late answers of older requests are dropped. */
  generation: 0,
  loading: false,
  resyncAfterLoad: false,
  inboxes: [],
  selectedId: null,
  openId: null,
  /** Read state of the open message when it is not in the loaded list. */
  openRead: false,
  /** The MessageView of the open message. */
  view: null,
  /** Where released mail goes (`/api/v1/webui`), or null when this server does not release. */
  releaseVia: null,
  /** The server answers the link check (`/api/v1/webui`'s `LinkCheck.Enabled`). */
  linkCheck: false,
  /** The tab last chosen by the reader; the next message opens on it when it has one. */
  tab: 'html',
  /** The outbound queue page is shown instead of the list and the message. */
  queueOpen: false,
  /** Likewise the dashboard. */
  dashboardOpen: false,
};

let list;
let queue;
let tagList;
let dashboard;
const syncSoon = debounce(() => loadList({ keepSize: true }), 250);
const inboxesSoon = debounce(loadInboxes, 400);
const tagsSoon = debounce(refreshTags, 300);

document.addEventListener('DOMContentLoaded', start);

function start() {
  initTheme($('theme-button'));
  tagList = new TagList($('tag-list'), $('tags-heading'));
  list = new MessageList($('message-list'));
  queue = new QueuePage(
    {
      rows: $('queue-rows'),
      table: $('queue-table'),
      summary: $('queue-summary'),
      empty: $('queue-empty'),
      retryAll: $('queue-retry-all'),
      link: $('queue-link'),
      count: $('queue-count'),
    },
    { toast, confirm: (text) => confirmDialog(text, 'Delete') },
  );
  dashboard = new DashboardPage($('dashboard-pane'));
  state.query = new URLSearchParams(location.search).get('q') || '';
  $('search').value = state.query;
  wireSearch();
  wireSidebar();
  wireList();
  document.addEventListener('keydown', onKey);
  window.addEventListener('popstate', route);
  window.addEventListener('hashchange', route);
  wireRelease();
  connectLive();
  loadList();
  loadInboxes();
  tagList.refresh();
  route();
  // The queue page loads itself when shown; otherwise this fills the sidebar's count.
  if (!state.queueOpen) queue.refresh();
  setInterval(() => {
    list.refreshTimes();
    queue.refreshTimes();
  }, 30_000);
}

// ---- the list -------------------------------------------------------------------------------

/** Reloads the first page (or, with `keepSize`, as many messages as are shown now). */
async function loadList({ keepSize = false } = {}) {
  const generation = ++state.generation;
  const limit = keepSize ? Math.min(Math.max(api.PAGE_SIZE, state.messages.length), MAX_RESYNC) : api.PAGE_SIZE;
  state.loading = true;
  try {
    const page = await api.listMessages({ query: state.query, start: 0, limit });
    if (generation !== state.generation) return;
    state.messages = page.messages || [];
    setCounts(page);
    state.listError = null;
  } catch (error) {
    if (generation !== state.generation) return;
    state.listError = error.message;
    if (!keepSize) state.messages = [];
  }
  state.loading = false;
  state.loaded = true;
  renderList();
  if (!keepSize) $('list-pane').scrollTop = 0;
  if (state.resyncAfterLoad) {
    state.resyncAfterLoad = false;
    syncSoon();
  }
}

async function loadMore() {
  const generation = state.generation;
  const button = $('load-more');
  button.disabled = true;
  try {
    const page = await api.listMessages({ query: state.query, start: state.messages.length });
    if (generation !== state.generation) return;
    const known = new Set(state.messages.map((message) => message.ID));
    state.messages.push(...(page.messages || []).filter((message) => !known.has(message.ID)));
    setCounts(page);
  } catch (error) {
    toast(error.message, 'error');
  } finally {
    button.disabled = false;
    renderList();
  }
}

function setCounts(page) {
  state.counts = {
    total: page.total ?? 0,
    unread: page.unread ?? 0,
    matched: page.messages_count ?? page.total ?? 0,
    matchedUnread: page.messages_unread ?? page.unread ?? 0,
  };
}

function renderList() {
  list.render(state.messages, { selectedId: state.selectedId, openId: state.openId });
  const { total, unread, matched, matchedUnread } = state.counts;
  $('list-summary').textContent = !state.loaded
    ? 'Loading…'
    : state.query
      ? `${plural(matched, 'match', 'matches')} · ${matchedUnread} unread`
      : `${plural(total, 'message', 'messages')} · ${unread} unread`;
  renderEmpty();
  $('load-more').hidden = state.messages.length >= state.counts.matched || !state.messages.length;
  $('mark-all-read').disabled = matchedUnread === 0;
  $('delete-all').disabled = state.messages.length === 0;
  $('all-count').textContent = unread ? String(unread) : '';
  document.title = unread ? `(${unread}) Tern` : 'Tern';
}

function renderEmpty() {
  const empty = $('list-empty');
  let text = '';
  if (state.listError) text = `Could not load messages: ${state.listError}`;
  else if (state.loaded && !state.messages.length && state.query) text = `No messages match “${state.query}”.`;
  else if (state.loaded && !state.messages.length) text = 'No messages yet. Mail sent to Tern’s SMTP port shows up here at once.';
  empty.textContent = text;
  empty.hidden = !text;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function findMessage(id) {
  return state.messages.find((message) => message.ID === id);
}

function wireList() {
  $('message-list').addEventListener('click', (event) => {
    const link = event.target.closest('a.row-link');
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    navigate(link.closest('.row').dataset.id);
  });
  $('load-more').addEventListener('click', loadMore);
  $('mark-all-read').addEventListener('click', markAllRead);
  $('delete-all').addEventListener('click', deleteAll);
}

// ---- search and inboxes ---------------------------------------------------------------------

function wireSearch() {
  const input = $('search');
  const searchSoon = debounce(() => setQuery(input.value), SEARCH_DELAY_MS);
  input.addEventListener('input', searchSoon);
  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    setQuery(input.value);
  });
  for (const example of document.querySelectorAll('#search-help [data-insert]')) {
    example.addEventListener('click', () => insertTerm(example.dataset.insert));
  }
}

/** Adds a term from the help popover to the search and runs it. */
function insertTerm(term) {
  const input = $('search');
  input.value = input.value.trim() ? `${input.value.trim()} ${term}` : term;
  $('search-help').hidePopover?.();
  input.focus();
  setQuery(input.value);
}

function setQuery(query) {
  leaveQueue();
  query = query.trim();
  if ($('search').value.trim() !== query) $('search').value = query;
  if (query === state.query) return;
  state.query = query;
  state.selectedId = null;
  writeUrl(location.hash);
  renderInboxes();
  loadList();
}

function writeUrl(hash, mode = 'replace', data = history.state) {
  const search = state.query ? `?q=${encodeURIComponent(state.query)}` : '';
  const url = `${location.pathname}${search}${hash || ''}`;
  if (mode === 'push') history.pushState(data, '', url);
  else history.replaceState(data, '', url);
}

async function loadInboxes() {
  try {
    state.inboxes = (await api.getInboxes()).Inboxes || [];
  } catch {
    state.inboxes = [];
  }
  renderInboxes();
}

function renderInboxes() {
  const items = state.inboxes.map((inbox) => {
    const query = `inbox:${inbox.Address}`;
    return h(
      'li',
      {},
      h(
        'a',
        { class: ['inbox', inbox.Unread > 0 && 'unread', state.query === query && !state.queueOpen && 'active'], href: '#/', dataset: { query }, title: `${inbox.Address}: ${inbox.Total} messages, ${inbox.Unread} unread` },
        icon('mail'),
        h('span', { class: 'inbox-name' }, inbox.Address),
        h('span', { class: 'badge' }, inbox.Unread > 0 ? inbox.Unread : inbox.Total),
      ),
    );
  });
  $('inboxes').replaceChildren(...items);
  $('inboxes-empty').hidden = items.length > 0;
  tagList.render(state.queueOpen || state.dashboardOpen ? '' : state.query);
  document.querySelector('.inbox-all').classList.toggle('active', !state.query && !state.queueOpen && !state.dashboardOpen);
}

/** Links with `data-query` (inboxes, "All messages", the logo) run that search. */
function wireSidebar() {
  document.addEventListener('click', (event) => {
    const link = event.target.closest('a[data-query]');
    if (!link) return;
    event.preventDefault();
    setDrawer(false);
    leaveQueue();
    // Replace rather than pop the history entry: the URL written next must carry the query.
    if (state.openId) {
      closeMessage();
      writeUrl('', 'replace', null);
    }
    setQuery(link.dataset.query);
  });
  $('queue-link').addEventListener('click', () => setDrawer(false));
  $('dashboard-link').addEventListener('click', () => setDrawer(false));
  $('menu-button').addEventListener('click', () => setDrawer(!document.body.classList.contains('drawer-open')));
  $('scrim').addEventListener('click', () => setDrawer(false));
}

function setDrawer(open) {
  document.body.classList.toggle('drawer-open', open);
  $('menu-button').setAttribute('aria-expanded', String(open));
  $('scrim').hidden = !open;
}

// ---- live updates ---------------------------------------------------------------------------

/** Handlers for the server-sent events; each patches `state` and redraws. */
const live = {
  new(summary) {
    if (!summary?.ID) return;
    if (state.loading) state.resyncAfterLoad = true;
    inboxesSoon();
    if (summary.Tags?.length) tagsSoon();
    // Mail for other servers is queued in the same commit.
    queue.refreshSoon();
    dashboard.refreshSoon();
    // The server decides what a search matches, so a search is simply reloaded.
    if (state.query) return syncSoon();
    if (findMessage(summary.ID)) return;
    state.messages.unshift(summary);
    adjustCounts(1, summary.Read ? 0 : 1);
    renderList();
    list.flash(summary.ID);
  },
  update({ IDs = [], Read }) {
    applyRead(IDs, Boolean(Read));
    inboxesSoon();
  },
  delete({ IDs = [] }) {
    removeMessages(IDs);
    inboxesSoon();
    tagsSoon();
    // A deleted message takes its queue entries with it.
    queue.refreshSoon();
  },
  truncate() {
    state.messages = [];
    state.counts = { total: 0, unread: 0, matched: 0, matchedUnread: 0 };
    if (state.openId) back();
    renderList();
    inboxesSoon();
    queue.refreshSoon();
  },
  resync() {
    syncSoon();
    inboxesSoon();
    queue.refreshSoon();
  },
  /** The outbound queue changed: an attempt, a command or a release. */
  queue() {
    queue.refreshSoon();
    dashboard.refreshSoon();
  },
  /** Tags were set, renamed or removed (`/api/v1/tags`): the list shows them, so reload it. */
  tags() {
    syncSoon();
    tagsSoon();
  },
  open() {
    setLive('connected', 'Live', 'Live updates connected');
    // Events sent while the stream was down (or before it opened) are lost: catch up.
    syncSoon();
    inboxesSoon();
    tagsSoon();
    queue.refreshSoon();
  },
  error(readyState) {
    setLive('offline', 'Reconnecting', 'Live updates disconnected; retrying');
    if (readyState === EventSource.CLOSED) setTimeout(connectLive, RECONNECT_DELAY_MS);
  },
};

function connectLive() {
  api.subscribe(live);
}

function setLive(status, text, title) {
  const element = $('live');
  element.className = `live ${status}`;
  element.title = title;
  element.querySelector('.live-text').textContent = text;
}

function adjustCounts(messages, unread) {
  const counts = state.counts;
  counts.total = Math.max(0, counts.total + messages);
  counts.matched = Math.max(0, counts.matched + messages);
  counts.unread = Math.max(0, counts.unread + unread);
  counts.matchedUnread = Math.max(0, counts.matchedUnread + unread);
}

/** Sets the read state locally; messages not loaded here make the counts resync. */
function applyRead(ids, read) {
  let unknown = ids.length === 0;
  let unreadDelta = 0;
  for (const id of ids) {
    if (id === state.openId) state.openRead = read;
    const message = findMessage(id);
    if (!message) {
      unknown = true;
    } else if (message.Read !== read) {
      message.Read = read;
      unreadDelta += read ? -1 : 1;
    }
  }
  if (ids.length === 0) {
    for (const message of state.messages) message.Read = read;
    state.openRead = read;
  }
  adjustCounts(0, unreadDelta);
  if (state.view && (ids.length === 0 || ids.includes(state.openId))) state.view.setRead(read);
  renderList();
  if (unknown) syncSoon();
}

/** Drops messages from the list, closing the open one if it went. */
function removeMessages(ids) {
  const gone = new Set(ids);
  const neighbour = gone.has(state.selectedId) ? neighbourOf(state.selectedId, gone) : state.selectedId;
  let unknown = false;
  for (const id of gone) {
    const message = findMessage(id);
    if (message) adjustCounts(-1, message.Read ? 0 : -1);
    else unknown = true;
  }
  state.messages = state.messages.filter((message) => !gone.has(message.ID));
  state.selectedId = neighbour;
  if (state.openId && gone.has(state.openId)) back();
  renderList();
  if (unknown) syncSoon();
}

/** The message after `id` (or before it, at the end) that is not in `excluded`. */
function neighbourOf(id, excluded) {
  const index = state.messages.findIndex((message) => message.ID === id);
  if (index < 0) return null;
  const after = state.messages.slice(index + 1).find((message) => !excluded.has(message.ID));
  const before = state.messages.slice(0, index).reverse().find((message) => !excluded.has(message.ID));
  return (after || before)?.ID ?? null;
}

/** The sidebar's tags, and the open message's (another page or the API may have changed them). */
async function refreshTags() {
  tagList.refresh();
  const id = state.openId;
  if (!id || !state.view) return;
  try {
    const message = await api.getMessage(id);
    if (state.openId === id) state.view?.setTags(message.Tags);
  } catch {
    // Deleted meanwhile: the delete event closes it.
  }
}

// ---- opening a message ----------------------------------------------------------------------

/** Opens message `id`, adding a history entry when coming from the list. */
function navigate(id) {
  const hash = `#/m/${encodeURIComponent(id)}`;
  if (state.openId) writeUrl(hash, 'replace', { fromList: history.state?.fromList ?? false });
  else writeUrl(hash, 'push', { fromList: true });
  route();
}

/**
 * Back to the list: closes the message at once, then pops our history entry when there is one
 * (else rewrites the URL). Closing first makes a second call before `popstate` a no-op, so
 * two quick calls never walk back out of the app.
 */
function back() {
  if (!state.openId) return;
  const pop = history.state?.fromList && location.hash.startsWith('#/m/');
  closeMessage();
  if (!pop) {
    writeUrl('', 'replace', null);
    return;
  }
  history.back();
  // If a link inside the mail had navigated its frame, back() undoes that instead of leaving
  // the message's URL: then drop the message from the URL in place.
  setTimeout(() => {
    if (!state.openId && location.hash.startsWith('#/m/')) writeUrl('', 'replace', null);
  }, 250);
}

/**
 * Shows whatever the URL names: a message, or the list alone. The search is not part of the
 * history: after Back/Forward the URL's `?q=` is rewritten to the search shown.
 */
function route() {
  const shown = { '#/queue': 'queue', '#/dashboard': 'dashboard' }[location.hash];
  for (const name of Object.keys(PAGES)) if (name !== shown) hidePage(name);
  if (shown) {
    showPage(shown);
    return;
  }
  const match = location.hash.match(/^#\/m\/(.+)$/);
  const id = match ? decodeURIComponent(match[1]) : null;
  if (id && id !== state.openId) openMessage(id);
  else if (!id && state.openId) closeMessage();
  if ((new URLSearchParams(location.search).get('q') || '') !== state.query) writeUrl(location.hash);
}

// ---- the queue page and the dashboard --------------------------------------------------------

/**
 * The pages shown in place of the list and the message: the state flag, the sidebar link and
 * the page object of each (its body class is `NAME-open`).
 */
const PAGES = {
  queue: { flag: 'queueOpen', link: 'queue-link', page: () => queue },
  dashboard: { flag: 'dashboardOpen', link: 'dashboard-link', page: () => dashboard },
};

function showPage(name) {
  const { flag, link, page } = PAGES[name];
  if (state.openId) closeMessage();
  if (state[flag]) return;
  state[flag] = true;
  document.body.classList.add(`${name}-open`);
  $(link).classList.add('active');
  $(link).setAttribute('aria-current', 'page');
  renderInboxes();
  page().open();
}

function hidePage(name) {
  const { flag, link, page } = PAGES[name];
  if (!state[flag]) return;
  state[flag] = false;
  document.body.classList.remove(`${name}-open`);
  $(link).classList.remove('active');
  $(link).removeAttribute('aria-current');
  page().close();
  renderInboxes();
}

/** Back to the list from the queue page or the dashboard, as a new history entry. */
function leaveQueue() {
  const open = Object.keys(PAGES).filter((name) => state[PAGES[name].flag]);
  if (!open.length) return;
  open.forEach(hidePage);
  writeUrl('', 'push', null);
}

async function openMessage(id) {
  state.openId = id;
  state.selectedId = id;
  state.view = null;
  document.body.classList.add('viewing');
  $('placeholder').hidden = true;
  const article = $('message');
  article.hidden = false;
  article.replaceChildren(h('p', { class: 'panel-note' }, 'Loading…'));
  renderList();
  list.reveal(id);
  try {
    const message = await api.getMessage(id);
    if (state.openId === id) showMessage(message);
  } catch (error) {
    if (state.openId === id) showOpenError(error);
  }
}

function showMessage(message) {
  const summary = findMessage(message.ID);
  const wasRead = summary ? summary.Read : false;
  state.openRead = true;
  state.view = new MessageView($('message'), message, {
    tab: state.tab,
    read: true,
    onTab: (name) => (state.tab = name),
    onBack: back,
    onDelete: () => deleteMessage(message.ID),
    onToggleRead: () => toggleRead(message.ID),
    onRelease: state.releaseVia ? () => releaseMessage(message) : null,
    linkCheck: state.linkCheck,
    knownTags: tagList.tags,
  });
  if (!wasRead) setRead([message.ID], true);
}

function showOpenError(error) {
  const text = error.status === 404 ? 'This message no longer exists.' : `Could not open the message: ${error.message}`;
  $('message').replaceChildren(
    h('div', { class: 'message-toolbar' }, h('button', { class: 'icon-button back-button', type: 'button', 'aria-label': 'Back to the list', onclick: back }, icon('back'))),
    h('p', { class: 'panel-error' }, text),
  );
}

function closeMessage() {
  state.openId = null;
  state.view = null;
  document.body.classList.remove('viewing');
  $('message').hidden = true;
  $('message').replaceChildren();
  $('placeholder').hidden = false;
  renderList();
  if (state.selectedId) list.reveal(state.selectedId);
}

// ---- read state and deleting ----------------------------------------------------------------

async function setRead(ids, read) {
  applyRead(ids, read);
  try {
    await api.setRead({ ids, read });
  } catch (error) {
    toast(`Could not mark as ${read ? 'read' : 'unread'}: ${error.message}`, 'error');
    syncSoon();
  }
}

function isRead(id) {
  const message = findMessage(id);
  if (message) return message.Read;
  return id === state.openId ? state.openRead : false;
}

function toggleRead(id) {
  if (id) setRead([id], !isRead(id));
}

/** Marks the whole mailbox read, or with a search, the matches shown. */
async function markAllRead() {
  const ids = state.query ? state.messages.filter((message) => !message.Read).map((message) => message.ID) : [];
  if (state.query && !ids.length) return;
  await setRead(ids, true);
}

async function deleteMessage(id) {
  if (!id) return;
  removeMessages([id]);
  try {
    await api.deleteMessages([id]);
    toast('Message deleted');
  } catch (error) {
    toast(`Could not delete: ${error.message}`, 'error');
    syncSoon();
  }
}

async function deleteAll() {
  const { query } = state;
  const count = query ? state.counts.matched : state.counts.total;
  const what = query ? `all ${plural(count, 'message', 'messages')} matching “${query}”` : `all ${plural(count, 'message', 'messages')}`;
  if (!(await confirmDialog(`Delete ${what}? This cannot be undone.`))) return;
  try {
    await api.deleteMatching(query);
    toast(`Deleted ${what}`);
  } catch (error) {
    toast(`Could not delete: ${error.message}`, 'error');
  }
  if (state.openId) back();
  loadList();
  inboxesSoon();
}

// ---- releasing ------------------------------------------------------------------------------

/**
 * Learns whether this server releases mail (`/api/v1/webui`): a catcher only through its
 * `relay_host`, an MTA through each domain's MX. The message toolbar offers Release only then.
 */
function wireRelease() {
  $('release-cancel').addEventListener('click', () => $('release').close('cancel'));
  api
    .getWebUi()
    .then((ui) => {
      const relay = ui.MessageRelay || {};
      state.releaseVia = relay.Enabled ? relay.SMTPServer || "each recipient's mail server" : null;
      state.linkCheck = Boolean(ui.LinkCheck?.Enabled);
      // A message opened before the answer came gets the buttons now.
      if ((state.releaseVia || state.linkCheck) && state.view) showMessage(state.view.message);
    })
    .catch(() => {
      state.releaseVia = null;
    });
}

/** Asks for recipients (the message's own To by default) and releases the message to them. */
async function releaseMessage(message) {
  const dialog = $('release');
  const input = $('release-to');
  input.value = (message.To || []).map((to) => to.Address).join(', ');
  $('release-via').textContent = `A copy goes out through ${state.releaseVia}, retried from the outbound queue until it is delivered.`;
  const closed = askInDialog(dialog);
  input.select();
  const confirmed = await closed;
  const to = input.value.split(/[\s,;]+/).filter(Boolean);
  if (!confirmed || !to.length) return;
  try {
    await api.releaseMessage(message.ID, to);
    toast(`Released to ${to.join(', ')}`);
    queue.refresh();
  } catch (error) {
    toast(`Could not release: ${error.message}`, 'error');
  }
}

/** Asks in the page's own dialog; resolves true when the reader confirms. */
function confirmDialog(text, action = 'Delete') {
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = action;
  const confirmed = askInDialog($('confirm'));
  $('confirm-ok').focus();
  return confirmed;
}

/** Opens `dialog` modally; resolves true when it closes with the value `ok`. */
function askInDialog(dialog) {
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

// ---- keyboard -------------------------------------------------------------------------------

const KEYS = {
  j: () => move(1),
  k: () => move(-1),
  ArrowDown: () => move(1),
  ArrowUp: () => move(-1),
  Enter: openSelected,
  o: openSelected,
  Escape: escape,
  Delete: () => deleteMessage(state.openId || state.selectedId),
  '#': () => deleteMessage(state.openId || state.selectedId),
  u: () => toggleRead(state.openId || state.selectedId),
  '/': focusSearch,
};

function onKey(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if ($('confirm').open || $('release').open || popoverOpen()) return;
  const target = event.target;
  // The list's keys mean nothing on the queue page; `/` still searches (and leaves it).
  if ((state.queueOpen || state.dashboardOpen) && !isTextField(target) && event.key !== '/') return;
  if (isTextField(target)) {
    if (event.key === 'Escape') target.blur();
    if (event.key === 'ArrowDown' && target === $('search')) focusFirstRow(event);
    return;
  }
  // Arrows inside the message (or on a focused control) keep their usual meaning.
  if (event.key.startsWith('Arrow') && target.closest?.('#message-pane, .tabs')) return;
  if (event.key === 'Enter' && target.closest?.('a, button')) return;
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  action();
}

function popoverOpen() {
  try {
    return document.querySelector(':popover-open') !== null;
  } catch {
    return false; // a browser without the Popover API
  }
}

function isTextField(element) {
  if (element instanceof HTMLTextAreaElement || element instanceof HTMLSelectElement) return true;
  if (!(element instanceof HTMLInputElement)) return element?.isContentEditable === true;
  return !['checkbox', 'radio', 'button', 'submit', 'reset'].includes(element.type);
}

function focusFirstRow(event) {
  event.preventDefault();
  event.target.blur();
  if (!state.selectedId && state.messages.length) state.selectedId = state.messages[0].ID;
  renderList();
}

/** Moves the selection; with a message open, opens the next one instead. */
function move(delta) {
  if (!state.messages.length) return;
  const index = state.messages.findIndex((message) => message.ID === (state.openId || state.selectedId));
  const next = index < 0 ? 0 : Math.min(Math.max(index + delta, 0), state.messages.length - 1);
  const id = state.messages[next].ID;
  if (next === state.messages.length - 1 && delta > 0 && !$('load-more').hidden) loadMore();
  if (state.openId) {
    if (id !== state.openId) navigate(id);
    return;
  }
  state.selectedId = id;
  renderList();
  list.reveal(id);
}

function openSelected() {
  if (state.selectedId && state.selectedId !== state.openId) navigate(state.selectedId);
}

function escape() {
  if (document.body.classList.contains('drawer-open')) setDrawer(false);
  else if (state.openId) back();
}

function focusSearch() {
  const input = $('search');
  input.focus();
  input.select();
}

// ---- toasts ---------------------------------------------------------------------------------

function toast(text, kind = 'info') {
  const element = h('div', { class: ['toast', kind] }, text);
  $('toasts').append(element);
  setTimeout(() => element.remove(), kind === 'error' ? 7000 : 3500);
}
