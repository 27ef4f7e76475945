/**
 * Decode's launch merges in the kir simulator, against the interpreter and against the same steps
 * as separate launches: prologues (an RMSNorm inside the dense or FP8 GEMV that alone reads it:
 * backends/cuda/norm-prologue.ts; an activation quantize inside the FP8 GEMV: quant-prologue.ts),
 * tails (launch-tails.ts) and phases (launch-phases.ts). The kernels themselves: simulate.test.ts.
 */
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { rng } from "../support/fd";
import type { GenLimits } from "../../backends/kernels/gen";
import { LIMITS, kernels, runGenerated, expertModule, random, relError, prefetchedWhole, routerOps } from "../support/kir-run";
import { tailCount } from "../../backends/kernels/kir-merge";
import { serialPhase } from "../../backends/cuda/launch-phases";

/** An RMSNorm of T rows of I and the linear of O columns that alone reads it, in bf16. */
const normLinear = (T: number, I: number, O: number) => `module @n {
  func @n(%x: bf16[${T}, ${I}]) weights(@g: bf16[${I}], @w: bf16[${O}, ${I}]) -> (y: bf16[${T}, ${O}]) {
    %h = rms_norm(%x, @g) {eps = 1e-6} : bf16[${T}, ${I}]
    %y = linear(%h, @w) : bf16[${T}, ${O}]
    return %y
  }
}`;

/** normLinear's inputs and weights from a seed. */
const normLinearData = (T: number, I: number, O: number, seed: number) => {
  const r = rng(seed);
  return { inputs: { x: random("bf16", r, [T, I], 3) }, weights: { g: random("bf16", r, [I], 1), w: random("bf16", r, [O, I], 0.1) } };
};

