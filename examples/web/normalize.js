// A port of jobs/normalize.py ("mnist" mode) and the modules it uses (jobs/ink.py, jobs/cleanup.py,
// jobs/strokes.py), so the page feeds the model exactly what the Python job would make of the same
// drawing: ink told from paper (Otsu, border lines, corners, pieces), frame lines and specks
// removed, the ink cropped, stretch undone, drawn at 80 px where the stroke width is brought to
// MNIST's, then shrunk to 20 px with Pillow's own resampling arithmetic and pasted into 28x28 by
// centre of mass. Every decision is made on integers or exact fractions, so the bytes agree.
// The Python job first box-reduces images larger than 512 px; the canvas is smaller, so that step
// (and its re-crop for tiny digits) never happens here and is left out.

const MNIST_SIDE = 28;
const BOX_SIDE = 20;
const STROKE_SIDE = 4 * BOX_SIDE;
const CENTRE = 14.0;
const MIN_CONTRAST = 20;
const BBOX_THRESHOLD = pyRound(0.15 * 255);
const BBOX_TRIM = 0.002;
// jobs/ink.py
const BORDER_DEPTH = 5;
const UNIFORM_TENTHS = 9;
const CORNER_VOTES = 3;
const MINORITY_PERCENT = 45;
// jobs/cleanup.py
const STROKE_LEVEL = 128;
const FAINT_LEVEL = 38;
const LINK_LEVEL = 112;
const FRAME_DEPTH_DIVISOR = 5;
const FRAME_FULL_TWENTIETHS = 19;
const FRAME_THICK_DIVISOR = 10;
const FRAME_MIN_SIDES = 2;
const CELL_MIN_PART = 5;
const MIN_COHERENCE_PERCENT = 12;
// jobs/strokes.py
const TARGET_WIDTH_HALVES = 15;
const THIN_TENTHS = 6;
const THICK_TENTHS = 15;
const STRETCH_TENTHS = 13;
const FILLED_THIRDS = 3;
const BAR_SIXTH = 6;
const BAR_QUARTER = 4;
const BAR_EIGHTH = 8;
const SQUARE_BOX_SQUEEZE = 0.8; // MNIST's median width/height for digits other than 1

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

// --- jobs/ink.py ----------------------------------------------------------------------------------

// Otsu's threshold, comparing the between-class variances as exact fractions (BigInt).
function otsu(hist) {
  let total = 0;
  let totalSum = 0;
  for (let i = 0; i < 256; i++) {
    total += hist[i];
    totalSum += i * hist[i];
  }
  let bestT = 0;
  let bestNum = -1n;
  let bestDen = 1n;
  let weight = 0;
  let mass = 0;
  for (let t = 0; t < 255; t++) {
    weight += hist[t];
    mass += t * hist[t];
    const rest = total - weight;
    if (weight === 0 || rest === 0) continue;
    const diff = BigInt(mass * rest - (totalSum - mass) * weight);
    const num = diff * diff;
    const den = BigInt(weight) * BigInt(rest);
    if (num * bestDen > bestNum * den) {
      bestT = t;
      bestNum = num;
      bestDen = den;
    }
  }
  return bestT;
}

// 8-connected components, numbered in raster order of their first pixel as scipy.ndimage.label.
function label(mask, width, height) {
  const labels = new Int32Array(width * height);
  const stack = [];
  let count = 0;
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    count += 1;
    labels[start] = count;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop();
      const y = Math.floor(p / width);
      const x = p - y * width;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const q = ny * width + nx;
          if (mask[q] && !labels[q]) {
            labels[q] = count;
            stack.push(q);
          }
        }
      }
    }
  }
  return { labels, count };
}

function pieces(mask, width, height) {
  const { labels, count } = label(mask, width, height);
  const sizes = new Float64Array(count + 1);
  for (const l of labels) sizes[l] += 1;
  let n = 0;
  for (let i = 1; i <= count; i++) if (sizes[i] * 100 >= mask.length) n += 1;
  return n;
}

