/**
 * Parameter counts from the IR's weight declarations. A weight stacked over experts and consumed
 * by `grouped_linear` is active for K of its E experts per token, where K is the width of the
 * routing indices that dispatched the rows (read from the IR, not from a config, and found through
 * calls: after fusion the grouped_linear sits in a kernel function apart from its moe_dispatch).
 * Weights reached only through a function with role "mtp" are counted apart, as the published totals
 * exclude the MTP layer; the embedding and the head are included in "active", as in LING2.md §1.
 */
import { Func, Module, Op, Value, joinScope } from "./module";
import { byteSize } from "./dtype";
import { scaleGridShape } from "./quant";
import type { TensorType } from "./types";

export interface ParamCounts {
  total: number;
  active: number;
  mtpTotal: number;
  mtpActive: number;
}

interface WeightUse {
  /** Full checkpoint name. */
  name: string;
  elements: number;
  bytes: number;
  /** Fraction of the weight one token reads through this use. */
  fraction: number;
  /** How the use reads it: an embedding table reads one row per token. */
  embeddingRows?: number;
  mtp: boolean;
  /** The use is a quantize op (run once, at load): what the weight becomes. */
  quantizedTo?: TensorType;
}

/** Ops that turn a weight into another element type, elementwise: its readers read it as the result's readers do. */
const CONVERSIONS = new Set(["cast", "quantize", "dequantize"]);

/** The share of a grouped_linear's expert weights one token reads: top-k of the experts. */
function expertFraction(op: Op, defOf: (v: Value) => Op | undefined): number {
  const dispatch = defOf(op.operands[2]!);
  const k = dispatch?.opName === "moe_dispatch" ? dispatch.operands[0]!.type.shape[1]?.value : undefined;
  const e = op.operands[1]!.type.shape[0]?.value;
  return k !== undefined && e ? Math.min(k / e, 1) : 1;
}

/**
 * The share of value v (a weight made at load) one token reads, from its consumers in f and the
 * functions f passes it to: the routed experts' share where a grouped_linear takes it as weights.
 */
function readFraction(f: Func, v: Value, defOf: (v: Value) => Op | undefined, m?: Module): number {
  let most = 0;
  for (const op of f.body) {
    op.operands.forEach((x, i) => {
      if (x !== v) return;
      if (op.opName === "grouped_linear" && i === 1) most = Math.max(most, expertFraction(op, defOf));
      else if (CONVERSIONS.has(op.opName) && i === 0) most = Math.max(most, readFraction(f, op.results[0]!, defOf, m));
      else if (op.opName === "call" && m?.getFunc(op.callee!)) {
        const callee = m.getFunc(op.callee!)!;
        const inner = new Map<Value, Op | undefined>();
        callee.params.forEach((p, j) => inner.set(p, defOf(op.operands[j]!)));
        most = Math.max(most, readFraction(callee, callee.params[i]!, (y) => (inner.has(y) ? inner.get(y) : y.def), m));
      } else most = 1;
    });
  }
  return most || 1;
}

/**
 * Every use of every weight from the entry, calls followed with their scopes; a value passed into a
 * call is traced back to the op that made it in the caller, so a kernel's grouped_linear finds its
 * dispatch.
 */
function weightUses(m: Module): WeightUse[] {
  const out: WeightUse[] = [];
  const visit = (f: Func, prefix: string, origin: Map<Value, Op | undefined>, mtp: boolean) => {
    const defOf = (v: Value): Op | undefined => (origin.has(v) ? origin.get(v) : v.def);
    for (const op of f.body) {
      if (op.opName === "call") {
        const callee = m.getFunc(op.callee!);
        if (!callee) continue;
        const inner = new Map<Value, Op | undefined>();
        callee.params.forEach((p, i) => inner.set(p, defOf(op.operands[i]!)));
        visit(callee, joinScope(prefix, op.scope), inner, mtp || callee.role === "mtp");
        continue;
      }
      op.operands.forEach((v, i) => {
        if (v.kind !== "weight") return;
        const elements = v.type.numel().value ?? 0;
        const use: WeightUse = { name: joinScope(prefix, v.name!), elements, bytes: storedBytes(v.type), fraction: 1, mtp };
        if (CONVERSIONS.has(op.opName) && i === 0) {
          // Converted once at load (cast to the compute dtype, quantized): a token reads the result
          // as its consumers do.
          if (op.opName === "quantize") use.quantizedTo = op.results[0]!.type;
          use.fraction = readFraction(f, op.results[0]!, defOf, m);
        }
        if (op.opName === "grouped_linear" && i === 1) use.fraction = expertFraction(op, defOf);
        if (op.opName === "embedding" && i === 0) use.embeddingRows = v.type.shape[0]?.value;
        out.push(use);
      });
    }
  };
  if (m.entry) visit(m.entry, "", new Map(), false);
  return out;
}

