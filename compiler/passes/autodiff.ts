/**
 * autodiff: reverse-mode differentiation of a graph's entry (issue 11). The entry's first result is
 * the objective (its elements summed when it is not a scalar); the pass appends the backward ops to
 * the entry and a result `grad.<weight name>` (f32, the weight's shape) for every float weight the
 * objective depends on, named in full (a layer's weights with their call scope).
 *
 * Folded: each function the entry calls gets one backward function `@<name>.backward`, called once
 * per call site with the call's scope (so its weights bind as the forward call's do). It takes the
 * forward parameters and the cotangents of the float results, recomputes the forward body (every
 * activation is recomputed: what to keep instead is the recompute pass's choice, not built yet) and
 * returns the cotangent of each float parameter and the gradient of each float weight it reads,
 * its own and those of the functions it calls (by name relative to it). Weights a module declares
 * `frozen` (attribute: name suffixes) get none.
 *
 * Guarantees: forward ops and results are unchanged (gradients are extra results after them);
 * cotangents are summed over every use; an op that needs a derivative and has no VJP rule stops the
 * pass naming it and where it was written. Quantized (fp8) weights are not differentiated.
 */
import { LingcError, formatPos } from "../../ir/errors";
import { isFloat } from "../../ir/dtype";
import { Func, joinScope, Op, Value, type Module } from "../../ir/module";
import { vjpRule } from "../../ir/ops";
import { Builder } from "../../ir/rewrite";
import type { Pass } from "./pass";

/** The op, its function and where it was written (the IR text's position, else the model source's). */
function where(op: Op, f: Func): string {
  const pos = op.textPos ?? op.loc;
  return `'${op.opName}' in @${f.name}${pos ? ` at ${formatPos(pos)}` : ""}`;
}

const trainable = (v: Value) => isFloat(v.type.dtype) && !v.type.quant;

/** Zeros of v's type (a broadcast scalar, so symbolic shapes work). */
function zerosLike(b: Builder, v: Value): Value {
  const zero = b.op1("constant", [], { values: [0], dtype: v.type.dtype });
  return b.op1("broadcast_to", [zero], { shape: [...v.type.shape] });
}

/** What backprop found: cotangents of values, and gradients of weights by full name. */
interface Backprop {
  ct: Map<Value, Value>;
  weights: Map<string, Value>;
}

/**
 * Runs f's ops backwards from the seeds (cotangents of some values), appending the backward ops to f.
 * `varies`: the values the derivative flows into (trainable parameters and weights); the set grows
 * with what is computed from them.
 */
function backprop(m: Module, f: Func, seeds: ReadonlyMap<Value, Value>, varies: Set<Value>, frozen: Frozen, save: SavePolicy): Backprop {
  const forward = [...f.body];
  for (const op of forward) {
    const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
    const fromWeights = callee !== undefined && reachesWeights(m, callee);
    if (!fromWeights && !op.operands.some((v) => varies.has(v))) continue;
    // A trained value quantized to fp8 would lose its gradient there: refused, not dropped.
    if (op.results.some((r) => r.type.quant)) throw new LingcError(`autodiff: ${where(op, f)} quantizes a value the objective's gradient flows through; FP8 graphs are not differentiated (differentiate the unquantized model: lingc trains in the compute dtype)`);
    for (const r of op.results) if (trainable(r)) varies.add(r);
  }
  const b = new Builder(m, f);
  const ct = new Map<Value, Value>();
  const weights = new Map<string, Value>();
  const sum = (prev: Value | undefined, g: Value) => (prev ? b.op1("add", [prev, g]) : g);
  const accumulate = (v: Value, g: Value) => ct.set(v, sum(ct.get(v), g));
  for (const [v, g] of seeds) accumulate(v, g);
  for (let i = forward.length - 1; i >= 0; i--) {
    const op = forward[i]!;
    if (!op.results.some((r) => varies.has(r))) continue;
    const cts = op.results.map((r) => ct.get(r));
    if (cts.every((c) => c === undefined)) continue;
    if (op.opName === "call") {
      const callee = m.getFunc(op.callee!);
      if (!callee) throw new LingcError(`autodiff: ${where(op, f)} calls an unknown function @${op.callee}`);
      const back = backwardOf(m, callee, frozen, save);
      // The forward results, then the values saved for the backward (after them, in order).
      const forwardResults = op.results.slice(0, callee.results.length - savedCount(callee));
      const saved = op.results.slice(forwardResults.length);
      const floatResults = forwardResults.filter(trainable);
      const outs = b.call(back, [...op.operands, ...floatResults.map((r) => ct.get(r) ?? zerosLike(b, r)), ...saved], op.scope, op.loc);
      // Results by name: ct.<param> for the call's operands, grad.<weight> (the callee's and those of
      // the functions it calls, relative to it) for weights under the call's scope.
      back.results.forEach((r, k) => {
        const name = r.name!;
        if (name.startsWith("ct.")) {
          const j = callee.params.findIndex((p) => `ct.${p.name}` === name);
          if (varies.has(op.operands[j]!)) accumulate(op.operands[j]!, outs[k]!);
        } else {
          const full = joinScope(op.scope, name.slice("grad.".length));
          if (!frozen(full)) weights.set(full, sum(weights.get(full), outs[k]!));
        }
      });
      continue;
    }
    if (!op.operands.some((v) => varies.has(v))) continue;
    const rule = vjpRule(op.opName);
    if (!rule) throw new LingcError(`autodiff: no derivative (VJP) rule for ${where(op, f)} yet`);
    const grads = rule(b, op.operands, op.results, op.results.map((r, k) => cts[k] ?? zerosLike(b, r)), op.attrs);
    op.operands.forEach((v, j) => {
      const g = grads[j];
      if (g && varies.has(v)) accumulate(v, g);
    });
  }
  for (const w of f.weights) {
    const g = ct.get(w);
    if (g && !frozen(w.name!)) weights.set(w.name!, sum(weights.get(w.name!), g));
  }
  return { ct, weights };
}

