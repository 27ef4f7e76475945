/**
 * VJP rules against finite differences (issue 11, the first piece): for each elementwise op, the
 * cotangents its rule builds as IR (run by the interpreter, f32) against central differences of
 * sum(ct * op(x)) computed from the op's scalar formula in doubles. Operands broadcast (a [4] b
 * against a [3, 4] a) so the sum back over broadcast axes is checked too.
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { allOps, getOp, vjpRule } from "../../ir/ops";
import { NUMBER_SCALARS } from "../../ir/ops/interpret-rules";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { Builder } from "../../ir/rewrite";
import { verifyModule } from "../../ir/verify";
import { Tensor } from "../../ir/tensor";
import { expectCentralDifferences, noWeights, rng, uniform } from "../support/fd";

const POSITIVE = new Set(["log", "sqrt", "rsqrt", "div"]);

const elementwise = allOps()
  .filter((d) => d.traits?.includes("elementwise") && !["cast", "stop_gradient", "transfer"].includes(d.name))
  .map((d) => d.name)
  .sort();

describe("VJP rules of elementwise ops, from their scalar formulas", () => {
  it("covers every elementwise op", () => {
    expect(elementwise.length).toBeGreaterThan(15);
    for (const name of elementwise) expect(vjpRule(name), name).toBeDefined();
  });

  for (const name of elementwise) {
    it(`${name}: cotangents within 1e-4 of central differences`, () => {
      const binary = getOp(name)!.operands.length === 2;
      const text = `module @t {
  func @t(%a: f32[3, 4]${binary ? ", %b: f32[4]" : ""}, %ct: f32[3, 4]) -> (y: f32[3, 4]) {
    %y = ${name}(%a${binary ? ", %b" : ""}) : f32[3, 4]
    return %y
  }
}
`;
      const m = parseModule(text, `${name}.lir`);
      const f = m.entry!;
      const op = f.results[0]!.value.def!;
      const ct = f.params[f.params.length - 1]!;
      const b = new Builder(m, f);
      const grads = vjpRule(name)!(b, op.operands, op.results, [ct], op.attrs);
      grads.forEach((g, j) => f.results.push({ name: `g${j}`, value: g! }));
      verifyModule(m);

      const r = rng(name.length * 7919 + name.charCodeAt(0));
      const draw = (n: number) => Array.from({ length: n }, () => (POSITIVE.has(name) ? 0.5 + 1.5 * r() : 4 * r() - 2));
      const a = draw(12);
      const bv = binary ? draw(4) : [];
      const c = Array.from({ length: 12 }, () => 2 * r() - 1);
      const inputs: Record<string, Tensor> = { a: Tensor.from("f32", [3, 4], a), ct: Tensor.from("f32", [3, 4], c) };
      if (binary) inputs["b"] = Tensor.from("f32", [4], bv);
      const out = interpret(m, inputs, noWeights);

      const def = getOp(name)!;
      const loss = (av: number[], bw: number[]) => {
        let s = 0;
        for (let i = 0; i < 12; i++) s += c[i]! * def.scalar!(NUMBER_SCALARS, binary ? [av[i]!, bw[i % 4]!] : [av[i]!], { inTypes: ["f32"], outType: "f32", attrs: {} });
        return s;
      };
      const h = 1e-4;
      const fd = (which: "a" | "b", i: number) => {
        const av = [...a];
        const bw = [...bv];
        const arr = which === "a" ? av : bw;
        const x0 = arr[i]!;
        arr[i] = x0 + h;
        const up = loss(av, bw);
        arr[i] = x0 - h;
        const down = loss(av, bw);
        return (up - down) / (2 * h);
      };
      const check = (which: "a" | "b", got: Tensor) => {
        const n = which === "a" ? 12 : 4;
        expect(got.shape).toEqual(which === "a" ? [3, 4] : [4]);
        for (let i = 0; i < n; i++) {
          const want = fd(which, i);
          expect(Math.abs(got.data[i]! - want), `${name} d/d${which}[${i}]: ${got.data[i]} vs ${want}`).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(want)));
        }
      };
      check("a", out["g0"]!);
      if (binary) check("b", out["g1"]!);
    });
  }

  it("transfer: the cotangent goes back the other way (a transfer from the reading stage to the making one)", () => {
    const m = parseModule(`module @t {\n  func @t(%a: f32[3], %ct: f32[3]) -> (y: f32[3]) {\n    %y = transfer(%a) {from = 0, to = 2} : f32[3]\n    return %y\n  }\n}\n`, "transfer.lir");
    const f = m.entry!;
    const op = f.results[0]!.value.def!;
    const [g] = vjpRule("transfer")!(new Builder(m, f), op.operands, op.results, [f.params[1]!], op.attrs);
    expect(g!.def!.opName).toBe("transfer");
    expect(g!.def!.attrs).toEqual({ from: 2, to: 0 });
    expect(g!.def!.operands[0]).toBe(f.params[1]);
  });

  it("stop_gradient: no cotangent flows through it", () => {
    const m = parseModule(`module @t {\n  func @t(%a: f32[2], %ct: f32[2]) -> (y: f32[2]) {\n    %y = stop_gradient(%a) : f32[2]\n    return %y\n  }\n}\n`, "sg.lir");
    const f = m.entry!;
    const op = f.results[0]!.value.def!;
    expect(vjpRule("stop_gradient")!(new Builder(m, f), op.operands, op.results, [f.params[1]!], op.attrs)).toEqual([undefined]);
  });

  it("cast: the cotangent is cast back to the operand's dtype", () => {
    const m = parseModule(
      `module @t {
  func @t(%a: bf16[2, 3], %ct: f32[2, 3]) -> (y: f32[2, 3]) {
    %y = cast(%a) {to = f32} : f32[2, 3]
    return %y
  }
}
`,
      "cast.lir",
    );
    const f = m.entry!;
    const op = f.results[0]!.value.def!;
    const [g] = vjpRule("cast")!(new Builder(m, f), op.operands, op.results, [f.params[1]!], op.attrs);
    f.results.push({ name: "g", value: g! });
    verifyModule(m);
    expect(g!.type.toString()).toBe("bf16[2, 3]");
    const ct = [0.5, -1.25, 3, 0.125, -2, 1];
    const out = interpret(m, { a: Tensor.from("bf16", [2, 3], [1, 2, 3, 4, 5, 6]), ct: Tensor.from("f32", [2, 3], ct) }, noWeights);
    expect([...out["g"]!.data]).toEqual(ct);
  });
});

/**
 * Structural ops (views and contractions): linear in each operand, so a central difference with a
 * step of 1, through the interpreter, is exact up to f32 rounding of the outputs.
 */