function backgroundLevel(paperHist) {
  const median = percentile(paperHist, 50);
  const spread = percentile(paperHist, 75) - percentile(paperHist, 25);
  return Math.min(percentile(paperHist, 98), median + 4 * spread);
}

// A border row or column, without its ends: a vote for the class covering 9/10 of it.
function vote(values, dark, votes) {
  const end = Math.floor(values.length / 10);
  const line = values.slice(end, values.length - end);
  const lineDark = dark.slice(end, dark.length - end);
  let darkCount = 0;
  for (const d of lineDark) darkCount += d;
  if (darkCount * 10 >= UNIFORM_TENTHS * line.length) {
    votes.push({ isDark: true, pixels: line.filter((_, i) => lineDark[i]) });
  } else if ((line.length - darkCount) * 10 >= UNIFORM_TENTHS * line.length) {
    votes.push({ isDark: false, pixels: line.filter((_, i) => !lineDark[i]) });
  }
}

// [paper is light, the paper's grey levels] when most border lines agree, else null.
function borderDecides(gray, dark, width, height) {
  const depth = Math.max(1, Math.floor(Math.min(width, height) / BORDER_DEPTH));
  const row = (a, y) => Array.from(a.subarray(y * width, (y + 1) * width));
  const col = (a, x) => Array.from({ length: height }, (_, y) => a[y * width + x]);
  const votes = [];
  for (let k = 0; k < depth; k++) {
    for (const y of [k, height - 1 - k]) vote(row(gray, y), row(dark, y), votes);
    for (const x of [k, width - 1 - k]) vote(col(gray, x), col(dark, x), votes);
  }
  const darkVotes = votes.filter((v) => v.isDark).length;
  const lightVotes = votes.length - darkVotes;
  if (Math.max(lightVotes, darkVotes) * 2 < 4 * depth || lightVotes === darkVotes) return null;
  const paperIsLight = lightVotes > darkVotes;
  return [paperIsLight, votes.filter((v) => v.isDark !== paperIsLight).flatMap((v) => v.pixels)];
}

// A binarized image: two grey levels, no more.
function twoLevel(hist) {
  return hist.filter((count) => count > 0).length === 2;
}

function tightBinaryCrop(hist, dark, width, height) {
  if (!twoLevel(hist)) return false;
  let top = false;
  let bottom = false;
  let left = false;
  let right = false;
  for (let x = 0; x < width; x++) {
    top ||= !dark[x];
    bottom ||= !dark[(height - 1) * width + x];
  }
  for (let y = 0; y < height; y++) {
    left ||= !dark[y * width];
    right ||= !dark[y * width + width - 1];
  }
  return top && bottom && left && right;
}