/** Bytes a tensor of a (numeric) type takes: its elements, and the scales of an fp8 layout. */
export function storedBytes(t: TensorType): number {
  const shape = t.shape.map((d) => d.value ?? 0);
  const n = shape.reduce((a, b) => a * b, 1);
  const scales = t.quant ? scaleGridShape(shape, t.quant.granularity).reduce((a, b) => a * b, 1) * byteSize(t.quant.scaleDtype) : 0;
  return n * byteSize(t.dtype) + scales;
}

/**
 * Bytes of weights a loaded program holds: each weight once, as declared (an fp8 one with its
 * scales), or, when all its uses quantize it (done once, at load), as the quantized tensor.
 */
export function residentWeightBytes(m: Module): number {
  const byName = new Map<string, { bytes: number; quantized?: number }>();
  for (const u of weightUses(m)) {
    const prev = byName.get(u.name) ?? { bytes: u.bytes, quantized: u.quantizedTo ? storedBytes(u.quantizedTo) : undefined };
    if (!u.quantizedTo) prev.quantized = undefined;
    byName.set(u.name, prev);
  }
  let total = 0;
  for (const w of byName.values()) total += w.quantized ?? w.bytes;
  return total;
}

export function countParams(m: Module): ParamCounts {
  const counts: ParamCounts = { total: 0, active: 0, mtpTotal: 0, mtpActive: 0 };
  const seen = new Map<string, { elements: number; fraction: number; mtp: boolean }>();
  for (const u of weightUses(m)) {
    const prev = seen.get(u.name);
    if (prev) {
      prev.fraction = Math.max(prev.fraction, u.fraction);
      prev.mtp &&= u.mtp;
    } else seen.set(u.name, { elements: u.elements, fraction: u.fraction, mtp: u.mtp });
  }
  for (const w of seen.values()) {
    if (w.mtp) {
      counts.mtpTotal += w.elements;
      counts.mtpActive += w.elements * w.fraction;
    } else {
      counts.total += w.elements;
      counts.active += w.elements * w.fraction;
    }
  }
  return counts;
}

/**
 * Bytes of weights one token of a step reads at least (each weight once): its routed experts only,
 * and one row of a table it only gathers from (an untied embedding). The decode benchmark's
 * bandwidth share is measured against this plus the KV cache.
 */
export function weightBytesPerToken(m: Module): number {
  const byName = new Map<string, { bytes: number; fraction: number }>();
  for (const u of weightUses(m)) {
    const fraction = u.embeddingRows ? 1 / u.embeddingRows : u.fraction;
    const prev = byName.get(u.name);
    if (prev) prev.fraction = Math.max(prev.fraction, fraction);
    else byName.set(u.name, { bytes: u.quantizedTo ? storedBytes(u.quantizedTo) : u.bytes, fraction });
  }
  let total = 0;
  for (const w of byName.values()) total += w.bytes * w.fraction;
  return total;
}

/** Ops per function as written, and ops executed by one run of the entry (calls expanded). */
export function countOps(m: Module): { functions: { name: string; ops: number }[]; written: number; executed: number } {
  const memo = new Map<string, number>();
  const executed = (f: Func): number => {
    const hit = memo.get(f.name);
    if (hit !== undefined) return hit;
    let n = 0;
    for (const op of f.body) {
      n += 1;
      if (op.opName === "call") {
        const callee = m.getFunc(op.callee!);
        if (callee) n += executed(callee);
      }
    }
    memo.set(f.name, n);
    return n;
  };
  const functions = m.functions.map((f) => ({ name: f.name, ops: f.body.length }));
  return { functions, written: functions.reduce((s, f) => s + f.ops, 0), executed: m.entry ? executed(m.entry) : 0 };
}
