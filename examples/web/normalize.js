// A port of jobs/normalize.py ("mnist" mode) so the page feeds the model exactly what the Python
// job would make of the same drawing: ink levels, ink bounding box, longest side scaled to 20 px
// with Pillow's own resampling arithmetic, pasted into 28x28 by centre of mass.
// The Python job first box-reduces images larger than 512 px; the canvas is smaller, so that step
// (and its re-crop for tiny digits) never happens here and is left out.

const MNIST_SIDE = 28;
const BOX_SIDE = 20;
const CENTRE = 14.0;
const MIN_CONTRAST = 20;
const BBOX_THRESHOLD = pyRound(0.15 * 255);
const BBOX_TRIM = 0.002;

export class BlankError extends Error {}

// Python's round(): halves go to the even neighbour. Math.round would shift some sizes by 1 px.
function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

function histogram(values) {
  const hist = new Float64Array(256);
  for (const v of values) hist[v] += 1;
  return hist;
}

function percentile(hist, q) {
  let total = 0;
  for (const count of hist) total += count;
  const rank = (q / 100) * (total - 1);
  let cumulative = 0;
  for (let i = 0; i < hist.length; i++) {
    cumulative += hist[i];
    if (cumulative > rank) return i;
  }
  return hist.length;
}

// The outer ring of the image, with the same double counting as numpy's concatenation.
function border(gray, width, height, ring) {
  ring = Math.min(ring, Math.floor((Math.min(width, height) + 1) / 2));
  const values = [];
  const pushRow = (y, x0, x1) => {
    for (let x = x0; x < x1; x++) values.push(gray[y * width + x]);
  };
  for (let y = 0; y < ring; y++) pushRow(y, 0, width);
  for (let y = height - ring; y < height; y++) pushRow(y, 0, width);
  if (height > 2 * ring) {
    for (let y = ring; y < height - ring; y++) {
      pushRow(y, 0, ring);
      pushRow(y, width - ring, width);
    }
  }
  return values;
}

function measureLevels(gray, width, height) {
  let low = 255;
  let high = 0;
  for (const v of gray) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  if (high - low < MIN_CONTRAST) throw new BlankError('no ink');
  let ringHist = histogram(border(gray, width, height, Math.max(1, pyRound(Math.min(width, height) * 0.04))));
  const invert = percentile(ringHist, 50) > (low + high) / 2;
  if (invert) ringHist = ringHist.reverse();
  const median = percentile(ringHist, 50);
  const spread = percentile(ringHist, 75) - percentile(ringHist, 25);
  const background = Math.min(percentile(ringHist, 98), median + 4 * spread);
  const above = histogram(gray);
  if (invert) above.reverse();
  above.fill(0, 0, background + 1);
  if (above.every((count) => count === 0)) throw new BlankError('no ink');
  const ink = percentile(above, 99);
  if (ink - background < MIN_CONTRAST) throw new BlankError('no ink');
  // numpy does this stretch in float32, so round through float32 to land on the same bytes.
  const factor = Math.fround(255 / Math.max(1, ink - background));
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) {
    const value = invert ? 255 - v : v;
    const stretched = Math.fround((value - background) * factor);
    lut[v] = pyRound(Math.min(255, Math.max(0, stretched)));
  }
  return lut;
}

// First index whose running sum passes `margin`, and one past the first that reaches total - margin.
function trimmedSpan(profile, total) {
  const margin = BBOX_TRIM * total;
  let start = profile.length;
  let stop = profile.length;
  let cumulative = 0;
  for (let i = 0; i < profile.length; i++) {
    cumulative += profile[i];
    if (start === profile.length && cumulative > margin) start = i;
    if (cumulative >= total - margin) {
      stop = i;
      break;
    }
  }
  return [start, Math.min(profile.length, Math.max(stop + 1, start + 1))];
}

function inkBox(inked, width, height) {
  const rows = new Float64Array(height);
  const cols = new Float64Array(width);
  let total = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = inked[y * width + x];
      if (v > BBOX_THRESHOLD) {
        rows[y] += v;
        cols[x] += v;
        total += v;
      }
    }
  }
  if (total === 0) throw new BlankError('no ink');
  return [trimmedSpan(rows, total), trimmedSpan(cols, total)];
}

// --- Pillow's Image.resize for mode "L" (libImaging/Resample.c), fixed point and all ------------

const PRECISION_BITS = 32 - 8 - 2;

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}
const LANCZOS = { support: 3, filter: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) };
const BILINEAR = { support: 1, filter: (x) => Math.max(0, 1 - Math.abs(x)) };

