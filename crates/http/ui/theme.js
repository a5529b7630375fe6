/**
 * The colour theme: the system's (`prefers-color-scheme`, the default), or light or dark as the
 * reader chose with the top bar's button, remembered in localStorage. The choice is written as
 * `data-theme` on `<html>`, where app.css turns it into `color-scheme`; every colour is a
 * `light-dark()` pair, so nothing else changes. The mail's HTML frame keeps its own colours:
 * its document declares no scheme, so it stays light on the frame's white background.
 */

import { icon } from './dom.js';

const STORAGE_KEY = 'tern-theme';
/** Each click moves to the next: system → light → dark → system. */
const NEXT = { system: 'light', light: 'dark', dark: 'system' };
const ICONS = { system: 'contrast', light: 'sun', dark: 'moon' };
const LABELS = { system: 'as the system', light: 'light', dark: 'dark' };

/** Applies the stored choice and wires `button` to change it. */
export function initTheme(button) {
  let theme = stored();
  apply(theme, button);
  button.addEventListener('click', () => {
    theme = NEXT[theme];
    remember(theme);
    apply(theme, button);
  });
}

function stored() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return value in NEXT ? value : 'system';
  } catch {
    return 'system'; // storage disabled: follow the system
  }
}

function remember(theme) {
  try {
    if (theme === 'system') localStorage.removeItem(STORAGE_KEY);
    else localStorage.setItem(STORAGE_KEY, theme);
  } catch {
    // Storage disabled: the choice lasts for this page only.
  }
}

function apply(theme, button) {
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const label = `Colour theme: ${LABELS[theme]} (click for ${LABELS[NEXT[theme]]})`;
  button.title = label;
  button.setAttribute('aria-label', label);
  button.dataset.theme = theme;
  button.replaceChildren(icon(ICONS[theme]));
}
