#!/usr/bin/env node
// Runs a FeatherFace end-to-end ONNX model (decoding and NMS inside the graph) on images and prints
// the faces as JSON, in the images' own pixels. No Python: onnxruntime-node and a pure-JS JPEG decoder.
//
//   node detect.js MODEL.onnx IMAGE.jpg [IMAGE.ppm ...]
//
// The model's decode contract is read from its sidecar MODEL.onnx.json (written by
// `featherface-deploy export --end2end`): input name and size, padding colour, output names.
// Images: baseline/progressive JPEG (jpeg-js) or binary PPM (P6, 8-bit: lossless, what the
// project's test uses to compare with the Python runtime pixel for pixel).

'use strict';

const fs = require('fs');
const path = require('path');
const jpeg = require('jpeg-js');
const ort = require('onnxruntime-node');

// Python's round(): halves go to the even neighbour (the letterbox size must match the Python runtime's).
function roundHalfEven(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function readPpm(buffer, file) {
  // P6 <width> <height> <maxval>\n<RGB bytes>; comments (#) allowed in the header.
  const tokens = [];
  let offset = 0;
  while (tokens.length < 4) {
    while (/\s/.test(String.fromCharCode(buffer[offset]))) offset += 1;
    if (buffer[offset] === 0x23) { // '#': skip to the end of the line
      while (buffer[offset] !== 0x0a) offset += 1;
      continue;
    }
    let token = '';
    while (offset < buffer.length && !/\s/.test(String.fromCharCode(buffer[offset]))) {
      token += String.fromCharCode(buffer[offset]);
      offset += 1;
    }
    tokens.push(token);
  }
  offset += 1; // the single whitespace after maxval
  const [magic, width, height, maxval] = [tokens[0], Number(tokens[1]), Number(tokens[2]), Number(tokens[3])];
  if (magic !== 'P6' || maxval !== 255) throw new Error(`${file}: only 8-bit binary PPM (P6, maxval 255) is read`);
  return { width, height, data: buffer.subarray(offset, offset + width * height * 3) };
}

function readImage(file) {
  const buffer = fs.readFileSync(file);
  if (path.extname(file).toLowerCase() === '.ppm') return readPpm(buffer, file);
  const decoded = jpeg.decode(buffer, { useTArray: true, formatAsRGBA: false });
  return { width: decoded.width, height: decoded.height, data: decoded.data };
}

// Bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR). Not bit-identical with the Python
// runtime's resizer when shrinking (OpenCV INTER_AREA or Pillow): the one difference the docs state.
function resizeRgb(image, width, height) {
  if (image.width === width && image.height === height) return image;
  const out = new Uint8Array(width * height * 3);
  const sx = image.width / width;
  const sy = image.height / height;
  for (let y = 0; y < height; y += 1) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), image.height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, image.height - 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x += 1) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), image.width - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, image.width - 1);
      const wx = fx - x0;
      for (let c = 0; c < 3; c += 1) {
        const at = (yy, xx) => image.data[(yy * image.width + xx) * 3 + c];
        const top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx;
        const bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx;
        out[(y * width + x) * 3 + c] = Math.round(top * (1 - wy) + bottom * wy);
      }
    }
  }
  return { width, height, data: out };
}

// The letterbox: fit with the aspect ratio kept, top-left, padded with the mean colour; NCHW RGB 0-255 float32.
function letterbox(image, contract) {
  const [inputH, inputW] = contract.input_size;
  const scale = Math.min(inputH / image.height, inputW / image.width);
  const resizedH = Math.max(1, roundHalfEven(image.height * scale));
  const resizedW = Math.max(1, roundHalfEven(image.width * scale));
  const resized = resizeRgb(image, resizedW, resizedH);
  const plane = inputH * inputW;
  const tensor = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c += 1) tensor.fill(contract.end2end.pad_rgb[c], c * plane, (c + 1) * plane);
  for (let y = 0; y < resizedH; y += 1) {
    for (let x = 0; x < resizedW; x += 1) {
      for (let c = 0; c < 3; c += 1) {
        tensor[c * plane + y * inputW + x] = resized.data[(y * resizedW + x) * 3 + c];
      }
    }
  }
  const nchw = contract.input_layout === 'NCHW';
  const dims = nchw ? [1, 3, inputH, inputW] : [1, inputH, inputW, 3];
  const data = nchw ? tensor : toNhwc(tensor, inputH, inputW);
  return { tensor: new ort.Tensor('float32', data, dims), scaleX: resizedW / image.width, scaleY: resizedH / image.height };
}

function toNhwc(nchw, height, width) {
  const plane = height * width;
  const out = new Float32Array(nchw.length);
  for (let i = 0; i < plane; i += 1) for (let c = 0; c < 3; c += 1) out[i * 3 + c] = nchw[c * plane + i];
  return out;
}

// detections (1, max_det, 15): x1 y1 x2 y2 score, then 5 x (x, y), input pixels; num_detections (1,) int32.
function toFaces(detections, count, scaleX, scaleY) {
  const faces = [];
  for (let i = 0; i < count; i += 1) {
    const row = detections.subarray(i * 15, i * 15 + 15);
    const landmarks = [];
    for (let k = 0; k < 5; k += 1) landmarks.push([row[5 + 2 * k] / scaleX, row[6 + 2 * k] / scaleY]);
    faces.push({
      box: [row[0] / scaleX, row[1] / scaleY, row[2] / scaleX, row[3] / scaleY],
      score: row[4],
      landmarks,
    });
  }
  return faces;
}

async function main() {
  const [modelPath, ...images] = process.argv.slice(2);
  if (!modelPath || images.length === 0) {
    console.error('usage: node detect.js MODEL.onnx IMAGE [IMAGE ...]');
    process.exit(2);
  }
  const contract = JSON.parse(fs.readFileSync(`${modelPath}.json`, 'utf8'));
  if (contract.postprocess !== 'in-graph') {
    throw new Error(`${modelPath}: not an end-to-end model (export it with --end2end)`);
  }
  const session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'] });
  const [detectionsName, countName] = contract.end2end.outputs;
  const results = [];
  for (const file of images) {
    const image = readImage(file);
    const { tensor, scaleX, scaleY } = letterbox(image, contract);
    const outputs = await session.run({ [contract.input_name]: tensor });
    const count = Number(outputs[countName].data[0]);
    results.push({ image: file, width: image.width, height: image.height,
                   faces: toFaces(outputs[detectionsName].data, count, scaleX, scaleY) });
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

main().catch((error) => {
  console.error(`Error: ${error.message}`);
  process.exit(1);
});
