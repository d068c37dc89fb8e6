// Draw a digit, normalize it the way the Python job does, classify it with onnxruntime-web.
import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';
import { toMnist, BlankError } from './normalize.js';

// The wasm runtime comes from this server, never a CDN. One thread needs no SharedArrayBuffer,
// so the page works without cross-origin isolation headers.
ort.env.wasm.wasmPaths = new URL('node_modules/onnxruntime-web/dist/', import.meta.url).href;
ort.env.wasm.numThreads = 1;

const MODEL_URL = 'model.onnx';
const INPUT = 'images';
const OUTPUTS = ['probabilities', 'digit'];
const SIDE = 28;
// Thick enough that a digit filling the pad keeps an MNIST-like 2-3 px stroke after scaling.
const STROKE = 24;

const pad = document.getElementById('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true });
const status = document.getElementById('status');
const digitOut = document.getElementById('digit');
const confidenceOut = document.getElementById('confidence');
const seen = document.getElementById('seen').getContext('2d');
const bars = buildBars();

let session = null;
// Strokes finished and drawings cleared; pad.dataset mirrors them so a test knows when the page
// has caught up (data-classified === data-strokes).
let strokes = 0;
let clears = 0;

function setStatus(text, state) {
  status.textContent = text;
  status.dataset.state = state;
}

function buildBars() {
  const list = document.getElementById('bars');
  const rows = [];
  for (let d = 0; d < 10; d++) {
    const li = document.createElement('li');
    li.innerHTML = `<span>${d}</span><span class="track"><span class="fill"></span></span><span class="value">–</span>`;
    list.append(li);
    rows.push({ li, fill: li.querySelector('.fill'), value: li.querySelector('.value') });
  }
  return rows;
}

function clearPad() {
  clears += 1;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, pad.width, pad.height);
  seen.clearRect(0, 0, SIDE, SIDE);
  show(null);
}

// --- drawing ----------------------------------------------------------------------------------

function padPoint(event) {
  // The canvas may be shown smaller than its 280x280 pixels (narrow phones).
  const rect = pad.getBoundingClientRect();
  return [
    ((event.clientX - rect.left) * pad.width) / rect.width,
    ((event.clientY - rect.top) * pad.height) / rect.height,
  ];
}

let last = null;

pad.addEventListener('pointerdown', (event) => {
  if (!event.isPrimary) return;
  pad.setPointerCapture(event.pointerId);
  last = padPoint(event);
  ctx.fillStyle = '#fff';
  ctx.beginPath();
  ctx.arc(last[0], last[1], STROKE / 2, 0, 2 * Math.PI);
  ctx.fill();
  event.preventDefault();
});

pad.addEventListener('pointermove', (event) => {
  if (!last || !event.isPrimary) return;
  // Coalesced events keep fast finger strokes smooth instead of a few straight segments.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = STROKE;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(...last);
  for (const e of events.length ? events : [event]) {
    last = padPoint(e);
    ctx.lineTo(...last);
  }
  ctx.stroke();
});

function endStroke(event) {
  if (!last || !event.isPrimary) return;
  last = null;
  strokes += 1;
  pad.dataset.strokes = String(strokes);
  classify();
}
pad.addEventListener('pointerup', endStroke);
pad.addEventListener('pointercancel', endStroke);

document.getElementById('clear').addEventListener('click', clearPad);

// --- classification ---------------------------------------------------------------------------

function grayPixels() {
  // The pad holds only black and white (and their anti-aliased greys), so R == G == B and the
  // red channel is exactly what Pillow's convert("L") would give.
  const rgba = ctx.getImageData(0, 0, pad.width, pad.height).data;
  const gray = new Uint8Array(pad.width * pad.height);
  for (let i = 0; i < gray.length; i++) gray[i] = rgba[i * 4];
  return gray;
}

function drawSeen(input) {
  const image = seen.createImageData(SIDE, SIDE);
  input.forEach((v, i) => image.data.set([v, v, v, 255], i * 4));
  seen.putImageData(image, 0, 0);
}

function show(prediction) {
  window.lastPrediction = prediction; // read by e2e.mjs; handy in the devtools console too
  digitOut.textContent = prediction ? String(prediction.digit) : '–';
  confidenceOut.textContent = prediction ? `${(100 * prediction.probabilities[prediction.digit]).toFixed(1)}%` : '';
  bars.forEach(({ li, fill, value }, d) => {
    const p = prediction ? prediction.probabilities[d] : 0;
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    value.textContent = prediction ? `${(100 * p).toFixed(1)}%` : '–';
    li.classList.toggle('best', Boolean(prediction) && d === prediction.digit);
  });
}

async function predict() {
  let input;
  try {
    input = toMnist(grayPixels(), pad.width, pad.height);
  } catch (e) {
    if (!(e instanceof BlankError)) throw e;
    show(null);
    return;
  }
  const clearsBefore = clears;
  const feeds = { [INPUT]: new ort.Tensor('uint8', input, [1, SIDE, SIDE]) };
  const result = await session.run(feeds, OUTPUTS);
  if (clears !== clearsBefore) return; // the drawing this was for is gone
  drawSeen(input);
  show({
    digit: Number(result.digit.data[0]),
    probabilities: Array.from(result.probabilities.data),
    input: Array.from(input),
  });
}

// One inference at a time: a stroke that ends meanwhile is picked up by the next round.
let running = null;
let again = false;
async function classify() {
  if (!session) return;
  if (running) {
    again = true;
    return;
  }
  running = (async () => {
    do {
      again = false;
      const upTo = strokes;
      await predict();
      pad.dataset.classified = String(upTo);
    } while (again);
  })();
  try {
    await running;
  } catch (e) {
    setStatus(`Classification failed: ${e.message}`, 'error');
  } finally {
    running = null;
  }
}

async function load() {
  clearPad();
  try {
    session = await ort.InferenceSession.create(MODEL_URL, { executionProviders: ['wasm'] });
  } catch (e) {
    setStatus(`Could not load ${MODEL_URL}: ${e.message || e}. Start the page with serve.py.`, 'error');
    return;
  }
  const missing = [
    ...[INPUT].filter((name) => !session.inputNames.includes(name)),
    ...OUTPUTS.filter((name) => !session.outputNames.includes(name)),
  ];
  if (missing.length) {
    setStatus(`model.onnx lacks ${missing.join(', ')}: not this project's digit model`, 'error');
    return;
  }
  setStatus('Draw one digit, big or small; it is read after each stroke.', 'ready');
  classify();
}

load();
