/**
 * bf16 arithmetic for ONNX Runtime's CPU provider, which has no bf16 kernels for most ops (Mul,
 * MatMul, Add ...; it has Cast). A model as emitted (bf16 tensors where the IR computes in bf16) is
 * rewritten so that every bf16 tensor is held in f32, and every node that computes a bf16 result
 * rounds it to bf16 right after (a Cast to bf16 and back: round to nearest even, exact otherwise).
 * Each op then computes in f32 and rounds once where the bf16 model would round, which is the IR's
 * meaning of a bf16 op (accumulate wide, round the result; ir/ops/nn.ts). lingc's onnx runner
 * always rewrites its copy; an exported model (`lingc compile --target onnx`) keeps its bf16 tensors
 * unless `--onnx-bf16 emulate` asks for this form.
 *
 * The rewrite needs each value's element type, which ONNX does not carry on intermediate values:
 * it propagates them through the graph by each op's typing rule (below), Loop bodies included.
 */
import { LingcError } from "../../ir/errors";
import type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto } from "./proto";

const F32 = 1;
const I64 = 7;
const BOOL = 9;
const BF16 = 16;

/** Ops whose result is the element type of one of their inputs (index), when not the first. */
const TYPE_FROM_INPUT: Record<string, number> = { Where: 1 };
const I64_RESULT = new Set(["Shape", "Size", "NonZero", "ArgMax", "ArgMin"]);
const BOOL_RESULT = new Set(["Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"]);
/**
 * Ops that move or select bf16 values without computing new ones: their results are bf16 values
 * already, so they need no rounding. Everything else with a bf16 result is rounded (over-rounding
 * an exact result is harmless: the round trip of a bf16 value is the value).
 */
const EXACT = new Set([
  "Reshape", "Transpose", "Gather", "GatherElements", "GatherND", "Slice", "Concat", "Split", "Squeeze", "Unsqueeze",
  "Expand", "Identity", "Where", "TopK", "Max", "Min", "Neg", "Abs", "ReduceMax", "ReduceMin", "ConstantOfShape",
  "Constant", "Loop", "Tile", "Flatten",
]);

/** The scatters write their updates as they are unless they reduce (add, mul). */
function isExact(n: NodeProto): boolean {
  if (n.opType === "ScatterElements" || n.opType === "ScatterND") return !attr(n, "reduction");
  return EXACT.has(n.opType!);
}

function attr(n: NodeProto, name: string): AttributeProto | undefined {
  return n.attribute?.find((a) => a.name === name);
}

function elemOfValueInfo(v: { type?: { tensorType?: { elemType?: number | null } | null } | null }): number | undefined {
  return v.type?.tensorType?.elemType ?? undefined;
}

/** A bf16 TensorProto (raw bytes, two a value) as the same values in f32. */
function widenTensor(t: TensorProto): TensorProto {
  if (t.dataType !== BF16) return t;
  if (!t.rawData) throw new LingcError(`ONNX bf16 constant '${t.name}' has no raw data to widen`);
  const raw = t.rawData;
  const out = new Uint8Array(raw.length * 2);
  for (let i = 0; i < raw.length / 2; i++) {
    // f32 little endian: the bf16 pattern is the high two bytes, the low two are zero.
    out[i * 4 + 2] = raw[i * 2]!;
    out[i * 4 + 3] = raw[i * 2 + 1]!;
  }
  return { ...t, dataType: F32, rawData: out };
}

function widenValueInfos(list: GraphProto["input"]): void {
  for (const v of list ?? []) {
    const tt = v.type?.tensorType;
    if (tt && tt.elemType === BF16) tt.elemType = F32;
  }
}

class Rewriter {
  /** Element type by value name: names are unique across the model, Loop bodies included. */
  readonly types = new Map<string, number>();
  /** A bf16 initializer's name -> the name of its f32 copy. */
  private readonly widened = new Map<string, string>();
  private count = 0;

  constructor(private readonly taken: Set<string>) {}

  fresh(base: string): string {
    let n: string;
    do n = `${base}@bf16r${this.count++}`;
    while (this.taken.has(n));
    this.taken.add(n);
    return n;
  }

  private resultTypes(n: NodeProto): number[] {
    const ins = (n.input ?? []).map((i) => (i === "" ? undefined : this.types.get(i)));
    const outs = n.output ?? [];
    const op = n.opType!;
    if (op === "Cast") return [Number(attr(n, "to")!.i)];
    if (op === "Constant" || op === "ConstantOfShape") return [attr(n, "value")?.t?.dataType ?? F32];
    if (I64_RESULT.has(op)) return outs.map(() => I64);
    if (BOOL_RESULT.has(op)) return outs.map(() => BOOL);
    if (op === "TopK") return [ins[0]!, I64];
    if (op === "DequantizeLinear") {
      const od = attr(n, "output_dtype");
      return [od ? Number(od.i) : ins[1]!];
    }
    if (op === "Loop") {
      // The body's outputs after its condition are the loop's results (carried values, then scans).
      return (attr(n, "body")!.g!.output ?? []).slice(1).map((v) => elemOfValueInfo(v)!);
    }
    const from = TYPE_FROM_INPUT[op] ?? 0;
    const t = ins[from];
    if (t === undefined) throw new LingcError(`bf16 emulation: no element type for input '${n.input?.[from]}' of ONNX node ${n.name}`);
    return outs.map(() => t);
  }

