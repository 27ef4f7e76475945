/** The float literal text both GPU renderers write (WGSL and CUDA C++). */
import { describe, expect, it } from "vitest";
import { f32Text, KernelBuilder } from "../../backends/kernels/kir";
import * as K from "../../backends/kernels/kir";
import { renderCuda } from "../../backends/cuda/render";
import { renderWgsl } from "../../backends/wgsl/render";

describe("f32Text", () => {
  it("writes the shortest text that reads back as the same f32, keeping the sign of zero", () => {
    expect(f32Text(3)).toBe("3.0f");
    expect(f32Text(0.5)).toBe("0.5f");
    expect(f32Text(0.1)).toBe("0.1f");
    expect(f32Text(1e-6)).toBe("0.000001f");
    expect(f32Text(0)).toBe("0.0f");
    expect(f32Text(-0)).toBe("-0.0f");
    expect(f32Text(3.4028234663852886e38)).toBe("3.4028235e+38f");
    const t = f32Text(Math.PI);
    expect(Math.fround(Number(t.slice(0, -1)))).toBe(Math.fround(Math.PI));
  });
});

describe("workgroup reductions", () => {
  /** A kernel that sums one value per thread of a 128-thread workgroup and stores the total. */
  const sumKernel = (warpSize?: number) => {
    const kb = new KernelBuilder("sum", 128, warpSize);
    const out = kb.buffer("out", "f32", true);
    const total = kb.workgroupSum(K.toF(kb.lid));
    kb.store(out, kb.wg, total);
    return kb.kernel;
  };
  const count = (text: string, what: string) => text.split(what).length - 1;

  it("with warp shuffles: each warp by shuffles, the warps' sums through workgroup memory, two barriers", () => {
    const cuda = renderCuda(sumKernel(32));
    expect(count(cuda, "__shfl_xor_sync")).toBe(5); // masks 16, 8, 4, 2, 1
    expect(count(cuda, "__syncthreads()")).toBe(2);
    expect(cuda).toMatch(/float red_\d+\[4\]/); // one partial per warp
  });

  it("without them (WebGPU): a tree through workgroup memory, log2(wg) + 2 barriers", () => {
    const wgsl = renderWgsl(sumKernel());
    expect(count(wgsl, "workgroupBarrier()")).toBe(9);
    expect(wgsl).not.toContain("subgroup");
    expect(count(renderCuda(sumKernel()), "__syncthreads()")).toBe(9);
  });
});

describe("index folding of a thread's run of elements", () => {
  /** Integer value of an index expression over the variable "x" (kir's i32 / and % truncate, as C and WGSL do). */
  const evalI = (e: K.Expr, x: number): number => {
    if (e.k === "lit") return e.v;
    if (e.k === "ref") return x;
    if (e.k !== "bin") throw new Error(`unexpected ${e.k}`);
    const [a, b] = [evalI(e.a, x), evalI(e.b, x)];
    if (e.op === "+") return a + b;
    if (e.op === "*") return a * b;
    if (e.op === "/") return Math.trunc(a / b);
    if (e.op === "%") return a % b;
    throw new Error(`unexpected ${e.op}`);
  };
  const x: K.Expr = { k: "ref", t: "i32", name: "x" };

  it("divides and reduces x C + u by a multiple of C as x alone, and stays exact", () => {
    const C = 4;
    const at = (u: number) => (u === 0 ? K.mul(x, K.i(C)) : K.add(K.mul(x, K.i(C)), K.i(u)));
    // The row and column of element u of run x in rows of 2048: x's own index math, one division.
    expect(K.divI(at(3), K.i(2048))).toEqual(K.div(x, K.i(512)));
    expect(K.modI(at(3), K.i(2048))).toEqual(K.add(K.mul(K.mod(x, K.i(512)), K.i(4)), K.i(3)));
    for (const L of [4, 8, 12, 2048]) {
      for (let xv = 0; xv < 700; xv++) {
        for (let u = 0; u < C; u++) {
          expect(evalI(K.divI(at(u), K.i(L)), xv)).toBe(Math.trunc((xv * C + u) / L));
          expect(evalI(K.modI(at(u), K.i(L)), xv)).toBe((xv * C + u) % L);
        }
      }
    }
  });

  it("leaves what it cannot fold: a divisor C does not divide, or an offset past the run", () => {
    expect(K.divI(K.add(K.mul(x, K.i(4)), K.i(1)), K.i(6))).toEqual(K.div(K.add(K.mul(x, K.i(4)), K.i(1)), K.i(6)));
    expect(K.divI(K.add(K.mul(x, K.i(4)), K.i(4)), K.i(8))).toEqual(K.div(K.add(K.mul(x, K.i(4)), K.i(4)), K.i(8)));
  });
});
