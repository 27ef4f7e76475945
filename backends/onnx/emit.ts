/**
 * The ONNX emitter: an IR module's entry function becomes one ModelProto (standard ai.onnx ops).
 * Calls are inlined with their scopes, so node names carry the full provenance
 * (`model.layers.7.mlp.gate/TopK_123`) and doc strings the DSL line. Symbolic sizes become dim_params
 * (B, S, P); the graph reads their values from the inputs' shapes. Weights are initializers with
 * external data (see weights.ts); expert weights are one initializer per expert, concatenated in the
 * graph (ONNX Runtime folds that at load), so each one can point into the checkpoint as stored.
 */
import { Dim } from "../../ir/dim";
import { isFp8, type DType } from "../../ir/dtype";
import { LingcError, formatPos } from "../../ir/errors";
import { Func, Module, Op, Value, isStackedWeight, joinScope } from "../../ir/module";
import { TensorType } from "../../ir/types";
import { unifyTypes } from "../../ir/unify";
import { expertNames } from "../../ir/weights";
import { scaleGridShape } from "../../ir/quant";
import { scaleNameOf } from "../weights/bind";
import { emulateBf16 } from "./bf16-emulation";
import { dequantizeTo, FP8_MIN_OPSET } from "./fp8";
import { GraphBuilder, Names } from "./graph";
import { LOWERED_THROUGH_MATMUL, onnxLowering, type LowerCtx } from "./lower";
import { getOp } from "../../ir/ops";
import { elemType, encodeModel, valueInfo, type ModelProto, type OnnxDim, type TensorProto } from "./proto";
import type { WeightLayout } from "./weights";

export const DEFAULT_OPSET = 23;
/** The output holding the scales of a scaled fp8 output `x` is `x.scale`. */
export const SCALE_SUFFIX = ".scale";
export const MIN_OPSET = 18;
/** ONNX Runtime 1.30 refuses opset 27 (../shared/TOOLCHAIN.md). */
export const MAX_OPSET = 26;

export interface OnnxEmitOptions {
  opset?: number;
  weights: WeightLayout;
  /** Also output every named IR value (for `lingc compare`). */
  exposeNamed?: boolean;
  /** Cast non-f32 float inputs and outputs to f32 at the graph boundary (the Node binding cannot pass bf16). */
  f32Boundary?: boolean;
  /**
   * Hold bf16 tensors in f32 and round each computed bf16 result to bf16 (bf16-emulation.ts): ONNX
   * Runtime's CPU provider, which lingc's runner uses, has no bf16 kernels for most ops.
   */
  emulateBf16?: boolean;
}

/** A named IR value a model also outputs: its full name and its IR dtype. */
export interface ExposedValue {
  name: string;
  dtype: DType;
}

export interface EmittedOnnx {
  bytes: Uint8Array;
  /** Output names that expose named IR values, mapped to those values' full names and dtypes. */
  exposed: Map<string, ExposedValue>;
}

function onnxDims(t: TensorType): OnnxDim[] {
  return t.shape.map((d) => (d.isConst() ? d.value! : d.toString()));
}


class Emitter {
  readonly names = new Names();
  readonly g = new GraphBuilder(this.names);
  readonly memo = new Map<string, string[]>();
  readonly weightNames = new Map<string, string>();
  readonly exposed = new Map<string, ExposedValue>();
  /** Scaled fp8 data -> its scale grid (fp8.ts). */
  readonly scales = new Map<string, string>();

  constructor(
    readonly m: Module,
    readonly opset: number,
    readonly opts: OnnxEmitOptions,
  ) {}

  where(op: Op): string {
    return op.loc ? ` at ${formatPos(op.loc)}` : op.textPos ? ` at ${formatPos(op.textPos)}` : "";
  }

  checkExpressible(op: Op, scope: string, types: TensorType[]): void {
    const what = `op '${op.opName}'${scope ? ` in ${scope}` : ""}${this.where(op)}`;
    for (const t of types) {
      if (isFp8(t.dtype) && this.opset < 19) throw new LingcError(`${what}: dtype ${t.dtype} needs ONNX opset 19 or later (chosen: ${this.opset})`);
      if (t.quant && this.opset < FP8_MIN_OPSET) throw new LingcError(`${what}: scaled ${t.dtype} tensors need blocked DequantizeLinear, ONNX opset ${FP8_MIN_OPSET} or later (chosen: ${this.opset})`);
      if (isFp8(t.dtype) && !t.quant && LOWERED_THROUGH_MATMUL.has(op.opName)) {
        throw new LingcError(`${what}: ONNX MatMul does not take ${t.dtype} operands; cast to a wider dtype (or dequantize) first`);
      }
    }
    if (op.opName !== "call" && !onnxLowering(op.opName)) {
      const hint = getOp(op.opName)?.decompose ? ` (it has a decomposition: put decompose{ops=${op.opName}} in the pipeline, as the onnx target's default pipeline does)` : "";
      throw new LingcError(`${what}: no ONNX lowering for this op${hint}`);
    }
  }