function measureLevels(gray, width, height) {
  let hist = histogram(gray);
  let low = 0;
  while (hist[low] === 0) low++;
  let high = 255;
  while (hist[high] === 0) high--;
  if (high - low < MIN_CONTRAST) throw new BlankError('no ink');
  const threshold = otsu(hist);
  const dark = gray.map((v) => (v <= threshold ? 1 : 0));
  // The border is judged by Otsu's classes, then against the middle of the image's range (Otsu
  // may split unevenly lit paper around a small digit).
  const middle = Math.floor((low + high) / 2);
  let decided = borderDecides(gray, dark, width, height);
  if (decided === null) {
    decided = borderDecides(gray, gray.map((v) => (v <= middle ? 1 : 0)), width, height);
  }
  if (decided !== null && !decided[0] && tightBinaryCrop(hist, dark, width, height)) {
    // Light paper touching all four edges of a two-level image: a form reader's tight crop of
    // black ink on white (see jobs/ink.py).
    decided = [true, Array.from(gray).filter((_, i) => !dark[i])];
  }
  let paperIsLight;
  let paper;
  if (decided !== null) {
    [paperIsLight, paper] = decided;
  } else {
    let darkCount = 0;
    for (const d of dark) darkCount += d;
    const size = gray.length;
    const corners = dark[0] + dark[width - 1] + dark[(height - 1) * width] + dark[height * width - 1];
    const piecesDiff =
      corners > 4 - CORNER_VOTES && corners < CORNER_VOTES
        ? pieces(dark, width, height) - pieces(dark.map((d) => 1 - d), width, height)
        : 0;
    if (corners <= 4 - CORNER_VOTES) paperIsLight = true;
    else if (corners >= CORNER_VOTES) paperIsLight = false;
    else if (piecesDiff !== 0) paperIsLight = piecesDiff < 0;
    else if (twoLevel(hist)) paperIsLight = true;
    else if (darkCount * 100 < MINORITY_PERCENT * size) paperIsLight = true;
    else if ((size - darkCount) * 100 < MINORITY_PERCENT * size) paperIsLight = false;
    else paperIsLight = true;
    paper = Array.from(gray).filter((_, i) => dark[i] !== (paperIsLight ? 1 : 0));
  }
  const invert = paperIsLight;
  let paperHist = histogram(paper);
  if (invert) {
    paperHist = paperHist.reverse();
    hist = hist.reverse();
  }
  const background = backgroundLevel(paperHist);
  const above = hist.slice();
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

// --- jobs/cleanup.py ------------------------------------------------------------------------------

function isNoise(mask, width, height) {
  let count = 0;
  let agree = 0;
  let slots = 0; // neighbours inside the image (see jobs/cleanup.py)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!mask[y * width + x]) continue;
      count += 1;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          if (!dy && !dx) continue;
          const ny = y + dy;
          const nx = x + dx;
          if (ny >= 0 && ny < height && nx >= 0 && nx < width) {
            agree += mask[ny * width + nx];
            slots += 1;
          }
        }
      }
    }
  }
  const size = mask.length;
  return 100 * (agree * size - slots * count) < MIN_COHERENCE_PERCENT * slots * (size - count);
}

function frameDepth(counts, length, side) {
  const limit = Math.max(1, Math.floor(side / FRAME_DEPTH_DIVISOR));
  const full = counts.map((c) => c * 20 >= FRAME_FULL_TWENTIETHS * length);
  let last = -1;
  for (let k = 0; k < Math.min(limit, full.length); k++) if (full[k]) last = k;
  if (last < 0) return 0;
  let start = last;
  while (start > 0 && full[start - 1]) start--;
  let stop = last;
  while (stop + 1 < full.length && full[stop + 1]) stop++;
  if (stop - start + 1 > Math.max(1, Math.floor(side / FRAME_THICK_DIVISOR))) return 0;
  return stop + 1;
}

function insideFrame(mask, width, height) {
  const rows = new Array(height).fill(0);
  const cols = new Array(width).fill(0);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (mask[y * width + x]) {
        rows[y] += 1;
        cols[x] += 1;
      }
    }
  }
  const depths = [
    frameDepth(rows, width, height),
    frameDepth(rows.slice().reverse(), width, height),
    frameDepth(cols, height, width),
    frameDepth(cols.slice().reverse(), height, width),
  ];
  if (depths.filter((d) => d).length < FRAME_MIN_SIDES) return [0, height, 0, width];
  return [depths[0], height - depths[1], depths[2], width - depths[3]];
}

function restretch(inked) {
  const hist = histogram(inked);
  hist[0] = 0;
  if (hist.every((count) => count === 0)) return inked;
  const peak = Math.max(1, percentile(hist, 99));
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.min(255, Math.floor((2 * 255 * v + peak) / (2 * peak)));
  return inked.map((v) => lut[v]);
}

