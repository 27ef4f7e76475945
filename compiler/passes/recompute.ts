/**
 * recompute{budget=...}: chooses, per layer function of a training module, which forward values its
 * backward function keeps (reads from the forward call) and which it recomputes, so that the
 * recomputed FLOPs are minimal with the kept bytes under the budget (issue 11).
 *
 * Runs after autodiff (whose backward functions recompute their whole forward) and before fusion.
 * For each backward function (attributes {role = "backward", of = <layer fn>}):
 *  - the memory model: the backward's copy of the forward is matched to the forward op by op (same
 *    op, attributes and matched operands); a forward value is "needed" when a backward op that is not
 *    part of that copy reads it (a VJP rule's input). Bytes of a kept value: its elements times its
 *    dtype's size at the pass's sizes (`at`, default B=1,S=4096); FLOPs: the op table's cost rules.
 *    Parameters and weights are always there (the caller keeps the layer's input); free ops
 *    (reshape, constants: the op table's "free" trait) are recomputed at no cost and never kept.
 *  - the plan: recompute-plan.ts (exact up to 16 candidates, else the min-cut hull and local search).
 *  - applied: each kept value becomes a forward result `saved.<k>` (every call of the layer function
 *    returns it) and a backward parameter of the same name (every backward call passes the matching
 *    forward call's result); the backward's copies it replaces are removed.
 * The plan is written on the backward function (attribute `recompute`) and reported per function.
 * Numbers never change: a kept value is the value the backward would have recomputed, bit for bit.
 */
import { costAnalysis } from "../../ir/analysis";
import { byteSize } from "../../ir/dtype";
import { LingcError } from "../../ir/errors";
import { Dim } from "../../ir/dim";
import { Value, type Attrs, type Func, type Module, type Op } from "../../ir/module";
import { getOp, type ShapedType } from "../../ir/ops";
import { defaultCost } from "../../ir/ops/registry";
import { dceFunc } from "./dce";
import type { Pass } from "./pass";
import { optionReader } from "./pipeline";
import { noRecompute, planFor, type Plan, type PlanProblem, type PlanValue } from "./recompute-plan";

/** A layer function's recompute problem in IR terms. */
export interface LayerProblem {
  forward: Func;
  backward: Func;
  problem: PlanProblem;
  /** Problem value index -> forward value, and back. */
  values: Value[];
  index: Map<Value, number>;
  /** Backward value -> the forward value it recomputes. */
  copies: Map<Value, Value>;
  /** FLOPs of one forward call. */
  forwardFlops: number;
  /** Bytes that calls in the forward keep for their own backward (their plans'), and those values. */
  nestedBytes: number;
  nested: Set<number>;
  /** A readable name per problem value (valueLabels). */
  labels: string[];
}

const attrKey = (a: Attrs) => JSON.stringify(a, (_k, x: unknown) => (x instanceof Dim ? `dim:${x.toString()}` : x));

/**
 * Matches the backward's recomputed copy of the forward: backward value -> forward value, for every
 * backward op that applies the same op (attributes, callee) to operands that match.
 */
export function matchCopies(forward: Func, backward: Func): Map<Value, Value> {
  const keyOf = new Map<Value, string>();
  const byKey = new Map<string, Value>();
  forward.params.forEach((p, i) => keyOf.set(p, `p${i}`));
  for (const w of forward.weights) keyOf.set(w, `w:${w.name}`);
  const opKey = (op: Op, operandKeys: string[]) => `${op.opName}|${op.callee ?? ""}|${attrKey(op.attrs)}|${operandKeys.join(",")}`;
  for (const op of forward.body) {
    const k = opKey(op, op.operands.map((v) => keyOf.get(v)!));
    op.results.forEach((r, i) => {
      keyOf.set(r, `${k}#${i}`);
      if (!byKey.has(`${k}#${i}`)) byKey.set(`${k}#${i}`, r);
    });
  }
  const back = new Map<Value, string>();
  backward.params.slice(0, forward.params.length).forEach((p, i) => back.set(p, `p${i}`));
  for (const w of backward.weights) if (forward.weights.some((x) => x.name === w.name)) back.set(w, `w:${w.name}`);
  const copies = new Map<Value, Value>();
  for (const op of backward.body) {
    const keys = op.operands.map((v) => back.get(v));
    if (keys.some((k) => k === undefined)) continue;
    const k = opKey(op, keys as string[]);
    op.results.forEach((r, i) => {
      const f = byKey.get(`${k}#${i}`);
      if (!f) return;
      back.set(r, `${k}#${i}`);
      copies.set(r, f);
    });
  }
  return copies;
}