describe("VJP rules of structural ops", () => {
  /**
   * `only`: which operands have gradients (default: all); `ints`: the values of integer operands
   * (indices), by name.
   */
  const cases: { name: string; params: string; op: string; out: string; only?: number[]; ints?: Record<string, number[]> }[] = [
    { name: "reshape", params: "%a: f32[3, 4]", op: "reshape(%a) {shape = [2, 6]}", out: "f32[2, 6]" },
    { name: "transpose", params: "%a: f32[2, 3, 4]", op: "transpose(%a) {perm = [2, 0, 1]}", out: "f32[4, 2, 3]" },
    { name: "concat", params: "%a: f32[2, 3], %b: f32[2, 2]", op: "concat(%a, %b) {axis = 1}", out: "f32[2, 5]" },
    { name: "linear", params: "%a: f32[2, 3, 4], %b: f32[5, 4]", op: "linear(%a, %b)", out: "f32[2, 3, 5]" },
    { name: "matmul (rhs broadcast over the batch)", params: "%a: f32[2, 3, 4], %b: f32[4, 5]", op: "matmul(%a, %b)", out: "f32[2, 3, 5]" },
    { name: "broadcast_to", params: "%a: f32[3, 1]", op: "broadcast_to(%a) {shape = [2, 3, 4]}", out: "f32[2, 3, 4]" },
    { name: "slice (middle of the axis)", params: "%a: f32[3, 7]", op: "slice(%a) {axis = 1, start = 2, end = 5}", out: "f32[3, 3]" },
    { name: "slice (to the end)", params: "%a: f32[4, 3]", op: "slice(%a) {axis = 0, start = 1, end = 4}", out: "f32[3, 3]" },
    { name: "take_last", params: "%a: f32[3, 5]", op: "take_last(%a) {axis = 1, count = 2}", out: "f32[3, 2]" },
    { name: "shift", params: "%a: f32[3, 5]", op: "shift(%a) {axis = 1, offset = -2, fill = 7}", out: "f32[3, 5]" },
    { name: "reduce_sum", params: "%a: f32[2, 3, 4]", op: "reduce_sum(%a) {axes = [0, 2]}", out: "f32[3]" },
    { name: "reduce_sum (keepdims)", params: "%a: f32[2, 3, 4]", op: "reduce_sum(%a) {axes = [-1], keepdims = true}", out: "f32[2, 3, 1]" },
    { name: "reduce_mean", params: "%a: f32[2, 3, 4]", op: "reduce_mean(%a) {axes = [1]}", out: "f32[2, 4]" },
    { name: "rope (partial: 2 x 2 of 6 dims rotate)", params: "%a: f32[2, 3, 6], %cos: f32[3, 2], %sin: f32[3, 2]", op: "rope(%a, %cos, %sin)", out: "f32[2, 3, 6]", only: [0] },
    { name: "embedding (ids repeat)", params: "%a: f32[5, 3], %ids: i64[2, 3]", op: "embedding(%a, %ids)", out: "f32[2, 3, 3]", only: [0], ints: { ids: [4, 0, 4, 2, 2, 4] } },
    { name: "take_along", params: "%a: f32[3, 6], %idx: i32[3, 2]", op: "take_along(%a, %idx)", out: "f32[3, 2]", only: [0], ints: { idx: [5, 1, 0, 3, 2, 2] } },
    { name: "moe_permute (k = 2)", params: "%a: f32[3, 4], %order: i32[6]", op: "moe_permute(%a, %order) {k = 2}", out: "f32[6, 4]", only: [0], ints: { order: [3, 0, 5, 1, 4, 2] } },
    { name: "grouped_linear (an expert with no rows)", params: "%a: f32[6, 4], %w: f32[3, 5, 4], %off: i32[4]", op: "grouped_linear(%a, %w, %off)", out: "f32[6, 5]", only: [0, 1], ints: { off: [0, 2, 2, 6] } },
    { name: "moe_combine (k = 2)", params: "%a: f32[6, 4], %row_of: i32[6], %w: f32[3, 2]", op: "moe_combine(%a, %row_of, %w)", out: "f32[3, 4]", only: [0, 2], ints: { row_of: [1, 3, 5, 0, 2, 4] } },
    { name: "scatter_add (indices repeat)", params: "%a: f32[3, 4], %idx: i32[3, 4]", op: "scatter_add(%a, %idx) {axis = 1, size = 5}", out: "f32[3, 5]", only: [0], ints: { idx: [4, 0, 4, 2, 1, 1, 3, 0, 2, 2, 2, 4] } },
    { name: "grouped_outer (an expert with no rows)", params: "%a: f32[6, 4], %b: f32[6, 5], %off: i32[4]", op: "grouped_outer(%a, %b, %off)", out: "f32[3, 4, 5]", only: [0, 1], ints: { off: [0, 2, 2, 6] } },
    { name: "cache_append", params: "%a: f32[2, 3, 4], %b: f32[2, 1, 4]", op: "cache_append(%a, %b) {axis = 1}", out: "f32[2, 4, 4]" },
  ];
  for (const c of cases) {
    it(`${c.name}: cotangents equal central differences`, () => {
      const text = `module @t {\n  func @t(${c.params}, %ct: ${c.out}) -> (y: ${c.out}) {\n    %y = ${c.op} : ${c.out}\n    return %y\n  }\n}\n`;
      const m = parseModule(text, "s.lir");
      const f = m.entry!;
      const op = f.results[0]!.value.def!;
      const grads = vjpRule(op.opName)!(new Builder(m, f), op.operands, op.results, [f.params[f.params.length - 1]!], op.attrs);
      const trained = c.only ?? f.params.slice(0, -1).map((_, j) => j);
      grads.forEach((g, j) => {
        if (trained.includes(j)) f.results.push({ name: `g${j}`, value: g! });
        else expect(g, `operand ${j} has no gradient`).toBeUndefined();
      });
      verifyModule(m);
      const r = rng(c.name.length * 31 + 7);
      const inputs: Record<string, Tensor> = {};
      for (const p of f.params) {
        const shape = p.type.shape.map((d) => d.value!);
        const ints = c.ints?.[p.name!];
        inputs[p.name!] = ints ? Tensor.from(p.type.dtype, shape, ints) : uniform(r, shape, 2);
      }
      const out = interpret(m, inputs, noWeights);
      f.params.forEach((p, j) => {
        if (trained.includes(j)) expectCentralDifferences(m, inputs, p.name!, out[`g${j}`]!, { step: 1, tolerance: 1e-4 });
      });
    });
  }
});

