// Opens Swagger UI in headless Chromium and tries `POST /orders` with the example body.
// Without SWAGGER_UI_TOKEN the service is on open access and must answer 201. With it the
// service checks tokens: the call must show a 401 until the token is given through
// "Authorize", then a 201. Either way the page must offer "Authorize" and load nothing from
// another origin (it must work on a machine without internet). Nothing printed shows the
// token.
//
//   node xtask/swagger-ui.js http://127.0.0.1:PORT
//   SWAGGER_UI_TOKEN=... node xtask/swagger-ui.js http://127.0.0.1:PORT
const { chromium } = require('playwright-core');

const base = process.argv[2];
const token = process.env.SWAGGER_UI_TOKEN;
const operation = '#operations-orders-create_order';
const answer = `${operation} .live-responses-table tbody`;
const timeout = 15000;

// For error messages, which may quote what the page shows or what was typed into it.
const redact = (text) => (token ? text.split(token).join('[token]') : text);

// Clicks "Execute" and reads the answer the page shows: its status and body.
async function execute(page) {
  await page.click(`${operation} button.execute`);
  await page.waitForSelector(`${answer} .response-col_status`, { timeout });
  const status = (await page.textContent(`${answer} .response-col_status`)).trim();
  const body = await page.textContent(`${answer} .response-col_description`);
  return { status, body };
}

// Enters the token in the "Authorize" dialog, waits until it is taken, and closes the dialog.
async function authorize(page) {
  await page.click('.auth-wrapper button.authorize');
  await page.fill('.modal-ux input[aria-label="auth-bearer-value"]', token, { timeout });
  await page.click('.modal-ux button[aria-label="Apply credentials"]');
  await page.waitForSelector('.modal-ux button[aria-label="Remove authorization"]', { timeout });
  await page.click('.modal-ux button.btn-done');
}

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
    await page.waitForSelector('.auth-wrapper button.authorize', { timeout })
      .catch(() => { throw new Error('Swagger UI shows no "Authorize" button'); });
    await page.click(`${operation} .opblock-summary`);
    await page.click(`${operation} button.try-out__btn`);
    if (token) {
      const refused = await execute(page);
      if (refused.status !== '401' || !refused.body.includes('/problems/unauthorized')) {
        throw new Error(`POST /orders without a token answered ${refused.status}: ${refused.body}`);
      }
      console.log('Swagger UI: POST /orders without a token answered 401');
      // Clearing the answer lets the next one be read without mistaking it for this one.
      await page.click(`${operation} button.btn-clear`);
      await page.waitForSelector(answer, { state: 'detached', timeout });
      await authorize(page);
    }
    const { status, body } = await execute(page);
    if (status !== '201') {
      throw new Error(`POST /orders from Swagger UI answered ${status}: ${body}`);
    }
    if (elsewhere.length > 0) {
      throw new Error(`Swagger UI loaded from other origins: ${elsewhere.join(', ')}`);
    }
    const how = token ? 'with the token from "Authorize"' : 'on open access';
    console.log(`Swagger UI: POST /orders ${how} answered ${status}; nothing loaded from another origin`);
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.error(redact(err.message));
  process.exit(1);
});
