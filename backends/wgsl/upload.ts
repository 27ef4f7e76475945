/**
 * Weights and constants onto the GPU, as the kernels read them: f32 and i32 values as they are; an
 * fp8 weight one byte a value, four to a 32-bit word; a bf16 weight two bytes a value, two to a word;
 * a weight over the binding limit in parts along its leading axis (ArtifactSlot.parts).
 */
import { nonFiniteWeight } from "../weights/non-finite";
import type { ArtifactSlot } from "./artifact";

const USAGE = { COPY_DST: 0x8, STORAGE: 0x80 };

/** A read-only storage buffer holding `data` (whole 32-bit words, at least 16 bytes). */
export function upload(device: GPUDevice, data: Float32Array | Int32Array | Uint16Array | Uint8Array, label: string): GPUBuffer {
  const words = Math.ceil(data.byteLength / 4) * 4;
  const b = device.createBuffer({ size: Math.max(16, words), usage: USAGE.STORAGE | USAGE.COPY_DST, label });
  // A write is whole words: packed values that end inside a word are padded with zeros.
  let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (words !== bytes.length) {
    const padded = new Uint8Array(words);
    padded.set(bytes);
    bytes = padded;
  }
  if (words) device.queue.writeBuffer(b, 0, bytes.buffer, bytes.byteOffset, words);
  return b;
}

/** e4m3 codes by value (the finite nonzero codes; the two zeros are told apart by sign below). */
let e4m3Codes: Map<number, number> | undefined;

function e4m3Code(v: number): number | undefined {
  if (v === 0) return Object.is(v, -0) ? 0x80 : 0;
  if (!e4m3Codes) {
    e4m3Codes = new Map();
    for (let c = 1; c < 256; c++) {
      const e = (c >> 3) & 15;
      const m = c & 7;
      if ((e === 15 && m === 7) || (c & 0x7f) === 0) continue; // NaN, -0
      const mag = e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7);
      e4m3Codes.set(c & 0x80 ? -mag : mag, c);
    }
  }
  return e4m3Codes.get(v);
}

/** An fp8 weight's values (already e4m3) as their codes, one byte each. */
function e4m3Bytes(data: Float32Array | Int32Array, name: string): Uint8Array {
  const bytes = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const c = e4m3Code(data[i]!);
    if (c === undefined) throw new Error(`weight ${name}: value ${data[i]} at index ${i} is not an e4m3 value`);
    bytes[i] = c;
  }
  return bytes;
}

/**
 * A bf16 weight's values as two bytes each (element 2k in the low half of word k): each f32 value's
 * high half, which is all of it for a bf16 value (a value with more bits is refused, not rounded
 * silently).
 */
function bf16Halves(data: Float32Array | Int32Array, name: string): Uint16Array {
  if (!(data instanceof Float32Array)) throw new Error(`weight ${name}: bf16 weight data must be floats`);
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const halves = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const b = bits[i]!;
    if ((b & 0xffff) !== 0) throw new Error(`weight ${name}: value ${data[i]} at index ${i} is not a bf16 value`);
    halves[i] = b >>> 16;
  }
  return halves;
}

/**
 * A bf16 weight given as its 16-bit patterns (elements `offset` on of a weight of `shape`), checked
 * finite: an infinity or NaN (exponent bits all ones) would make every output NaN without a word, so
 * it is refused naming the tensor (an expert's, for a stacked weight) and the position. Two patterns
 * a 32-bit word where the data is aligned so (a large model's check is some 16 G values).
 */
function finiteBf16(bits: Uint16Array, name: string, shape: readonly number[], offset: number): Uint16Array {
  const EXP = 0x7f80;
  let bad = -1;
  if (bits.byteOffset % 4 === 0) {
    const pairs = new Uint32Array(bits.buffer, bits.byteOffset, bits.length >>> 1);
    for (let i = 0; i < pairs.length; i++) {
      const w = pairs[i]!;
      if ((w & EXP) === EXP || ((w >>> 16) & EXP) === EXP) {
        bad = 2 * i + ((w & EXP) === EXP ? 0 : 1);
        break;
      }
    }
    if (bad < 0 && bits.length % 2 === 1 && (bits[bits.length - 1]! & EXP) === EXP) bad = bits.length - 1;
  } else {
    for (let i = 0; i < bits.length && bad < 0; i++) if ((bits[i]! & EXP) === EXP) bad = i;
  }
  if (bad < 0) return bits;
  // (A bad input, not a fault of lingc's: the checkpoint binder's refusal, word for word.)
  throw nonFiniteWeight(name, shape, bad + offset, new Float32Array(Uint32Array.of(bits[bad]! << 16).buffer)[0]!, (e) => name.replace("*", String(e)));
}

/** A weight's buffers: one, or its parts along the leading axis. Data: its values, or (a bf16 weight) their 16-bit patterns. */
export function uploadParts(device: GPUDevice, s: ArtifactSlot, shape: number[], data: Float32Array | Int32Array | Uint16Array): GPUBuffer[] {
  const n = shape.reduce((x, y) => x * y, 1);
  if (data.length !== n) throw new Error(`weight ${s.weight}: got ${data.length} values for shape [${shape}]`);
  const put = (d: Float32Array | Int32Array | Uint16Array, name: string, offset: number) => {
    if (d instanceof Uint16Array) {
      finiteBf16(d, s.weight!, shape, offset);
      return upload(device, s.bf16Pairs ? d : new Float32Array(Uint32Array.from(d, (b) => b << 16).buffer), name);
    }
    return upload(device, s.packed ? e4m3Bytes(d, name) : s.bf16Pairs ? bf16Halves(d, name) : d, name);
  };
  if (!s.parts) return [put(data, s.weight!, 0)];
  const per = s.parts.rows * shape.slice(1).reduce((x, y) => x * y, 1);
  return Array.from({ length: s.parts.count }, (_, p) => put(data.subarray(p * per, Math.min(n, (p + 1) * per)), `${s.weight} part ${p}`, p * per));
}
