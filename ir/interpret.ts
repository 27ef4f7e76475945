/**
 * The reference interpreter: runs any IR function on concrete tensors. It is the semantics every
 * backend is checked against. Symbols are bound from the input shapes; weights are fetched by their
 * full checkpoint name (call scope + weight name) when first used; every named value can be
 * observed under its full name (`model.layers.1.mlp.topk_idx`, `hidden.0`) for golden checks and
 * cross-backend comparison. Tensors are dropped after their last use.
 */
import { LingcError, OpError, formatPos } from "./errors";
import { Func, Module, Op, Value, joinScope } from "./module";
import { roundArrayInPlace } from "./numerics";
import { getOp } from "./ops";
import { interpretOp } from "./ops/interpret-rules";
import { Tensor, shapeToString } from "./tensor";
import type { TensorType } from "./types";
import { bindConcrete, unifyTypes } from "./unify";
import { Dim } from "./dim";
import { loadTimeOps } from "./analysis";

/** Where weights come from: a checkpoint, or anything that can produce a tensor for a full name. */
export interface WeightSource {
  get(name: string, type: TensorType): Tensor;
}

export interface InterpretOptions {
  /** Called with the full name and value of every named value as it is computed. */
  observe?: (name: string, value: Tensor) => void;
  /** Entry function (default: the function named like the module). */
  entry?: string;
  /**
   * Results of ops that read only weights (a weight's cast, its fp8 quantization), kept by the
   * caller across runs with the same weights: each is computed once, as GPU backends do at load.
   */
  weightResults?: WeightResults;
}

/** Per op and call scope, the results of a weight-only op. */
export type WeightResults = WeakMap<Op, Map<string, Tensor[]>>;

function opLabel(op: Op, prefix: string): string {
  const name = op.opName === "call" ? `call @${op.callee}` : op.opName;
  const scope = joinScope(prefix, op.scope);
  const at = op.loc ? ` at ${formatPos(op.loc)}` : "";
  return `'${name}'${scope ? ` in ${scope}` : ""}${at}`;
}

class Interpreter {
  constructor(
    readonly m: Module,
    readonly weights: WeightSource,
    readonly observe: InterpretOptions["observe"],
    readonly weightResults: WeightResults | undefined,
  ) {}

  /** Runs the entry function: its symbols are bound from the argument shapes. */
  runEntry(f: Func, args: readonly Tensor[]): Tensor[] {
    const b = bindConcrete(
      f.params.map((p) => p.type),
      args.map((a) => a.shape),
      f.params.map((p) => `%${p.name}`),
    );
    if ("problem" in b) throw new LingcError(`@${f.name}: ${b.problem}`);
    return this.run(f, args, "", b.bindings);
  }

  run(f: Func, args: readonly Tensor[], prefix: string, bindings: ReadonlyMap<string, number>): Tensor[] {
    const env = new Map<Value, Tensor>();
    f.params.forEach((p, i) => env.set(p, args[i]!));

    const lastUse = new Map<Value, number>();
    f.body.forEach((op, i) => op.operands.forEach((v) => lastUse.set(v, i)));
    for (const r of f.results) lastUse.set(r.value, Infinity);

    const fetch = (v: Value): Tensor => {
      const t = env.get(v);
      if (t) return t;
      if (v.kind !== "weight") throw new Error(`interpreter: value ${v.name} has no tensor`);
      const w = this.weights.get(joinScope(prefix, v.name!), v.type);
      env.set(v, w);
      return w;
    };

    // Ops computed from weights alone: their results are kept across runs.
    const atLoad = this.weightResults !== undefined ? loadTimeOps(f) : undefined;
    f.body.forEach((op, i) => {
      const weightOnly = atLoad?.has(op) ?? false;
      const kept = weightOnly ? this.weightResults!.get(op)?.get(prefix) : undefined;
      const ins = kept ? [] : op.operands.map(fetch);
      let outs: Tensor[];
      try {
        outs = kept ?? this.runOp(op, ins, bindings, prefix);
      } catch (e) {
        if (e instanceof OpError) throw new LingcError(`while running ${opLabel(op, prefix)}: ${e.message}`);
        throw e;
      }
      if (weightOnly && !kept) {
        let byScope = this.weightResults!.get(op);
        if (!byScope) this.weightResults!.set(op, (byScope = new Map()));
        byScope.set(prefix, outs);
      }
      op.results.forEach((r, j) => {
        const t = outs[j]!;
        env.set(r, t);
        if (r.name !== undefined && this.observe) this.observe(joinScope(prefix, r.name), t);
      });
      for (const v of op.operands) if (lastUse.get(v) === i) env.delete(v);
    });
    return f.results.map((r) => fetch(r.value));
  }