  weight(full: string, type: TensorType): string {
    const hit = this.weightNames.get(full);
    if (hit) return hit;
    const shape = type.shape.map((d) => d.value!);
    let name: string;
    if (isStackedWeight(full)) {
      const part = type.withShape(type.shape.slice(1));
      const parts = expertNames(full, shape[0]!).map((n) => {
        const data = this.initializer(n, part, [1, ...shape.slice(1)]);
        if (!type.quant) return data;
        // float8 cannot be concatenated in ONNX Runtime: each expert is dequantized first (f32).
        const s = this.scaleInitializer(n, part, true);
        return dequantizeTo(this.g, data, s, type.withShape([Dim.of(1), ...type.shape.slice(1)]), "f32", { scope: full });
      });
      name = this.g.one("Concat", parts, { axis: 0 }, { scope: full });
    } else {
      name = this.initializer(full, type, shape);
      if (type.quant) this.scales.set(name, this.scaleInitializer(full, type, false));
    }
    this.weightNames.set(full, name);
    return name;
  }

  /**
   * The `_scale_inv` initializer of fp8 weight `name` (with a leading 1 for one expert of a stack),
   * as f32 factors: a bf16 one widened, a UE8M0 one (u8) as 2^(e - 127) (ir/quant.ts scaleFactors).
   */
  scaleInitializer(name: string, type: TensorType, leadingOne: boolean): string {
    const grid = scaleGridShape(type.shape.map((d) => d.value!), type.quant!.granularity);
    const dt = type.quant!.scaleDtype;
    const stored = this.initializer(scaleNameOf(name), new TensorType(dt, grid.map((d) => Dim.of(d))), leadingOne ? [1, ...grid] : grid);
    if (dt === "f32") return stored;
    const meta = { scope: name };
    const wide = this.g.one("Cast", [stored], { to: elemType("f32") }, meta);
    return dt === "u8" ? this.g.one("Pow", [this.g.scalar(2, "f32"), this.g.one("Sub", [wide, this.g.scalar(127, "f32")], {}, meta)], {}, meta) : wide;
  }

  /** An external-data initializer for checkpoint tensor `name` (stored as `type`), declared with `dims`. */
  initializer(name: string, type: TensorType, dims: number[]): string {
    const ref = this.opts.weights.ref(name, type);
    const t: TensorProto = {
      name: this.names.reserve(name),
      dataType: elemType(type.dtype),
      dims,
      dataLocation: 1,
      externalData: [
        { key: "location", value: ref.location },
        { key: "offset", value: String(ref.offset) },
        { key: "length", value: String(ref.length) },
      ],
    };
    this.g.initializers.push(t);
    return name;
  }

  func(f: Func, args: string[], prefix: string, subst: ReadonlyMap<string, Dim>): string[] {
    const env = new Map<Value, string>();
    f.params.forEach((p, i) => env.set(p, args[i]!));
    const tr = (t: TensorType) => new TensorType(t.dtype, t.shape.map((d) => d.substitute(subst)), t.quant);
    const get = (v: Value): string => {
      const hit = env.get(v);
      if (hit !== undefined) return hit;
      const w = this.weight(joinScope(prefix, v.name!), v.type);
      env.set(v, w);
      return w;
    };
    for (const op of f.body) {
      const scope = joinScope(prefix, op.scope);
      const ins = op.operands.map(get);
      const outTypes = op.results.map((r) => tr(r.type));
      this.checkExpressible(op, scope, [...op.operands.map((v) => v.type), ...op.results.map((r) => r.type)]);
      let outs: string[];
      if (op.opName === "call") {
        const callee = this.m.getFunc(op.callee!)!;
        const u = unifyTypes(
          callee.params.map((p) => p.type),
          op.operands.map((v) => v.type),
          callee.params.map((p) => p.name!),
        );
        if ("problem" in u) throw new LingcError(`call to @${callee.name}${this.where(op)}: ${u.problem}`);
        const inner = new Map<string, Dim>();
        for (const [k, v] of u.bindings) inner.set(k, v.substitute(subst));
        outs = this.func(callee, ins, scope, inner);
      } else {
        outs = op.results.map((r) => this.names.fresh(r.name !== undefined ? joinScope(prefix, r.name) : `${scope ? `${scope}/` : ""}${op.opName}`));
        const c: LowerCtx = {
          g: this.g,
          op,
          ins,
          inTypes: op.operands.map((v) => tr(v.type)),
          outTypes,
          out: outs,
          meta: { scope: scope || op.opName, doc: op.loc ? formatPos(op.loc) : undefined },
          opset: this.opset,
          memo: this.memo,
          scaleOf: (n) => this.scales.get(n),
          setScale: (n, sc) => void this.scales.set(n, sc),
          fail: (msg) => {
            throw new LingcError(`op '${op.opName}'${this.where(op)}: ${msg}`);
          },
        };
        onnxLowering(op.opName)!(c);
      }
      op.results.forEach((r, i) => {
        env.set(r, outs[i]!);
        if (this.opts.exposeNamed && r.name !== undefined && !r.type.quant) {
          const full = joinScope(prefix, r.name);
          if (!this.exposed.has(outs[i]!) && ![...this.exposed.values()].some((x) => x.name === full)) {
            this.exposed.set(outs[i]!, { name: full, dtype: outTypes[i]!.dtype });
            this.g.outputs.push(valueInfo(outs[i]!, outTypes[i]!.dtype, onnxDims(outTypes[i]!)));
          }
        }
      });
    }
    return f.results.map((r) => get(r.value));
  }