const shaped = (v: Value, b: ReadonlyMap<string, number>): ShapedType => ({ dtype: v.type.dtype, shape: v.type.shape.map((d) => d.eval(b)) });
const bytesAt = (v: Value, b: ReadonlyMap<string, number>) => shaped(v, b).shape.reduce((s, n) => s * n, 1) * byteSize(v.type.dtype);

/**
 * Builds the recompute problem of a backward function and its forward, at sizes `at`. A call's
 * results that its callee saves for its own backward (saved.*, from that callee's plan) cost no bytes
 * here: they are the callee's plan's, counted once there (`nestedBytes`).
 */
export function layerProblem(m: Module, backward: Func, at: ReadonlyMap<string, number>, callFlops: (callee: Func) => number): LayerProblem {
  const forward = m.getFunc(backward.attrs["of"] ?? "");
  if (!forward) throw new LingcError(`recompute: @${backward.name} names no forward function (attribute of = "${backward.attrs["of"] ?? ""}")`);
  if (forward.results.some((r) => r.name?.startsWith("saved."))) {
    throw new LingcError(`recompute: @${forward.name} already returns saved values (autodiff{save=all} or a second recompute); plan from the full-recompute backward (autodiff's default)`);
  }
  for (const f of [forward, backward]) {
    const kernel = f.body.find((op) => op.opName === "call" && m.getFunc(op.callee!)?.role === "kernel");
    if (kernel) throw new LingcError(`recompute: @${f.name} already calls kernel @${kernel.callee}: run recompute before fusion (e.g. --passes cse,dce,recompute{budget=50%},fusion{...},select{...})`);
  }
  const missing = [...new Set(forward.body.flatMap((op) => op.results).flatMap((v) => v.type.shape.flatMap((d) => d.symbols())))].filter((x) => !at.has(x));
  if (missing.length) throw new LingcError(`recompute: @${forward.name}'s sizes use ${missing.join(", ")}, which at=${[...at].map(([k, v]) => `${k}=${v}`).join(";")} does not give (e.g. at=${missing.map((x) => `${x}=4096`).join(";")})`);
  const values: Value[] = [];
  const index = new Map<Value, number>();
  const planValues: PlanValue[] = [];
  const add = (v: Value, pv: PlanValue) => {
    index.set(v, values.length);
    values.push(v);
    planValues.push(pv);
  };
  for (const v of [...forward.params, ...forward.weights]) add(v, { bytes: bytesAt(v, at), keepable: false });
  let forwardFlops = 0;
  let nestedBytes = 0;
  const nestedValues = new Set<number>();
  const ops = forward.body.map((op, o) => {
    let flops: number;
    let free = false;
    if (op.opName === "call") {
      flops = callFlops(m.getFunc(op.callee!)!);
    } else {
      const def = getOp(op.opName)!;
      const ins = op.operands.map((v) => shaped(v, at));
      const outs = op.results.map((v) => shaped(v, at));
      flops = (def.cost ? def.cost(ins, outs, op.attrs) : defaultCost(ins, outs)).flops;
      free = def.traits?.includes("free") === true;
    }
    forwardFlops += flops;
    const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
    op.results.forEach((r, i) => {
      const nested = callee?.results[i]?.name?.startsWith("saved.") === true;
      if (nested) {
        nestedBytes += bytesAt(r, at);
        nestedValues.add(values.length);
      }
      add(r, { bytes: nested ? 0 : bytesAt(r, at), def: o, keepable: !free });
    });
    return { flops, operands: op.operands.map((v) => index.get(v)!), results: op.results.map((r) => index.get(r)!) };
  });
  const copies = matchCopies(forward, backward);
  const needed = new Set<number>();
  for (const op of backward.body) {
    if (op.results.some((r) => copies.has(r))) continue;
    for (const v of op.operands) {
      const f = copies.get(v);
      if (f) needed.add(index.get(f)!);
    }
  }
  for (const r of backward.results) {
    const f = copies.get(r.value);
    if (f) needed.add(index.get(f)!);
  }
  return { forward, backward, problem: { ops, values: planValues, needed: [...needed] }, values, index, copies, forwardFlops, nestedBytes, nested: nestedValues, labels: valueLabels(m, forward, values) };
}

/**
 * Megatron-style selective recompute: everything the backward reads is kept except core attention's
 * output (the attention op's result and the views and transposes taken of it before the next op),
 * which is recomputed from the kept q, k and v.
 */