  runOp(op: Op, ins: Tensor[], bindings: ReadonlyMap<string, number>, prefix: string): Tensor[] {
    const resultShapes = op.results.map((r) => r.type.shape.map((d) => d.eval(bindings)));
    let outs: Tensor[];
    if (op.opName === "call") {
      const callee = this.m.getFunc(op.callee!)!;
      outs = this.run(callee, ins, joinScope(prefix, op.scope), calleeBindings(callee, op, bindings));
    } else {
      const def = getOp(op.opName);
      if (!def) throw new OpError(`unknown op '${op.opName}'`);
      outs = interpretOp(def, ins, op.attrs, { resultShapes, resultDtypes: op.results.map((r) => r.type.dtype), dim: (d) => d.eval(bindings) });
    }
    outs.forEach((t, j) => {
      const want = resultShapes[j]!;
      const type = op.results[j]!.type;
      if (t.dtype !== type.dtype || t.shape.length !== want.length || t.shape.some((d, k) => d !== want[k])) {
        throw new Error(`interpreter: ${opLabel(op, prefix)} produced ${t.dtype}${shapeToString(t.shape)}, its type says ${type.dtype}${shapeToString(want)}`);
      }
      if (!!type.quant !== !!t.scaled) throw new Error(`interpreter: ${opLabel(op, prefix)} produced ${t.scaled ? "a scaled" : "an unscaled"} tensor, its type is ${type}`);
      if (t.data instanceof Float32Array) roundArrayInPlace(t.data, t.dtype);
    });
    return outs;
  }
}

/**
 * The callee's symbol values for a call: its symbols unified with the call's operand types, then
 * evaluated with the caller's values. A callee symbol the unification leaves free (one that only
 * appears inside products such as B*S) is the caller's symbol of the same name, as it is for kernel
 * functions outlined from their caller.
 */
function calleeBindings(callee: Func, op: Op, caller: ReadonlyMap<string, number>): Map<string, number> {
  const u = unifyTypes(
    callee.params.map((p) => p.type),
    op.operands.map((v) => v.type),
    callee.params.map((p) => `%${p.name}`),
  );
  if ("problem" in u) throw new LingcError(`call to @${callee.name}: ${u.problem}`);
  const out = new Map<string, number>();
  const types = [...callee.params, ...callee.weights, ...callee.body.flatMap((o) => o.results)].map((v) => v.type);
  const attrDims = callee.body.flatMap((o) => Object.values(o.attrs).flatMap((a) => (a instanceof Dim ? [a] : Array.isArray(a) ? a.filter((x): x is Dim => x instanceof Dim) : [])));
  for (const d of [...types.flatMap((t) => t.shape), ...attrDims]) {
    for (const s of d.symbols()) if (!out.has(s)) out.set(s, (u.bindings.get(s) ?? Dim.sym(s)).eval(caller));
  }
  return out;
}

/** Runs a graph: inputs by parameter name, outputs by result name. */
export function interpret(
  m: Module,
  inputs: Readonly<Record<string, Tensor>>,
  weights: WeightSource,
  opts: InterpretOptions = {},
): Record<string, Tensor> {
  const f = opts.entry ? m.getFunc(opts.entry) : m.entry;
  if (!f) throw new LingcError(`module @${m.name} has no function @${opts.entry ?? m.name} to run`);
  const names = f.params.map((p) => p.name!);
  for (const k of Object.keys(inputs)) {
    if (!names.includes(k)) throw new LingcError(`unknown input '${k}': @${f.name} takes ${names.join(", ")}`);
  }
  const args = f.params.map((p) => {
    const t = inputs[p.name!];
    if (!t) throw new LingcError(`missing input '${p.name}' (${p.type})`);
    if (t.dtype !== p.type.dtype) throw new LingcError(`input '${p.name}' has dtype ${t.dtype}, the graph expects ${p.type}`);
    if (t.shape.length !== p.type.rank) throw new LingcError(`input '${p.name}' has shape ${shapeToString(t.shape)}, the graph expects ${p.type}`);
    return t;
  });
  const outs = new Interpreter(m, weights, opts.observe, opts.weightResults).runEntry(f, args);
  const result: Record<string, Tensor> = {};
  f.results.forEach((r, i) => (result[r.name ?? String(i)] = outs[i]!));
  return result;
}
