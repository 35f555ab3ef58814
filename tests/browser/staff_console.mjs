// Drives the staff console like a person at the counter: sign in with the staff token, see
// the waiting order, type the shopper's pickup code, hand over, see the hand-over listed and
// the stock on hand go down. Prints one JSON line of what it saw; exits non-zero on failure.
//
// usage: node staff_console.mjs BASE_URL STAFF_TOKEN ORDER_ID PICKUP_CODE SKU QTY
import { chromium } from 'playwright-core';

const [base, token, orderId, code, sku, qtyText] = process.argv.slice(2);
const qty = Number(qtyText);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const fail = (msg) => { console.error(msg); process.exit(1); };

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--headless=new'] });
try {
  const page = await browser.newPage();
  const seen = { urls: [] };
  page.on('request', (r) => seen.urls.push(r.url()));
  await page.goto(`${base}/staff`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${base}/staff`), page.click('#signin')]);
  await page.waitForSelector('#code');
  // The waiting order is listed.
  const waiting = page.locator('#waiting tr', { hasText: orderId });
  await waiting.waitFor({ timeout: 10000 });
  const onHand = async () => Number(await page.locator(`#stock tr[data-sku="${sku}"] td:nth-child(3)`).innerText());
  await page.locator(`#stock tr[data-sku="${sku}"]`).waitFor();
  const before = await onHand();
  await page.fill('#code', code);
  await page.click('#handover');
  await page.waitForFunction(() => document.querySelector('#result').classList.contains('ok'), null, { timeout: 10000 });
  const result = await page.innerText('#result');
  await page.locator('#handovers tr', { hasText: orderId }).waitFor({ timeout: 10000 });
  await page.waitForFunction(
    ([s, n]) => Number(document.querySelector(`#stock tr[data-sku="${s}"] td:nth-child(3)`).innerText) === n,
    [sku, before - qty], { timeout: 10000 });
  const after = await onHand();
  const stillWaiting = await page.locator('#waiting tr', { hasText: orderId }).count();
  // The same code again is refused on the page.
  await page.fill('#code', code);
  await page.click('#handover');
  await page.waitForFunction(() => document.querySelector('#result').classList.contains('bad'), null, { timeout: 10000 });
  const again = await page.innerText('#result');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'caidan_staff');
  if (!session || !session.httpOnly || session.sameSite !== 'Strict') fail(`session cookie not HttpOnly/Strict: ${JSON.stringify(session)}`);
  if (seen.urls.some((u) => u.includes(token))) fail('the staff token appeared in a URL');
  console.log(JSON.stringify({ result, before, after, stillWaiting, again }));
} finally {
  await browser.close();
}