export function selectiveKept(lp: LayerProblem, full: Plan): number[] {
  const core = new Set<number>();
  const ops = lp.forward.body;
  const grow = (v: Value) => {
    core.add(lp.index.get(v)!);
    for (const op of ops) {
      if (!op.operands.includes(v)) continue;
      const def = getOp(op.opName);
      if (def?.traits?.includes("view") || def?.traits?.includes("free")) op.results.forEach(grow);
    }
  };
  for (const op of ops) if (op.opName === "attention") op.results.forEach(grow);
  return full.kept.filter((v) => !core.has(v));
}

/** Makes the plan real: kept values become forward results and backward parameters; the copies they replace go. */
export function applyPlan(m: Module, lp: LayerProblem, plan: Plan): void {
  const { forward, backward } = lp;
  const kept = plan.kept.map((i) => lp.values[i]!);
  const first = forward.results.length;
  kept.forEach((v, k) => forward.results.push({ name: `saved.${k}`, value: v }));
  const params = kept.map((v, k) => new Value(v.type, `saved.${k}`, "param"));
  backward.params.push(...params);
  const byForward = new Map(kept.map((v, k) => [v, params[k]!]));
  for (const op of backward.body) op.operands = op.operands.map((v) => (lp.copies.has(v) ? byForward.get(lp.copies.get(v)!) ?? v : v));
  for (const r of backward.results) r.value = lp.copies.has(r.value) ? byForward.get(lp.copies.get(r.value)!) ?? r.value : r.value;
  dceFunc(backward);
  const n = forward.params.length;
  for (const f of m.functions) {
    const calls = f.body.filter((op) => op.opName === "call" && op.callee === forward.name);
    for (const call of calls) {
      for (const v of kept) {
        const r = new Value(v.type, undefined, "result");
        r.def = call;
        call.results.push(r);
      }
    }
    for (const op of f.body) {
      if (op.opName !== "call" || op.callee !== backward.name) continue;
      const fwdCall = calls.find((c) => c.operands.every((v, i) => v === op.operands[i]));
      if (!fwdCall || f.body.indexOf(fwdCall) > f.body.indexOf(op)) {
        throw new LingcError(`recompute: the call of @${backward.name} in @${f.name} has no call of @${forward.name} with the same ${n} operands before it`);
      }
      op.operands.push(...fwdCall.results.slice(first, first + kept.length));
    }
  }
}

/**
 * Backward functions ordered so that a layer function's plan is made before that of any layer
 * function calling it (the caller then sees the callee's saved values as results of its call).
 */
function calleesFirst(m: Module, backwards: Func[]): Func[] {
  const ofForward = new Map(backwards.map((bf) => [bf.attrs["of"] ?? "", bf]));
  const out: Func[] = [];
  const visiting = new Set<string>();
  const visit = (name: string) => {
    if (visiting.has(name)) return;
    visiting.add(name);
    for (const op of m.getFunc(name)?.body ?? []) if (op.opName === "call") visit(op.callee!);
    const bf = ofForward.get(name);
    if (bf) out.push(bf);
  };
  for (const bf of backwards) visit(bf.attrs["of"] ?? "");
  return out;
}

const units: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 };

/** A budget: `none` (no recompute), `N%` of the no-recompute bytes, or bytes (`1.5GiB`, `800MB`, `4096`). */
export function parseBudget(text: string): (noRecomputeBytes: number) => number {
  const t = text.trim().toLowerCase();
  if (t === "none") return (full) => full;
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (pct) return (full) => (Number(pct[1]) / 100) * full;
  const abs = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?$/.exec(t);
  if (abs) return () => Number(abs[1]) * units[abs[2] ?? "b"]!;
  throw new LingcError(`recompute: budget '${text}' is not none, a percentage (50%) or a size (1.5GiB, 800MB, 4096)`);
}

/** Sizes for the memory model: `B=1,S=4096`. */
export function parseSizes(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of text.split(/[,;]/).map((x) => x.trim()).filter(Boolean)) {
    const mm = /^([A-Za-z_][A-Za-z0-9_]*)=(\d+)$/.exec(part);
    if (!mm) throw new LingcError(`recompute: size '${part}' is not NAME=N (e.g. at=B=1;S=4096)`);
    out.set(mm[1]!, Number(mm[2]));
  }
  return out;
}

export const fmtBytes = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 2 ** 10).toFixed(1)} KiB`);
export function fmtFlops(f: number): string {
  const [scale, unit] = f >= 1e12 ? [1e12, "TFLOP"] : f >= 1e9 ? [1e9, "GFLOP"] : f >= 1e6 ? [1e6, "MFLOP"] : [1, "FLOP"];
  return `${unit === "FLOP" ? f.toFixed(0) : (f / scale).toFixed(2)} ${unit}`;
}

/**
 * A value as a reader finds it: its name; a call's result by the callee's result name
 * (`@moe_layer.hidden`); else the op that makes it and that op's scope (`grouped_linear@mlp.experts`,
 * numbered `#2`, `#3` when a scope makes several of the kind).
 */
