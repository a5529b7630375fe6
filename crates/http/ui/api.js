/**
 * The HTTP API the UI speaks: Mailpit's `/api/v1` (list, search, message, headers, raw source,
 * parts, read state, delete, tags, link check) and Tern's extensions (inboxes, the envelope
 * inside a message, its links, codes and authentication results, the outbound queue and the
 * server-sent event stream). Functions return parsed JSON or text and
 * throw `ApiError` carrying the server's message when the status is not 2xx.
 */

/** How many messages one page of the list holds. */
export const PAGE_SIZE = 50;
/** Most queue entries the queue page shows. */
export const QUEUE_LIMIT = 500;

export class ApiError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
  }
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: 'application/json, text/plain;q=0.9' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `Cannot reach the server (${error.message})`);
  }
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  return response;
}

/** The server's explanation: a JSON `{"Error": …}` body, or plain text. */
async function errorMessage(response) {
  const text = await response.text().catch(() => '');
  try {
    const json = JSON.parse(text);
    const message = json.Error || json.error || json.message;
    if (message) return `${response.status}: ${message}`;
  } catch {
    // Not JSON: use the text.
  }
  return `${response.status}: ${text.trim() || response.statusText}`;
}

function id(value) {
  return encodeURIComponent(value);
}

/** One page of the mailbox, or of a search when `query` is not empty. */
export async function listMessages({ query = '', start = 0, limit = PAGE_SIZE } = {}) {
  const params = new URLSearchParams({ start: String(start), limit: String(limit) });
  let path = '/api/v1/messages';
  if (query.trim()) {
    path = '/api/v1/search';
    params.set('query', query.trim());
  }
  return (await request('GET', `${path}?${params}`)).json();
}

/** The whole message (bodies, attachment list, Tern's `Envelope`). */
export async function getMessage(messageId) {
  return (await request('GET', `/api/v1/message/${id(messageId)}`)).json();
}

/** Header name → list of values. */
export async function getHeaders(messageId) {
  return (await request('GET', `/api/v1/message/${id(messageId)}/headers`)).json();
}

/**
 * The SPF, DKIM, ARC and DMARC results Tern recorded when the message came in:
 * `{"AuthservID", "Results": [{"Method", "Result", "Properties", "Comment"}]}`, with an empty
 * `Results` when it was not checked.
 */
export async function getAuthentication(messageId) {
  return (await request('GET', `/api/v1/message/${id(messageId)}/authentication`)).json();
}

/** `{"ID", "Links": [url, …]}`: every http and https link of the message's bodies. */
export async function getLinks(messageId) {
  return (await request('GET', `/api/v1/message/${id(messageId)}/links`)).json();
}

/**
 * Mailpit's link check: the server requests each link (only when `[http] link_check` is on;
 * else a 403) → `{"Errors", "Links": [{"URL", "StatusCode", "Status"}]}`.
 */
export async function checkLinks(messageId, follow) {
  const query = follow ? '?follow=true' : '';
  return (await request('GET', `/api/v1/message/${id(messageId)}/link-check${query}`)).json();
}

/** `{"ID", "Codes": [{"Code", "Context"}]}`: the one-time codes the message likely holds. */
export async function getCodes(messageId) {
  return (await request('GET', `/api/v1/message/${id(messageId)}/codes`)).json();
}

/** Every tag in use, sorted. */
export async function getTags() {
  return (await request('GET', '/api/v1/tags')).json();
}

/** Replaces the tags of the given messages with `tags` (Mailpit's `PUT /api/v1/tags`). */
export async function setTags(ids, tags) {
  await request('PUT', '/api/v1/tags', { IDs: ids, Tags: tags });
}

/**
 * The HTML compatibility check (Mailpit's `HTMLCheckResponse`): `{"Warnings", "Platforms",
 * "Total"}`; a 400 when the message has no HTML.
 */
export async function getHtmlCheck(messageId) {
  return (await request('GET', `/api/v1/message/${id(messageId)}/html-check`)).json();
}