describe("decode's launch merges in the kir simulator", () => {
  it.each([
    // One row, K 2048 (eight steps a warp) and 96 columns: too few tiles, so the tile's warps split K.
    [1, 2048, 96],
    // Two rows of K 320 (a partial last step) and 200 columns (the last tile's columns clamped).
    [2, 320, 200],
  ])("LINGC_NORM_PROLOGUE: an RMSNorm whose result only the dense GEMV reads runs inside it (each warp the row's 1 / rms, the elements normalized as read): %i rows, K %i, %i columns; the interpreter's values, the norm step not run", (T, I, O) => {
    const text = normLinear(T, I, O);
    const { inputs, weights } = normLinearData(T, I, O, 31);
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "linear") ? "linear_gemv" : undefined);
    const apart = runGenerated(text, inputs, weights, LIMITS, "", pick);
    expect(kernels.length).toBe(2);
    const merged = runGenerated(text, inputs, weights, { ...LIMITS, normPrologue: true }, "", pick, true);
    expect(kernels.map((k) => k.template)).toEqual(["linear_gemv"]);
    // Its weight prefetched whole before it waits (while its warps sum the row's squares), as bf16 GEMVs by default are not.
    expect(prefetchedWhole().filter((p) => p.startsWith("linear_gemv#")).length).toBe(1);
    const { got, want } = merged["y"]!;
    // bf16 results: the row's sum of squares in another order can move a normalized element by a
    // bf16 step, and with it an output by about one of its own.
    expect(relError(got, want)).toBeLessThan(2 ** -7);
    expect(relError(got, apart["y"]!.got)).toBeLessThan(2 ** -7);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.1);
  });

  it.each([
    // Decode: one row, K 512 (rows of 512 codes: four columns a warp), 100 columns (the last tile's clamped).
    [1, 512, 100],
    // Three rows, K 1024: each row's 1 / rms by the workgroup, then its codes staged.
    [3, 1024, 64],
  ])("LINGC_NORM_PROLOGUE, FP8: an RMSNorm and the activation quantize of its rows (one step) run inside the FP8 GEMV that alone reads the codes (its workgroup normalizes and quantizes its rows into workgroup memory): %i rows, K %i, %i columns; the interpreter's values", (T, I, O) => {
    const text = normLinear(T, I, O);
    const { inputs, weights } = normLinearData(T, I, O, 37);
    const fp8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,projections=w}";
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "linear") ? "gemv_fp8" : undefined);
    const apart = runGenerated(text, inputs, weights, LIMITS, fp8, pick);
    // The weight's quantize (at load), the norm with its rows' quantize, the GEMV.
    expect(kernels.map((k) => k.template)).toEqual(["norm_registers", "quantize", "gemv_fp8"]);
    const merged = runGenerated(text, inputs, weights, { ...LIMITS, normPrologue: true }, fp8, pick, true);
    expect(kernels.map((k) => k.template)).toEqual(["quantize", "gemv_fp8"]);
    expect(kernels[1]!.kernel.shared.some((a) => a.name.startsWith("inv_"))).toBe(true);
    const { got, want } = merged["y"]!;
    expect(relError(got, want)).toBeLessThan(1e-5);
    // (Bit for bit the separate kernels' here: the row's sum of squares came out the same in both orders.)
    expect([...got]).toEqual([...apart["y"]!.got]);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.1);
  });

  /** The gate's GEMV, the router and the MoE dispatch (T tokens, K I, E experts in G groups), run apart (each its own launch), with the picks that choose their generated kernels. */
  const gateRouterDispatch = (T: number, I: number, E: number, G: number, TG: number, GST: number, K2: number, seed: number) => {
    const text = `module @r {
  func @r(%x: bf16[${T}, ${I}]) weights(@gate: bf16[${E}, ${I}], @bias: f32[${E}]) -> (idx: i32[${T}, ${K2}], w: f32[${T}, ${K2}], order: i32[${T * K2}], offsets: i32[${E + 1}], rows: i32[${T * K2}]) {
    %x32 = linear(%x, @gate) {out = f32} : f32[${T}, ${E}]
${routerOps("%x32", T, E, G, TG, GST, K2)}
    %flat = reshape(%idx) : i32[${T * K2}]
    %order, %offsets, %rows = moe_dispatch(%flat) {num_experts = ${E}} : i32[${T * K2}], i32[${E + 1}], i32[${T * K2}]
    return %idx, %n, %order, %offsets, %rows
  }
}`;
    const r = rng(seed);
    const inputs = { x: random("bf16", r, [T, I]) };
    const weights = { gate: random("bf16", r, [E, I], 0.2), bias: random("f32", r, [E], 0.05) };
    const pick = (ops: readonly { opName: string }[]) =>
      ops.some((o) => o.opName === "group_topk") ? "router_warp" : ops.some((o) => o.opName === "linear") ? "linear_gemv" : ops.some((o) => o.opName === "moe_dispatch") ? "dispatch" : undefined;
    const apart = runGenerated(text, inputs, weights, LIMITS, "", pick);
    expect(kernels.map((k) => k.template)).toEqual(["linear_gemv", "router_warp", "dispatch"]);
    /** The same steps with tails (launch-tails.ts) under these limits: every output as apart, the indices and dispatch exactly the interpreter's. */
    const withTails = (limits: GenLimits, check: () => void) => {
      const merged = runGenerated(text, inputs, weights, limits, "", pick, false, false, true);
      check();
      for (const name of ["idx", "w", "order", "offsets", "rows"]) expect([...merged[name]!.got], name).toEqual([...apart[name]!.got]);
      for (const name of ["idx", "order", "offsets", "rows"]) expect([...merged[name]!.got], name).toEqual([...merged[name]!.want]);
      expect(relError(merged["w"]!.got, merged["w"]!.want)).toBeLessThan(1e-5);
    };
    return withTails;
  };

  it.each([
    // Ling-mini's gate and router at decode batch 1 (K split among the GEMV's warps: a barrier; the router in its first 128 threads).
    [1, 2048, 256, 8, 4, 2, 8],
    // 5 tokens: the router's two workgroups run in turn by the GEMV's last workgroup; 64 experts of 4 groups.
    [5, 512, 64, 4, 2, 3, 6],
  ])("the router and the MoE dispatch after the gate's GEMV in one launch (launch-tails.ts: the GEMV's last workgroup runs them in turn): %i tokens, K %i, %i experts; the same values as three launches", (T, I, E, G, TG, GST, K2) => {
    gateRouterDispatch(T, I, E, G, TG, GST, K2, 23)(LIMITS, () => {
      // The dispatch (a thread an expert, barriers) joins only where its workgroup is the launch's: 256 experts, not 64.
      expect(kernels.length).toBe(E === 256 ? 1 : 2);
      expect(kernels[0]!.kernel.uniforms).toContain(tailCount(E === 256 ? 2 : 1));
    });
  });

  it.each([
    // Ling-mini's router at decode batch 1: one workgroup, which runs the dispatch as it ends.
    [1, 256, 8, 4, 2, 8],
    // 6 tokens: the router's two workgroups (four tokens each), the last to finish runs the dispatch.
    [6, 256, 8, 4, 2, 8],
  ])("LINGC_TAIL_LAUNCH=router: the MoE dispatch run by the router's last workgroup, the gate's GEMV before them not merged: %i tokens, %i experts; the same values as separate launches", (T, E, G, TG, GST, K2) => {
    gateRouterDispatch(T, 256, E, G, TG, GST, K2, 29)({ ...LIMITS, tailLaunches: "router" }, () => {
      // The GEMV alone, then the router with the dispatch as its tail.
      expect(kernels.map((k) => k.template ?? k.kernel.name)).toEqual(["linear_gemv", "k_tail"]);
      expect(kernels[1]!.kernel.uniforms).toContain(tailCount(1));
    });
  });

  it.each([
    // Ling-mini's shapes at decode batch 1, narrowed: 256 experts (8 groups), top-8, K 256, expert width 64.
    [3, 256, 256, 8, 4, 2, 8, 64],
    // 64 experts of 4 groups, top-6; on one workgroup (every phase's workgroups in turn).
    [1, 512, 64, 4, 2, 3, 6, 32],
  ])("a decode MoE block as the phases of one launch on %i workgroups (launch-phases.ts: a grid barrier between steps, the residual norm, router, dispatch and combine in a barrier's last arrival): K %i, %i experts, the output projection, residual norm, gate, router, dispatch, experts and combine bitwise as their own launches", (grid, I, E, G, TG, GST, K2, F) => {
    const T = 1;
    const text = `module @p {
  func @p(%a: bf16[${T}, ${I}], %h: bf16[${T}, ${I}]) weights(@o: bf16[${I}, ${I}], @nw: bf16[${I}], @gate: bf16[${E}, ${I}], @bias: f32[${E}], @wg: bf16[${E}, ${F}, ${I}], @wu: bf16[${E}, ${F}, ${I}], @wd: bf16[${E}, ${I}, ${F}]) -> (y: bf16[${T}, ${I}], r: bf16[${T}, ${I}]) {
    %ao = linear(%a, @o) : bf16[${T}, ${I}]
    %r = add(%h, %ao) : bf16[${T}, ${I}]
    %x = rms_norm(%r, @nw) {eps = 1e-6} : bf16[${T}, ${I}]
    %x32 = linear(%x, @gate) {out = f32} : f32[${T}, ${E}]
${routerOps("%x32", T, E, G, TG, GST, K2)}
    %wts = reshape(%n) : f32[${T}, ${K2}]
    %flat = reshape(%idx) : i32[${T * K2}]
    %order, %offsets, %rows = moe_dispatch(%flat) {num_experts = ${E}} : i32[${T * K2}], i32[${E + 1}], i32[${T * K2}]
    %p = moe_permute(%x, %order) {k = ${K2}} : bf16[${T * K2}, ${I}]
    %eg = grouped_linear(%p, @wg, %offsets) : bf16[${T * K2}, ${F}]
    %eu = grouped_linear(%p, @wu, %offsets) : bf16[${T * K2}, ${F}]
    %si = silu(%eg) : bf16[${T * K2}, ${F}]
    %hr = mul(%si, %eu) : bf16[${T * K2}, ${F}]
    %yr = grouped_linear(%hr, @wd, %offsets) : bf16[${T * K2}, ${I}]
    %y = moe_combine(%yr, %rows, %wts) : bf16[${T}, ${I}]
    return %y, %r
  }
}`;
    const r = rng(29);
    const inputs = { a: random("bf16", r, [T, I]), h: random("bf16", r, [T, I]) };
    const weights = {
      o: random("bf16", r, [I, I], 0.1), nw: random("bf16", r, [I], 1), gate: random("bf16", r, [E, I], 0.2), bias: random("f32", r, [E], 0.05),
      wg: random("bf16", r, [E, F, I], 0.1), wu: random("bf16", r, [E, F, I], 0.1), wd: random("bf16", r, [E, I, F], 0.1),
    };
    // The CUDA dispatch's choices at one token (each step's generated kernel).
    const pick = (ops: readonly { opName: string }[]) =>
      ops.some((o) => o.opName === "group_topk") ? "router_warp" : ops.some((o) => o.opName === "grouped_linear") ? "grouped_gemv_rows" : ops.some((o) => o.opName === "linear") ? "linear_gemv" : ops.some((o) => o.opName === "moe_dispatch") ? "dispatch" : undefined;
    const apart = runGenerated(text, inputs, weights, LIMITS, "", pick);
    const launches = kernels.length;
    const apartKernels = [...kernels];
    const templates = apartKernels.map((k) => k.template);
    expect(launches).toBeGreaterThanOrEqual(6);
    const merged = runGenerated(text, inputs, weights, LIMITS, "", pick, false, false, false, grid);
    // One launch: every step a phase, a barrier after each but the serial ones (one workgroup's work
    // of a tail's kind, run by the barrier's last arrival before it releases the rest, so that its
    // release is the next phase's barrier): 4 barriers, not 7.
    expect(kernels.length).toBe(1);
    const serial = apartKernels.map((k, j) => j > 0 && serialPhase(k));
    // (The combine too: at these widths one workgroup's work.)
    expect(templates.filter((t, j) => serial[j])).toEqual(["norm_registers", "router_warp", "dispatch", "moe_combine"]);
    const syncs = kernels[0]!.kernel.body.filter((s) => s.k === "gridSync");
    expect(syncs.map((s) => (s.k === "gridSync" && s.last ? s.last.length : 0))).toEqual([1, 2, 0, 1]);
    for (const name of ["y", "r"]) expect([...merged[name]!.got], name).toEqual([...apart[name]!.got]);
    expect(relError(merged["y"]!.got, merged["y"]!.want)).toBeLessThan(2 ** -6);
    expect(Math.max(...merged["y"]!.got.map(Math.abs))).toBeGreaterThan(0.01);
  });

  it.each([
    // K of 512 (one round of the 16-code form) for the dense projection and the down projection: every GEMV stages its rows' codes.
    [512, 3],
    // Hidden 2560: the dense GEMV's 16 rows of codes would pass the staged form's workgroup memory, so its warps quantize as they read.
    [2560, 2],
  ])("a quantize whose codes only an FP8 GEMV reads runs as the GEMV's prologue (LINGC_QUANT_PROLOGUE): the dense GEMV and the routed experts' SwiGLU (through the token gather) and down GEMVs quantize their rows (hidden %i: %i of them once a workgroup into workgroup memory), bit for bit the separate quantizes' results", (H, stagedGemvs) => {
    const [T, F, E, K, O] = [1, 512, 2, 2, 64];
    const text = expertModule("bf16", [T, H, F, E, K], O);
    const r = rng(46);
    const t = (shape: number[], scale = 1) => random("bf16", r, shape, scale);
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], [1, 0]), wts: Tensor.from("f32", [T, K], [0.25, 0.75]) };
    const weights = { gate: t([E, F, H], 0.1), up: t([E, F, H], 0.1), down: t([E, H, F], 0.1), proj: t([O, H], 0.1) };
    const fp8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,projections=gate,up,down,proj}";
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "grouped_linear") ? "grouped_gemv_fp8" : ops.some((o) => o.opName === "linear") ? "gemv_fp8" : undefined);
    const apart = runGenerated(text, inputs, weights, LIMITS, fp8, pick);
    const quantizes = () => kernels.filter((k) => k.template === "quantize").length;
    // The four weights' (at load), the gathered rows', the hidden rows' and the projection input's.
    expect(quantizes()).toBe(7);
    // Merged: the gathered rows' (into the SwiGLU experts' GEMV, through the gather), the hidden rows'
    // and the projection input's; the weights' stay.
    const merged = runGenerated(text, inputs, weights, LIMITS, fp8, pick, true);
    expect(quantizes()).toBe(4);
    expect(kernels.filter((k) => k.kernel.shared.some((a) => a.name.startsWith("xq_"))).length).toBe(stagedGemvs);
    for (const [name, { got, want }] of Object.entries(merged)) {
      expect(relError(got, want), name).toBeLessThan(1e-5);
      expect(Math.max(...got.map(Math.abs)), name).toBeGreaterThan(0.01);
      expect([...got], name).toEqual([...apart[name]!.got]);
    }
  });
});