function valueLabels(m: Module, forward: Func, values: readonly Value[]): string[] {
  const kinds = new Map<string, Op[]>();
  for (const op of forward.body) {
    const k = `${op.opName}@${op.scope || "-"}`;
    kinds.set(k, [...(kinds.get(k) ?? []), op]);
  }
  return values.map((v, i) => {
    if (v.name) return v.name;
    const op = v.def;
    if (!op) return `%${i}`;
    const at = op.results.indexOf(v);
    if (op.callee) return `@${op.callee}.${m.getFunc(op.callee)?.results[at]?.name ?? at}`;
    const k = `${op.opName}@${op.scope || "-"}`;
    const nth = kinds.get(k)!.indexOf(op);
    return `${k}${nth > 0 ? `#${nth + 1}` : ""}${op.results.length > 1 ? `.${at}` : ""}`;
  });
}

/** One line on a plan: what it keeps and reruns, against no recompute and the forward's FLOPs. */
export function describePlan(lp: LayerProblem, plan: Plan, full: Plan): string {
  // Values a call inside keeps for its own backward are listed by that call's plan, not here.
  const own = plan.kept.filter((i) => !lp.nested.has(i));
  const names = own.map((i) => lp.labels[i]!);
  // A rerun op by the value it makes (free ops, reshapes and constants, are left out).
  const rerun = plan.rerun
    .filter((o) => lp.problem.ops[o]!.flops > 0)
    .map((o) => {
      const results = lp.problem.ops[o]!.results;
      const label = lp.labels[results[0]!]!;
      return results.length > 1 && lp.forward.body[o]!.opName !== "call" ? label.replace(/\.0$/, "") : label;
    });
  const pct = (a: number, b: number) => `${b ? ((100 * a) / b).toFixed(1) : "0.0"}%`;
  return (
    `keeps ${own.length} value${own.length === 1 ? "" : "s"}, ${fmtBytes(plan.bytes)} (${pct(plan.bytes, full.bytes)} of ${fmtBytes(full.bytes)} without recompute); ` +
    `reruns ${plan.rerun.length} op${plan.rerun.length === 1 ? "" : "s"}, ${fmtFlops(plan.flops)} (${pct(plan.flops, lp.forwardFlops)} of the forward's ${fmtFlops(lp.forwardFlops)})` +
    (lp.nestedBytes ? `; calls inside keep ${fmtBytes(lp.nestedBytes)} by their own plans` : "") +
    (names.length ? `; kept: ${names.join(", ")}` : "") +
    (rerun.length ? `; rerun: ${rerun.join(", ")}` : "")
  );
}

export const recompute: Pass = {
  name: "recompute",
  summary: "chooses per layer function which forward values the backward keeps and which it recomputes: fewest recomputed FLOPs under an activation-memory budget",
  options: {
    budget: { kind: "string", doc: "kept bytes per layer function: none (keep what the backward reads), N% of that, or a size (1.5GiB)" },
    at: { kind: "string", doc: "sizes the memory model evaluates at, NAME=N separated by ';' (default B=1;S=4096)" },
  },
  run(m: Module, options, ctx) {
    const o = optionReader(options);
    const budgetOf = parseBudget(o.string("budget") ?? "none");
    const at = parseSizes(o.string("at") ?? "B=1;S=4096");
    const costs = () => ctx.analyses.get(costAnalysis(at));
    const callFlops = (callee: Func) => {
      const c = costs().get(callee);
      if (!c) throw new LingcError(`recompute: cannot cost @${callee.name} (the entry does not reach it)`);
      return c.flops;
    };
    for (const bf of calleesFirst(m, m.functions.filter((f) => f.attrs["role"] === "backward"))) {
      const lp = layerProblem(m, bf, at, callFlops);
      const full = noRecompute(lp.problem);
      const plan = planFor(lp.problem, budgetOf(full.bytes), [[], selectiveKept(lp, full)]);
      applyPlan(m, lp, plan);
      const line = describePlan(lp, plan, full);
      const symbolic = [...lp.forward.params, ...lp.forward.weights].some((v) => v.type.shape.some((d) => d.value === undefined));
      bf.attrs = { ...bf.attrs, recompute: symbolic ? `${line} (at ${[...at].map(([k, v]) => `${k}=${v}`).join(",")})` : line };
      ctx.remark?.(`recompute @${lp.forward.name}: ${line}`);
    }
  },
};
