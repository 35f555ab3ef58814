// Opens a simulator report.html in Debian's chromium (headless, through playwright-core) as a
// reader would, from disk, and prints one JSON line of what it saw: console errors, page
// errors and failed or off-disk requests; the figures with a drawn SVG inside; the SVG count;
// the images that loaded. Exits non-zero only when the browser cannot be driven.
//
// usage: node report_check.mjs FILE_URL [SCREENSHOT_PATH]
import { createRequire } from 'node:module';

// playwright-core is installed once for all browser tests, under tests/browser/.
const require = createRequire(new URL('../../tests/browser/package.json', import.meta.url));
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error(`playwright-core is missing (${e.message}): run .ci/test`);
  process.exit(2);
}

const [url, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

let browser;
try {
  browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--headless=new'] });
} catch (e) {
  console.error(`cannot start chromium at ${executablePath} (${e.message}): run .ci/test`);
  process.exit(2);
}
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`page: ${e.message}`));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  // Self-contained: nothing but files beside the page is fetched.
  page.on('request', (r) => { if (!r.url().startsWith('file://')) errors.push(`network request: ${r.url()}`); });
  await page.goto(url, { waitUntil: 'load' });
  const seen = await page.evaluate(() => {
    const drawn = (el) => { const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
    const figures = [...document.querySelectorAll('figure[id]')]
      .filter((f) => [...f.querySelectorAll('svg')].some(drawn) && f.querySelector('figcaption'))
      .map((f) => f.id);
    const imgs = [...document.images];
    return {
      title: document.title,
      figures,
      svgs: document.querySelectorAll('figure svg').length,
      imgs: imgs.length,
      imgs_loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
    };
  });
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ errors, ...seen }));
} finally {
  await browser.close();
}