/** How many of f's results are values saved for its backward function (named saved.<k>). */
function savedCount(f: Func): number {
  return f.results.filter((r) => r.name?.startsWith("saved.")).length;
}

/**
 * Makes the forward function `callee` also return its float values (saved.<k>), every call of it
 * return them too, and the backward function `bf` take them as parameters; returns recomputed copy
 * -> parameter, for the backward to read the parameters once its ops are built.
 */
function saveForward(m: Module, callee: Func, bf: Func, env: Map<Value, Value>): Map<Value, Value> {
  const values = callee.body.flatMap((op) => op.results.filter(trainable));
  const replace = new Map<Value, Value>();
  values.forEach((v, k) => {
    callee.results.push({ name: `saved.${k}`, value: v });
    const param = new Value(v.type, `saved.${k}`, "param");
    bf.params.push(param);
    replace.set(env.get(v)!, param);
  });
  for (const f of m.functions) {
    for (const op of f.body) {
      if (op.opName !== "call" || op.callee !== callee.name) continue;
      for (const v of values) {
        const r = new Value(v.type, undefined, "result");
        r.def = op;
        op.results.push(r);
      }
    }
  }
  return replace;
}

/** Whether f or a function it calls reads a float weight (so its results depend on trained values). */
function reachesWeights(m: Module, f: Func, seen = new Set<string>()): boolean {
  if (seen.has(f.name)) return false;
  seen.add(f.name);
  if (f.weights.some(trainable)) return true;
  return f.body.some((op) => op.opName === "call" && m.getFunc(op.callee!) !== undefined && reachesWeights(m, m.getFunc(op.callee!)!, seen));
}

/**
 * The backward function of a layer function: (forward params, cotangents of its float results) ->
 * (ct.<param> for its float params, grad.<weight> for the weights it and its callees read, relative
 * names), the forward recomputed inside. Made once per function (the first caller's `frozen` holds).
 */
