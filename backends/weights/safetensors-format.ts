/**
 * The safetensors format (https://huggingface.co/docs/safetensors), independent of where the bytes
 * live: header validation (length against the file, the JSON, every dtype, shape and offset range,
 * byte counts against shapes, and that the tensors tile the data section without overlaps or holes),
 * and the conversion of tensor bytes to and from lingc's in-memory form. Every error names the file
 * and, where there is one, the tensor. Used by the Node reader (safetensors.ts) and in browsers.
 */
import type { DType } from "../../ir/dtype";
import { LingcError } from "../../ir/errors";
import { decodeBits, encodeBits } from "../../ir/numerics";
import { Tensor, allocData, numelOf } from "../../ir/tensor";

/** Element sizes of every safetensors dtype, and the lingc dtype each one is read as (if any). */
export const ST_DTYPES: Record<string, { bytes: number; dtype?: DType }> = {
  F64: { bytes: 8 },
  F32: { bytes: 4, dtype: "f32" },
  F16: { bytes: 2, dtype: "f16" },
  BF16: { bytes: 2, dtype: "bf16" },
  F8_E4M3: { bytes: 1, dtype: "f8e4m3fn" },
  F8_E5M2: { bytes: 1, dtype: "f8e5m2" },
  I64: { bytes: 8, dtype: "i64" },
  I32: { bytes: 4, dtype: "i32" },
  I16: { bytes: 2 },
  I8: { bytes: 1 },
  U64: { bytes: 8 },
  U32: { bytes: 4 },
  U16: { bytes: 2 },
  U8: { bytes: 1, dtype: "u8" },
  BOOL: { bytes: 1, dtype: "bool" },
};

export const TO_ST: Partial<Record<DType, string>> = Object.fromEntries(
  Object.entries(ST_DTYPES)
    .filter(([, v]) => v.dtype)
    .map(([k, v]) => [v.dtype!, k]),
);

/** Header lengths above this are refused as corrupt (real headers are a few MB at most). */
const MAX_HEADER = 100 * 1024 * 1024;

export interface StEntry {
  name: string;
  stDtype: string;
  /** The lingc dtype, or undefined for safetensors dtypes lingc does not compute with. */
  dtype: DType | undefined;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface ParsedSafetensors {
  entries: Map<string, StEntry>;
  metadata: Record<string, string>;
  dataStart: number;
}

/**
 * Reads and validates a safetensors header through `read(offset, length)`, for a file of `size`
 * bytes. Works on a file (Node) or on bytes already in memory (a browser fetch).
 */
export function parseSafetensors(path: string, size: number, read: (offset: number, length: number) => Uint8Array): ParsedSafetensors {
  const bad = (msg: string): never => {
    throw new LingcError(`${path}: ${msg}`);
  };
  if (size < 8) bad(`file is ${size} bytes: too short for a safetensors header`);
  const lenBytes = read(0, 8);
  const len = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (len > BigInt(MAX_HEADER)) bad(`header length ${len} is absurd (over ${MAX_HEADER} bytes): the file is corrupt or not safetensors`);
  const n = Number(len);
  if (8 + n > size) bad(`header length ${n} runs past the end of the ${size}-byte file (truncated?)`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(read(8, n)));
  } catch (e) {
    bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) bad("header is not a JSON object");
  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  const entries = new Map<string, StEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === "string")) {
        bad("__metadata__ must map strings to strings");
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const what = `tensor "${name}"`;
    if (typeof raw !== "object" || raw === null) bad(`${what}: entry is not an object`);
    const { dtype, shape, data_offsets: offs } = raw as Record<string, unknown>;
    if (typeof dtype !== "string" || !ST_DTYPES[dtype]) bad(`${what}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`${what}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]) {
      bad(`${what}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offs)}`);
    }
    const [b, e] = offs as [number, number];
    const want = numelOf(shape as number[]) * ST_DTYPES[dtype as string]!.bytes;
    if (e - b !== want) bad(`${what}: ${dtype} ${JSON.stringify(shape)} needs ${want} bytes but data_offsets cover ${e - b}`);
    if (e > dataSize) bad(`${what}: its data ends at byte ${e} of the data section, which has only ${dataSize} bytes (the file is truncated)`);
    entries.set(name, { name, stDtype: dtype as string, dtype: ST_DTYPES[dtype as string]!.dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e });
  }
  const sorted = [...entries.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = dataStart;
  let prev: StEntry | undefined;
  for (const en of sorted) {
    if (en.begin < at) bad(`tensors "${prev!.name}" and "${en.name}" overlap`);
    if (en.begin > at) bad(`bytes ${at - dataStart}..${en.begin - dataStart} of the data section belong to no tensor (before "${en.name}")`);
    at = en.end;
    prev = en;
  }
  if (at !== size) bad(`${size - at} bytes at the end of the file belong to no tensor`);
  return { entries, metadata, dataStart };
}

