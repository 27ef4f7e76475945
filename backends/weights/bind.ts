/**
 * Binding a checkpoint to a graph by HF tensor name. Every weight the graph declares is checked
 * before anything runs (present, same dtype, same shape; for stacked expert weights, every expert's
 * tensor), so a bad checkpoint fails up front with one line that names the tensor. Tensors are then
 * read on first use and kept; stacked weights are assembled from the per-expert tensors. A weight
 * declared fp8 with block scales (`f8e4m3fn[O, I] scale(f32, block(128, 128))`) is its fp8 tensor
 * and, beside it, HF's `<name>_scale_inv` (f32, one value per block: what dequantizes it).
 */
import { isFloat, isFp8, type DType } from "../../ir/dtype";
import { nonFiniteWeight } from "./non-finite";
import { LingcError } from "../../ir/errors";
import { scaleFactors, scaleGridShape } from "../../ir/quant";
import type { WeightSource } from "../../ir/interpret";
import { isStackedWeight, type Module } from "../../ir/module";
import { Tensor, allocData, shapeToString } from "../../ir/tensor";
import type { TensorType } from "../../ir/types";
import { collectWeights, expertNames } from "../../ir/weights";
import type { Checkpoint } from "./checkpoint";
import { TO_ST } from "./safetensors-format";

function checkTensor(ck: Checkpoint, name: string, dtype: string, shape: readonly number[], role: string): void {
  const e = ck.entry(name);
  if (!e) throw new LingcError(`${ck.dir}: tensor "${name}" is missing (the model needs it as ${role})`);
  const en = e.entry;
  if (en.dtype !== dtype) {
    const hint = en.dtype !== undefined && isFp8(en.dtype) && !isFp8(dtype as DType) ? "; an FP8 checkpoint's projections need the fp8 pass, which the default pipelines run for it" : "";
    // Both dtypes as the file writes them, lingc's name beside each.
    const expects = TO_ST[dtype as DType] ? `${TO_ST[dtype as DType]} (${dtype})` : dtype;
    throw new LingcError(`${e.file.path}: tensor "${name}" has dtype ${en.stDtype}${en.dtype === undefined ? "" : ` (${en.dtype})`}, the model expects ${expects}${hint}`);
  }
  if (en.shape.length !== shape.length || en.shape.some((d, i) => d !== shape[i])) {
    throw new LingcError(`${e.file.path}: tensor "${name}" has shape ${shapeToString(en.shape)}, the model expects ${shapeToString(shape)}`);
  }
}

/** HF's name for the scales of an fp8 weight: `x.weight` -> `x.weight_scale_inv`. */
export function scaleNameOf(weight: string): string {
  return `${weight}_scale_inv`;
}

/** Checks one (unstacked) weight, and for a scaled fp8 type its scale tensor against the blocks. */
function checkWeight(ck: Checkpoint, name: string, type: TensorType, shape: readonly number[], role: string): void {
  checkTensor(ck, name, type.dtype, shape, role);
  if (!type.quant) return;
  const grid = scaleGridShape(shape, type.quant.granularity);
  const g = type.quant.granularity;
  const blocks = g.kind === "block" ? `${g.rows}x${g.cols} blocks` : g.kind;
  checkTensor(ck, scaleNameOf(name), type.quant.scaleDtype, grid, `the scales of ${name} (${blocks} of ${shapeToString(shape)})`);
}

/** Checks every weight of `m` against the checkpoint; throws on the first problem. */
export function checkCheckpoint(m: Module, ck: Checkpoint): void {
  for (const w of collectWeights(m)) {
    const shape = w.type.shape.map((d) => d.value!);
    if (isStackedWeight(w.name)) {
      for (const n of expertNames(w.name, shape[0]!)) checkWeight(ck, n, w.type, shape.slice(1), `one expert of ${w.type}`);
    } else {
      checkWeight(ck, w.name, w.type, shape, w.type.toString());
    }
  }
}

/**
 * A weight holding NaN or an infinity would make every output NaN without a word: refused when it is
 * read, naming the checkpoint tensor (an expert's, for stacked weights) and the position in it.
 */
function refuseNonFinite(ck: Checkpoint, name: string, parts: readonly string[], shape: readonly number[], data: ArrayLike<number>): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) throw nonFiniteWeight(name, shape, i, data[i]!, (e) => parts[e]!, `${ck.dir}: `);
  }
}

/** The checkpoint tensors the modules' weights read: stacked weights expert by expert, fp8 scales beside their weights. */
export function checkpointNames(modules: readonly Module[]): Set<string> {
  const names = new Set<string>();
  for (const m of modules) {
    for (const w of collectWeights(m)) {
      const parts = isStackedWeight(w.name) ? expertNames(w.name, w.type.shape[0]!.value!) : [w.name];
      for (const n of parts) {
        names.add(n);
        if (w.type.quant) names.add(scaleNameOf(n));
      }
    }
  }
  return names;
}