  run(entry: Func): EmittedOnnx {
    const boundary = (t: TensorType) => (this.opts.f32Boundary && t.dtype !== "f32" && ["bf16", "f16"].includes(t.dtype) ? "f32" : t.dtype);
    for (const r of entry.results) this.names.reserve(r.name!);
    const args = entry.params.map((p) => {
      const name = this.names.reserve(p.name!);
      this.g.inputs.push(valueInfo(name, boundary(p.type), onnxDims(p.type)));
      p.type.shape.forEach((d, axis) => {
        if (d.symbol) this.g.bindSymbol(d.symbol, name, axis);
      });
      return boundary(p.type) === p.type.dtype ? name : this.g.one("Cast", [name], { to: elemType(p.type.dtype) }, { scope: "inputs" });
    });
    const outs = this.func(entry, args, "", new Map());
    const scaleOutputs: ReturnType<typeof valueInfo>[] = [];
    entry.results.forEach((r, i) => {
      const t = r.value.type;
      if (t.quant) {
        // A scaled output: its fp8 values as f32 (exact), and its scales as `<name>.scale`.
        this.g.node("Cast", [outs[i]!], [r.name!], { to: elemType("f32") }, { scope: "outputs" });
        this.g.outputs.splice(i, 0, valueInfo(r.name!, "f32", onnxDims(t)));
        const s = this.scales.get(outs[i]!);
        if (!s) throw new LingcError(`output ${r.name} of @${entry.name} is scaled fp8 but its scales were not computed in the graph`);
        const sname = this.names.reserve(`${r.name!}${SCALE_SUFFIX}`);
        this.g.node("Identity", [s], [sname], {}, { scope: "outputs" });
        scaleOutputs.push(valueInfo(sname, t.quant.scaleDtype, undefined));
        return;
      }
      const dt = boundary(t);
      if (dt !== t.dtype) this.g.node("Cast", [outs[i]!], [r.name!], { to: elemType(dt) }, { scope: "outputs" });
      else this.g.node("Identity", [outs[i]!], [r.name!], {}, { scope: "outputs" });
      this.g.outputs.splice(i, 0, valueInfo(r.name!, dt, onnxDims(t)));
    });
    this.g.outputs.push(...scaleOutputs);
    const model: ModelProto = {
      irVersion: 10,
      opsetImport: [{ domain: "", version: this.opset }],
      producerName: "lingc",
      producerVersion: "0.1.0",
      graph: { ...this.g.graph(this.m.name), docString: `lingc: graph '${this.m.name}' of ${this.m.attrs["model"] ?? "a module"}` },
      // The module's `config` attribute travels as metadata: onnx-bind checks a checkpoint's config against it.
      metadataProps: Object.entries({ "lingc.graph": this.m.name, "lingc.model": this.m.attrs["model"] ?? "", "lingc.weights": this.opts.weights.describe, ...(this.m.attrs["config"] ? { "lingc.config": this.m.attrs["config"] } : {}) }).map(([key, value]) => ({ key, value })),
    };
    if (this.opts.emulateBf16) emulateBf16(model);
    return { bytes: encodeModel(model), exposed: this.exposed };
  }
}

export function emitOnnx(m: Module, opts: OnnxEmitOptions): EmittedOnnx {
  const opset = opts.opset ?? DEFAULT_OPSET;
  if (!Number.isInteger(opset) || opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new LingcError(`ONNX opset ${opset} is not supported: lingc emits opsets ${MIN_OPSET} to ${MAX_OPSET} (ONNX Runtime 1.30 accepts up to ${MAX_OPSET})`);
  }
  const entry = m.entry;
  if (!entry) throw new LingcError(`module @${m.name} has no entry function @${m.name} to export`);
  return new Emitter(m, opset, opts).run(entry);
}
