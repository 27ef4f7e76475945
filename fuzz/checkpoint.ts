/**
 * The checkpoint fuzzer: a good checkpoint folder (config.json and safetensors, in one file or
 * sharded with model.safetensors.index.json), mutated (header JSON, its length field, dtypes,
 * shapes, offsets, missing, renamed and unknown tensors, truncated files, non-finite values, config
 * values and JSON, index entries), then run as a user would (`lingc run <folder> --input ...
 * --out ...`, in-process). Each case must end in one of two ways: exit 0 with finite outputs, or
 * exit 1 with a message naming the folder or one of its files and no output file left. Anything
 * else (another exit code, an exception, non-finite outputs, a partial output) is a finding.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../compiler/cli/main";
import { readAllSafetensors } from "../backends/weights/safetensors";
import type { Rng } from "./rng";

/** A safetensors file as its header object and data bytes (offsets relative to the data). */
interface StFile {
  header: Record<string, unknown>;
  data: Uint8Array;
  /** Bytes that replace the whole file (a mutation of its framing), when set. */
  raw?: Uint8Array;
}

function parseSt(bytes: Uint8Array): StFile {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  return { header, data: bytes.subarray(8 + n) };
}

function encodeSt(f: StFile): Uint8Array {
  if (f.raw) return f.raw;
  let text = JSON.stringify(f.header);
  while ((text.length + 8) % 8) text += " ";
  const head = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + head.length + f.data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(f.data, 8 + head.length);
  return out;
}

/** The base checkpoint, in memory: files by name. */
export interface CheckpointFiles {
  [name: string]: Uint8Array;
}

/** The same checkpoint with its tensors split over two shards and an index. */
export function sharded(files: CheckpointFiles): CheckpointFiles {
  const st = parseSt(files["model.safetensors"]!);
  const names = Object.keys(st.header).filter((k) => k !== "__metadata__");
  const half = Math.ceil(names.length / 2);
  const out: CheckpointFiles = { "config.json": files["config.json"]! };
  const weightMap: Record<string, string> = {};
  [names.slice(0, half), names.slice(half)].forEach((part, i) => {
    const shard = `model-0000${i + 1}-of-00002.safetensors`;
    const header: Record<string, unknown> = {};
    const chunks: Uint8Array[] = [];
    let off = 0;
    for (const n of part) {
      const e = st.header[n] as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const bytes = st.data.subarray(e.data_offsets[0], e.data_offsets[1]);
      header[n] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + bytes.length] };
      chunks.push(bytes);
      off += bytes.length;
      weightMap[n] = shard;
    }
    out[shard] = encodeSt({ header, data: Buffer.concat(chunks) });
  });
  out["model.safetensors.index.json"] = new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 1));
  return out;
}

const DTYPES: unknown[] = ["F32", "F16", "BF16", "I64", "I32", "U8", "F64", "BOOL", "F8_E4M3", "F8_E5M2", "XX", 7, null];
const ODD_VALUES: unknown[] = [0, -1, 1, 2, 3, 1e9, 1.5, -2.5, "x", null, true, [], {}, 1e308, 64, 4096];
const ODD_DIMS: unknown[] = [0, -1, 1, 2, 3, 1e12, 2 ** 53 + 2, 1.5, "a", null];

type Mutation = (files: CheckpointFiles, rng: Rng) => string;

const stNames = (files: CheckpointFiles) => Object.keys(files).filter((f) => f.endsWith(".safetensors"));

/** Runs `edit` on one safetensors file of the checkpoint (chosen at random) and writes it back. */
function onSt(files: CheckpointFiles, rng: Rng, edit: (st: StFile, tensors: string[]) => string): string {
  const name = rng.pick(stNames(files));
  let st: StFile;
  try {
    st = parseSt(files[name]!);
  } catch {
    return `${name}: already unreadable`;
  }
  const tensors = Object.keys(st.header).filter((k) => k !== "__metadata__");
  if (!tensors.length) return `${name}: no tensors`;
  const what = edit(st, tensors);
  files[name] = encodeSt(st);
  return `${name}: ${what}`;
}

