/**
 * Starting Debian's Chromium for the browser tests: headless, sandbox off (the tests run as
 * root), and none of its background traffic (this machine has no network but loopback), in a
 * fresh profile directory. Shared by e2e.mjs and crossorigin.mjs.
 */

import { chromium } from 'playwright-core';

/** Chromium's flags for a quiet headless run on loopback only. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * A persistent context in `profile` (Playwright refuses --user-data-dir in args: a persistent
 * context takes the directory), with `options` added to Playwright's launch options.
 */
export function launchChromium(executablePath, profile, options = {}) {
  return chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
    ...options,
  });
}
