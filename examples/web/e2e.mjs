// Drive the drawing demo in headless Chromium like a person would: draw digits with the mouse,
// read the answer off the page, take a screenshot.
//
//   node e2e.mjs URL SCREENSHOT.png      (prints one JSON object: results per drawing)
//
// Uses the system Chromium ($CHROMIUM, default /usr/bin/chromium) through playwright-core, so no
// browser download is needed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node e2e.mjs URL SCREENSHOT.png');
  process.exit(2);
}

// Strokes in canvas pixels (280x280). The small "1" sits in a corner to show that the page
// crops and rescales the drawing like the Python job, instead of squashing the whole pad.
const DRAWINGS = [
  { name: 'one', expect: 1, strokes: [[[150, 45], [138, 235]]] },
  { name: 'small one in a corner', expect: 1, strokes: [[[36, 22], [33, 84]]] },
  { name: 'seven', expect: 7, strokes: [[[70, 62], [205, 58], [185, 110], [128, 232]]], screenshot: true },
];

// On a closed network Chromium stalls on its own background fetches unless told not to make them.
const FLAGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-gpu',
  '--disable-sync',
  '--disable-quic',
];

const profile = mkdtempSync(join(tmpdir(), 'digits-e2e-'));
const problems = [];
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
    viewport: { width: 820, height: 540 },
    timeout: 60_000,
  });
  const origin = new URL(url).origin;
  // Everything must come from the local server: a CDN fetch would fail for users offline.
  await context.route('**/*', (route) => {
    const requested = route.request().url();
    if (new URL(requested).origin === origin) return route.continue();
    problems.push(`request outside ${origin}: ${requested}`);
    return route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));

  await page.goto(url);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]');
  const status = await page.textContent('#status');
  if ((await page.getAttribute('#status', 'data-state')) !== 'ready') throw new Error(`page says: ${status}`);

  const pad = await page.$('#pad');
  const results = [];
  for (const drawing of DRAWINGS) {
    await page.click('#clear');
    const box = await pad.boundingBox();
    const at = ([x, y]) => [box.x + (x * box.width) / 280, box.y + (y * box.height) / 280];
    for (const stroke of drawing.strokes) {
      await page.mouse.move(...at(stroke[0]));
      await page.mouse.down();
      for (const point of stroke.slice(1)) await page.mouse.move(...at(point), { steps: 12 });
      await page.mouse.up();
    }
    await page.waitForFunction(() => {
      const { strokes, classified } = document.getElementById('pad').dataset;
      return strokes && strokes === classified;
    });
    if (drawing.screenshot) await page.screenshot({ path: screenshot });
    results.push({
      name: drawing.name,
      expect: drawing.expect,
      shown: (await page.textContent('#digit')).trim(),
      ...(await page.evaluate(() => {
        const pad = document.getElementById('pad');
        const rgba = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
        let gray = '';
        for (let i = 0; i < rgba.length; i += 4) gray += String.fromCharCode(rgba[i]);
        return { width: pad.width, height: pad.height, gray: btoa(gray), prediction: window.lastPrediction };
      })),
    });
  }
  process.stdout.write(JSON.stringify({ status, problems, results }) + '\n');
} finally {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
}