type Entry = { dtype: unknown; shape: unknown; data_offsets: unknown };
const entry = (st: StFile, t: string) => st.header[t] as Entry;

const MUTATIONS: Record<string, Mutation> = {
  dtype: (f, rng) =>
    onSt(f, rng, (st, ts) => {
      const t = rng.pick(ts);
      entry(st, t).dtype = rng.pick(DTYPES);
      return `${t} dtype ${JSON.stringify(entry(st, t).dtype)}`;
    }),
  shape: (f, rng) =>
    onSt(f, rng, (st, ts) => {
      const t = rng.pick(ts);
      const shape = [...((entry(st, t).shape as unknown[]) ?? [])];
      const k = rng.int(5);
      if (k === 0 && shape.length) shape[rng.int(shape.length)] = rng.pick(ODD_DIMS);
      else if (k === 1 && shape.length) shape.splice(rng.int(shape.length), 1);
      else if (k === 2) shape.push(1 + rng.int(3));
      else if (k === 3 && shape.length > 1) shape.reverse();
      else if (shape.length) shape[rng.int(shape.length)] = (shape[0] as number) + (rng.int(2) ? 1 : -1);
      entry(st, t).shape = rng.int(20) ? shape : null;
      return `${t} shape ${JSON.stringify(entry(st, t).shape)}`;
    }),
  offsets: (f, rng) =>
    onSt(f, rng, (st, ts) => {
      const t = rng.pick(ts);
      const offsets = entry(st, t).data_offsets;
      if (!Array.isArray(offsets) || offsets.length !== 2) return `${t} has no offsets`;
      const [a, b] = offsets as [number, number];
      const d = rng.pick([1, 2, 4, 8, 1000, st.data.length]);
      const choices: unknown[] = [[a + d, b + d], [a - d, b - d], [b, a], [a, b + d], [a, st.data.length + d], [-1, b], [a + 0.5, b], [a], null, [a, b, b]];
      entry(st, t).data_offsets = rng.pick(choices);
      return `${t} data_offsets ${JSON.stringify(entry(st, t).data_offsets)}`;
    }),
  missing: (f, rng) =>
    onSt(f, rng, (st, ts) => {
      const t = rng.pick(ts);
      delete st.header[t];
      return `${t} removed`;
    }),
  renamed: (f, rng) =>
    onSt(f, rng, (st, ts) => {
      const t = rng.pick(ts);
      const to = rng.pick([`${t}x`, t.replace(/\d+/, "9"), t.toUpperCase(), "", "__metadata__", `${t}.extra`]);
      const e = st.header[t];
      delete st.header[t];
      st.header[to] = e;
      return `${t} renamed ${JSON.stringify(to)}`;
    }),
  unknown: (f, rng) =>
    onSt(f, rng, (st, ts) => {
      const t = rng.pick(ts);
      const name = rng.pick(["model.layers.99.mlp.gate.weight", "lm_head.bias", "model.extra", `${t}_copy`]);
      st.header[name] = { ...entry(st, t) };
      return `unknown tensor ${name}`;
    }),
  headerByte: (f, rng) => {
    const name = rng.pick(stNames(f));
    if (f[name]!.length < 9) return `${name}: too short already`;
    const bytes = Uint8Array.from(f[name]!);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const at = 8 + rng.int(Math.max(1, Math.min(n, bytes.length - 8)));
    bytes[at] = rng.pick([0x7b, 0x7d, 0x22, 0x2c, 0x3a, 0x5b, 0x5d, 0x00, 0xff, 0x30 + rng.int(10)]);
    f[name] = bytes;
    return `${name}: header byte ${at}`;
  },
  headerLength: (f, rng) => {
    const name = rng.pick(stNames(f));
    if (f[name]!.length < 8) return `${name}: too short already`;
    const bytes = Uint8Array.from(f[name]!);
    const view = new DataView(bytes.buffer);
    const n = view.getBigUint64(0, true);
    const v = rng.pick([0n, 1n, 7n, n - 1n, n + 1n, n + 8n, BigInt(bytes.length), 2n ** 63n, 2n ** 64n - 1n, 5789751444030890300n]);
    view.setBigUint64(0, v, true);
    f[name] = bytes;
    return `${name}: header length ${v}`;
  },
  truncated: (f, rng) => {
    const name = rng.pick(stNames(f));
    const len = f[name]!.length;
    const at = rng.pick([0, 4, 8, 12, rng.int(len), len - 1, len - 4]);
    f[name] = f[name]!.slice(0, Math.max(0, at));
    return `${name}: cut at ${at}`;
  },
  trailing: (f, rng) => {
    const name = rng.pick(stNames(f));
    const extra = new Uint8Array(1 + rng.int(64)).map(() => rng.int(256));
    const out = new Uint8Array(f[name]!.length + extra.length);
    out.set(f[name]!);
    out.set(extra, f[name]!.length);
    f[name] = out;
    return `${name}: ${extra.length} bytes appended`;
  },
  nonFinite: (f, rng) =>
    onSt(f, rng, (st, ts) => {
      const floats = ts.filter((t) => entry(st, t).dtype === "F32");
      if (!floats.length) return "no f32 tensor";
      const t = rng.pick(floats);
      const offsets = entry(st, t).data_offsets;
      if (!Array.isArray(offsets) || offsets.length !== 2) return `${t} has no offsets`;
      const [a, b] = offsets as [number, number];
      if (!(Number.isInteger(a) && Number.isInteger(b) && a >= 0 && b <= st.data.length && b - a >= 4)) return `${t} has no data in the file`;
      const data = Uint8Array.from(st.data);
      const at = a + 4 * rng.int((b - a) / 4);
      new DataView(data.buffer).setFloat32(at, rng.pick([NaN, Infinity, -Infinity]), true);
      st.data = data;
      return `${t} non-finite value at byte ${at - a}`;
    }),
  metadata: (f, rng) =>
    onSt(f, rng, (st) => {
      st.header["__metadata__"] = rng.pick<unknown>([null, 3, "x", [], { format: 7 }, { format: "pt" }]);
      return `__metadata__ ${JSON.stringify(st.header["__metadata__"])}`;
    }),
  configValue: (f, rng) => {
    const cfg = JSON.parse(new TextDecoder().decode(f["config.json"]!)) as Record<string, unknown>;
    const key = rng.pick(Object.keys(cfg));
    cfg[key] = rng.pick(ODD_VALUES);
    f["config.json"] = new TextEncoder().encode(JSON.stringify(cfg));
    return `config.json: ${key} = ${JSON.stringify(cfg[key])}`;
  },
  configKey: (f, rng) => {
    const cfg = JSON.parse(new TextDecoder().decode(f["config.json"]!)) as Record<string, unknown>;
    const key = rng.pick(Object.keys(cfg));
    delete cfg[key];
    if (rng.int(3) === 0) cfg["quantization_config"] = rng.pick<unknown>([{ quant_method: "fp8" }, { quant_method: "awq" }, "x", { quant_method: "fp8", weight_block_size: [0, 128] }]);
    f["config.json"] = new TextEncoder().encode(JSON.stringify(cfg));
    return `config.json: ${key} removed`;
  },
  configText: (f, rng) => {
    const text = new TextDecoder().decode(f["config.json"]!);
    const at = rng.int(text.length);
    f["config.json"] = new TextEncoder().encode(rng.int(2) ? text.slice(0, at) : text.slice(0, at) + rng.pick(["{", "}", ",", "\"", "]", "\u0000", "NaN"]) + text.slice(at + 1));
    return `config.json: text edited at ${at}`;
  },
  index: (f, rng) => {
    if (!f["model.safetensors.index.json"]) return "no index";
    const text = new TextDecoder().decode(f["model.safetensors.index.json"]!);
    if (rng.int(5) === 0) {
      f["model.safetensors.index.json"] = new TextEncoder().encode(text.slice(0, rng.int(text.length)));
      return "index: truncated";
    }
    const idx = JSON.parse(text) as { weight_map: Record<string, unknown> };
    const keys = Object.keys(idx.weight_map);
    const k = rng.pick(keys);
    const op = rng.int(4);
    if (op === 0) idx.weight_map[k] = rng.pick<unknown>(["missing.safetensors", "../config.json", "", 3, null, "/etc/passwd"]);
    else if (op === 1) delete idx.weight_map[k];
    else if (op === 2) idx.weight_map[k] = idx.weight_map[rng.pick(keys)];
    else idx.weight_map = rng.pick<unknown>([null, [], "x"]) as Record<string, unknown>;
    f["model.safetensors.index.json"] = new TextEncoder().encode(JSON.stringify(idx));
    return `index: ${k} edited (${op})`;
  },
};