describe("VJP rule of rms_norm", () => {
  it("dx and dw within 2e-3 of central differences (step 1e-2, through the f32 interpreter)", () => {
    const m = parseModule(
      `module @t {
  func @t(%x: f32[3, 8], %w: f32[8], %ct: f32[3, 8]) -> (y: f32[3, 8]) {
    %y = rms_norm(%x, %w) {eps = 1e-6} : f32[3, 8]
    return %y
  }
}
`,
      "norm.lir",
    );
    const f = m.entry!;
    const op = f.results[0]!.value.def!;
    const grads = vjpRule("rms_norm")!(new Builder(m, f), op.operands, op.results, [f.params[2]!], op.attrs);
    grads.forEach((g, j) => f.results.push({ name: `g${j}`, value: g! }));
    verifyModule(m);
    const r = rng(99);
    const inputs: Record<string, Tensor> = { x: uniform(r, [3, 8]), w: uniform(r, [8]), ct: uniform(r, [3, 8]) };
    const out = interpret(m, inputs, noWeights);
    ["x", "w"].forEach((name, j) => expectCentralDifferences(m, inputs, name, out[`g${j}`]!, { step: 1e-2, tolerance: 2e-3 }));
  });
});

describe("VJP rule of attention", () => {
  for (const causal of [true, false]) {
    it(`grouped heads (4 over 2), 3 queries at the end of 5 keys, causal ${causal}: dq, dk, dv within 2e-3 of central differences`, () => {
      const m = parseModule(
        `module @t {
  func @t(%q: f32[1, 4, 3, 2], %k: f32[1, 2, 5, 2], %v: f32[1, 2, 5, 3], %ct: f32[1, 4, 3, 3]) -> (y: f32[1, 4, 3, 3]) {
    %y = attention(%q, %k, %v) {scale = 0.7, causal = ${causal}} : f32[1, 4, 3, 3]
    return %y
  }
}
`,
        "att.lir",
      );
      const f = m.entry!;
      const op = f.results[0]!.value.def!;
      const grads = vjpRule("attention")!(new Builder(m, f), op.operands, op.results, [f.params[3]!], op.attrs);
      grads.forEach((g, j) => f.results.push({ name: `g${j}`, value: g! }));
      verifyModule(m);
      const r = rng(causal ? 17 : 23);
      const inputs: Record<string, Tensor> = { q: uniform(r, [1, 4, 3, 2]), k: uniform(r, [1, 2, 5, 2]), v: uniform(r, [1, 2, 5, 3]), ct: uniform(r, [1, 4, 3, 3]) };
      const out = interpret(m, inputs, noWeights);
      ["q", "k", "v"].forEach((name, j) => expectCentralDifferences(m, inputs, name, out[`g${j}`]!, { step: 1e-2, tolerance: 2e-3 }));
    });
  }
});