/**
 * A checkpoint tensor no weight of the model reads is refused: it says the checkpoint was made for
 * another configuration (a config.json that lost `use_qk_norm` would otherwise run without the
 * QK norms the checkpoint has, silently). Names the first few and the count.
 */
export function refuseUnknownTensors(ck: Checkpoint, known: ReadonlySet<string>): void {
  const unknown = ck.names().filter((n) => !known.has(n));
  if (!unknown.length) return;
  const shown = unknown.slice(0, 3).map((n) => `"${n}"`).join(", ");
  const more = unknown.length > 3 ? ` and ${unknown.length - 3} more` : "";
  throw new LingcError(`${ck.dir}: ${unknown.length === 1 ? "tensor" : "tensors"} ${shown}${more} ${unknown.length === 1 ? "is not a weight" : "are not weights"} of the model its config.json describes (a checkpoint for another configuration?)`);
}

/**
 * A weight source over a checkpoint, after checking it against the graph(s) that will use it;
 * `check` reads a weight only to refuse non-finite values (for hosts that read the files themselves).
 */
export function bindCheckpoint(modules: readonly Module[], ck: Checkpoint): WeightSource & { check(name: string, type: TensorType): void; bf16Bits(name: string, type: TensorType): Uint16Array | undefined } {
  for (const m of modules) checkCheckpoint(m, ck);
  const cache = new Map<string, Tensor>();
  const load = (name: string, type: TensorType): Tensor => {
      let t: Tensor;
      const shape = type.shape.map((d) => d.value!);
      const names = isStackedWeight(name) ? expertNames(name, shape[0]!) : [name];
      // One tensor per expert, side by side (a plain weight is one "expert" of the whole shape).
      const gather = (parts: readonly string[], whole: readonly number[], dtype: TensorType["dtype"]) => {
        if (parts.length === 1 && !isStackedWeight(name)) return ck.read(parts[0]!).data;
        const per = whole.slice(1).reduce((a, b) => a * b, 1);
        const data = allocData(dtype, whole[0]! * per);
        parts.forEach((n, e) => data.set(ck.read(n).data, e * per));
        return data;
      };
      const data = gather(names, shape, type.dtype);
      if (isFloat(type.dtype) && !type.quant) refuseNonFinite(ck, name, names, shape, data);
      if (type.quant) {
        // Stacked experts: each expert's grid, side by side (the grid of the stacked shape).
        const grid = scaleGridShape(shape, type.quant.granularity);
        // As factors (a UE8M0 scale is an exponent: ir/quant.ts scaleFactors).
        const scales = scaleFactors(gather(names.map(scaleNameOf), grid, type.quant.scaleDtype), type.quant.scaleDtype);
        // A NaN or infinite scale makes its block NaN (the fp8 codes themselves are checked where they decode).
        refuseNonFinite(ck, scaleNameOf(name), names.map(scaleNameOf), grid, scales);
        t = new Tensor(type.dtype, shape, data, { layout: type.quant, scales });
      } else t = new Tensor(type.dtype, shape, data);
      return t;
  };
  return {
    get(name: string, type: TensorType): Tensor {
      const hit = cache.get(name);
      if (hit) return hit;
      const t = load(name, type);
      cache.set(name, t);
      return t;
    },
    check(name: string, type: TensorType): void {
      if (!cache.has(name)) load(name, type);
    },
    /**
     * A bf16 weight stored as bf16 in the checkpoint (every expert's, for stacked weights): its 16-bit
     * patterns as the file holds them, not decoded and not kept (a target that stores bf16 uploads
     * them once; the f32 copy `get` keeps would double the host memory of a large model). The
     * reader refuses non-finite patterns (backends/wgsl/upload.ts). (checkCheckpoint has checked
     * that the file stores every part as bf16.) Undefined for other weights.
     */
    bf16Bits(name: string, type: TensorType): Uint16Array | undefined {
      if (type.dtype !== "bf16" || type.quant || cache.has(name)) return undefined;
      const shape = type.shape.map((d) => d.value!);
      const names = isStackedWeight(name) ? expertNames(name, shape[0]!) : [name];
      if (names.length === 1) return new Uint16Array(ck.entry(names[0]!)!.file.readBytes(names[0]!));
      const per = shape.slice(1).reduce((a, b) => a * b, 1);
      const bits = new Uint16Array(shape[0]! * per);
      names.forEach((n, e) => bits.set(new Uint16Array(ck.entry(n)!.file.readBytes(n)), e * per));
      return bits;
    },
  };
}
