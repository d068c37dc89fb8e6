#!/usr/bin/env node
// Classify 28x28 digit images with the project's ONNX model from Node.js.
//
//   node classify.js MODEL.onnx INPUT [--json] [--batch N]
//
// INPUT is a .npy file (uint8, shape (N,28,28), (N,784) or (28,28)) or a raw file of N*784 uint8
// pixels, white ink on black, already MNIST-style (the model does its own scaling, not cropping).
// Prints one digit per line, or with --json one {"digit", "confidence"} object per line.
'use strict';

const fs = require('node:fs');

const USAGE = 'usage: node classify.js MODEL.onnx INPUT(.npy|raw) [--json] [--batch N]';

const SIDE = 28;
const PIXELS = SIDE * SIDE;
const OUTPUTS = ['probabilities', 'digit'];

class UsageError extends Error {}
class SetupError extends Error {}

// --- ONNX metadata ----------------------------------------------------------------------------
// onnxruntime-node exposes input/output types but not the model's metadata_props, which hold the
// contract the training job wrote. Reading them needs only the protobuf wire format, not a library.

function readVarint(buf, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= buf.length) throw new UsageError('truncated protobuf varint');
    const byte = buf[pos++];
    value += (byte & 0x7f) * scale; // arithmetic, not bit ops: lengths can pass 2^31
    if (byte < 0x80) return [value, pos];
    scale *= 128;
  }
}

// Yields [fieldNumber, bytes] for each length-delimited field of one message; skips the rest.
function* lengthDelimitedFields(buf) {
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) [, pos] = readVarint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let length;
      [length, pos] = readVarint(buf, pos);
      if (pos + length > buf.length) throw new UsageError('truncated protobuf field');
      yield [field, buf.subarray(pos, pos + length)];
      pos += length;
    } else throw new UsageError(`unsupported protobuf wire type ${wire}`);
  }
}

// ModelProto.metadata_props is field 14: repeated StringStringEntryProto {key = 1, value = 2}.
function readMetadata(modelBytes) {
  const metadata = {};
  for (const [field, entry] of lengthDelimitedFields(modelBytes)) {
    if (field !== 14) continue;
    let key = '';
    let value = '';
    for (const [f, bytes] of lengthDelimitedFields(entry)) {
      if (f === 1) key = bytes.toString('utf8');
      else if (f === 2) value = bytes.toString('utf8');
    }
    metadata[key] = value;
  }
  return metadata;
}

function contractFrom(metadata, modelPath) {
  const need = (key) => {
    if (!(key in metadata)) throw new UsageError(`${modelPath}: model metadata lacks '${key}'`);
    return metadata[key];
  };
  const json = (key) => {
    try {
      return JSON.parse(need(key));
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`${modelPath}: model metadata '${key}' is not JSON`);
    }
  };
  const contract = {
    inputName: need('input_name'),
    dtype: need('input_dtype'),
    shape: json('input_shape'),
    outputs: json('outputs'),
  };
  const side = contract.shape.slice(1).join('x');
  if (contract.dtype !== 'uint8' || contract.shape.length !== 3 || side !== `${SIDE}x${SIDE}`) {
    throw new UsageError(
      `${modelPath}: model wants ${contract.dtype} ${JSON.stringify(contract.shape)}, ` +
        `this program feeds uint8 [batch, ${SIDE}, ${SIDE}]`,
    );
  }
  return contract;
}

// The metadata is a promise the graph must keep: check it against what the runtime loaded.
function checkSession(session, contract, modelPath) {
  const input = session.inputMetadata.find((m) => m.name === contract.inputName);
  if (!input || session.inputNames.length !== 1) {
    throw new UsageError(
      `${modelPath}: model must have one input '${contract.inputName}' ` +
        `(found: ${session.inputNames.join(', ') || 'none'})`,
    );
  }
  if (input.type !== contract.dtype || input.shape.slice(1).join('x') !== `${SIDE}x${SIDE}`) {
    throw new UsageError(
      `${modelPath}: input '${input.name}' is ${input.type} ${JSON.stringify(input.shape)}, ` +
        `metadata says ${contract.dtype} ${JSON.stringify(contract.shape)}`,
    );
  }
  const missing = OUTPUTS.filter(
    (name) => !contract.outputs.includes(name) || !session.outputNames.includes(name),
  );
  if (missing.length) {
    throw new UsageError(
      `${modelPath}: model lacks output(s) ${missing.join(', ')} ` +
        `(found: ${session.outputNames.join(', ') || 'none'})`,
    );
  }
}

// --- input ------------------------------------------------------------------------------------

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

