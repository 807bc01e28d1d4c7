import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { expect } from 'vitest';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The machine's Chromium, headless, for the grants page tests. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** Signs in through the page's form: the key travels in the POST body only. */
export async function signIn(page: Page, api: string, key: string): Promise<void> {
  expect((await page.goto(`${api}/`))?.status()).toBe(401);
  await page.fill('input[name=key]', key);
  await Promise.all([page.waitForURL(`${api}/`), page.click('button[type=submit]')]);
}

/** Every console message about a refused script, style or connection (the CSP at work). */
export function cspViolations(context: BrowserContext): string[] {
  const refused: string[] = [];
  context.on('page', (p) => watchConsole(p, refused));
  for (const p of context.pages()) watchConsole(p, refused);
  return refused;
}

function watchConsole(page: Page, into: string[]) {
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) into.push(m.text());
  });
  page.on('pageerror', (err) => into.push(`page error: ${err.message}`));
}
