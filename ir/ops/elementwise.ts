/**
 * Elementwise ops: unary math, binary arithmetic with broadcasting, and dtype casts.
 * Operands of a binary op must share a dtype: mixed precision is always an explicit `cast`, so the
 * IR shows every place where precision changes (the HF numerics of Ling depend on them).
 */
import { isDType, isFloat, type DType } from "../dtype";
import { OpError } from "../errors";
import { Tensor, allocData } from "../tensor";
import { TensorType } from "../types";
import { broadcastIndex, broadcastTypes } from "./broadcast";
import { attr, defaultCost, defineOp, expectSameDtype } from "./registry";

type Unary = (x: number) => number;

const UNARY: Record<string, { fn: Unary; floatOnly: boolean; summary: string; flops: number }> = {
  neg: { fn: (x) => -x, floatOnly: false, summary: "-x", flops: 1 },
  abs: { fn: Math.abs, floatOnly: false, summary: "|x|", flops: 1 },
  exp: { fn: Math.exp, floatOnly: true, summary: "e^x", flops: 1 },
  log: { fn: Math.log, floatOnly: true, summary: "natural logarithm", flops: 1 },
  sqrt: { fn: Math.sqrt, floatOnly: true, summary: "square root", flops: 1 },
  rsqrt: { fn: (x) => 1 / Math.sqrt(x), floatOnly: true, summary: "1/sqrt(x)", flops: 2 },
  sigmoid: { fn: (x) => 1 / (1 + Math.exp(-x)), floatOnly: true, summary: "1/(1+e^-x)", flops: 4 },
  silu: { fn: (x) => x / (1 + Math.exp(-x)), floatOnly: true, summary: "x*sigmoid(x) (SwiGLU's activation)", flops: 5 },
  cos: { fn: Math.cos, floatOnly: true, summary: "cosine", flops: 1 },
  sin: { fn: Math.sin, floatOnly: true, summary: "sine", flops: 1 },
};

for (const [name, u] of Object.entries(UNARY)) {
  defineOp({
    name,
    summary: u.summary,
    operands: ["x"],
    attrs: {},
    infer([x]) {
      if (u.floatOnly && !isFloat(x!.dtype)) throw new OpError(`${name} needs a float tensor, got ${x}`);
      if (x!.dtype === "bool") throw new OpError(`${name} does not apply to bool tensors`);
      return [new TensorType(x!.dtype, x!.shape)];
    },
    interpret([x]) {
      const out = allocData(x!.dtype, x!.numel);
      const a = x!.data;
      for (let i = 0; i < a.length; i++) out[i] = u.fn(a[i]!);
      return [new Tensor(x!.dtype, x!.shape, out)];
    },
    cost(ins, outs) {
      const c = defaultCost(ins, outs);
      return { ...c, flops: c.flops * u.flops };
    },
  });
}

type Binary = (a: number, b: number) => number;

const BINARY: Record<string, { fn: Binary; floatOnly: boolean; summary: string }> = {
  add: { fn: (a, b) => a + b, floatOnly: false, summary: "a + b" },
  sub: { fn: (a, b) => a - b, floatOnly: false, summary: "a - b" },
  mul: { fn: (a, b) => a * b, floatOnly: false, summary: "a * b" },
  div: { fn: (a, b) => a / b, floatOnly: true, summary: "a / b" },
  maximum: { fn: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)), floatOnly: false, summary: "max(a, b)" },
  minimum: { fn: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)), floatOnly: false, summary: "min(a, b)" },
};

for (const [name, b] of Object.entries(BINARY)) {
  defineOp({
    name,
    summary: `${b.summary}, with broadcasting`,
    operands: ["a", "b"],
    attrs: {},
    infer([x, y]) {
      expectSameDtype(x!, y!, `operands of ${name}`);
      if (b.floatOnly && !isFloat(x!.dtype)) throw new OpError(`${name} needs float tensors, got ${x}`);
      if (x!.dtype === "bool") throw new OpError(`${name} does not apply to bool tensors`);
      return [new TensorType(x!.dtype, broadcastTypes([x!, y!], name))];
    },
    interpret([x, y], _attrs, ctx) {
      const shape = ctx.resultShapes[0]!;
      const ia = broadcastIndex(x!.shape, shape);
      const ib = broadcastIndex(y!.shape, shape);
      const a = x!.data;
      const c = y!.data;
      const n = ia ? ia.length : ib ? ib.length : a.length;
      const out = allocData(x!.dtype, n);
      const f = b.fn;
      for (let i = 0; i < n; i++) out[i] = f(a[ia ? ia[i]! : i]!, c[ib ? ib[i]! : i]!);
      return [new Tensor(x!.dtype, shape, out)];
    },
  });
}

/** Converts one value to an integer dtype the way a C cast does: truncation, then wrap for i32/u8. */
function toInt(x: number, to: DType): number {
  if (to === "bool") return x !== 0 ? 1 : 0;
  if (Number.isNaN(x)) return 0;
  const t = Math.trunc(x);
  if (to === "i32") return t | 0;
  if (to === "u8") return t & 0xff;
  return t;
}

defineOp({
  name: "cast",
  summary: "converts to another dtype (floats round to nearest even; to ints truncates)",
  operands: ["x"],
  attrs: { to: { kind: "dtype", doc: "the target dtype" } },
  infer([x], attrs) {
    const to = attr.dtype(attrs, "to");
    if (!isDType(to)) throw new OpError(`unknown dtype ${to}`);
    return [new TensorType(to, x!.shape)];
  },
  interpret([x], attrs) {
    const to = attr.dtype(attrs, "to");
    const out = allocData(to, x!.numel);
    const a = x!.data;
    if (isFloat(to)) for (let i = 0; i < a.length; i++) out[i] = a[i]!;
    else for (let i = 0; i < a.length; i++) out[i] = toInt(a[i]!, to);
    return [new Tensor(to, x!.shape, out)];
  },
});