// A long thin piece lying along an edge, longer than the digit is wide (or tall) there.
function framePiece([top, bottom, left, right], [mTop, mBottom, mLeft, mRight], width, height) {
  return (
    alongEdge(left, right, top, bottom, mRight - mLeft, width, height) ||
    alongEdge(top, bottom, left, right, mBottom - mTop, height, width)
  );
}

function alongEdge(start, stop, acrossStart, acrossStop, digit, length, side) {
  const extent = stop - start;
  if (2 * extent < length || extent < digit) return false;
  const thin = acrossStop - acrossStart <= Math.max(1, Math.floor(side / FRAME_THICK_DIVISOR));
  const band = Math.max(1, Math.floor(side / FRAME_DEPTH_DIVISOR));
  return thin && (acrossStop <= band || acrossStart >= side - band);
}

function mainStrokes(linked, inked, width, height) {
  const { labels, count } = label(linked, width, height);
  const masses = new Array(count).fill(0);
  const boxes = Array.from({ length: count }, () => [height, 0, width, 0]);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const l = labels[y * width + x];
      if (!l) continue;
      masses[l - 1] += inked[y * width + x];
      const box = boxes[l - 1];
      box[0] = Math.min(box[0], y);
      box[1] = Math.max(box[1], y + 1);
      box[2] = Math.min(box[2], x);
      box[3] = Math.max(box[3], x + 1);
    }
  }
  const order = Array.from({ length: count }, (_, i) => i).sort(
    (a, b) => masses[b] - masses[a] || a - b,
  );
  const main = order[0];
  let [top, bottom, left, right] = boxes[main];
  // A digit clear of every edge sits in a cell: pieces of grid line are dropped (see
  // jobs/cleanup.py).
  const inCell = top > 0 && left > 0 && bottom < height && right < width;
  const mainBox = [top, bottom, left, right];
  const kept = new Uint8Array(count + 1);
  kept[main + 1] = 1;
  for (const i of order.slice(1)) {
    const [bTop, bBottom, bLeft, bRight] = boxes[i];
    if (inCell && framePiece(boxes[i], mainBox, width, height)) continue;
    const gap = Math.max(top - bBottom, bTop - bottom, left - bRight, bLeft - right, 0);
    const reach = Math.max(2, Math.floor(Math.max(bottom - top, right - left) / 4));
    if (
      gap <= 1 ||
      (gap <= reach && masses[i] * 10 >= masses[main]) ||
      masses[i] * 2 >= masses[main]
    ) {
      kept[i + 1] = 1;
      top = Math.min(top, bTop);
      bottom = Math.max(bottom, bBottom);
      left = Math.min(left, bLeft);
      right = Math.max(right, bRight);
    }
  }
  // One pixel of margin (a 3x3 dilation) keeps the anti-aliased edge of the kept strokes.
  const keep = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!kept[labels[y * width + x]] || !labels[y * width + x]) continue;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const ny = y + dy;
          const nx = x + dx;
          if (ny >= 0 && ny < height && nx >= 0 && nx < width) keep[ny * width + nx] = 1;
        }
      }
    }
  }
  return keep;
}

// The rows and columns that hold any nonzero pixel: [top, bottom, left, right], inclusive;
// bottom is -1 when there is none.
function inkExtent(pixels, width, height) {
  let top = height;
  let bottom = -1;
  let left = width;
  let right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!pixels[y * width + x]) continue;
      top = Math.min(top, y);
      bottom = Math.max(bottom, y);
      left = Math.min(left, x);
      right = Math.max(right, x);
    }
  }
  return [top, bottom, left, right];
}

function tooSmall(strokes, width, height, side) {
  const [top, bottom, left, right] = inkExtent(strokes, width, height);
  const extent = Math.max(bottom - top, right - left) + 1;
  return extent * CELL_MIN_PART < side;
}

