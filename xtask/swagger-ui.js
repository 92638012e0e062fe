// Opens Swagger UI in headless Chromium, tries `POST /orders` with the example body, and
// fails unless the service answers 201 and the page loaded nothing from another origin (it
// must work on a machine without internet).
//
//   node xtask/swagger-ui.js http://127.0.0.1:PORT
const { chromium } = require('playwright-core');

const base = process.argv[2];
const operation = '#operations-orders-create_order';

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // As root in a container Chromium needs --no-sandbox; the others keep it off the network.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const elsewhere = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(base) && !request.url().startsWith('data:')) {
        elsewhere.push(request.url());
      }
    });
    await page.goto(`${base}/docs`);
    await page.click(`${operation} .opblock-summary`);
    await page.click(`${operation} button.try-out__btn`);
    await page.click(`${operation} button.execute`);
    const cell = `${operation} .live-responses-table tbody .response-col_status`;
    await page.waitForSelector(cell, { timeout: 15000 });
    const status = (await page.textContent(cell)).trim();
    const body = await page.textContent(`${operation} .live-responses-table tbody .response-col_description`);
    if (status !== '201') {
      throw new Error(`POST /orders from Swagger UI answered ${status}: ${body}`);
    }
    if (elsewhere.length > 0) {
      throw new Error(`Swagger UI loaded from other origins: ${elsewhere.join(', ')}`);
    }
    console.log(`Swagger UI: POST /orders answered ${status}; nothing loaded from another origin`);
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
