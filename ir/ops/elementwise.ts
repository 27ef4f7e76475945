/**
 * Elementwise ops: unary math, binary arithmetic with broadcasting, and dtype casts. Each is one
 * scalar formula (algebra.ts) from which the interpreter, the GPU kernel generators and the ONNX
 * emitter derive it. Operands of a binary op must share a dtype: mixed precision is always an
 * explicit `cast`, so the IR shows every place where precision changes (the HF numerics of Ling
 * depend on them).
 */
import { isDType, isFloat } from "../dtype";
import { OpError } from "../errors";
import { TensorType } from "../types";
import type { ScalarRule } from "./algebra";
import { broadcastTypes } from "./broadcast";
import { attr, defaultCost, defineOp, expectSameDtype } from "./registry";

interface Unary {
  summary: string;
  floatOnly: boolean;
  /** FLOPs per element, for the cost model. */
  flops: number;
  scalar: ScalarRule;
}

const UNARY: Record<string, Unary> = {
  neg: { summary: "-x", floatOnly: false, flops: 1, scalar: (S, [x]) => S.neg(x!) },
  abs: { summary: "|x|", floatOnly: false, flops: 1, scalar: (S, [x]) => S.abs(x!) },
  exp: { summary: "e^x", floatOnly: true, flops: 1, scalar: (S, [x]) => S.exp(x!) },
  log: { summary: "natural logarithm", floatOnly: true, flops: 1, scalar: (S, [x]) => S.log(x!) },
  sqrt: { summary: "square root", floatOnly: true, flops: 1, scalar: (S, [x]) => S.sqrt(x!) },
  rsqrt: { summary: "1/sqrt(x)", floatOnly: true, flops: 2, scalar: (S, [x]) => S.rsqrt(x!) },
  sin: { summary: "sine", floatOnly: true, flops: 1, scalar: (S, [x]) => S.sin(x!) },
  cos: { summary: "cosine", floatOnly: true, flops: 1, scalar: (S, [x]) => S.cos(x!) },
  sigmoid: { summary: "1/(1+e^-x)", floatOnly: true, flops: 4, scalar: (S, [x]) => S.div(S.lit(1), S.add(S.lit(1), S.exp(S.neg(x!)))) },
  silu: { summary: "x*sigmoid(x) (SwiGLU's activation)", floatOnly: true, flops: 5, scalar: (S, [x]) => S.div(x!, S.add(S.lit(1), S.exp(S.neg(x!)))) },
  // GELU, tanh form (PyTorch's approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
  // with tanh(u) = 1 - 2 / (e^(2u) + 1) so that it needs no primitive beyond exp.
  gelu: {
    summary: "0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) (GELU, tanh form)",
    floatOnly: true,
    flops: 14,
    scalar: (S, [x]) => {
      const u = S.mul(S.lit(Math.sqrt(2 / Math.PI)), S.add(x!, S.mul(S.lit(0.044715), S.mul(x!, S.mul(x!, x!)))));
      const tanh = S.sub(S.lit(1), S.div(S.lit(2), S.add(S.exp(S.mul(S.lit(2), u)), S.lit(1))));
      return S.mul(S.mul(S.lit(0.5), x!), S.add(S.lit(1), tanh));
    },
  },
};

for (const [name, u] of Object.entries(UNARY)) {
  defineOp({
    name,
    summary: u.summary,
    operands: ["x"],
    attrs: {},
    traits: ["elementwise"],
    infer([x]) {
      if (u.floatOnly && !isFloat(x!.dtype)) throw new OpError(`${name} needs a float tensor, got ${x}`);
      if (x!.dtype === "bool") throw new OpError(`${name} does not apply to bool tensors`);
      return [new TensorType(x!.dtype, x!.shape)];
    },
    scalar: u.scalar,
    cost(ins, outs) {
      const c = defaultCost(ins, outs);
      return { ...c, flops: c.flops * u.flops };
    },
  });
}

const BINARY: Record<string, { floatOnly: boolean; summary: string; scalar: ScalarRule }> = {
  add: { floatOnly: false, summary: "a + b", scalar: (S, [a, b]) => S.add(a!, b!) },
  sub: { floatOnly: false, summary: "a - b", scalar: (S, [a, b]) => S.sub(a!, b!) },
  mul: { floatOnly: false, summary: "a * b", scalar: (S, [a, b]) => S.mul(a!, b!) },
  div: { floatOnly: true, summary: "a / b", scalar: (S, [a, b]) => S.div(a!, b!) },
  maximum: { floatOnly: false, summary: "max(a, b) (NaN if either is)", scalar: (S, [a, b]) => S.max(a!, b!) },
  minimum: { floatOnly: false, summary: "min(a, b) (NaN if either is)", scalar: (S, [a, b]) => S.min(a!, b!) },
};

for (const [name, b] of Object.entries(BINARY)) {
  defineOp({
    name,
    summary: `${b.summary}, with broadcasting`,
    operands: ["a", "b"],
    attrs: {},
    traits: ["elementwise"],
    infer([x, y]) {
      expectSameDtype(x!, y!, `operands of ${name}`);
      if (b.floatOnly && !isFloat(x!.dtype)) throw new OpError(`${name} needs float tensors, got ${x}`);
      if (x!.dtype === "bool") throw new OpError(`${name} does not apply to bool tensors`);
      return [new TensorType(x!.dtype, broadcastTypes([x!, y!], name))];
    },
    scalar: b.scalar,
  });
}

/**
 * x, unchanged, with no derivative: for a value whose gradient is zero by construction (the max
 * subtracted inside a log-sum-exp), so the autodiff pass does not differentiate the max.
 */
export const STOP_GRADIENT = defineOp({
  name: "stop_gradient",
  summary: "x (the identity), through which no derivative flows",
  operands: ["x"],
  attrs: {},
  traits: ["elementwise"],
  infer: ([x]) => [new TensorType(x!.dtype, x!.shape)],
  scalar: (_S, [x]) => x!,
  vjp: () => [undefined],
});

export const CAST = defineOp({
  name: "cast",
  summary: "converts to another dtype (floats round to nearest even; to ints truncates)",
  operands: ["x"],
  attrs: { to: { kind: "dtype", doc: "the target dtype" } },
  traits: ["elementwise"],
  infer([x], attrs) {
    const to = attr.dtype(attrs, "to");
    if (!isDType(to)) throw new OpError(to === undefined ? "cast needs the attribute 'to' (the dtype to cast to)" : `unknown dtype '${String(to)}'`);
    return [new TensorType(to, x!.shape)];
  },
  scalar: (S, [x], c) => S.cast(x!, c.inTypes[0]!, c.outType),
});
