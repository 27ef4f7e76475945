/**
 * The autodiff pass (flat form): the gradients it appends, run by the interpreter, against central
 * differences of the summed objective with respect to each weight element; and its refusals.
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { verifyModule } from "../../ir/verify";
import { Tensor } from "../../ir/tensor";
import { printModule } from "../../ir/print";
import { differentiate } from "../../compiler/passes/autodiff";
import { rng } from "../support/fd";

const MLP = `module @mlp {
  func @mlp(%x: f32[4, 8])
      weights(
        @w1: f32[16, 8],
        @w2: f32[8, 16],
        @g: f32[16]
      )
      -> (y: f32[4, 8]) {
    %h = linear(%x, @w1) : f32[4, 16]
    %a = silu(%h) : f32[4, 16]
    %s = mul(%a, @g) : f32[4, 16]
    %y = linear(%s, @w2) : f32[4, 8]
    return %y
  }
}
`;

describe("the autodiff pass", () => {
  it("appends grad.<weight> results that match central differences of the summed objective", () => {
    const m = parseModule(MLP, "mlp.lir");
    const weights = differentiate(m, m.entry!);
    verifyModule(m);
    expect(weights).toEqual(["w1", "w2", "g"]);
    expect(m.entry!.results.map((r) => r.name)).toEqual(["y", "grad.w1", "grad.w2", "grad.g"]);
    const r = rng(11);
    const rand = (shape: number[], scale = 1) => Tensor.from("f32", shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * (2 * r() - 1)));
    const w: Record<string, Tensor> = { w1: rand([16, 8], 0.5), w2: rand([8, 16], 0.5), g: rand([16]) };
    const x = rand([4, 8]);
    const source = (ws: Record<string, Tensor>) => ({ get: (name: string) => ws[name]! });
    const out = interpret(m, { x }, source(w));
    const objective = (ws: Record<string, Tensor>) => {
      const y = interpret(m, { x }, source(ws))["y"]!.data;
      let s = 0;
      for (const v of y) s += v;
      return s;
    };
    const h = 1e-2;
    for (const name of ["w1", "w2", "g"]) {
      const t = w[name]!;
      const got = out[`grad.${name}`]!;
      expect(got.shape).toEqual(t.shape);
      for (let i = 0; i < t.numel; i += 3) {
        const bump = (d: number) => {
          const data = Float32Array.from(t.data);
          data[i]! += d;
          return objective({ ...w, [name]: Tensor.from("f32", t.shape, data) });
        };
        const want = (bump(h) - bump(-h)) / (2 * h);
        expect(Math.abs(got.data[i]! - want), `grad.${name}[${i}]: ${got.data[i]} vs ${want}`).toBeLessThanOrEqual(2e-3 * Math.max(1, Math.abs(want)));
      }
    }
  });

  it("refuses to differentiate through fp8 quantization, naming the op and its location", () => {
    const m = parseModule(
      `module @t {
  func @t(%x: f32[2, 128])
      weights(
        @w: f32[128, 128]
      )
      -> (y: f32[2, 128]) {
    %q = quantize(@w) {to = f8e4m3fn, block = [128, 128], recipe = "ling"} : f8e4m3fn[128, 128] scale(f32, block(128, 128))
    %d = dequantize(%q) {to = f32} : f32[128, 128]
    %y = linear(%x, %d) : f32[2, 128]
    return %y
  }
}
`,
      "q.lir",
    );
    expect(() => differentiate(m, m.entry!)).toThrow(/autodiff: 'quantize' in @t at q\.lir:7:\d+ quantizes a value the objective's gradient flows through; FP8 graphs are not differentiated/);
  });

  it("leaves the forward ops and results as they were", () => {
    const m = parseModule(MLP, "mlp.lir");
    const before = printModule(m);
    differentiate(m, m.entry!);
    const after = printModule(m);
    const forwardOps = before.split("\n").filter((l) => /^\s+%(h|a|s|y) = /.test(l));
    for (const line of forwardOps) expect(after).toContain(line);
  });
});

const NET = `module @net {
  func @layer(%h: f32[4, 8])
      weights(
        @norm: f32[8],
        @up: f32[16, 8],
        @down: f32[8, 16]
      )
      -> (out: f32[4, 8]) {
    %n = rms_norm(%h, @norm) {eps = 1e-6} : f32[4, 8]
    %u = linear(%n, @up) : f32[4, 16]
    %a = silu(%u) : f32[4, 16]
    %d = linear(%a, @down) : f32[4, 8]
    %out = add(%h, %d) : f32[4, 8]
    return %out
  }

  func @net(%x: f32[4, 8])
      weights(
        @head: f32[3, 8]
      )
      -> (y: f32[4, 3]) {
    %h0 = call @layer(%x) : f32[4, 8] scope("layers.0")
    %h1 = call @layer(%h0) : f32[4, 8] scope("layers.1")
    %y = linear(%h1, @head) : f32[4, 3]
    return %y
  }
}
`;

describe("the autodiff pass on a folded graph", () => {
  it("gives each layer function one backward function, called per layer, and gradients matching central differences", () => {
    const m = parseModule(NET, "net.lir");
    const names = differentiate(m, m.entry!);
    verifyModule(m);
    expect(names.sort()).toEqual(["head", "layers.0.down", "layers.0.norm", "layers.0.up", "layers.1.down", "layers.1.norm", "layers.1.up"]);
    expect(m.functions.map((f) => f.name)).toEqual(["layer", "layer.backward", "net"]);
    const calls = m.entry!.body.filter((o) => o.opName === "call");
    expect(calls.map((c) => `${c.callee}@${c.scope}`)).toEqual(["layer@layers.0", "layer@layers.1", "layer.backward@layers.1", "layer.backward@layers.0"]);

    const r = rng(5);
    const rand = (shape: number[], scale = 1) => Tensor.from("f32", shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * (2 * r() - 1)));
    const w: Record<string, Tensor> = { head: rand([3, 8]) };
    for (const l of ["layers.0", "layers.1"]) Object.assign(w, { [`${l}.norm`]: rand([8]), [`${l}.up`]: rand([16, 8], 0.5), [`${l}.down`]: rand([8, 16], 0.5) });
    const x = rand([4, 8]);
    const source = (ws: Record<string, Tensor>) => ({ get: (name: string) => ws[name]! });
    const out = interpret(m, { x }, source(w));
    const objective = (ws: Record<string, Tensor>) => [...interpret(m, { x }, source(ws))["y"]!.data].reduce((a, b) => a + b, 0);
    const h = 1e-2;
    for (const name of names) {
      const t = w[name]!;
      const got = out[`grad.${name}`]!;
      expect(got.shape).toEqual(t.shape);
      for (let i = 0; i < t.numel; i += 5) {
        const bump = (d: number) => {
          const data = Float32Array.from(t.data);
          data[i]! += d;
          return objective({ ...w, [name]: Tensor.from("f32", t.shape, data) });
        };
        const want = (bump(h) - bump(-h)) / (2 * h);
        expect(Math.abs(got.data[i]! - want), `grad.${name}[${i}]: ${got.data[i]} vs ${want}`).toBeLessThanOrEqual(3e-3 * Math.max(1, Math.abs(want)));
      }
    }
  });
});