describe("VJP rule of reduce_max", () => {
  it("the cotangent goes to the maximum, within 1e-3 of central differences", () => {
    const text = `module @t {\n  func @t(%a: f32[3, 5], %ct: f32[3]) -> (y: f32[3]) {\n    %y = reduce_max(%a) {axes = [1]} : f32[3]\n    return %y\n  }\n}\n`;
    const m = parseModule(text, "max.lir");
    const f = m.entry!;
    const op = f.results[0]!.value.def!;
    const [g] = vjpRule("reduce_max")!(new Builder(m, f), op.operands, op.results, [f.params[1]!], op.attrs);
    f.results.push({ name: "g0", value: g! });
    verifyModule(m);
    const inputs = { a: uniform(rng(3), [3, 5], 2), ct: uniform(rng(4), [3], 2) };
    const out = interpret(m, inputs, noWeights);
    expectCentralDifferences(m, inputs, "a", out["g0"]!, { step: 1e-3, tolerance: 1e-3 });
    // One nonzero per row, at the row's maximum.
    for (let t = 0; t < 3; t++) expect(Array.from(out["g0"]!.data.slice(t * 5, t * 5 + 5)).filter((x) => x !== 0).length).toBe(1);
  });

  it("ties share it evenly (torch's amax)", () => {
    const text = `module @t {\n  func @t(%a: f32[1, 4], %ct: f32[1, 1]) -> (y: f32[1, 1]) {\n    %y = reduce_max(%a) {axes = [1], keepdims = true} : f32[1, 1]\n    return %y\n  }\n}\n`;
    const m = parseModule(text, "ties.lir");
    const f = m.entry!;
    const op = f.results[0]!.value.def!;
    const [g] = vjpRule("reduce_max")!(new Builder(m, f), op.operands, op.results, [f.params[1]!], op.attrs);
    f.results.push({ name: "g0", value: g! });
    const out = interpret(m, { a: Tensor.from("f32", [1, 4], [2, -1, 2, 0.5]), ct: Tensor.from("f32", [1, 1], [3]) }, noWeights);
    expect(Array.from(out["g0"]!.data)).toEqual([1.5, 0, 1.5, 0]);
  });
});

describe("VJP rules of every op", () => {
  it("every op of the table has one, except quantize and dequantize (FP8 graphs are not differentiated)", () => {
    const missing = allOps().map((d) => d.name).filter((n) => !vjpRule(n));
    expect(missing.sort()).toEqual(["dequantize", "quantize"]);
  });

  it("choices and constants: no operand gets a cotangent", () => {
    for (const [name, n] of [["group_topk", 1], ["moe_dispatch", 1], ["iota", 0], ["constant", 0]] as const) {
      const rule = vjpRule(name)!;
      const dummy = {} as never;
      expect(rule(dummy, Array(n).fill(dummy), [], [], {}).filter((g) => g !== undefined), name).toEqual([]);
    }
  });
});