function coefficients(inSize, outSize, resample) {
  const scale = inSize / outSize;
  const filterScale = Math.max(1, scale);
  const support = resample.support * filterScale;
  const taps = [];
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const min = Math.max(0, Math.trunc(center - support + 0.5));
    const max = Math.min(inSize, Math.trunc(center + support + 0.5));
    const weights = [];
    let sum = 0;
    for (let x = min; x < max; x++) {
      const w = resample.filter((x - center + 0.5) * (1 / filterScale));
      weights.push(w);
      sum += w;
    }
    const fixed = weights.map((w) => {
      const k = (sum !== 0 ? w / sum : w) * (1 << PRECISION_BITS);
      return Math.trunc(k < 0 ? k - 0.5 : k + 0.5);
    });
    taps.push({ min, fixed });
  }
  return taps;
}

function clip8(acc) {
  if (acc >= 255 * (1 << PRECISION_BITS)) return 255;
  if (acc <= 0) return 0;
  return Math.floor(acc / (1 << PRECISION_BITS));
}

// One separable pass over `along` (the axis being resized) for each of `across` lines;
// index(position, line, size) maps to the flat pixel offset.
function resamplePass(src, along, across, outSize, resample, index) {
  const out = new Uint8Array(outSize * across);
  const taps = coefficients(along, outSize, resample);
  for (let a = 0; a < across; a++) {
    for (let i = 0; i < outSize; i++) {
      const { min, fixed } = taps[i];
      let acc = 1 << (PRECISION_BITS - 1);
      for (let k = 0; k < fixed.length; k++) acc += src[index(min + k, a, along)] * fixed[k];
      out[index(i, a, outSize)] = clip8(acc);
    }
  }
  return out;
}

function pillowResize(src, width, height, newWidth, newHeight, resample) {
  const horizontal = (pixels, rows) =>
    newWidth === width ? pixels : resamplePass(pixels, width, rows, newWidth, resample, (x, y, w) => y * w + x);
  const vertical = (pixels, cols) =>
    newHeight === height ? pixels : resamplePass(pixels, height, cols, newHeight, resample, (y, x) => y * cols + x);
  // Each pass rounds to 8 bits, so the order changes the result. Recent Pillow runs the vertical
  // pass first when the height shrinks more than twice as much as the width (13.x does).
  const shrinkY = height - newHeight;
  if (shrinkY > 0 && shrinkY > (width - newWidth) * 2) return horizontal(vertical(src, width), newHeight);
  return vertical(horizontal(src, height), newWidth);
}

function fitBox(ink, width, height) {
  const scale = BOX_SIDE / Math.max(height, width);
  const newWidth = Math.max(1, pyRound(width * scale));
  const newHeight = Math.max(1, pyRound(height * scale));
  // Lanczos when shrinking, bilinear when enlarging: the same choice as the job.
  const resample = scale < 1 ? LANCZOS : BILINEAR;
  return [fullStrength(pillowResize(ink, width, height, newWidth, newHeight, resample)), newWidth, newHeight];
}

// MNIST strokes always peak at full white; a thin line shrunk to a faint trace is stretched back.
function fullStrength(patch) {
  const peak = patch.reduce((a, b) => Math.max(a, b), 0);
  if (peak === 0 || peak === 255) return patch;
  const factor = 255 / peak;
  return patch.map((v) => pyRound(v * factor));
}

function offset(shift, room) {
  return Math.min(Math.max(Math.floor(shift + 0.5), 0), room);
}

function place(patch, width, height) {
  let mass = 0;
  let rowMoment = 0;
  let colMoment = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = patch[y * width + x];
      mass += v;
      rowMoment += v * y;
      colMoment += v * x;
    }
  }
  if (mass === 0) throw new BlankError('no ink');
  const top = offset(CENTRE - rowMoment / mass, MNIST_SIDE - height);
  const left = offset(CENTRE - colMoment / mass, MNIST_SIDE - width);
  const canvas = new Uint8Array(MNIST_SIDE * MNIST_SIDE);
  for (let y = 0; y < height; y++) {
    canvas.set(patch.subarray(y * width, (y + 1) * width), (top + y) * MNIST_SIDE + left);
  }
  return canvas;
}

// gray: Uint8Array of width*height pixels. Returns the 28x28 MNIST-style image as 784 bytes;
// throws BlankError when there is nothing to read.
export function toMnist(gray, width, height) {
  const lut = measureLevels(gray, width, height);
  const inked = gray.map((v) => lut[v]);
  const [[top, bottom], [left, right]] = inkBox(inked, width, height);
  const cropWidth = right - left;
  const cropHeight = bottom - top;
  const crop = new Uint8Array(cropWidth * cropHeight);
  for (let y = 0; y < cropHeight; y++) {
    crop.set(inked.subarray((top + y) * width + left, (top + y) * width + right), y * cropWidth);
  }
  return place(...fitBox(crop, cropWidth, cropHeight));
}