function backwardOf(m: Module, callee: Func, frozen: Frozen, save: SavePolicy): Func {
  const name = `${callee.name}.backward`;
  const have = m.getFunc(name);
  if (have) return have;
  const bf = new Func(name);
  bf.attrs = { role: "backward", of: callee.name };
  const env = new Map<Value, Value>();
  bf.params = callee.params.map((p) => {
    const q = new Value(p.type, p.name, "param");
    env.set(p, q);
    return q;
  });
  bf.weights = callee.weights.map((w) => {
    const q = new Value(w.type, w.name, "weight");
    env.set(w, q);
    return q;
  });
  const floatResults = callee.results.filter((r) => trainable(r.value));
  const cts = floatResults.map((r, k) => {
    const q = new Value(r.value.type, `ct.${r.name ?? k}`, "param");
    bf.params.push(q);
    return q;
  });
  // The forward body, recomputed.
  for (const op of callee.body) {
    const results = op.results.map((r) => new Value(r.type, r.name, "result"));
    op.results.forEach((r, i) => env.set(r, results[i]!));
    const copy = new Op(op.opName, op.operands.map((v) => env.get(v)!), { ...op.attrs }, results, op.scope, op.loc, op.callee);
    copy.textPos = op.textPos;
    bf.body.push(copy);
  }
  m.functions.splice(m.functions.indexOf(callee) + 1, 0, bf);
  const saved = save === "all" ? saveForward(m, callee, bf, env) : new Map<Value, Value>();
  const seeds = new Map(floatResults.map((r, k) => [env.get(r.value)!, cts[k]!]));
  const varies = new Set<Value>([...bf.params.slice(0, callee.params.length).filter(trainable), ...bf.weights.filter(trainable)]);
  const { ct, weights } = backprop(m, bf, seeds, varies, frozen, save);
  const b = new Builder(m, bf);
  for (const p of bf.params.slice(0, callee.params.length).filter(trainable)) bf.results.push({ name: `ct.${p.name}`, value: ct.get(p) ?? zerosLike(b, p) });
  for (const [name, g] of weights) bf.results.push({ name: `grad.${name}`, value: g });
  // Saved values replace their recomputed copies where the backward reads them (the copies' ops
  // stay until dce: backprop walked them to route the cotangents).
  for (const op of bf.body) op.operands = op.operands.map((v) => saved.get(v) ?? v);
  for (const r of bf.results) r.value = saved.get(r.value) ?? r.value;
  return bf;
}

/** Whether a weight (by full name) is not trained. */
type Frozen = (name: string) => boolean;

/**
 * Which forward values a backward function reads from its forward call instead of recomputing:
 * none (the whole forward recomputed), or all of its float values (nothing recomputed). The
 * recompute pass's plan will choose between these per value.
 */
export type SavePolicy = "none" | "all";

/**
 * The weights a model declares untrained (its `frozen` attribute: comma-separated name suffixes,
 * e.g. Ling's router expert_bias, a buffer updated outside the gradient step).
 */
function frozenWeights(m: Module): Frozen {
  const suffixes = (m.attrs["frozen"] ?? "").split(",").map((x) => x.trim()).filter(Boolean);
  return (name) => suffixes.some((sfx) => name === sfx || name.endsWith(`.${sfx}`));
}

/** Appends the backward of f's first result to f and its weight gradients as results; returns their full names. */
export function differentiate(m: Module, f: Func, save: SavePolicy = "none"): string[] {
  const objective = f.results[0]?.value;
  if (!objective) throw new LingcError(`autodiff: @${f.name} has no result to differentiate`);
  if (!isFloat(objective.type.dtype)) throw new LingcError(`autodiff: the objective ${f.results[0]!.name ?? "result 0"} is ${objective.type}, not a float tensor`);
  const b = new Builder(m, f);
  // d(sum of the objective) / d(objective) = 1 everywhere.
  const one = b.op1("broadcast_to", [b.op1("constant", [], { values: [1], dtype: objective.type.dtype })], { shape: [...objective.type.shape] });
  // (backprop leaves frozen weights out)
  const { weights } = backprop(m, f, new Map([[objective, one]]), new Set(f.weights.filter(trainable)), frozenWeights(m), save);
  const names = [...weights.keys()];
  for (const name of names) {
    const g = weights.get(name)!;
    f.results.push({ name: `grad.${name}`, value: g.type.dtype === "f32" ? g : b.op1("cast", [g], { to: "f32" }) });
  }
  return names;
}

export const autodiff: Pass = {
  name: "autodiff",
  summary: "appends the gradient of the entry's first result (summed) with respect to every float weight, as results grad.<weight>; each called function gets one backward function",
  options: {
    save: { kind: "string", doc: "forward values a backward function reads instead of recomputing: none (default: full recompute) or all", choices: ["none", "all"] },
  },
  run(m: Module, options) {
    const f = m.entry;
    if (!f) throw new LingcError(`autodiff: module @${m.name} has no entry function`);
    differentiate(m, f, (options["save"] as SavePolicy | undefined) ?? "none");
  },
};
