/**
 * Building an ONNX graph: unique value names, nodes with provenance (the node name carries the IR
 * scope, the doc string the DSL source line), constants (kept at the top of the main graph so that
 * loop bodies can read them), and run-time tensors for symbolic dims: each symbol (B, S, P) is read
 * once from an input's shape, and a dim such as `B*S*8` becomes a small int64 computation.
 */
import { Dim } from "../../ir/dim";
import type { DType } from "../../ir/dtype";
import { LingcError } from "../../ir/errors";
import { Tensor } from "../../ir/tensor";
import { tensorBytes } from "../weights/safetensors";
import { attribute, elemType, type AttrValue, type GraphProto, type NodeProto, type TensorProto, type ValueInfoProto } from "./proto";

export class Names {
  private readonly used = new Set<string>();
  private readonly counters = new Map<string, number>();

  /** Reserves an exact name (graph inputs and outputs); throws if taken. */
  reserve(name: string): string {
    if (this.used.has(name)) throw new LingcError(`ONNX value name '${name}' is used twice`);
    this.used.add(name);
    return name;
  }

  /** A name starting with `base` that no other value has. */
  fresh(base: string): string {
    if (!this.used.has(base)) {
      this.used.add(base);
      return base;
    }
    let i = this.counters.get(base) ?? 1;
    while (this.used.has(`${base}#${i}`)) i++;
    this.counters.set(base, i + 1);
    const n = `${base}#${i}`;
    this.used.add(n);
    return n;
  }
}

export interface NodeMeta {
  /** Provenance: the full IR scope of the op this node lowers. */
  scope?: string;
  /** The DSL source location (file:line:col). */
  doc?: string;
}

/** Encodes a constant tensor as a TensorProto. */
export function tensorProto(name: string, t: Tensor): TensorProto {
  const p: TensorProto = { name, dataType: elemType(t.dtype), dims: [...t.shape] };
  p.rawData = tensorBytes(t);
  return p;
}

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly constNodes: NodeProto[] = [];
  private readonly consts = new Map<string, string>();
  private readonly symbols = new Map<string, string>();
  private readonly dimCache = new Map<string, string>();
  private nodeCount = 0;

  constructor(
    readonly names: Names,
    /** The main graph, for loop bodies (constants and dims live there). */
    readonly root?: GraphBuilder,
  ) {}

  private get main(): GraphBuilder {
    return this.root ?? this;
  }

  /** Adds a node; returns its output names (fresh ones unless given). */
  node(op: string, inputs: readonly string[], outputs: number | readonly string[] = 1, attrs: Record<string, AttrValue> = {}, meta: NodeMeta = {}): string[] {
    const scope = meta.scope ? `${meta.scope}/` : "";
    const outs = typeof outputs === "number" ? Array.from({ length: outputs }, () => this.names.fresh(`${scope}${op}`)) : [...outputs];
    const n: NodeProto = {
      name: `${scope}${op}_${this.main.nodeCount++}`,
      opType: op,
      input: [...inputs],
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    };
    if (meta.doc) n.docString = meta.doc;
    this.nodes.push(n);
    return outs;
  }

  one(op: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, meta: NodeMeta = {}): string {
    return this.node(op, inputs, 1, attrs, meta)[0]!;
  }

  /**
   * Makes the last node added, when it produces `from`, produce `to` instead (so a composed lowering
   * can end in its required output name); false when `from` is not that node's output.
   */
  renameOutput(from: string, to: string): boolean {
    const out = this.nodes[this.nodes.length - 1]?.output;
    const i = out ? out.indexOf(from) : -1;
    if (!out || i < 0) return false;
    out[i] = to;
    return true;
  }

  /** A constant (deduplicated, placed first in the main graph). */
  constant(t: Tensor, hint = "const"): string {
    const main = this.main;
    const key = `${t.dtype}|${t.shape.join(",")}|${Array.from(t.data).join(",")}`;
    const hit = main.consts.get(key);
    if (hit) return hit;
    const name = main.names.fresh(hint);
    main.constNodes.push({ name: `const_${main.consts.size}`, opType: "Constant", input: [], output: [name], attribute: [attribute("value", tensorProto(name, t))] });
    main.consts.set(key, name);
    return name;
  }

  i64(values: readonly number[], shape: readonly number[] = [values.length]): string {
    return this.constant(Tensor.from("i64", shape, values), "i64");
  }

  scalar(value: number, dtype: DType): string {
    return this.constant(Tensor.from(dtype, [], [value]), `${dtype}_scalar`);
  }

  /** Declares that symbol `name` is axis `axis` of graph input `input`. */
  bindSymbol(name: string, input: string, axis: number): void {
    const main = this.main;
    if (main.symbols.has(name)) return;
    main.symbols.set(name, main.one("Shape", [input], { start: axis, end: axis + 1 }, { scope: `dims/${name}` }));
  }

  /** An int64[1] tensor holding the value of `d` (in the graph's entry symbols). */
  dim(d: Dim): string {
    const main = this.main;
    if (d.isConst()) return main.i64([d.value!]);
    const key = d.toString();
    const hit = main.dimCache.get(key);
    if (hit) return hit;
    let sum: string | undefined;
    for (const t of d.terms) {
      let prod: string | undefined = t.coef === 1 && t.syms.length > 0 ? undefined : main.i64([t.coef]);
      for (const s of t.syms) {
        const v = main.symbols.get(s);
        if (!v) throw new LingcError(`the ONNX graph cannot compute dimension '${key}': symbol ${s} is not the size of any input axis`);
        prod = prod ? main.one("Mul", [prod, v], {}, { scope: `dims/${key}` }) : v;
      }
      sum = sum ? main.one("Add", [sum, prod!], {}, { scope: `dims/${key}` }) : prod;
    }
    main.dimCache.set(key, sum!);
    return sum!;
  }

  /** A rank-0 int64 tensor holding `d`. */
  dimScalar(d: Dim): string {
    const main = this.main;
    if (d.isConst()) return main.constant(Tensor.from("i64", [], [d.value!]), "i64_scalar");
    const key = `scalar:${d}`;
    const hit = main.dimCache.get(key);
    if (hit) return hit;
    const s = main.one("Squeeze", [main.dim(d), main.i64([0])], {}, { scope: `dims/${d}` });
    main.dimCache.set(key, s);
    return s;
  }

  /** An int64[rank] shape tensor for `dims`. */
  shape(dims: readonly Dim[]): string {
    const main = this.main;
    if (dims.every((d) => d.isConst())) return main.i64(dims.map((d) => d.value!));
    const key = `shape:${dims.join(",")}`;
    const hit = main.dimCache.get(key);
    if (hit) return hit;
    const s = main.one("Concat", dims.map((d) => main.dim(d)), { axis: 0 }, { scope: "dims/shape" });
    main.dimCache.set(key, s);
    return s;
  }

  graph(name: string): GraphProto {
    return {
      name,
      node: [...this.constNodes, ...this.nodes],
      input: this.inputs,
      output: this.outputs,
      initializer: this.initializers,
    };
  }
}
