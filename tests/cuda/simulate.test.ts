/**
 * CUDA tile programs run on the CPU by the kir simulator (backends/kernels/simulate.ts), against the
 * interpreter: their numbers are checked where there is no GPU. The simulator itself on warp
 * reductions and shuffles; the grouped expert GEMM on bf16 and e4m3 mma.sync and on warpgroup MMAs
 * (plain and warp-specialized; an uneven routing: an expert with every token, one with none); the
 * router a warp per token; the dense and FP8 GEMVs. Attention: simulate-attention.test.ts; the
 * memory-bound row kernels: simulate-rows.test.ts.
 */
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { parseTile } from "../../ir/target/cuda";
import { KernelBuilder } from "../../backends/kernels/kir";
import * as K from "../../backends/kernels/kir";
import { simulate } from "../../backends/kernels/simulate";
import { rng } from "../support/fd";
import type { GenLimits } from "../../backends/kernels/gen";
import { LIMITS, kernels, runGenerated, expertModule, random, relError, prefetchedWhole, routerOps } from "../support/kir-run";

describe("CUDA tile programs in the kir simulator", () => {
  it("a workgroup sum by warp shuffles gives every thread the total (the simulator's warps and barriers)", () => {
    const kb = new KernelBuilder("sum", 128, 32);
    const out = kb.buffer("out", "f32", true);
    const total = kb.workgroupSum(K.toF(kb.lid));
    kb.store(out, K.add(K.mul(kb.wg, K.i(128)), kb.lid), total);
    const buf = new Float32Array(2 * 128);
    simulate(kb.kernel, { out: buf }, {}, 2);
    expect([...new Set(buf)]).toEqual([(127 * 128) / 2]);
  });

  it("a warp shuffle where CUDA evaluates it in some lanes only (a select's branch, the right of && or ||, a branch that differs between a warp's lanes) is refused; bound by a let first, or under a warp-uniform branch, it is accepted", () => {
    const x = K.f(1);
    const sh = K.shflIdx(x, K.i(0));
    const lane = K.lt(K.i(0), K.i(1));
    expect(() => K.sel(lane, sh, x)).toThrow("kir: a warp shuffle in a branch of a select runs in some lanes only; bind it with a let first");
    expect(() => K.and(lane, K.gt(sh, x))).toThrow("right of '&&'");
    expect(() => K.or(lane, K.sel(lane, x, { k: "shfl", t: "f32", a: x, mask: 1 }))).toThrow("in a branch of a select");
    const kb = new KernelBuilder("ok", 32, 32);
    expect(K.sel(lane, kb.let("got", sh), x).k).toBe("sel");
    // The statement form: a shuffle under a branch that differs between lanes fails in the simulator.
    const run = (cond: (lid: K.Expr) => K.Expr) => {
      const b = new KernelBuilder("div", 64, 32);
      const out = b.buffer("out", "f32", true);
      b.if(cond(b.lid), () => b.store(out, b.lid, b.let("v", { k: "shfl", t: "f32", a: K.toF(b.lid), mask: 1 })));
      const buf = new Float32Array(64);
      simulate(b.kernel, { out: buf }, {}, 1);
      return buf;
    };
    expect(() => run((lid) => K.lt(K.mod(lid, K.i(32)), K.i(16)))).toThrow("a warp shuffle that lane 16 of warp 0 does not reach");
    // A branch the same in every lane of a warp (here: the second warp) is fine.
    expect([...run((lid) => K.ge(lid, K.i(32))).slice(32, 34)]).toEqual([33, 32]);
  });

  it("the grouped expert GEMM tile program on mma.sync (bf16, LINGC_BF16_TILE's form): SwiGLU and down experts on an uneven routing", () => {
    // 40 tokens, 2 experts each of 6: expert 0 gets every token (a partial second 32-row tile), expert
    // 5 none; the expert width 40 is no multiple of the 32-wide K stages, so the last stage is partial.
    const [T, H, F, E, K] = [40, 32, 40, 6, 2];
    const text = expertModule("bf16", [T, H, F, E, K]);
    const r = rng(21);
    const t = (shape: number[], scale = 1) => random("bf16", r, shape, scale);
    const ids = Array.from({ length: T }, (_, i) => [0, 1 + (i % 4)]).flat();
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], ids), wts: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())) };
    const weights = { gate: t([E, F, H], 0.2), up: t([E, F, H], 0.2), down: t([E, H, F], 0.2) };
    const tiles = { ...LIMITS.gemmTiles, bf16: parseTile("128,128,64,64,3", "test tile") };
    const { got, want } = runGenerated(text, inputs, weights, { ...LIMITS, gemmTiles: tiles })["y"]!;
    expect(kernels.some((k) => /mma/.test(JSON.stringify(k.kernel.body)))).toBe(true);
    // bf16 results: a sum in another order can round a bf16 step the other way (expert_check.py's tolerance).
    expect(relError(got, want)).toBeLessThan(2 ** -6);
  });

  /** The bf16 routed experts of the mma.sync test's uneven routing, under a bf16 tile (a warpgroup-MMA one: the kernels hold wgmma). */
  const bf16Experts = (tile: string, H = 32, F = 40) => {
    const [T, E, K] = [40, 6, 2];
    const r = rng(21);
    const t = (shape: number[], scale = 1) => random("bf16", r, shape, scale);
    const ids = Array.from({ length: T }, (_, i) => [0, 1 + (i % 4)]).flat();
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], ids), wts: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())) };
    const weights = { gate: t([E, F, H], 0.2), up: t([E, F, H], 0.2), down: t([E, H, F], 0.2) };
    const { got, want } = runGenerated(expertModule("bf16", [T, H, F, E, K]), inputs, weights, { ...LIMITS, gemmTiles: { ...LIMITS.gemmTiles, bf16: parseTile(tile, "test tile") } })["y"]!;
    expect(kernels.filter((k) => JSON.stringify(k.kernel.body).includes('"k":"wgmma"'))).toHaveLength(2);
    return { got, want };
  };

  it("the grouped expert GEMM on Hopper warpgroup MMAs (bf16, the profile's tile wgmma,128,256,4): SwiGLU and down experts on an uneven routing", () => {
    expect(LIMITS.gemmTiles!["bf16"]!.wgmma).toBe(true);
    const { got, want } = bf16Experts("wgmma,128,256,4");
    expect(relError(got, want)).toBeLessThan(2 ** -6);
    // Both write their results through shared memory, 16 bytes a store (whole 8-column pieces: 40 and 32 columns).
    expect(kernels.filter((k) => JSON.stringify(k.kernel.body).includes('"k":"wgmma"') && JSON.stringify(k.kernel.body).includes('"k":"store16"'))).toHaveLength(2);
  });

  it("the bf16 warpgroup-MMA expert GEMM where the column tiles split the outputs evenly (SwiGLU 128 of 128, down 256 of 256): a tile's weight rows copied from one base, no row bounds", () => {
    const { got, want } = bf16Experts("wgmma,128,256,4", 256, 128);
    expect(kernels.filter((k) => JSON.stringify(k.kernel.body).includes('"k":"wgmma"') && !JSON.stringify(k.kernel.body).includes('"bok_'))).toHaveLength(2);
    expect(relError(got, want)).toBeLessThan(2 ** -6);
  });

  it("the warp-specialized warpgroup-MMA expert GEMM (wgmma-ws,128,256,2,2: a producer warpgroup, mbarriers, two tiles a workgroup, stage buffers reused within and across them)", () => {
    // Hidden 160: the SwiGLU experts' K is three 64-wide stages (the last partial), so each of the
    // two buffers is used three times by a workgroup's two tiles; five experts' tiles, the last
    // workgroup's second tile idle.
    const { got, want } = bf16Experts("wgmma-ws,128,256,2,2", 160);
    expect(kernels.some((k) => JSON.stringify(k.kernel.body).includes('"k":"mbarWait"'))).toBe(true);
    expect(relError(got, want)).toBeLessThan(2 ** -6);
  });

  /** Routed FP8 experts (W8A8, activations quantized per token) of [T, H, F, E, K] on the simulator and the interpreter. */
  const fp8Experts = (shape: [number, number, number, number, number], seed: number, limits: GenLimits, gather = "after") => {
    const [T, H, F, E, K] = shape;
    const r = rng(seed);
    const t = (dims: number[], scale = 1) => random("f32", r, dims, scale);
    const ids = Array.from({ length: T }, (_, i) => [0, 1 + (i % 4)]).flat();
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], ids), wts: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())) };
    const weights = { gate: t([E, F, H], 0.1), up: t([E, F, H], 0.1), down: t([E, H, F], 0.1) };
    const fp8 = `fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,gather=${gather},projections=gate,up,down}`;
    return runGenerated(expertModule("f32", shape), inputs, weights, limits, fp8)["y"]!;
  };

  it("the FP8 grouped expert GEMM on warpgroup MMAs (e4m3, the profile's tile; the simulator sums each 128-wide slice exactly, where Hopper keeps about 14 bits) with the activations quantized per token", () => {
    expect(LIMITS.gemmTiles!["f8e4m3fn"]!.wgmma).toBe(true);
    const { got, want } = fp8Experts([40, 128, 128, 6, 2], 33, LIMITS);
    expect(kernels.filter((k) => JSON.stringify(k.kernel.body).includes('"ab":"e4m3"'))).toHaveLength(2);
    expect(relError(got, want)).toBeLessThan(1e-5);
  });

  it.each([
    ["wgmma,64,128,3", 2],
    ["wgmma,64,256,2", 1],
  ] as const)("the FP8 SwiGLU experts' warpgroup program with the hidden rows' quantize as its epilogue (tile %s: a workgroup runs a 128-column group's %i column tiles in turn): the codes the separate quantize makes, bit for bit", (tile, P) => {
    // bf16 hidden rows of 256 (two quantize groups), 40 tokens on an uneven routing.
    const [T, H, F, E, K] = [40, 128, 256, 6, 2];
    const r = rng(38);
    const t = (dims: number[], scale = 1) => random("bf16", r, dims, scale);
    const ids = Array.from({ length: T }, (_, i) => [0, 1 + (i % 4)]).flat();
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], ids), wts: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())) };
    const weights = { gate: t([E, F, H], 0.1), up: t([E, F, H], 0.1), down: t([E, H, F], 0.1) };
    const fp8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,gather=before,projections=gate,up,down}";
    const limits = { ...LIMITS, gemmTiles: { ...LIMITS.gemmTiles, f8e4m3fn: parseTile(tile, "test tile") } };
    const run = (epilogues: boolean) => {
      const y = runGenerated(expertModule("bf16", [T, H, F, E, K]), inputs, weights, limits, fp8, undefined, false, epilogues)["y"]!;
      return { y, bodies: kernels.map((k) => JSON.stringify(k.kernel.body)) };
    };
    const apart = run(false);
    const merged = run(true);
    // One launch fewer: the SwiGLU program makes the codes (its bodies hold the MMAs and the packing), no quantize kernel of its result.
    expect(merged.bodies).toHaveLength(apart.bodies.length - 1);
    expect(merged.bodies.filter((b) => b.includes('"ab":"e4m3"') && b.includes('"packE4m3"'))).toHaveLength(1);
    expect(merged.bodies.filter((b) => b.includes('"ab":"e4m3"') && b.includes('"load16"')).length).toBe(P === 2 ? 1 : 0);
    expect([...merged.y.got]).toEqual([...apart.y.got]);
    expect(relError(merged.y.got, merged.y.want)).toBeLessThan(2 ** -6);
    expect(Math.max(...merged.y.got.map(Math.abs))).toBeGreaterThan(0.01);
  });

  it("the FP8 warpgroup-MMA expert GEMM with each stage's scales loaded a stage ahead (LINGC_FP8_SCALES=ahead: held in registers, the next stage's loads issued once these are used): 3 stages of K (SwiGLU) and 2 (down)", () => {
    const { got, want } = fp8Experts([40, 384, 256, 6, 2], 35, { ...LIMITS, fp8ScalesAhead: true });
    const bodies = kernels.map((k) => JSON.stringify(k.kernel.body)).filter((b) => b.includes('"ab":"e4m3"'));
    expect(bodies).toHaveLength(2);
    for (const b of bodies) expect(b).toMatch(/"name":"sbn_\d+"/);
    expect(relError(got, want)).toBeLessThan(1e-5);
  });

  it("the FP8 warpgroup-MMA expert GEMM overlapped (LINGC_FP8_WGMMA=overlap: two stage sums in turn, a stage's MMAs issued before the last one's are scaled): 3 stages of K (SwiGLU, an odd count) and 2 (down)", () => {
    const { got, want } = fp8Experts([40, 384, 256, 6, 2], 35, { ...LIMITS, fp8WgmmaOverlap: true });
    const bodies = kernels.map((k) => JSON.stringify(k.kernel.body)).filter((b) => b.includes('"ab":"e4m3"'));
    expect(bodies).toHaveLength(2);
    for (const b of bodies) expect(b).toContain('"zero":true');
    expect(relError(got, want)).toBeLessThan(1e-5);
  });

  it.each([
    ["the warpgroup-MMA tile", undefined, '"ab":"e4m3"'],
    ["the exact mma.sync tile", "64,128,64,32,3", "m16n8k32.e4m3"],
  ] as const)("the FP8 experts with the tokens quantized before their gather (gather=before), %s: the SwiGLU step copies the gathered codes and reads their scale rows through the order", (_name, tile, mma) => {
    const limits = tile ? { ...LIMITS, gemmTiles: { ...LIMITS.gemmTiles, f8e4m3fn: parseTile(tile, "test tile") } } : LIMITS;
    const { got, want } = fp8Experts([40, 128, 128, 6, 2], 36, limits, "before");
    // SwiGLU (through the gather) and down on the tensor cores.
    const bodies = kernels.map((k) => JSON.stringify(k.kernel.body));
    expect(bodies.filter((b) => b.includes(mma))).toHaveLength(2);
    expect(relError(got, want)).toBeLessThan(1e-5);
  });

  it("gather=before through a reshape ([2, 20, H] rows flattened for the experts, and read as they are by a dense projection): one quantize of the rows, its codes reshaped and gathered, the warpgroup tile's and the by-row GEMV's scales read through the alias", () => {
    const [T, H, F, E, K, O] = [40, 128, 128, 6, 2, 96];
    const text = expertModule("f32", [T, H, F, E, K])
      .replace(`func @e(%x: f32[${T}, ${H}],`, `func @e(%x3: f32[2, ${T / 2}, ${H}],`)
      .replace(`@down: f32[${E}, ${H}, ${F}])`, `@down: f32[${E}, ${H}, ${F}], @proj: f32[${O}, ${H}])`)
      .replace(`-> (y: f32[${T}, ${H}])`, `-> (y: f32[${T}, ${H}], z: f32[2, ${T / 2}, ${O}])`)
      .replace(`    %order, %offsets`, `    %z = linear(%x3, @proj) : f32[2, ${T / 2}, ${O}]\n    %x = reshape(%x3) {shape = [${T}, ${H}]} : f32[${T}, ${H}]\n    %order, %offsets`)
      .replace("return %y", "return %y, %z");
    const r = rng(37);
    const t = (dims: number[], scale = 1) => random("f32", r, dims, scale);
    const ids = Array.from({ length: T }, (_, i) => [0, 1 + (i % 4)]).flat();
    const inputs = { x3: t([2, T / 2, H]), ids: Tensor.from("i32", [T, K], ids), wts: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())) };
    const weights = { gate: t([E, F, H], 0.1), up: t([E, F, H], 0.1), down: t([E, H, F], 0.1), proj: t([O, H], 0.1) };
    const fp8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,gather=before,projections=gate,up,down,proj},cse,dce";
    for (const pick of [undefined, (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "grouped_linear") ? "grouped_gemv_fp8" : undefined)]) {
      const outs = runGenerated(text, inputs, weights, LIMITS, fp8, pick);
      for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(1e-5);
    }
  });

  it("the FP8 grouped expert GEMM tile program (e4m3 mma.sync: the exact tile, 64,128,64,32,3) with the activations quantized per token", () => {
    const tiles = { ...LIMITS.gemmTiles, f8e4m3fn: parseTile("64,128,64,32,3", "test tile") };
    const { got, want } = fp8Experts([40, 128, 128, 6, 2], 33, { ...LIMITS, gemmTiles: tiles });
    expect(kernels.some((k) => JSON.stringify(k.kernel.body).includes("m16n8k32.e4m3"))).toBe(true);
    // The same e4m3 codes and scales as the interpreter; fp32 sums in another order.
    expect(relError(got, want)).toBeLessThan(1e-5);
  });

  it("an FP8 expert GEMM whose K is not whole 128-wide scale blocks takes the exact warp tile where the profile's is a warpgroup tile", () => {
    // K = 192 (hidden and expert width): 1.5 scale blocks; the warpgroup program's stage is a block.
    expect(LIMITS.gemmTiles!["f8e4m3fn"]!.wgmma).toBe(true);
    const { got, want } = fp8Experts([40, 192, 192, 6, 2], 34, LIMITS);
    const bodies = kernels.map((k) => JSON.stringify(k.kernel.body));
    expect(bodies.some((b) => b.includes("m16n8k32.e4m3"))).toBe(true);
    expect(bodies.some((b) => b.includes('"wgmma"'))).toBe(false);
    expect(relError(got, want)).toBeLessThan(1e-5);
  });

  it.each([
    // By row (4 rows, at most a quarter of 16 experts); gate/up rows of 2 x 256 bf16 (1 KB: four
    // columns a warp), one 256-element step; down rows of 264 (a partial second step).
    ["grouped_gemv_rows", [2, 256, 264, 16, 2], [3, 9, 9, 15]],
    // By row over 40 experts, most of them empty: the warp's search of the offsets takes two levels
    // (strides 2, then 1), the first and the last experts among the rows; down rows of 72 (a part step).
    ["grouped_gemv_rows", [3, 256, 72, 40, 2], [0, 21, 21, 39, 5, 38]],
    // By expert: 10 rows over 4 experts (expert 1 has 5: two groups of up to four), expert 0 none;
    // gate/up rows of 2 x 256 (1 KB), the down rows' 40 outputs not a multiple of a warp's columns
    // x 8 warps; the input rows of 256 (one step).
    ["grouped_gemv", [5, 40, 256, 4, 2], [1, 2, 1, 3, 1, 2, 1, 3, 1, 2]],
  ] as const)("the bf16 expert GEMVs (%s: 16-byte loads, four columns a warp, SwiGLU through the token gather) against the interpreter", (template, dims, ids) => {
    const [T, H, F, E, K] = dims;
    const text = expertModule("bf16", [T, H, F, E, K]);
    const r = rng(55);
    const t = (shape: number[], scale = 1) => random("bf16", r, shape, scale);
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], [...ids]), wts: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())) };
    const weights = { gate: t([E, F, H], 0.2), up: t([E, F, H], 0.2), down: t([E, H, F], 0.2) };
    const { got, want } = runGenerated(text, inputs, weights, LIMITS, "", (ops) => (ops.some((o) => o.opName === "grouped_linear") ? template : undefined))["y"]!;
    // SwiGLU and down (the combine, which also reads 16 bytes at a time, writes 16 bytes at a time too).
    expect(kernels.filter((k) => JSON.stringify(k.kernel.body).includes('"load16"') && !JSON.stringify(k.kernel.body).includes('"store16"')).length).toBe(2);
    // bf16 results: a sum in another order can round a bf16 step the other way (expert_check.py's tolerance).
    expect(relError(got, want)).toBeLessThan(2 ** -6);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.1); // (the same sums in the interpreter's order may well be exact)
  });

  it.each([
    // Ling-mini's router: 256 experts in 8 groups (4 lanes a group), the best 4 groups by their top-2 sums, top-8; 3 tokens (one workgroup, one warp idle).
    [3, 256, 8, 4, 2, 8],
    [37, 256, 8, 4, 2, 8],
    // 64 experts in 4 groups of 16 (8 lanes a group, 2 experts a lane), 2 groups kept, top-6 by top-3 group sums; 5 tokens (two workgroups).
    [5, 64, 4, 2, 3, 6],
    // One group (no group stage), 32 experts, top-4.
    [2, 32, 1, 1, 1, 4],
    // Ties everywhere (scores of three values, no bias): groups and experts both go to the lower index.
    [6, 256, 8, 4, 2, 8, true],
    [4, 64, 4, 2, 3, 6, true],
  ])("the router a warp per token (router_warp: %i tokens, %i experts in %i groups, %i kept by top-%i sums, top-%i; ties: %s): indices exactly and weights as the interpreter's", (T, E, G, TG, GST, K2, ties = false) => {
    const text = `module @r {
  func @r(%x: f32[${T}, ${E}]) weights(@bias: f32[${E}]) -> (idx: i32[${T}, ${K2}], w: f32[${T}, ${K2}]) {
${routerOps("%x", T, E, G, TG, GST, K2)}
    %c = constant() {values = [2.5], dtype = f32} : f32[]
    %w = mul(%n, %c) : f32[${T}, ${K2}]
    return %idx, %w
  }
}`;
    const r = rng(19);
    const x = ties ? Tensor.from("f32", [T, E], Array.from({ length: T * E }, () => Math.floor(r() * 3) - 1)) : random("f32", r, [T, E], 3);
    const bias = ties ? Tensor.from("f32", [E], new Array<number>(E).fill(0)) : random("f32", r, [E], 0.05);
    const outs = runGenerated(text, { x }, { bias }, LIMITS, "", (ops) => (ops.some((o) => o.opName === "group_topk") ? "router_warp" : undefined));
    expect(kernels.some((k) => k.kernel.name.includes("router") || JSON.stringify(k.kernel.body).includes('"shflIdx"'))).toBe(true);
    expect(JSON.stringify(kernels.find((k) => JSON.stringify(k.kernel.body).includes('"shflIdx"'))!.kernel.body)).not.toContain('"barrier"');
    expect([...outs["idx"]!.got]).toEqual([...outs["idx"]!.want]);
    expect(relError(outs["w"]!.got, outs["w"]!.want)).toBeLessThan(1e-6);
    // Every token's indices are distinct and its weights sum to the scaling factor.
    for (let t = 0; t < T; t++) {
      expect(new Set(outs["idx"]!.got.slice(t * K2, (t + 1) * K2)).size).toBe(K2);
      expect(outs["w"]!.got.slice(t * K2, (t + 1) * K2).reduce((a, b) => a + b, 0)).toBeCloseTo(2.5, 5);
    }
  });

  it("the dense bf16 GEMV (linear_gemv): a lone linear and a dense SwiGLU (gate, up, silu, mul in one kernel) of one row against the interpreter", () => {
    // Rows of 264 (a partial second 256-element step); 40 and 72 outputs (not multiples of 8 warps x 4 columns).
    const text = `module @d {
  func @d(%x: bf16[1, 1, 264]) weights(@w: bf16[40, 264], @g: bf16[72, 264], @u: bf16[72, 264]) -> (y: bf16[1, 1, 40], h: bf16[1, 1, 72]) {
    %y = linear(%x, @w) : bf16[1, 1, 40]
    %a = linear(%x, @g) : bf16[1, 1, 72]
    %b = linear(%x, @u) : bf16[1, 1, 72]
    %s = silu(%a) : bf16[1, 1, 72]
    %h = mul(%s, %b) : bf16[1, 1, 72]
    return %y, %h
  }
}`;
    const r = rng(66);
    const t = (shape: number[], scale = 1) => random("bf16", r, shape, scale);
    const [inputs, weights] = [{ x: t([1, 1, 264]) }, { w: t([40, 264], 0.2), g: t([72, 264], 0.2), u: t([72, 264], 0.2) }];
    const outs = runGenerated(text, inputs, weights, { ...LIMITS, prefetchWeights: "all" }, "", (ops) => (ops.some((o) => o.opName === "linear") ? "linear_gemv" : undefined));
    expect(kernels.filter((k) => JSON.stringify(k.kernel.body).includes('"load16"')).length).toBe(2);
    // With every GEMV's prefetches on, each kernel's weights brought into L2 before it waits, every byte once.
    expect(prefetchedWhole().sort()).toEqual(["linear_gemv#0.b1 (weight)", "linear_gemv#1.b1 (weight)", "linear_gemv#1.b2 (weight)"]);
    // CUDA's default prefetches for FP8 GEMVs only: none here, the same values.
    const off = runGenerated(text, inputs, weights, LIMITS, "", (ops) => (ops.some((o) => o.opName === "linear") ? "linear_gemv" : undefined));
    expect(prefetchedWhole()).toEqual([]);
    expect(kernels.every((k) => !k.kernel.preWait)).toBe(true);
    expect(off["y"]!.got).toEqual(outs["y"]!.got);
    for (const [name, { got, want }] of Object.entries(outs)) {
      expect(relError(got, want), name).toBeLessThan(2 ** -6);
      expect(Math.max(...got.map(Math.abs)), name).toBeGreaterThan(0.05);
    }
  });

  it.each([
    // The router gate's kind: 8 KB rows, 24 columns: all eight warps of a tile split K (workgroup memory, a barrier).
    [2048, 24, 8, undefined],
    // A partial last step (516 = 4 x 128 + 4), no split.
    [516, 40, 1, 0],
  ])("the dense f32 GEMV (linear_gemv, four elements a lane per load): K %i, %i outputs, K split among %i warps, against the interpreter", (I, O, split, workgroups) => {
    const text = `module @d {
  func @d(%x: f32[1, ${I}]) weights(@w: f32[${O}, ${I}]) -> (y: f32[1, ${O}]) {
    %y = linear(%x, @w) : f32[1, ${O}]
    return %y
  }
}`;
    const r = rng(67);
    const limits = { ...LIMITS, prefetchWeights: "all" as const, ...(workgroups === undefined ? {} : { gemvWorkgroups: workgroups }) };
    const { got, want } = runGenerated(text, { x: random("f32", r, [1, I]) }, { w: random("f32", r, [O, I], 0.2) }, limits, "", (ops) => (ops.some((o) => o.opName === "linear") ? "linear_gemv" : undefined))["y"]!;
    const [k] = kernels;
    expect(JSON.stringify(k!.kernel.body)).toContain('"bitsF32"');
    expect(prefetchedWhole()).toEqual(["linear_gemv#0.b1 (weight)"]);
    expect(k!.kernel.shared.length).toBe(split > 1 ? 1 : 0);
    expect(relError(got, want)).toBeLessThan(1e-5);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.05);
  });

  it("the router gate after castlinear (linear of bf16 operands {out = f32}) as the dense GEMV: f32 sums of the bf16 products, as the interpreter's", () => {
    const [I, O] = [2048, 24];
    const text = `module @d {
  func @d(%x: bf16[1, ${I}]) weights(@w: bf16[${O}, ${I}]) -> (y: f32[1, ${O}]) {
    %y = linear(%x, @w) {out = f32} : f32[1, ${O}]
    return %y
  }
}`;
    const r = rng(68);
    const { got, want } = runGenerated(text, { x: random("bf16", r, [1, I]) }, { w: random("bf16", r, [O, I], 0.2) }, LIMITS, "", (ops) => (ops.some((o) => o.opName === "linear") ? "linear_gemv" : undefined))["y"]!;
    expect(JSON.stringify(kernels[0]!.kernel.body)).toContain('"load16"');
    expect(relError(got, want)).toBeLessThan(1e-5);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.05);
  });

  it.each([undefined, "grouped", "all"] as const)("decode's FP8 GEMVs with fp8GemvColumns %s (up to four columns a warp for short rows): bit for bit a column a warp's; the dense projection's 84 columns not whole tiles (the last tile's columns past them clamped and not stored)", (columns) => {
    const [T, H, F, E, K, O] = [2, 256, 128, 16, 2, 84];
    const text = expertModule("f32", [T, H, F, E, K], O);
    const r = rng(47);
    const t = (shape: number[], scale = 1) => random("f32", r, shape, scale);
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], [3, 9, 9, 15]), wts: Tensor.from("f32", [T, K], [0.25, 0.75, 0.5, 0.5]) };
    const weights = { gate: t([E, F, H], 0.1), up: t([E, F, H], 0.1), down: t([E, H, F], 0.1), proj: t([O, H], 0.1) };
    const fp8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,gather=before,projections=gate,up,down,proj}";
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "grouped_linear") ? "grouped_gemv_fp8" : ops.length === 1 && ops[0]!.opName === "linear" ? "gemv_fp8" : undefined);
    const limits = (c: typeof columns): GenLimits => ({ ...LIMITS, fp8GemvColumns: c });
    const one = runGenerated(text, inputs, weights, limits(undefined), fp8, pick);
    const mine = runGenerated(text, inputs, weights, limits(columns), fp8, pick);
    // Workgroups of the GEMVs: the routed ones' 4 rows, SwiGLU rows of 2 x 256 codes (512 bytes:
    // four columns a warp, 128 columns in 4 tiles of 32) and down rows of 128 (four, 256 columns in
    // 8); the dense projection's rows of 256 (under "all": four, 84 columns in 3 tiles), against 16,
    // 32 and 11 tiles with a column a warp (the dense grid counts 17 x tiles / 16 workgroups for
    // its rows in chunks of 16: 4 and 12).
    const grids = kernels.filter((k) => k.template === "grouped_gemv_fp8" || k.template === "gemv_fp8").map((k) => `${k.template}:${Math.ceil(k.grid.dim.value! / k.grid.per)}`);
    expect(grids).toEqual(columns === undefined ? ["grouped_gemv_fp8:64", "grouped_gemv_fp8:128", "gemv_fp8:12"] : ["grouped_gemv_fp8:16", "grouped_gemv_fp8:32", `gemv_fp8:${columns === "all" ? 4 : 12}`]);
    for (const [name, { got, want }] of Object.entries(mine)) {
      expect(relError(got, want), name).toBeLessThan(1e-5);
      expect([...got], name).toEqual([...one[name]!.got]);
    }
  });

  it.each(["after", "before"])("decode's FP8 kernels (a warp per column): the by-row grouped expert GEMV and the dense GEMV, activations quantized per token (gather=%s; before: the GEMV reads the tokens' codes and scale rows through the order)", (gather) => {
    // 2 tokens x 2 experts of 16: 4 rows, at most a quarter of the experts (the dispatch's GEMV case).
    const [T, H, F, E, K, O] = [2, 256, 128, 16, 2, 96];
    const text = expertModule("f32", [T, H, F, E, K], O);
    const r = rng(44);
    const t = (shape: number[], scale = 1) => random("f32", r, shape, scale);
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], [3, 9, 9, 15]), wts: Tensor.from("f32", [T, K], [0.25, 0.75, 0.5, 0.5]) };
    const weights = { gate: t([E, F, H], 0.1), up: t([E, F, H], 0.1), down: t([E, H, F], 0.1), proj: t([O, H], 0.1) };
    const fp8 = `fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,gather=${gather},projections=gate,up,down,proj}`;
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "grouped_linear") ? "grouped_gemv_fp8" : ops.length === 1 && ops[0]!.opName === "linear" ? "gemv_fp8" : undefined);
    const outs = runGenerated(text, inputs, weights, LIMITS, fp8, pick);
    expect(kernels.filter((k) => k.kernel.wg === 256).length).toBeGreaterThanOrEqual(3); // two expert GEMVs and the dense one
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(1e-5);
  });

  it.each([true, false])("the activation quantize's 16-code form (a lane's codes in one 16-byte store), through the token gather %s: codes and scales bit for bit the interpreter's (their dequantized values compared), small values' subnormal codes and an all-zero row included", (gathered) => {
    const [T, H, K] = [3, 512, 2];
    const R = gathered ? T * K : T;
    const text = `module @q {
  func @q(%x: bf16[${T}, ${H}], %order: i32[${T * K}]) -> (d: f32[${R}, ${H}]) {${gathered ? `\n    %p = moe_permute(%x, %order) {k = ${K}} : bf16[${R}, ${H}]` : ""}
    %q = quantize(${gathered ? "%p" : "%x"}) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[${R}, ${H}] scale(f32, block(1, 128))
    %d = dequantize(%q) {to = f32} : f32[${R}, ${H}]
    return %d
  }
}`;
    const r = rng(3);
    // Row 1 all zeros; every seventh element a thousand times smaller (codes below e4m3's normal range).
    const x = Tensor.from("bf16", [T, H], Array.from({ length: T * H }, (_, i) => (Math.floor(i / H) === 1 ? 0 : (2 * r() - 1) * (i % 7 === 0 ? 1e-3 : 1))));
    const { got, want } = runGenerated(text, { x, order: Tensor.from("i32", [T * K], [5, 0, 3, 1, 4, 2]) }, {}, LIMITS)["d"]!;
    expect(kernels[0]!.template).toBe("quantize");
    expect(JSON.stringify(kernels[0]!.kernel.body)).toContain('"store16"');
    expect([...got]).toEqual([...want]);
    expect(got.filter((v) => v !== 0 && Math.abs(v) < 1e-3).length).toBeGreaterThan(10);
  });

  it.each(["dynamic", "none"])("an FP8 SwiGLU (gate and up of one input, silu(gate) * up) as one GEMV launch, activations %s: the interpreter's values", (activations) => {
    // 3 rows, K of two 128-wide slices, 96 columns (12 workgroups of 8 warps).
    const [R, H, F] = [3, 256, 96];
    const text = `module @s {
  func @s(%x: bf16[${R}, ${H}]) weights(@gate: bf16[${F}, ${H}], @up: bf16[${F}, ${H}]) -> (y: bf16[${R}, ${F}]) {
    %g = linear(%x, @gate) : bf16[${R}, ${F}]
    %a = silu(%g) : bf16[${R}, ${F}]
    %u = linear(%x, @up) : bf16[${R}, ${F}]
    %y = mul(%a, %u) : bf16[${R}, ${F}]
    return %y
  }
}`;
    const r = rng(45);
    const fp8 = `fp8{format=e4m3,weight-block=128,activations=${activations},weights=quantize,projections=gate,up}`;
    const { got, want } = runGenerated(text, { x: random("bf16", r, [R, H]) }, { gate: random("bf16", r, [F, H], 0.2), up: random("bf16", r, [F, H], 0.2) }, LIMITS, fp8, (ops) => (ops.some((o) => o.opName === "linear") ? "gemv_fp8" : undefined))["y"]!;
    // One GEMV kernel reads both weights (the quantizes of the weights and of x are kernels of their own).
    expect(kernels.map((k) => k.template).filter((t) => t !== "quantize")).toEqual(["gemv_fp8"]);
    // Its two weights' codes (quantized by kernels here, so not weight slots) prefetched whole before it waits.
    expect(prefetchedWhole().filter((p) => p.startsWith(`gemv_fp8#`)).length).toBe(2);
    expect(relError(got, want)).toBeLessThan(1e-5);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.01);
  });
});
