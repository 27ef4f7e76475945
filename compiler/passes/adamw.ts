/**
 * adamw: turns a differentiated training module (results grad.<weight>) into one optimizer step, as
 * IR ops (issue 11, `--graph train-step`). The step is Megatron's for Ling 2.0:
 *  - the gradients clipped by their global L2 norm (torch's clip_grad_norm_: every gradient times
 *    min(1, clip / (norm + 1e-6))); the norm is returned as `grad_norm`;
 *  - AdamW as torch.optim.AdamW computes it: w *= 1 - lr * wd (decoupled decay; Megatron decays
 *    tensors of rank 2 and more, not norms), m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
 *    w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps);
 *  - the aux-loss-free expert-bias update (LING2.md 2.5): for each result tokens_per_expert.<i> and
 *    the weight the module's `expert_bias` attribute names for it (`{}` replaced by i),
 *    e = mean(load) - load, b += rate * (sign(e) - mean(sign(e))).
 * Inputs it adds: `lr` and `step` ([1], f32; step t counts from 1), `adam_m.<weight>` and
 * `adam_v.<weight>` (f32, the weight's shape). Results: the module's other results, `grad_norm`,
 * `new.<weight>` (the weight's dtype) for every trained weight and updated expert bias,
 * `adam_m.<weight>` and `adam_v.<weight>`; the grad.<weight> results are dropped. The weights are
 * read through the entry under their full names.
 */
import { dim } from "../../ir/dim";
import { LingcError } from "../../ir/errors";
import { Value, type Func, type Module } from "../../ir/module";
import { Builder } from "../../ir/rewrite";
import { tensor } from "../../ir/types";
import type { Pass } from "./pass";
import { optionReader } from "./pipeline";

/** The weight of full name `name` as the entry reads it (declared on the entry when not yet). */
function entryWeight(f: Func, name: string, like: Value): Value {
  const have = f.weights.find((w) => w.name === name);
  if (have) return have;
  const w = new Value(like.type, name, "weight");
  f.weights.push(w);
  return w;
}

/** The type of the weight `name` wherever a function of the module declares it (full names through call scopes). */
function weightType(m: Module, name: string): Value {
  const found: Value[] = [];
  const visit = (f: Func, prefix: string) => {
    for (const w of f.weights) if ((prefix ? `${prefix}.${w.name}` : w.name) === name) found.push(w);
    for (const op of f.body) {
      const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
      if (callee && (callee.attrs["role"] ?? "") !== "kernel") visit(callee, [prefix, op.scope].filter(Boolean).join("."));
    }
  };
  visit(m.entry!, "");
  if (!found[0]) throw new LingcError(`adamw: no function declares the weight ${name}`);
  return found[0];
}

export interface AdamwSettings {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  clip: number;
  biasRate: number;
}