export const CHECKPOINT_MUTATIONS = Object.keys(MUTATIONS);

export interface CheckpointCase {
  mutations: string[];
  code: number;
  ms: number;
  message: string;
  finding?: string;
}

/**
 * One case: the base (one file or sharded) mutated 1-3 times under `dir`, run with `input`. The case
 * folder is removed afterwards.
 */
export async function runCheckpointCase(base: CheckpointFiles, shardedBase: CheckpointFiles, input: string, dir: string, rng: Rng, show?: (mutations: readonly string[]) => void): Promise<CheckpointCase> {
  const files: CheckpointFiles = { ...(rng.int(3) === 0 ? shardedBase : base) };
  const mutations: string[] = [];
  const count = 1 + rng.int(3);
  for (let i = 0; i < count; i++) {
    const kind = rng.pick(CHECKPOINT_MUTATIONS);
    // A mutation that does not apply to what earlier ones left (config text already broken, a file
    // already cut short) is skipped, and says so.
    let what: string;
    try {
      what = MUTATIONS[kind]!(files, rng);
    } catch {
      what = "not applicable here";
    }
    mutations.push(`${kind}: ${what}`);
  }
  show?.(mutations);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  const out = join(dir, "..", "fuzz-out.safetensors");
  rmSync(out, { force: true });
  let stderr = "";
  const t0 = performance.now();
  let code: number;
  try {
    code = await runCli(["run", dir, "--input", input, "--out", out], { out: () => undefined, err: (t) => (stderr += t) });
  } catch (e) {
    return { mutations, code: -1, ms: performance.now() - t0, message: String(e), finding: `exception escaped the CLI: ${e instanceof Error ? e.message : String(e)}` };
  }
  const ms = performance.now() - t0;
  const message = stderr.trim().split("\n")[0] ?? "";
  const result: CheckpointCase = { mutations, code, ms, message };
  if (code === 0) {
    const outputs = readAllSafetensors(out);
    const bad = Object.entries(outputs).find(([, t]) => (t.dtype === "f32" || t.dtype === "f16" || t.dtype === "bf16") && Array.prototype.some.call(t.data, (v: number) => !Number.isFinite(v)));
    if (bad) result.finding = `exit 0 with a non-finite value in output ${bad[0]}`;
  } else if (code === 1) {
    if (existsSync(out)) result.finding = "exit 1 left an output file";
    else if (!message.includes(dir)) result.finding = "the error does not name the checkpoint folder or its file";
  } else {
    result.finding = code === 70 ? "internal error (exit 70)" : `exit ${code}`;
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(out, { force: true });
  return result;
}

/** The base checkpoint's files (config.json and model.safetensors). */
export function readBase(folder: string): CheckpointFiles {
  return { "config.json": readFileSync(join(folder, "config.json")), "model.safetensors": readFileSync(join(folder, "model.safetensors")) };
}