function keepDigit(inked, width, height) {
  let mask = inked.map((v) => (v >= STROKE_LEVEL ? 1 : 0));
  if (mask.every((m) => !m)) throw new BlankError('no ink');
  if (isNoise(mask, width, height)) throw new BlankError('no ink');
  const faint = inked.map((v) => (v >= FAINT_LEVEL ? 1 : 0));
  const [top, bottom, left, right] = insideFrame(faint, width, height);
  const inside = new Uint8Array(width * height);
  for (let y = top; y < bottom; y++) inside.fill(1, y * width + left, y * width + right);
  const framed = !(top === 0 && bottom === height && left === 0 && right === width);
  if (framed) {
    inked = restretch(inked.map((v, i) => (inside[i] ? v : 0)));
    mask = inked.map((v) => (v >= STROKE_LEVEL ? 1 : 0));
  }
  mask = mask.map((m, i) => m & inside[i]);
  if (mask.every((m) => !m)) throw new BlankError('no ink');
  // Pieces are told apart a little below half ink (see jobs/cleanup.py).
  const linked = inked.map((v, i) => (v >= LINK_LEVEL && inside[i] ? 1 : 0));
  const keep = mainStrokes(linked, inked, width, height);
  if (framed) {
    const strokes = keep.map((k, i) => k & mask[i]);
    if (tooSmall(strokes, width, height, Math.min(bottom - top, right - left))) {
      throw new BlankError('no ink');
    }
  }
  return inked.map((v, i) => (keep[i] && inside[i] ? v : 0));
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


// --- jobs/strokes.py ------------------------------------------------------------------------------

function resize(image, width, height, newWidth, newHeight) {
  if (newWidth === width && newHeight === height) return image;
  // Lanczos when shrinking, bilinear when enlarging: the same choice as the job.
  const resample = newWidth < width || newHeight < height ? LANCZOS : BILINEAR;
  return pillowResize(image, width, height, newWidth, newHeight, resample);
}

// MNIST strokes always peak at full white; a thin line shrunk to a faint trace is stretched back.
function fullStrength(patch) {
  const peak = patch.reduce((a, b) => Math.max(a, b), 0);
  if (peak === 0 || peak === 255) return patch;
  const factor = 255 / peak;
  return patch.map((v) => pyRound(v * factor));
}

// 2 * area / perimeter of the mask, as [numerator, denominator].
function strokeWidthHalves(mask, width, height) {
  let area = 0;
  let perimeter = 0;
  const at = (x, y) => (x >= 0 && x < width && y >= 0 && y < height ? mask[y * width + x] : 0);
  for (let y = -1; y < height; y++) {
    for (let x = -1; x < width; x++) {
      if (y >= 0 && x >= 0 && at(x, y)) area += 1;
      if (x >= 0 && at(x, y) !== at(x, y + 1)) perimeter += 1;
      if (y >= 0 && at(x, y) !== at(x + 1, y)) perimeter += 1;
    }
  }
  return [2 * area, Math.max(1, perimeter)];
}

// Square max or min filter of side 2 * radius + 1, outside the image counting as 0 (separable).
function rankFilter(image, width, height, radius, pick) {
  const pass = (src, along, across, index) => {
    const out = new Uint8Array(src.length);
    for (let a = 0; a < across; a++) {
      for (let i = 0; i < along; i++) {
        let value = i - radius < 0 || i + radius >= along ? 0 : src[index(i, a)];
        for (let k = Math.max(0, i - radius); k <= Math.min(along - 1, i + radius); k++) {
          value = pick(value, src[index(k, a)]);
        }
        out[index(i, a)] = value;
      }
    }
    return out;
  };
  const rows = pass(image, width, height, (x, y) => y * width + x);
  return pass(rows, height, width, (y, x) => y * width + x);
}

function pad(image, width, height, by) {
  const newWidth = width + 2 * by;
  const out = new Uint8Array(newWidth * (height + 2 * by));
  for (let y = 0; y < height; y++) out.set(image.subarray(y * width, (y + 1) * width), (y + by) * newWidth + by);
  return out;
}

function adjustWidth(work, width, height) {
  const mask = work.map((v) => (v >= STROKE_LEVEL ? 1 : 0));
  if (mask.every((m) => !m)) return [work, width, height, false];
  const [num, den] = strokeWidthHalves(mask, width, height);
  if (20 * num < THIN_TENTHS * TARGET_WIDTH_HALVES * den) {
    const radius = Math.max(1, Math.floor((TARGET_WIDTH_HALVES * den - 2 * num + 2 * den) / (4 * den)));
    const newWidth = width + 2 * radius;
    const newHeight = height + 2 * radius;
    const padded = pad(work, width, height, radius);
    return [rankFilter(padded, newWidth, newHeight, radius, Math.max), newWidth, newHeight, true];
  }
  if (20 * num > THICK_TENTHS * TARGET_WIDTH_HALVES * den) {
    const radius = Math.max(1, Math.floor((2 * num - TARGET_WIDTH_HALVES * den + 2 * den) / (4 * den)));
    const thinner = rankFilter(work, width, height, radius, Math.min);
    if (thinner.reduce((a, b) => Math.max(a, b), 0) >= STROKE_LEVEL) return [thinner, width, height, true];
  }
  return [work, width, height, false];
}

function inkedPart(work, width, height) {
  const [top, bottom, left, right] = inkExtent(work, width, height);
  if (bottom < 0) return [work, width, height];
  const cropWidth = right - left + 1;
  const cropHeight = bottom - top + 1;
  const out = new Uint8Array(cropWidth * cropHeight);
  for (let y = 0; y < cropHeight; y++) {
    out.set(work.subarray((top + y) * width + left, (top + y) * width + right + 1), y * cropWidth);
  }
  return [out, cropWidth, cropHeight];
}

// For every pixel, the length of the run of ink through it along x (or, transposed, along y).
function runs(mask, width, height, alongX) {
  const out = new Int32Array(width * height);
  const lines = alongX ? height : width;
  const length = alongX ? width : height;
  const index = alongX ? (i, l) => l * width + i : (i, l) => i * width + l;
  for (let l = 0; l < lines; l++) {
    let i = 0;
    while (i < length) {
      if (!mask[index(i, l)]) {
        i++;
        continue;
      }
      let j = i;
      while (j < length && mask[index(j, l)]) j++;
      for (let k = i; k < j; k++) out[index(k, l)] = j - i;
      i = j;
    }
  }
  return out;
}

function lowerMedian(values) {
  const ordered = Int32Array.from(values).sort();
  return ordered[(ordered.length - 1) >> 1];
}

function stretch(mask, width, height, spansWidth, spansHeight) {
  if (!(spansWidth || spansHeight) || mask.every((m) => !m)) return [1.0, 1.0];
  const across = runs(mask, width, height, true);
  const down = runs(mask, width, height, false);
  const upright = [];
  const lying = [];
  let count = 0;
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    count += 1;
    if (across[i] < down[i]) upright.push(across[i]);
    if (down[i] < across[i]) lying.push(down[i]);
  }
  const hasUpright = 10 * upright.length >= count;
  const hasLying = 10 * lying.length >= count;
  if (spansWidth && spansHeight && FILLED_THIRDS * count >= 2 * mask.length) {
    return [(BAR_SIXTH * width) / height, 1.0];
  }
  if (hasUpright && hasLying) {
    const wide = lowerMedian(upright);
    const tall = lowerMedian(lying);
    // Only a sideways stretch is read from the strokes (see jobs/strokes.py).
    if (spansWidth && 10 * wide >= STRETCH_TENTHS * tall) return [wide / tall, 1.0];
  } else if (hasUpright && spansWidth) {
    const wide = lowerMedian(upright);
    if (BAR_QUARTER * wide >= height) return [(BAR_EIGHTH * wide) / height, 1.0];
  }
  if (spansWidth && spansHeight && 10 * Math.abs(height - width) <= Math.max(height, width)) {
    return [1.0, SQUARE_BOX_SQUEEZE];
  }
  return [1.0, 1.0];
}