export function addAdamw(m: Module, s: AdamwSettings): void {
  const f = m.entry;
  if (!f) throw new LingcError(`adamw: module @${m.name} has no entry function`);
  const grads = f.results.filter((r) => r.name?.startsWith("grad."));
  if (grads.length === 0) throw new LingcError(`adamw: @${f.name} returns no grad.<weight> results (run autodiff first)`);
  const b = new Builder(m, f);
  const c = (x: number) => b.op1("constant", [], { values: [x], dtype: "f32" });
  const param = (name: string, like: { type: Value["type"] }) => {
    const p = new Value(tensor("f32", [...like.type.shape]), name, "param");
    f.params.push(p);
    return p;
  };
  const scalar = (v: Value) => b.op1("reshape", [v], { shape: [] });
  const lr = scalar(param("lr", { type: tensor("f32", [1]) }));
  const t = scalar(param("step", { type: tensor("f32", [1]) }));
  const sumAll = (v: Value) => b.op1("reduce_sum", [v], { axes: v.type.shape.map((_, i) => i), keepdims: false });

  // Global norm clipping.
  let sq: Value | undefined;
  for (const g of grads) {
    const s2 = sumAll(b.op1("mul", [g.value, g.value]));
    sq = sq ? b.op1("add", [sq, s2]) : s2;
  }
  const norm = b.op1("sqrt", [sq!]);
  const coef = b.op1("minimum", [c(1), b.op1("div", [c(s.clip), b.op1("add", [norm, c(1e-6)])])]);
  // Bias corrections 1 - b^t = 1 - exp(t ln b).
  const correction = (beta: number) => b.op1("sub", [c(1), b.op1("exp", [b.op1("mul", [t, c(Math.log(beta))])])]);
  const stepSize = b.op1("div", [lr, correction(s.beta1)]);
  const sqrtC2 = b.op1("sqrt", [correction(s.beta2)]);
  const decay = b.op1("sub", [c(1), b.op1("mul", [lr, c(s.weightDecay)])]);

  const out: { name: string; value: Value }[] = [];
  for (const g of grads) {
    const name = g.name!.slice("grad.".length);
    const declared = weightType(m, name);
    const w = entryWeight(f, name, declared);
    const w32 = w.type.dtype === "f32" ? w : b.op1("cast", [w], { to: "f32" });
    const grad = b.op1("mul", [g.value, coef]);
    const mIn = param(`adam_m.${name}`, g.value);
    const vIn = param(`adam_v.${name}`, g.value);
    const m1 = b.op1("add", [b.op1("mul", [mIn, c(s.beta1)]), b.op1("mul", [grad, c(1 - s.beta1)])]);
    const v1 = b.op1("add", [b.op1("mul", [vIn, c(s.beta2)]), b.op1("mul", [b.op1("mul", [grad, grad]), c(1 - s.beta2)])]);
    const decayed = w.type.rank >= 2 ? b.op1("mul", [w32, decay]) : w32;
    const denom = b.op1("add", [b.op1("div", [b.op1("sqrt", [v1]), sqrtC2]), c(s.eps)]);
    const w1 = b.op1("sub", [decayed, b.op1("mul", [stepSize, b.op1("div", [m1, denom])])]);
    out.push({ name: `new.${name}`, value: w.type.dtype === "f32" ? w1 : b.op1("cast", [w1], { to: w.type.dtype }) });
    out.push({ name: `adam_m.${name}`, value: m1 });
    out.push({ name: `adam_v.${name}`, value: v1 });
  }

  // The expert-bias update from each MoE layer's token counts.
  const pattern = m.attrs["expert_bias"];
  for (const r of f.results.filter((x) => x.name?.startsWith("tokens_per_expert."))) {
    if (!pattern) throw new LingcError(`adamw: @${f.name} returns ${r.name} but the module names no expert_bias weight (attribute expert_bias = "...{}...")`);
    const name = pattern.replace("{}", r.name!.slice("tokens_per_expert.".length));
    const w = entryWeight(f, name, weightType(m, name));
    const load = b.op1("cast", [r.value], { to: "f32" });
    const mean = (v: Value) => b.op1("reduce_mean", [v], { axes: [0], keepdims: true });
    const e = b.op1("sub", [mean(load), load]);
    // sign(e), exact: e is 0 or at least 1/E in magnitude, and x / |x| is exactly +-1.
    const sign = b.op1("div", [e, b.op1("maximum", [b.op1("abs", [e]), c(1e-30)])]);
    const w32 = w.type.dtype === "f32" ? w : b.op1("cast", [w], { to: "f32" });
    const w1 = b.op1("add", [w32, b.op1("mul", [b.op1("sub", [sign, mean(sign)]), c(s.biasRate)])]);
    out.push({ name: `new.${name}`, value: w.type.dtype === "f32" ? w1 : b.op1("cast", [w1], { to: w.type.dtype }) });
  }
  f.results = [...f.results.filter((r) => !r.name?.startsWith("grad.")), { name: "grad_norm", value: b.op1("reshape", [norm], { shape: [dim(1)] }) }, ...out];
}

export const adamw: Pass = {
  name: "adamw",
  summary: "appends one AdamW step (global-norm clipping, decoupled weight decay, the expert-bias update) to a differentiated module: new weights and moments as results",
  options: {
    beta1: { kind: "string", doc: "first-moment decay (default 0.9)" },
    beta2: { kind: "string", doc: "second-moment decay (default 0.95, Ling 2.0's)" },
    eps: { kind: "string", doc: "denominator epsilon (default 1e-8)" },
    wd: { kind: "string", doc: "decoupled weight decay of tensors of rank 2 and more (default 0.1)" },
    clip: { kind: "string", doc: "global gradient norm clip (default 1.0)" },
    bias_rate: { kind: "string", doc: "expert-bias update rate u (default 1e-3, Ling's pretraining)" },
  },
  run(m, options) {
    const o = optionReader(options);
    const num = (key: string, dflt: number) => {
      const text = o.string(key);
      if (text === undefined) return dflt;
      const x = Number(text);
      if (!Number.isFinite(x)) throw new LingcError(`adamw: option ${key}=${text} is not a number`);
      return x;
    };
    addAdamw(m, { beta1: num("beta1", 0.9), beta2: num("beta2", 0.95), eps: num("eps", 1e-8), weightDecay: num("wd", 0.1), clip: num("clip", 1.0), biasRate: num("bias_rate", 1e-3) });
  },
};
