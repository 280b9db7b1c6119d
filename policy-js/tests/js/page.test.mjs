// The checker page in headless Chromium (Debian's, never a downloaded browser): served from
// 127.0.0.1, a bad ServiceEntry pasted in, the rendered violations read back. Screenshots go to
// target/policy-js/ as test artifacts.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';

import { serve } from '../../serve.mjs';
import { DATA, ROOT, WEB_DIST, read } from './common.mjs';

const ARTIFACTS = join(ROOT, 'target/policy-js');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

describe('checker page', () => {
  let server;
  let browser;
  let page;
  let url;

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    server = await serve(WEB_DIST, 0);
    url = `http://127.0.0.1:${server.address().port}/`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--no-first-run'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems = [];
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
    assert.deepEqual(problems, []);
  });

  after(async () => {
    await browser?.close();
    await new Promise((done) => (server ? server.close(done) : done()));
  });

  // Pastes as a user would: focus the field and insert the text, which fires `input`.
  async function paste(text) {
    await page.fill('#input', '');
    await page.focus('#input');
    await page.keyboard.insertText(text);
    await page.keyboard.press('Control+Enter');
  }

  test('a bad ServiceEntry shows each violation next to its field path', async () => {
    const seed = read(`${DATA}/seed/serviceentry-direct.yaml`);
    const bad = read(`${DATA}/bad/duplicate-and-wrong-port.yaml`);
    await paste(`${seed}\n---\n${bad}`);
    await page.waitForSelector('#summary.bad');
    assert.match(await page.textContent('#summary'), /Invalid: 2 violations/);

    const port = page.locator('li.finding[data-path="spec.endpoints[0].ports.http1"]');
    assert.equal(await port.locator('.path').textContent(), 'spec.endpoints[0].ports.http1');
    assert.equal(await port.locator('.message').textContent(),
      'port 8000 is not the gateway port 15443; set http1: 15443');
    assert.match(await port.locator('.object').textContent(), /foo\/httpbin-copy/);

    const duplicate = page.locator('li.finding[data-rule="duplicate-address"]');
    assert.equal(await duplicate.locator('.path').textContent(), 'spec.addresses[0]');
    assert.match(await duplicate.locator('.message').textContent(),
      /address 127\.255\.0\.2 is already used by ServiceEntry foo\/httpbin-bar/);
    assert.equal(await duplicate.locator('.suggestion code').textContent(), '127.255.0.1');

    // The summary is announced to screen readers.
    assert.equal(await page.getAttribute('#summary', 'aria-live'), 'polite');
    await page.screenshot({ path: join(ARTIFACTS, 'page-violations.png'), fullPage: true });
  });

  test('valid input turns green', async () => {
    await paste(read(`${DATA}/seed/serviceentry-direct.yaml`));
    await page.waitForSelector('#summary.ok');
    assert.equal(await page.textContent('#summary'),
      '✓ Valid: 1 ServiceEntry, no violations.');
    assert.equal(await page.locator('li.finding').count(), 0);
    await page.screenshot({ path: join(ARTIFACTS, 'page-valid.png'), fullPage: true });
  });

  test('malformed text names the line and moves the cursor there', async () => {
    await paste(read(`${DATA}/broken.yaml`));
    await page.waitForSelector('#summary.bad');
    const finding = page.locator('li.finding[data-rule="parse"]');
    assert.match(await finding.locator('.message').textContent(), /^line \d+ column \d+: /);
    await finding.locator('button.goto').click();
    assert.equal(await page.evaluate(() => document.activeElement.id), 'input');
  });

  test('the seed example button and the keyboard work', async () => {
    await page.fill('#input', '');
    await page.focus('#example');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#summary.ok');
    assert.match(await page.inputValue('#input'), /httpbin\.bar\.global/);
  });

  test('a file dropped on the text area is checked', async () => {
    await page.fill('#input', '');
    const text = read(`${DATA}/bad/no-address.yaml`);
    const dataTransfer = await page.evaluateHandle((content) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([content], 'no-address.yaml', { type: 'text/yaml' }));
      return transfer;
    }, text);
    await page.dispatchEvent('#input', 'drop', { dataTransfer });
    await page.waitForSelector('#summary.bad');
    assert.equal(await page.inputValue('#input'), text);
    assert.ok(await page.locator('li.finding.error').count() > 0);
  });

  test('a file opened with the file button is checked', async () => {
    await page.fill('#input', '');
    await page.setInputFiles('#file', `${DATA}/seed/serviceentry-versioned.yaml`);
    await page.waitForSelector('#summary.ok');
    assert.match(await page.inputValue('#input'), /httpbin\.bar\.global/);
  });

  test('existing ServiceEntries take their addresses', async () => {
    await page.click('details summary');
    await page.fill('#existing', read(`${DATA}/seed/serviceentry-direct.yaml`));
    await paste(read(`${DATA}/bad/duplicate-and-wrong-port.yaml`));
    await page.waitForSelector('li.finding[data-rule="duplicate-address"]');
    assert.match(await page.textContent('#summary'), /Invalid: 2 violations/);
    assert.equal(
      await page.textContent('li.finding[data-rule="duplicate-address"] .suggestion code'),
      '127.255.0.1');
    await page.screenshot({ path: join(ARTIFACTS, 'page-existing.png'), fullPage: true });
    await page.fill('#existing', '');
    await page.click('details summary');
  });

  test('a bad option is shown, not thrown', async () => {
    await paste(read(`${DATA}/seed/serviceentry-direct.yaml`));
    await page.click('details summary');
    await page.fill('#vip-ranges', '10.0.0.0/33');
    await page.keyboard.press('Enter');
    await page.waitForSelector('li.finding[data-rule="options"]');
    assert.match(await page.textContent('li.finding[data-rule="options"] .message'),
      /"10\.0\.0\.0\/33"/);
    await page.fill('#vip-ranges', '');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#summary.ok');
  });
});