/**
 * The dashboard's numbers (`/api/v1/stats`): received per minute, totals and, where mail goes
 * out, the queue, outcomes per hour and the top destinations and errors (admin only).
 */
export async function getStats() {
  return (await request('GET', '/api/v1/stats')).json();
}

/** The message source exactly as stored. */
export async function getRaw(messageId) {
  return (await request('GET', rawUrl(messageId))).text();
}

/** `{"Inboxes": [{"Address", "Total", "Unread"}]}` — one inbox per envelope recipient. */
export async function getInboxes() {
  return (await request('GET', '/api/v1/inboxes')).json();
}

/** Marks messages read or unread: the given IDs, or (with `search`) all matches. */
export async function setRead({ ids = [], read, search } = {}) {
  const body = { IDs: ids, Read: read };
  if (search) body.Search = search;
  await request('PUT', '/api/v1/messages', body);
}

/** Deletes the given messages. */
export async function deleteMessages(ids) {
  await request('DELETE', '/api/v1/messages', { IDs: ids });
}

/** Deletes every message matching `query`, or every message when it is empty. */
export async function deleteMatching(query) {
  if (query.trim()) {
    const params = new URLSearchParams({ query: query.trim() });
    await request('DELETE', `/api/v1/search?${params}`);
  } else {
    await request('DELETE', '/api/v1/messages', {});
  }
}

/**
 * The outbound queue: `{"Total", "Queued", "Held", "Messages", "Entries": [...]}`, one entry per
 * remote recipient of a message (admin only: an account's login gets a 403).
 */
export async function getQueue({ limit = QUEUE_LIMIT } = {}) {
  const params = new URLSearchParams({ limit: String(limit) });
  return (await request('GET', `/api/v1/queue?${params}`)).json();
}

/**
 * A queue command — `retry`, `hold`, `release` or `delete` — for the given message ids, or for
 * every queued message when `ids` is `'all'`. Resolves to the number of messages it applied to.
 */
export async function queueCommand(command, ids) {
  const body = ids === 'all' ? { All: true } : { IDs: ids };
  const response = command === 'delete'
    ? await request('DELETE', '/api/v1/queue', body)
    : await request('POST', `/api/v1/queue/${command}`, body);
  return (await response.json()).Messages ?? 0;
}

/**
 * The web UI settings (`/api/v1/webui`): whether, and through which relay, mail is released,
 * and whether the link check answers (`LinkCheck.Enabled`).
 */
export async function getWebUi() {
  return (await request('GET', '/api/v1/webui')).json();
}

/** Relays a stored message to `to` (addresses) through the outbound queue, with its retries. */
export async function releaseMessage(messageId, to) {
  await request('POST', `/api/v1/message/${id(messageId)}/release`, { To: to });
}

export function rawUrl(messageId) {
  return `/api/v1/message/${id(messageId)}/raw`;
}

export function partUrl(messageId, partId) {
  return `/api/v1/message/${id(messageId)}/part/${id(partId)}`;
}

/** The HTML body, served with a Content-Security-Policy; `remote` lets remote content load. */
export function htmlViewUrl(messageId, remote) {
  return `/view/${id(messageId)}.html${remote ? '?remote=1' : ''}`;
}

/**
 * Subscribes to live changes. `handlers` has `new(summary)`, `update({IDs, Read})`,
 * `delete({IDs})`, `truncate()`, `resync()` (the server dropped events for this client),
 * `queue()` (the outbound queue changed), and `open()` / `error()` for the connection state.
 * EventSource reconnects by itself; the caller reloads after a reconnect, since events sent
 * while disconnected are lost.
 */
export function subscribe(handlers) {
  const source = new EventSource('/api/v1/events');
  for (const name of ['new', 'update', 'delete', 'truncate', 'resync', 'queue', 'tags']) {
    source.addEventListener(name, (event) => handlers[name](parseEventData(event.data)));
  }
  source.addEventListener('open', () => handlers.open());
  source.addEventListener('error', () => handlers.error(source.readyState));
  return source;
}

function parseEventData(data) {
  try {
    return data ? JSON.parse(data) : {};
  } catch {
    return {};
  }
}