let f16Table: Float32Array | undefined;
const f8Tables = new Map<DType, Float32Array>();

function table(dtype: DType, bits: number): Float32Array {
  if (dtype === "f16") {
    f16Table ??= Float32Array.from({ length: 1 << 16 }, (_, i) => decodeBits(i, "f16"));
    return f16Table;
  }
  let t = f8Tables.get(dtype);
  if (!t) {
    t = Float32Array.from({ length: 1 << bits }, (_, i) => decodeBits(i, dtype));
    f8Tables.set(dtype, t);
  }
  return t;
}

/** Converts a tensor's stored bytes to lingc's in-memory data. */
export function decodeTensor(buf: ArrayBuffer, dtype: DType, n: number, what: string) {
  const out = allocData(dtype, n);
  switch (dtype) {
    case "f32":
      out.set(new Float32Array(buf));
      break;
    case "bf16": {
      const u = new Uint16Array(buf);
      const o = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) o[i] = u[i]! << 16;
      break;
    }
    case "f16": {
      const u = new Uint16Array(buf);
      const t = table("f16", 16);
      for (let i = 0; i < n; i++) out[i] = t[u[i]!]!;
      break;
    }
    case "f8e4m3fn":
    case "f8e5m2": {
      const u = new Uint8Array(buf);
      const t = table(dtype, 8);
      for (let i = 0; i < n; i++) out[i] = t[u[i]!]!;
      break;
    }
    case "i64": {
      const v = new BigInt64Array(buf);
      for (let i = 0; i < n; i++) {
        const x = v[i]!;
        if (x > BigInt(Number.MAX_SAFE_INTEGER) || x < BigInt(Number.MIN_SAFE_INTEGER)) throw new LingcError(`${what}: value ${x} at index ${i} is too large to handle exactly`);
        out[i] = Number(x);
      }
      break;
    }
    case "i32":
      out.set(new Int32Array(buf));
      break;
    case "u8":
    case "bool":
      out.set(new Uint8Array(buf));
      break;
  }
  return out;
}

/** The little-endian bytes of a tensor in its dtype (as safetensors and ONNX raw_data store them). */
export function tensorBytes(t: Tensor): Uint8Array {
  const n = t.numel;
  switch (t.dtype) {
    case "f32":
      return new Uint8Array(Float32Array.from(t.data).buffer);
    case "bf16": {
      // The upper half of the f32 bits, rounded to nearest even (as encodeBits, inline: a model's
      // worth of random weights goes through here); NaN as encodeBits writes it.
      const u = new Uint16Array(n);
      if (t.data instanceof Float32Array) {
        const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, n);
        for (let i = 0; i < n; i++) {
          const b = bits[i]!;
          u[i] = (b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0 ? 0x7fc0 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
        }
      } else for (let i = 0; i < n; i++) u[i] = encodeBits(t.data[i]!, t.dtype);
      return new Uint8Array(u.buffer);
    }
    case "f16": {
      const u = new Uint16Array(n);
      for (let i = 0; i < n; i++) u[i] = encodeBits(t.data[i]!, t.dtype);
      return new Uint8Array(u.buffer);
    }
    case "f8e4m3fn":
    case "f8e5m2": {
      const u = new Uint8Array(n);
      for (let i = 0; i < n; i++) u[i] = encodeBits(t.data[i]!, t.dtype);
      return u;
    }
    case "i64":
      return new Uint8Array(BigInt64Array.from(t.data, (x) => BigInt(x)).buffer);
    case "i32":
      return new Uint8Array(Int32Array.from(t.data).buffer);
    case "u8":
    case "bool":
      return Uint8Array.from(t.data);
  }
}