// A thin line shrunk several times over becomes a dotted trace: thickened first, at the crop's
// own resolution, to two working pixels (see jobs/strokes.py).
function thickenBeforeShrinking(crop, mask, width, height) {
  const side = Math.max(width, height);
  if (side <= 2 * STROKE_SIDE || mask.every((m) => !m)) return crop;
  const [num, den] = strokeWidthHalves(mask, width, height);
  if (num * STROKE_SIDE >= 2 * den * side) return crop;
  const radius = Math.ceil((2 * side * den - STROKE_SIDE * num) / (2 * STROKE_SIDE * den));
  return rankFilter(crop, width, height, radius, Math.max);
}

function fitBox(crop, width, height, spansWidth, spansHeight) {
  const mask = crop.map((v) => (v >= STROKE_LEVEL ? 1 : 0));
  const [squeezeX, squeezeY] = stretch(mask, width, height, spansWidth, spansHeight);
  if (squeezeX === 1.0 && squeezeY === 1.0) crop = thickenBeforeShrinking(crop, mask, width, height);
  const effWidth = width / squeezeX;
  const effHeight = height / squeezeY;
  let scale = STROKE_SIDE / Math.max(effWidth, effHeight);
  let workWidth = Math.max(1, pyRound(effWidth * scale));
  let workHeight = Math.max(1, pyRound(effHeight * scale));
  let work = resize(crop, width, height, workWidth, workHeight);
  if (scale > 1 && crop.every((v) => v === 0 || v === 255)) {
    work = work.map((v) => (v >= STROKE_LEVEL ? 255 : 0));
  }
  let adjusted;
  [work, workWidth, workHeight, adjusted] = adjustWidth(fullStrength(work), workWidth, workHeight);
  if (!adjusted && squeezeX === 1.0 && squeezeY === 1.0 && Math.max(width, height) === BOX_SIDE) {
    return [fullStrength(crop), width, height];
  }
  [work, workWidth, workHeight] = inkedPart(work, workWidth, workHeight);
  scale = BOX_SIDE / Math.max(workHeight, workWidth);
  const newWidth = Math.max(1, pyRound(workWidth * scale));
  const newHeight = Math.max(1, pyRound(workHeight * scale));
  return [fullStrength(resize(work, workWidth, workHeight, newWidth, newHeight)), newWidth, newHeight];
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

function rowHasInk(inked, width, y) {
  return inked.subarray(y * width, (y + 1) * width).some((v) => v > 0);
}

function colHasInk(inked, width, height, x) {
  for (let y = 0; y < height; y++) if (inked[y * width + x]) return true;
  return false;
}

// gray: Uint8Array of width*height pixels. Returns the 28x28 MNIST-style image as 784 bytes;
// throws BlankError when there is nothing to read.
export function toMnist(gray, width, height) {
  const lut = measureLevels(gray, width, height);
  const inked = keepDigit(gray.map((v) => lut[v]), width, height);
  const [[top, bottom], [left, right]] = inkBox(inked, width, height);
  // Ink that runs from edge to edge may have been stretched to fill the image.
  const spansHeight = rowHasInk(inked, width, 0) && rowHasInk(inked, width, height - 1);
  const spansWidth = colHasInk(inked, width, height, 0) && colHasInk(inked, width, height, width - 1);
  const cropWidth = right - left;
  const cropHeight = bottom - top;
  const crop = new Uint8Array(cropWidth * cropHeight);
  for (let y = 0; y < cropHeight; y++) {
    crop.set(inked.subarray((top + y) * width + left, (top + y) * width + right), y * cropWidth);
  }
  return place(...fitBox(crop, cropWidth, cropHeight, spansWidth, spansHeight));
}
