/**
 * Tags: the editor in the message header (each tag a link that searches `tag:NAME`, a button
 * to remove it, a field to add one) and the sidebar's list of every tag in use. Changes go to
 * Mailpit's `PUT /api/v1/tags` with the message's full new list; the server's `tags` event
 * then brings the list (and any other open page) up to date.
 *
 * Links carry `data-query`, which app.js turns into a search, like the inboxes'.
 */

import * as api from './api.js';
import { h, icon } from './dom.js';

/** The search for messages with `tag` (quoted when it holds spaces or quotes). */
export function tagQuery(tag) {
  return /[\s"]/.test(tag) ? `tag:"${tag.replace(/"/g, '')}"` : `tag:${tag}`;
}

/** The header's tag editor for `message`; `known` lists tags to suggest. */
export class TagEditor {
  constructor(message, known = []) {
    this.message = message;
    this.tags = [...(message.Tags || [])];
    this.known = known;
    this.error = h('span', { class: 'tag-error', role: 'alert' });
    this.chips = h('span', { class: 'tags' });
    this.element = h('span', { class: 'tag-editor' }, this.chips, this.#addForm(), this.error);
    this.#render();
  }

  /** Shows `tags` (the server's current list, after a change made elsewhere). */
  set(tags) {
    this.tags = [...(tags || [])];
    this.message.Tags = [...this.tags];
    this.#render();
  }

  #render() {
    this.chips.replaceChildren(
      ...this.tags.map((tag) =>
        h(
          'span',
          { class: 'tag', dataset: { tag } },
          h('a', { class: 'tag-link', href: '#/', dataset: { query: tagQuery(tag) }, title: `Show messages tagged ${tag}` }, tag),
          h('button', { class: 'tag-remove', type: 'button', 'aria-label': `Remove tag ${tag}`, title: `Remove tag ${tag}`, onclick: () => this.#save(this.tags.filter((t) => t !== tag)) }, '×'),
        ),
      ),
    );
  }

  /** A "+ Tag" button that opens a field; Enter adds the tag, Escape closes it. */
  #addForm() {
    const listId = `tag-suggestions-${this.message.ID}`;
    const input = h('input', { class: 'tag-input', type: 'text', 'aria-label': 'New tag', placeholder: 'New tag', list: listId, maxlength: '100', spellcheck: 'false', autocomplete: 'off' });
    const suggestions = h('datalist', { id: listId }, this.known.map((tag) => h('option', { value: tag })));
    const open = h('button', { class: 'tag-add', type: 'button', title: 'Add a tag', 'aria-label': 'Add a tag' }, icon('tag'), '+');
    const form = h('form', { class: 'tag-form', hidden: true }, input, suggestions);
    open.addEventListener('click', () => {
      form.hidden = false;
      open.hidden = true;
      input.focus();
    });
    const close = () => {
      form.hidden = true;
      open.hidden = false;
      input.value = '';
    };
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const tag = input.value.trim();
      if (tag && !this.tags.includes(tag)) await this.#save([...this.tags, tag]);
      close();
      open.focus();
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') close();
    });
    input.addEventListener('blur', () => {
      if (!input.value.trim()) close();
    });
    return h('span', { class: 'tag-adder' }, open, form);
  }

  async #save(tags) {
    this.error.textContent = '';
    try {
      await api.setTags([this.message.ID], tags);
      this.set(tags);
    } catch (error) {
      this.error.textContent = `Could not change the tags: ${error.message}`;
    }
  }
}

/** The sidebar's tags: one search link per tag in use, the one searched marked active. */
export class TagList {
  constructor(list, heading) {
    this.list = list;
    this.heading = heading;
    this.tags = [];
    this.query = '';
  }

  /** Reloads the tags in use from the server. */
  async refresh() {
    try {
      this.tags = await api.getTags();
    } catch {
      this.tags = [];
    }
    this.render(this.query);
  }

  /** Redraws, marking the tag whose search is `query`. */
  render(query) {
    this.query = query;
    const items = (this.tags || []).map((tag) => {
      const search = tagQuery(tag);
      return h(
        'li',
        {},
        h('a', { class: ['inbox', 'tag-filter', search === query && 'active'], href: '#/', dataset: { query: search }, title: `Messages tagged ${tag}` }, icon('tag'), h('span', { class: 'inbox-name' }, tag)),
      );
    });
    this.list.replaceChildren(...items);
    this.heading.hidden = items.length === 0;
  }
}