// Returns the pixels of a .npy file as a Uint8Array of N*784 bytes.
function readNpy(buf, name) {
  const major = buf[6];
  let headerLength;
  let start;
  if (major === 1 && buf.length >= 10) [headerLength, start] = [buf.readUInt16LE(8), 10];
  else if ((major === 2 || major === 3) && buf.length >= 12) [headerLength, start] = [buf.readUInt32LE(8), 12];
  else throw new UsageError(`${name}: unsupported .npy format version ${major}`);
  const header = buf.subarray(start, start + headerLength).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeText) throw new UsageError(`${name}: malformed .npy header`);
  if (!/^[|<>=]?u1$/.test(descr[1])) {
    throw new UsageError(`${name}: dtype '${descr[1]}' is not uint8 (need pixels 0-255 as uint8)`);
  }
  if (fortran[1] === 'True') {
    throw new UsageError(`${name}: Fortran-order array; save it with np.ascontiguousarray first`);
  }
  const shape = shapeText[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const dims = shape.join(',');
  let count;
  if (shape.length === 3 && shape[1] === SIDE && shape[2] === SIDE) count = shape[0];
  else if (shape.length === 2 && shape[1] === PIXELS) count = shape[0];
  else if (dims === `${SIDE},${SIDE}`) count = 1;
  else throw new UsageError(`${name}: shape (${dims}) is not (N,28,28), (N,784) or (28,28)`);
  const data = buf.subarray(start + headerLength);
  if (data.length < count * PIXELS) throw new UsageError(`${name}: file is shorter than its shape`);
  return data.subarray(0, count * PIXELS);
}

function readImages(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`${file}: cannot read (${e.code || e.message})`);
  }
  if (buf.subarray(0, 6).equals(NPY_MAGIC)) return readNpy(buf, file);
  if (file.toLowerCase().endsWith('.npy')) throw new UsageError(`${file}: not a .npy file`);
  if (buf.length === 0 || buf.length % PIXELS !== 0) {
    throw new UsageError(`${file}: raw input must be N*784 uint8 bytes, got ${buf.length} bytes`);
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

// --- main -------------------------------------------------------------------------------------

function parseArgs(argv) {
  const args = { json: false, batch: 1024, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--json') args.json = true;
    else if (arg === '--batch') {
      args.batch = Number(argv[++i]);
      if (!Number.isInteger(args.batch) || args.batch < 1) throw new UsageError('--batch needs a positive integer');
    } else if (arg === '-h' || arg === '--help') args.help = true;
    else if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`);
    else args.positional.push(arg);
  }
  if (!args.help && args.positional.length !== 2) throw new UsageError(USAGE);
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  // Required only now, so that the usage is shown even before `npm ci` has installed it.
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    throw new SetupError(`onnxruntime-node is not installed here: run \`npm ci --ignore-scripts\` in ${__dirname}`);
  }
  const [modelPath, inputPath] = args.positional;
  let modelBytes;
  try {
    modelBytes = fs.readFileSync(modelPath);
  } catch (e) {
    throw new UsageError(`${modelPath}: cannot read model (${e.code || e.message})`);
  }
  let metadata;
  try {
    metadata = readMetadata(modelBytes);
  } catch (e) {
    throw new UsageError(`${modelPath}: not an ONNX model (${e.message})`);
  }
  const contract = contractFrom(metadata, modelPath);
  const images = readImages(inputPath);

  let session;
  try {
    session = await ort.InferenceSession.create(modelBytes, { graphOptimizationLevel: 'all' });
  } catch (e) {
    throw new UsageError(`${modelPath}: not a loadable ONNX model (${String(e.message).split('\n')[0]})`);
  }
  checkSession(session, contract, modelPath);

  const count = images.length / PIXELS;
  for (let first = 0; first < count; first += args.batch) {
    const n = Math.min(args.batch, count - first);
    const pixels = images.subarray(first * PIXELS, (first + n) * PIXELS);
    const feeds = { [contract.inputName]: new ort.Tensor('uint8', pixels, [n, SIDE, SIDE]) };
    const result = await session.run(feeds, OUTPUTS);
    const probabilities = result.probabilities.data;
    const digits = result.digit.data; // int64 comes back as BigInt64Array
    const lines = [];
    for (let i = 0; i < n; i++) {
      const digit = Number(digits[i]);
      if (args.json) {
        const confidence = Number(probabilities[i * 10 + digit].toFixed(6));
        lines.push(JSON.stringify({ digit, confidence }));
      } else lines.push(String(digit));
    }
    process.stdout.write(lines.join('\n') + '\n');
  }
  await session.release();
}

// `... | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main().catch((e) => {
  if (e instanceof UsageError && e.message === USAGE) {
    process.stderr.write(`${USAGE}\n`);
    process.exitCode = 2; // a usage error, as the Python commands say it
    return;
  }
  const known = e instanceof UsageError || e instanceof SetupError;
  const message = known ? e.message : `unexpected error: ${e.stack || e}`;
  process.stderr.write(`classify.js: ${message}\n`);
  process.exitCode = 1;
});