  /** A Cast to bf16 and back to f32, from `x` into `out`. */
  private roundTrip(x: string, out: string, n: NodeProto): NodeProto[] {
    const mid = this.fresh(out);
    const cast = (input: string, output: string, to: number, suffix: string): NodeProto => ({
      name: `${n.name}/${suffix}`,
      opType: "Cast",
      input: [input],
      output: [output],
      attribute: [{ name: "to", type: 2, i: to }],
    });
    return [cast(x, mid, BF16, "to_bf16"), cast(mid, out, F32, "to_f32")];
  }

  graph(g: GraphProto): void {
    for (const v of [...(g.input ?? []), ...(g.initializer ?? []).map((t) => ({ name: t.name, type: { tensorType: { elemType: t.dataType } } }))]) {
      this.types.set(v.name!, elemOfValueInfo(v)!);
    }
    const nodes: NodeProto[] = [];
    // bf16 initializers (external data, as stored) are widened once, first thing; they keep their
    // names (the checkpoint's, which onnx-bind matches), their readers read the widened copy.
    for (const t of g.initializer ?? []) {
      if (t.dataType !== BF16) continue;
      const wide = this.fresh(t.name!);
      this.widened.set(t.name!, wide);
      this.types.set(wide, BF16);
      nodes.push({ name: `${t.name}/widen`, opType: "Cast", input: [t.name!], output: [wide], attribute: [{ name: "to", type: 2, i: F32 }] });
    }
    for (const n of g.node ?? []) {
      n.input = (n.input ?? []).map((i) => this.widened.get(i) ?? i);
      // Typed as the model was emitted (before a Loop's body is widened), then the body rewritten.
      const types = this.resultTypes(n);
      for (const a of n.attribute ?? []) if (a.g) this.graph(a.g);
      (n.output ?? []).forEach((o, i) => this.types.set(o, types[i]!));
      if (n.opType === "Cast" && Number(attr(n, "to")!.i) === BF16) {
        nodes.push(...this.roundTrip(n.input![0]!, n.output![0]!, n));
        continue;
      }
      for (const a of n.attribute ?? []) if (a.t) a.t = widenTensor(a.t);
      const rounded = isExact(n) ? [] : (n.output ?? []).map((o, i) => (types[i] === BF16 && o !== "" ? i : -1)).filter((i) => i >= 0);
      if (rounded.length === 0) {
        nodes.push(n);
        continue;
      }
      const finals = rounded.map((i) => n.output![i]!);
      const outs = [...n.output!];
      for (const i of rounded) outs[i] = this.fresh(n.output![i]!);
      nodes.push({ ...n, output: outs });
      rounded.forEach((i, k) => nodes.push(...this.roundTrip(outs[i]!, finals[k]!, n)));
    }
    g.node = nodes;
    widenValueInfos(g.input);
    widenValueInfos(g.output);
    widenValueInfos(g.valueInfo);
  }
}

function allNames(g: GraphProto, into: Set<string>): Set<string> {
  for (const v of [...(g.input ?? []), ...(g.output ?? []), ...(g.initializer ?? [])]) into.add(v.name!);
  for (const n of g.node ?? []) {
    for (const o of n.output ?? []) into.add(o);
    for (const a of n.attribute ?? []) if (a.g) allNames(a.g, into);
  }
  return into;
}

/** Whether any tensor of the model is bf16 (a model without one is left as it is). */
function hasBf16(model: ModelProto): boolean {
  const inGraph = (g: GraphProto): boolean =>
    (g.initializer ?? []).some((t) => t.dataType === BF16) ||
    [...(g.input ?? []), ...(g.output ?? [])].some((v) => elemOfValueInfo(v) === BF16) ||
    (g.node ?? []).some((n) => (n.opType === "Cast" && Number(attr(n, "to")?.i) === BF16) || (n.attribute ?? []).some((a) => a.t?.dataType === BF16 || (a.g ? inGraph(a.g) : false)));
  return inGraph(model.graph!);
}

/** Rewrites `model` in place: bf16 tensors held in f32, each computed bf16 result rounded to bf16. */
export function emulateBf16(model: ModelProto): void {
  if (!hasBf16(model)) return;
  new Rewriter(allNames(model.graph!, new Set())).graph(model.graph!);
}
