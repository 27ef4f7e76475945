/**
 * CUDA tile programs run on the CPU by the kir simulator (backends/kernels/simulate.ts), against the
 * interpreter: their numbers are checked where there is no GPU. The flash attention tile program
 * (generated; CUDA's default prefill attention, flash_tile) on causal GQA with a partial query tile and on a
 * transposed, non-causal result; qk_norm_rope's warp form; the pointwise runs; the grouped expert
 * GEMM on bf16 and e4m3 mma.sync and on warpgroup MMAs (plain and warp-specialized; an uneven
 * routing: an expert with every token, one with none);
 * and the simulator itself on a warp reduction.
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { Tensor } from "../../ir/tensor";
import { encodeBits, decodeBits } from "../../ir/numerics";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";
import { buildSchedule, capacitySymbol, storageSlot } from "../../backends/schedule";
import { generateStep, type GeneratedKernel, type GenLimits } from "../../backends/kernels/gen";
import { COUNTER_SLOTS, COUNTERS_SLOT, SCRATCH_SLOT } from "../../backends/kernels/gen/context";
import { cudaGenLimits, cudaStorage } from "../../backends/cuda/gen-limits";
import { CUDA_SM90A } from "../../ir/target";
import { parseTile } from "../../ir/target/cuda";
import { simulate, type SimArray } from "../../backends/kernels/simulate";
import { KernelBuilder } from "../../backends/kernels/kir";
import * as K from "../../backends/kernels/kir";
import { rng } from "../support/fd";

const LIMITS: GenLimits = cudaGenLimits(CUDA_SM90A);

const ARRAYS = { f32: Float32Array, i32: Int32Array, bf16: Uint16Array, f8e4m3: Uint8Array } as const;

/** The kernels the last runGenerated generated, in order. */
const kernels: GeneratedKernel[] = [];

/**
 * A module whose every step is a generated kernel, fused for CUDA and run step by step in the
 * simulator (static shapes: a size left symbolic is refused as a missing uniform), and by the
 * interpreter: the outputs of both, by name.
 */
function runGenerated(
  text: string,
  inputs: Record<string, Tensor>,
  weights: Record<string, Tensor>,
  limits: GenLimits = LIMITS,
  before = "",
  /** The template a step runs with (the CUDA dispatch's choice for these sizes), where not the first that covers it. */
  pick: (ops: readonly { opName: string }[]) => string | undefined = () => undefined,
): Record<string, { got: Float32Array; want: Float32Array }> {
  kernels.length = 0;
  const m = parseModule(text, "m.lir");
  // Passes whose module is the reference too (the fp8 pass: the interpreter runs its quantization).
  if (before) runPasses(m, parsePipeline(before), {});
  const want = interpret(m, inputs, { get: (n: string) => weights[n]! });
  runPasses(m, parsePipeline("cse,dce,fusion{profile=cuda-sm90a}"), {});
  const s = buildSchedule(m);
  const arrays = new Map<number, SimArray>();
  // A KV cache grown in place (a slot with room along an axis): its buffer holds ROOM rows more than
  // its value along that axis, as the runtime's does (the capacity a fused append's kernel takes as
  // a uniform); `rowsOf` views a value of that storage as [outer, its rows, inner] of [outer, capacity, inner].
  const ROOM = 3;
  const capacity = (at: number) => {
    const slot = s.slots[at]!;
    return slot.roomAxis === undefined ? undefined : slot.type.shape[slot.roomAxis]!.value! + ROOM;
  };
  const layout = (at: number, shape: readonly { value?: number }[]) => {
    const axis = s.slots[at]!.roomAxis!;
    const dims = shape.map((d) => d.value!);
    return { outer: dims.slice(0, axis).reduce((a, b) => a * b, 1), rows: dims[axis]!, inner: dims.slice(axis + 1).reduce((a, b) => a * b, 1), cap: capacity(at)! };
  };
  /** Element i of a contiguous value of this shape, where it lies in its storage with room. */
  const placed = (at: number, shape: readonly { value?: number }[], i: number) => {
    if (capacity(at) === undefined) return i;
    const { rows, inner, cap } = layout(at, shape);
    const o = Math.floor(i / (rows * inner));
    return (o * cap + Math.floor(i / inner) % rows) * inner + (i % inner);
  };
  const storage = (id: number): SimArray => {
    const at = storageSlot(s, id);
    let a = arrays.get(at);
    if (!a) {
      const slot = s.slots[at]!;
      const elem = cudaStorage(slot.type.dtype);
      const cap = capacity(at);
      a = new ARRAYS[elem as keyof typeof ARRAYS](cap === undefined ? slot.type.numel().value! : (slot.type.numel().value! / slot.type.shape[slot.roomAxis!]!.value!) * cap);
      const data = slot.source === "input" ? inputs[slot.input!]!.data : slot.source === "weight" ? weights[slot.weight!]!.data : undefined;
      if (data) data.forEach((v, i) => (a![placed(at, slot.type.shape, i)] = elem === "bf16" ? encodeBits(v, "bf16") : v));
      arrays.set(at, a);
    }
    return a;
  };
  const uniforms = Object.fromEntries(s.slots.flatMap((sl) => (capacity(sl.id) === undefined ? [] : [[`n_${capacitySymbol(sl.id)}`, capacity(sl.id)!]])));
  for (const step of s.steps) {
    const g = generateStep(step, s, limits, "k", pick(step.ops));
    // A split computation's kernels run in turn, sharing the step's scratch (as the CUDA emitter binds it).
    const scratch = new Float32Array(g.scratch ?? 0);
    const counters = new Int32Array(COUNTER_SLOTS);
    for (let k: GeneratedKernel | undefined = g; k; k = k.then) {
      kernels.push(k);
      const buffers: Record<string, SimArray> = {};
      k.kernel.buffers.forEach((b, j) => (buffers[b.name] = k!.slots[j] === SCRATCH_SLOT ? scratch : k!.slots[j] === COUNTERS_SLOT ? counters : storage(k!.slots[j]!)));
      simulate(k.kernel, buffers, Object.fromEntries(k.kernel.uniforms.filter((u) => uniforms[u] !== undefined).map((u) => [u, uniforms[u]!])), Math.ceil(k.grid.dim.value! / k.grid.per));
    }
    // A kernel that counts its workgroups leaves the counters as it found them (zero).
    if (counters.some((x) => x !== 0)) throw new Error(`step ${step.kernel?.name ?? step.ops[0]!.opName}: counters left nonzero`);
  }
  return Object.fromEntries(
    s.outputs.map(({ name, slot }) => {
      const a = storage(slot);
      const at = storageSlot(s, slot);
      const shape = s.slots[slot]!.type.shape;
      const n = s.slots[slot]!.type.numel().value!;
      const bits = Array.from({ length: n }, (_, i) => a[placed(at, shape, i)]!);
      const got = a instanceof Uint16Array ? Float32Array.from(bits, (b) => decodeBits(b, "bf16")) : Float32Array.from(bits);
      return [name, { got, want: want[name]!.data as Float32Array }];
    }),
  );
}

/**
 * One bf16 attention of queries [B, heads, S, d] over keys and values [B, KV heads, T, d] (scale
 * 1/sqrt(d)), its result transposed to [B, S, heads x d] if asked, on random inputs; its group run
 * by the flash tile program.
 */
function runFlash([B, NH, S, D]: [number, number, number, number], [NKV, T]: [number, number], causal: boolean, transposed = false, template = "flash_tile", limits = LIMITS): { got: Float32Array; want: Float32Array } {
  const q = `bf16[${B}, ${NH}, ${S}, ${D}]`;
  const kv = `bf16[${B}, ${NKV}, ${T}, ${D}]`;
  const flat = `bf16[${B}, ${S}, ${NH * D}]`;
  const views = transposed
    ? `
    %t = transpose(%o) {perm = [0, 2, 1, 3]} : bf16[${B}, ${S}, ${NH}, ${D}]
    %r = reshape(%t) {shape = [${B}, ${S}, ${NH * D}]} : ${flat}`
    : "";
  const text = `module @att {
  func @att(%q: ${q}, %k: ${kv}, %v: ${kv}) -> (o: ${transposed ? flat : q}) {
    %o = attention(%q, %k, %v) {scale = ${1 / Math.sqrt(D)}, causal = ${causal}} : ${q}${views}
    return ${transposed ? "%r" : "%o"}
  }
}`;
  const r = rng(5);
  const inputs = { q: random("bf16", r, [B, NH, S, D]), k: random("bf16", r, [B, NKV, T, D]), v: random("bf16", r, [B, NKV, T, D]) };
  const outs = Object.values(runGenerated(text, inputs, {}, limits, "", (ops) => (ops.some((o) => o.opName === "attention") ? template : undefined)));
  expect(outs).toHaveLength(1);
  expect(kernels).toHaveLength(1); // the attention with its result's views: one kernel
  return outs[0]!;
}

/**
 * The routed experts as Ling runs them (dispatch, token gather, SwiGLU experts, down experts, the
 * weighted combine) in dtype dt; `proj` adds a dense linear of the input with that many outputs (z).
 */
function expertModule(dt: string, [T, H, F, E, K]: [number, number, number, number, number], proj?: number): string {
  const extra = proj === undefined ? { weight: "", result: "", op: "", ret: "" } : { weight: `, @proj: ${dt}[${proj}, ${H}]`, result: `, z: ${dt}[${T}, ${proj}]`, op: `\n    %z = linear(%x, @proj) : ${dt}[${T}, ${proj}]`, ret: ", %z" };
  return `module @e {
  func @e(%x: ${dt}[${T}, ${H}], %ids: i32[${T}, ${K}], %wts: f32[${T}, ${K}])
      weights(@gate: ${dt}[${E}, ${F}, ${H}], @up: ${dt}[${E}, ${F}, ${H}], @down: ${dt}[${E}, ${H}, ${F}]${extra.weight})
      -> (y: ${dt}[${T}, ${H}]${extra.result}) {
    %order, %offsets, %rows = moe_dispatch(%ids) {num_experts = ${E}} : i32[${T * K}], i32[${E + 1}], i32[${T * K}]
    %p = moe_permute(%x, %order) {k = ${K}} : ${dt}[${T * K}, ${H}]
    %g = grouped_linear(%p, @gate, %offsets) : ${dt}[${T * K}, ${F}]
    %u = grouped_linear(%p, @up, %offsets) : ${dt}[${T * K}, ${F}]
    %s = silu(%g) : ${dt}[${T * K}, ${F}]
    %hr = mul(%s, %u) : ${dt}[${T * K}, ${F}]
    %yr = grouped_linear(%hr, @down, %offsets) : ${dt}[${T * K}, ${H}]
    %y = moe_combine(%yr, %rows, %wts) : ${dt}[${T}, ${H}]${extra.op}
    return %y${extra.ret}
  }
}`;
}

/** Uniform random values in [-scale, scale) of a float dtype, from the generator r. */
function random(dt: "bf16" | "f32", r: () => number, shape: number[], scale = 1): Tensor {
  return Tensor.from(dt, shape, Array.from({ length: shape.reduce((a, b) => a * b) }, () => scale * (2 * r() - 1)));
}

/** max |got - want| over max |want|. */
function relError(got: Float32Array, want: Float32Array): number {
  let err = 0;
  let big = 0;
  want.forEach((w, i) => {
    err = Math.max(err, Math.abs(got[i]! - w));
    big = Math.max(big, Math.abs(w));
  });
  return err / big;
}

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

  it("flash attention: causal, 4 query heads on 2 KV heads, head dim 64, 150 queries (two query tiles of 128, the second partial; a warp's second 16-row tile)", () => {
    const { got, want } = runFlash([1, 4, 150, 64], [2, 150], true);
    // bf16 outputs: a sum in another order can round one bf16 step (2^-8 of a value) the other way;
    // the probabilities enter the P V products as bf16 (the interpreter keeps them f32).
    expect(relError(got, want)).toBeLessThan(1e-2);
    expect(relError(got, want)).toBeGreaterThan(0); // the simulator computed something of its own
  });

  it.each([
    // The register form (8 elements a lane): heads of 64 with a rotary half of 16; the value heads
    // start at head 6, so two heads a warp (16 lanes each, 8 of them holding nothing), 8 a block.
    [2, 3, 64, 16, 4, 2, 8],
    // Ling-mini's heads (128, rotary half 32, 16 query / 4 KV heads): two heads a warp, all lanes holding.
    [1, 5, 128, 32, 16, 4, 8],
    // The whole head rotated (half 64), 3 query / 1 KV heads: a head a warp, 16 lanes holding.
    [2, 3, 128, 64, 3, 1, 4],
    // Heads of 32 (4 lanes' worth), 2 query / 1 KV heads: a head a warp.
    [1, 4, 32, 8, 2, 1, 4],
    // The workgroup-memory form (a warp a head, four a block): heads of 80 (not whole 8-element
    // pieces) with a rotary half of 10, 3 query and 1 KV heads: 2 x 3 x 5 = 30 heads, the last block half idle.
    [2, 3, 80, 10, 3, 1, 4],
  ])("qk_norm_rope on CUDA (B %i, S %i, head dim %i, rotary half %i, %i query / %i KV heads; %i heads a block of 128 threads): equal to the interpreter", (B, S, D, H, NQ, NKV, per) => {
    const NH = NQ + 2 * NKV;
    const text = `module @m {
  func @m(%qkv: bf16[${B}, ${S}, ${NH * D}], %cos: bf16[${S}, ${H}], %sin: bf16[${S}, ${H}])
      weights(@q_norm.weight: bf16[${D}], @k_norm.weight: bf16[${D}])
      -> (q: bf16[${B}, ${NQ}, ${S}, ${D}], k: bf16[${B}, ${NKV}, ${S}, ${D}], v: bf16[${B}, ${NKV}, ${S}, ${D}]) {
    %heads = reshape(%qkv) {shape = [${B}, ${S}, ${NH}, ${D}]} : bf16[${B}, ${S}, ${NH}, ${D}]
    %0 = slice(%heads) {axis = 2, start = 0, end = ${NQ}} : bf16[${B}, ${S}, ${NQ}, ${D}]
    %q = transpose(%0) {perm = [0, 2, 1, 3]} : bf16[${B}, ${NQ}, ${S}, ${D}]
    %1 = slice(%heads) {axis = 2, start = ${NQ}, end = ${NQ + NKV}} : bf16[${B}, ${S}, ${NKV}, ${D}]
    %k = transpose(%1) {perm = [0, 2, 1, 3]} : bf16[${B}, ${NKV}, ${S}, ${D}]
    %2 = slice(%heads) {axis = 2, start = ${NQ + NKV}, end = ${NH}} : bf16[${B}, ${S}, ${NKV}, ${D}]
    %v = transpose(%2) {perm = [0, 2, 1, 3]} : bf16[${B}, ${NKV}, ${S}, ${D}]
    %qn = rms_norm(%q, @q_norm.weight) {eps = 1e-6} : bf16[${B}, ${NQ}, ${S}, ${D}]
    %kn = rms_norm(%k, @k_norm.weight) {eps = 1e-6} : bf16[${B}, ${NKV}, ${S}, ${D}]
    %qr = rope(%qn, %cos, %sin) : bf16[${B}, ${NQ}, ${S}, ${D}]
    %kr = rope(%kn, %cos, %sin) : bf16[${B}, ${NKV}, ${S}, ${D}]
    return %qr, %kr, %v
  }
}`;
    const r = rng(9);
    const t = (shape: number[]) => random("bf16", r, shape);
    const angles = Array.from({ length: S * H }, (_, i) => Math.floor(i / H) / 10000 ** ((i % H) / H));
    const inputs = { qkv: t([B, S, NH * D]), cos: Tensor.from("bf16", [S, H], angles.map(Math.cos)), sin: Tensor.from("bf16", [S, H], angles.map(Math.sin)) };
    const weights = { "q_norm.weight": t([D]), "k_norm.weight": t([D]) };
    const outs = runGenerated(text, inputs, weights);
    expect(kernels.map((k) => [k.kernel.wg, k.grid.per, k.template])).toEqual([[128, per, H % 8 === 0 ? "qk_norm_rope_registers" : "qk_norm_rope"]]); // one kernel
    expect(Object.keys(outs).sort()).toEqual(["k", "q", "v"]);
    // The same roundings in the same order as the interpreter; the norm's sum of squares in another
    // order (shuffles): within a bf16 step of the largest value.
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(2 ** -7);
    expect(relError(outs["v"]!.got, outs["v"]!.want)).toBe(0); // the value heads pass through
  });

  it("pointwise runs of four elements a thread (CUDA's form): the MoE combine with its residual adds as epilogue", () => {
    // 2 x 3 tokens, 2 experts each, rows of 12 (three runs); the rows in a scrambled order.
    const [B, S, H, K] = [2, 3, 12, 2];
    const T = B * S;
    const text = `module @m {
  func @m(%y: bf16[${T * K}, ${H}], %rows: i32[${T * K}], %w: f32[${T}, ${K}], %shared: bf16[${B}, ${S}, ${H}], %h: bf16[${B}, ${S}, ${H}]) -> (out: bf16[${B}, ${S}, ${H}]) {
    %c = moe_combine(%y, %rows, %w) : bf16[${T}, ${H}]
    %r = reshape(%c) {shape = [${B}, ${S}, ${H}]} : bf16[${B}, ${S}, ${H}]
    %a = add(%r, %shared) : bf16[${B}, ${S}, ${H}]
    %out = add(%h, %a) : bf16[${B}, ${S}, ${H}]
    return %out
  }
}`;
    const r = rng(3);
    const t = (shape: number[]) => random("bf16", r, shape);
    const rows = Array.from({ length: T * K }, (_, i) => (i * 5 + 3) % (T * K));
    const inputs = { y: t([T * K, H]), rows: Tensor.from("i32", [T * K], rows), w: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())), shared: t([B, S, H]), h: t([B, S, H]) };
    const { got, want } = runGenerated(text, inputs, {})["out"]!;
    expect(kernels.map((k) => [k.kernel.wg, k.grid.per])).toEqual([[64, 256]]); // one kernel, 4 elements a thread
    expect(relError(got, want)).toBe(0); // the interpreter's roundings, in its order
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
  const bf16Experts = (tile: string, H = 32) => {
    const [T, F, E, K] = [40, 40, 6, 2];
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

  it("the warp-specialized warpgroup-MMA expert GEMM (wgmma-ws,128,256,2,2: a producer warpgroup, mbarriers, two tiles a workgroup, stage buffers reused within and across them)", () => {
    // Hidden 160: the SwiGLU experts' K is three 64-wide stages (the last partial), so each of the
    // two buffers is used three times by a workgroup's two tiles; five experts' tiles, the last
    // workgroup's second tile idle.
    const { got, want } = bf16Experts("wgmma-ws,128,256,2,2", 160);
    expect(kernels.some((k) => JSON.stringify(k.kernel.body).includes('"k":"mbarWait"'))).toBe(true);
    expect(relError(got, want)).toBeLessThan(2 ** -6);
  });

  /** Routed FP8 experts (W8A8, activations quantized per token) of [T, H, F, E, K] on the simulator and the interpreter. */
  const fp8Experts = (shape: [number, number, number, number, number], seed: number, limits: GenLimits) => {
    const [T, H, F, E, K] = shape;
    const r = rng(seed);
    const t = (dims: number[], scale = 1) => random("f32", r, dims, scale);
    const ids = Array.from({ length: T }, (_, i) => [0, 1 + (i % 4)]).flat();
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], ids), wts: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())) };
    const weights = { gate: t([E, F, H], 0.1), up: t([E, F, H], 0.1), down: t([E, H, F], 0.1) };
    const fp8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,projections=gate,up,down}";
    return runGenerated(expertModule("f32", shape), inputs, weights, limits, fp8)["y"]!;
  };

  it("the FP8 grouped expert GEMM on warpgroup MMAs (e4m3, the profile's tile; the simulator sums each 128-wide slice exactly, where Hopper keeps about 14 bits) with the activations quantized per token", () => {
    expect(LIMITS.gemmTiles!["f8e4m3fn"]!.wgmma).toBe(true);
    const { got, want } = fp8Experts([40, 128, 128, 6, 2], 33, LIMITS);
    expect(kernels.filter((k) => JSON.stringify(k.kernel.body).includes('"ab":"e4m3"'))).toHaveLength(2);
    expect(relError(got, want)).toBeLessThan(1e-5);
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
  ])("the router a warp per token (router_warp: %i tokens, %i experts in %i groups, %i kept by top-%i sums, top-%i): indices exactly and weights as the interpreter's", (T, E, G, TG, GST, K2) => {
    const text = `module @r {
  func @r(%x: f32[${T}, ${E}]) weights(@bias: f32[${E}]) -> (idx: i32[${T}, ${K2}], w: f32[${T}, ${K2}]) {
    %s = sigmoid(%x) : f32[${T}, ${E}]
    %b = add(%s, @bias) : f32[${T}, ${E}]
    %idx = group_topk(%b) {k = ${K2}, groups = ${G}, topk_groups = ${TG}, group_score_topk = ${GST}} : i32[${T}, ${K2}]
    %g = take_along(%s, %idx) : f32[${T}, ${K2}]
    %sum = reduce_sum(%g) {axes = [-1], keepdims = true} : f32[${T}, 1]
    %eps = constant() {values = [1e-20], dtype = f32} : f32[]
    %d = add(%sum, %eps) : f32[${T}, 1]
    %n = div(%g, %d) : f32[${T}, ${K2}]
    %c = constant() {values = [2.5], dtype = f32} : f32[]
    %w = mul(%n, %c) : f32[${T}, ${K2}]
    return %idx, %w
  }
}`;
    const r = rng(19);
    const outs = runGenerated(text, { x: random("f32", r, [T, E], 3) }, { bias: random("f32", r, [E], 0.05) }, LIMITS, "", (ops) => (ops.some((o) => o.opName === "group_topk") ? "router_warp" : undefined));
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
    const outs = runGenerated(text, { x: t([1, 1, 264]) }, { w: t([40, 264], 0.2), g: t([72, 264], 0.2), u: t([72, 264], 0.2) }, LIMITS, "", (ops) => (ops.some((o) => o.opName === "linear") ? "linear_gemv" : undefined));
    expect(kernels.filter((k) => JSON.stringify(k.kernel.body).includes('"load16"')).length).toBe(2);
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
    const limits = workgroups === undefined ? LIMITS : { ...LIMITS, gemvWorkgroups: workgroups };
    const { got, want } = runGenerated(text, { x: random("f32", r, [1, I]) }, { w: random("f32", r, [O, I], 0.2) }, limits, "", (ops) => (ops.some((o) => o.opName === "linear") ? "linear_gemv" : undefined))["y"]!;
    const [k] = kernels;
    expect(JSON.stringify(k!.kernel.body)).toContain('"bitsF32"');
    expect(k!.kernel.shared.length).toBe(split > 1 ? 1 : 0);
    expect(relError(got, want)).toBeLessThan(1e-5);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.05);
  });

  it.each([
    // A row of 256 pieces: a piece a thread of 256.
    [3, 2048, true],
    // 25 pieces: 32 threads, 7 of them past the row.
    [2, 200, false],
    // 515 pieces: 256 threads, three pieces each, the third only in 3 threads.
    [2, 4120, true],
  ])("RMSNorm of bf16 rows in registers on CUDA (norm_registers: 8 elements a thread, 16-byte loads and stores), %i rows of %i, residual add %s: against the interpreter", (R, D, residual) => {
    const row = `bf16[${R}, ${D}]`;
    const text = `module @n {
  func @n(%h: ${row}, %a: ${row}) weights(@w: bf16[${D}]) -> (${residual ? "h1: " + row + ", " : ""}y: ${row}) {
    ${residual ? `%h1 = add(%h, %a) : ${row}
    %y = rms_norm(%h1, @w) {eps = 1e-6} : ${row}
    return %h1, %y` : `%y = rms_norm(%h, @w) {eps = 1e-6} : ${row}
    return %y`}
  }
}`;
    const r = rng(D);
    const outs = runGenerated(text, { h: random("bf16", r, [R, D]), a: random("bf16", r, [R, D]) }, { w: random("bf16", r, [D]) });
    expect(kernels.map((k) => k.template)).toEqual(["norm_registers"]);
    const body = JSON.stringify(kernels[0]!.kernel.body);
    expect(body).toContain('"k":"store16"');
    // Each of a thread's pieces: its operands' 16 bytes and the weight's (no element read by itself).
    expect(body.match(/"k":"load16"/g)?.length).toBe(Math.ceil(D / 8 / 256) * (residual ? 3 : 2));
    // The same roundings as the interpreter's; the sum of squares in another order.
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(2 ** -7);
    if (residual) expect(relError(outs["h1"]!.got, outs["h1"]!.want)).toBe(0);
  });

  it("the embedding lookup of a bf16 table (embedding16: a row's 8-element pieces copied in 16-byte loads and stores) against the interpreter, bitwise", () => {
    const text = `module @e {
  func @e(%ids: i64[2, 3]) weights(@table: bf16[50, 24]) -> (h: bf16[2, 3, 24]) {
    %h = embedding(@table, %ids) : bf16[2, 3, 24]
    return %h
  }
}`;
    const r = rng(50);
    const { got, want } = runGenerated(text, { ids: Tensor.from("i64", [2, 3], [49, 0, 7, 7, 31, 2]) }, { table: random("bf16", r, [50, 24]) })["h"]!;
    expect(kernels.map((k) => [k.template, k.grid.per])).toEqual([["embedding16", 512]]);
    expect(relError(got, want)).toBe(0);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.1);
  });

  it("qk_norm_rope's register form with the KV cache appends fused (decode): the new key and value rows written past the cache's rows, equal to the interpreter", () => {
    const [B, S, P, D, H, NQ, NKV] = [2, 1, 5, 64, 16, 4, 2];
    const NH = NQ + 2 * NKV;
    const kv = (rows: number) => `bf16[${B}, ${NKV}, ${rows}, ${D}]`;
    const text = `module @m {
  func @m(%qkv: bf16[${B}, ${S}, ${NH * D}], %cos: bf16[${S}, ${H}], %sin: bf16[${S}, ${H}], %past_key: ${kv(P)}, %past_value: ${kv(P)})
      weights(@q_norm.weight: bf16[${D}], @k_norm.weight: bf16[${D}])
      -> (q: bf16[${B}, ${NQ}, ${S}, ${D}], key: ${kv(P + S)}, value: ${kv(P + S)}) {
    %heads = reshape(%qkv) {shape = [${B}, ${S}, ${NH}, ${D}]} : bf16[${B}, ${S}, ${NH}, ${D}]
    %0 = slice(%heads) {axis = 2, start = 0, end = ${NQ}} : bf16[${B}, ${S}, ${NQ}, ${D}]
    %q = transpose(%0) {perm = [0, 2, 1, 3]} : bf16[${B}, ${NQ}, ${S}, ${D}]
    %1 = slice(%heads) {axis = 2, start = ${NQ}, end = ${NQ + NKV}} : bf16[${B}, ${S}, ${NKV}, ${D}]
    %k = transpose(%1) {perm = [0, 2, 1, 3]} : ${kv(S)}
    %2 = slice(%heads) {axis = 2, start = ${NQ + NKV}, end = ${NH}} : bf16[${B}, ${S}, ${NKV}, ${D}]
    %v = transpose(%2) {perm = [0, 2, 1, 3]} : ${kv(S)}
    %qn = rms_norm(%q, @q_norm.weight) {eps = 1e-6} : bf16[${B}, ${NQ}, ${S}, ${D}]
    %kn = rms_norm(%k, @k_norm.weight) {eps = 1e-6} : ${kv(S)}
    %qr = rope(%qn, %cos, %sin) : bf16[${B}, ${NQ}, ${S}, ${D}]
    %kr = rope(%kn, %cos, %sin) : ${kv(S)}
    %key = cache_append(%past_key, %kr) {axis = 2} : ${kv(P + S)}
    %value = cache_append(%past_value, %v) {axis = 2} : ${kv(P + S)}
    return %qr, %key, %value
  }
}`;
    const r = rng(77);
    const t = (shape: number[]) => random("bf16", r, shape);
    const angles = Array.from({ length: S * H }, (_, i) => (3 + Math.floor(i / H)) / 10000 ** ((i % H) / H));
    const inputs = { qkv: t([B, S, NH * D]), cos: Tensor.from("bf16", [S, H], angles.map(Math.cos)), sin: Tensor.from("bf16", [S, H], angles.map(Math.sin)), past_key: t([B, NKV, P, D]), past_value: t([B, NKV, P, D]) };
    const outs = runGenerated(text, inputs, { "q_norm.weight": t([D]), "k_norm.weight": t([D]) });
    expect(kernels.map((k) => k.template)).toContain("qk_norm_rope_registers");
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(2 ** -7);
    expect(relError(outs["value"]!.got, outs["value"]!.want)).toBe(0); // the cache's rows and the new value rows, as they are
  });

  it("scalar ops on bf16 values of one shape (pointwise16: the combine's kernel without the combine, 8 elements a thread, 16-byte loads and stores) against the interpreter, bitwise", () => {
    const t = "bf16[3, 5, 40]";
    const text = `module @p {
  func @p(%x: ${t}, %a: ${t}, %b: ${t}) -> (h: ${t}, y: ${t}) {
    %h = add(%x, %a) : ${t}
    %s = silu(%b) : ${t}
    %y = mul(%h, %s) : ${t}
    return %h, %y
  }
}`;
    const r = rng(16);
    const outs = runGenerated(text, { x: random("bf16", r, [3, 5, 40]), a: random("bf16", r, [3, 5, 40]), b: random("bf16", r, [3, 5, 40]) }, {});
    // (However the fusion groups them: every kernel is this form.)
    expect(kernels.length).toBeGreaterThan(0);
    for (const k of kernels) expect([k.template, k.kernel.wg, k.grid.per]).toEqual(["pointwise16", 64, 512]);
    const body = JSON.stringify(kernels.map((k) => k.kernel.body));
    expect(body.match(/"k":"store16"/g)?.length).toBe(2); // h and y, each once
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBe(0);
    expect(Math.max(...outs["y"]!.got.map(Math.abs))).toBeGreaterThan(0.1);
  });

  it("the MoE combine with the shared expert and the residual added (moe_combine: 8 elements of a row a thread, 16-byte loads and stores) against the interpreter", () => {
    const [T, H, K] = [6, 48, 3];
    const text = `module @c {
  func @c(%y: bf16[${T * K}, ${H}], %rows: i32[${T * K}], %w: f32[${T}, ${K}], %s: bf16[2, 3, ${H}], %x: bf16[2, 3, ${H}]) -> (o: bf16[2, 3, ${H}]) {
    %m = moe_combine(%y, %rows, %w) : bf16[${T}, ${H}]
    %r = reshape(%m) {shape = [2, 3, ${H}]} : bf16[2, 3, ${H}]
    %a = add(%r, %s) : bf16[2, 3, ${H}]
    %o = add(%x, %a) : bf16[2, 3, ${H}]
    return %o
  }
}`;
    const r = rng(69);
    const rows = Array.from({ length: T * K }, (_, j) => (j * 7) % (T * K));
    const inputs = { y: random("bf16", r, [T * K, H]), rows: Tensor.from("i32", [T * K], rows), w: random("f32", r, [T, K]), s: random("bf16", r, [2, 3, H]), x: random("bf16", r, [2, 3, H]) };
    const { got, want } = runGenerated(text, inputs, {}, LIMITS, "")["o"]!;
    expect(kernels).toHaveLength(1);
    const body = JSON.stringify(kernels[0]!.kernel.body);
    expect(body).toContain('"k":"store16"');
    expect(body.match(/"k":"load16"/g)?.length).toBe(3); // an expert row a step, the shared expert's and the residual's
    expect(relError(got, want)).toBeLessThan(2 ** -7);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.5);
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

  it("decode attention's generated split form on CUDA (attention_split, the default up to 64 query rows): the keys in 16 workgroups a query row, then the merge kernel through the step's scratch, GQA, against the interpreter", () => {
    // 2 x 4 query rows of one position (decode), 2 KV heads, 40 cached keys (splits of 3: the last short, two empty).
    const [B, NH, NKV, T, D] = [2, 4, 2, 40, 64];
    const text = `module @a {
  func @a(%q: bf16[${B}, ${NH}, 1, ${D}], %k: bf16[${B}, ${NKV}, ${T}, ${D}], %v: bf16[${B}, ${NKV}, ${T}, ${D}]) -> (o: bf16[${B}, ${NH}, 1, ${D}]) {
    %o = attention(%q, %k, %v) {scale = 0.125, causal = true} : bf16[${B}, ${NH}, 1, ${D}]
    return %o
  }
}`;
    const r = rng(77);
    const inputs = { q: random("bf16", r, [B, NH, 1, D]), k: random("bf16", r, [B, NKV, T, D]), v: random("bf16", r, [B, NKV, T, D]) };
    const { got, want } = runGenerated(text, inputs, {}, LIMITS, "", (ops) => (ops.some((o) => o.opName === "attention") ? "attention_split" : undefined))["o"]!;
    expect(kernels.length).toBe(2); // the split kernel and its merge
    expect(kernels[0]!.scratch).toBeGreaterThan(0);
    expect(relError(got, want)).toBeLessThan(1e-2);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.05);
  });

  it.each([
    // 8 query heads over 2 KV heads (4 a group), 40 cached keys: 32 splits of 2 keys, the last 12 empty; head 64: four keys a warp step.
    ["decode_attention", 1, 8, 2, 1, 40, 64, "kernel", "key"],
    ["decode_attention", 1, 8, 2, 1, 40, 64, "last", "chunk"],
    // 2 query positions (a drafted step: the second sees one key more), 2 KV heads of 3 query heads, head 128: two keys a warp step, 300 keys (10 a split, a partial unrolled group).
    ["decode_attention", 1, 6, 2, 2, 300, 128, "kernel", "key"],
    ["decode_attention", 1, 6, 2, 2, 300, 128, "last", "key"],
    ["decode_attention", 1, 6, 2, 2, 300, 128, "kernel", "chunk"],
    // The form for more rows: 4 splits of 45 keys (several unrolled groups a warp, the last partial).
    ["decode_attention_wide", 2, 8, 2, 1, 180, 128, "kernel", "key"],
    ["decode_attention_wide", 2, 8, 2, 1, 180, 128, "last", "key"],
    ["decode_attention_wide", 2, 8, 2, 1, 180, 128, "kernel", "chunk"],
  ] as const)("decode attention's GQA form on CUDA (%s: B %i, heads %i over %i KV heads, %i positions, %i keys of %i): a KV head's query heads over key splits, merged by a merge kernel or by each item's last split (%s), the online softmax a key or a group of keys at a time (%s), against the interpreter", (form, B, NH, NKV, S, T, D, merge, softmax) => {
    const text = `module @a {
  func @a(%q: bf16[${B}, ${NH}, ${S}, ${D}], %k: bf16[${B}, ${NKV}, ${T}, ${D}], %v: bf16[${B}, ${NKV}, ${T}, ${D}]) -> (o: bf16[${B}, ${NH}, ${S}, ${D}]) {
    %o = attention(%q, %k, %v) {scale = ${1 / Math.sqrt(D)}, causal = true} : bf16[${B}, ${NH}, ${S}, ${D}]
    return %o
  }
}`;
    const r = rng(91);
    const inputs = { q: random("bf16", r, [B, NH, S, D], 2), k: random("bf16", r, [B, NKV, T, D], 2), v: random("bf16", r, [B, NKV, T, D]) };
    const limits = { ...LIMITS, mergeInLastSplit: merge === "last", decodeSoftmaxChunk: softmax === "chunk" };
    const { got, want } = runGenerated(text, inputs, {}, limits, "", (ops) => (ops.some((o) => o.opName === "attention") ? form : undefined))["o"]!;
    // "kernel": the splits, then the merge kernel; "last": one kernel, each item's last split merging
    // (counted with an atomic; the harness checks the counters are back at zero).
    expect(kernels.length).toBe(merge === "last" ? 1 : 2);
    expect(kernels[0]!.kernel.name).not.toMatch(/merge/);
    const body = JSON.stringify(kernels[0]!.kernel.body);
    expect(body).toContain('"load16"');
    expect(body.includes('"atomicAdd"') && body.includes('"fence"')).toBe(merge === "last");
    expect(relError(got, want)).toBeLessThan(1e-2);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.05);
  });

  it("decode's FP8 kernels (a warp per column): the by-row grouped expert GEMV and the dense GEMV, activations quantized per token", () => {
    // 2 tokens x 2 experts of 16: 4 rows, at most a quarter of the experts (the dispatch's GEMV case).
    const [T, H, F, E, K, O] = [2, 256, 128, 16, 2, 96];
    const text = expertModule("f32", [T, H, F, E, K], O);
    const r = rng(44);
    const t = (shape: number[], scale = 1) => random("f32", r, shape, scale);
    const inputs = { x: t([T, H]), ids: Tensor.from("i32", [T, K], [3, 9, 9, 15]), wts: Tensor.from("f32", [T, K], [0.25, 0.75, 0.5, 0.5]) };
    const weights = { gate: t([E, F, H], 0.1), up: t([E, F, H], 0.1), down: t([E, H, F], 0.1), proj: t([O, H], 0.1) };
    const fp8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,projections=gate,up,down,proj}";
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "grouped_linear") ? "grouped_gemv_fp8" : ops.length === 1 && ops[0]!.opName === "linear" ? "gemv_fp8" : undefined);
    const outs = runGenerated(text, inputs, weights, LIMITS, fp8, pick);
    expect(kernels.filter((k) => k.kernel.wg === 256).length).toBeGreaterThanOrEqual(3); // two expert GEMVs and the dense one
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(1e-5);
  });

  it("flash attention on warpgroup MMAs (flash_wgmma, the sm_90a default, pipelined: the next block's scores issued before this block's softmax, blocks two at a time): causal GQA, head dim 64, 150 queries (three tiles of 64, the last partial: 1, 2 and 3 key blocks, an odd count runs a block of masked keys more), the keys' last block partial", () => {
    const { got, want } = runFlash([1, 4, 150, 64], [2, 150], true, false, "flash_wgmma");
    expect(kernels[0]!.kernel.wg).toBe(128);
    expect(JSON.stringify(kernels[0]!.kernel.body)).toContain('"k":"wgmma"');
    expect(JSON.stringify(kernels[0]!.kernel.body)).toMatch(/"pair_\d+"/); // the loop over pairs of blocks
    expect(relError(got, want)).toBeLessThan(2 ** -7);
  });

  it("flash attention on warpgroup MMAs: fewer queries than keys (a chunk after a cached prefix), head dim 128, the result transposed; and not causal", () => {
    const causal = runFlash([1, 2, 70, 128], [1, 200], true, true, "flash_wgmma");
    expect(relError(causal.got, causal.want)).toBeLessThan(2 ** -7);
    const full = runFlash([2, 2, 40, 128], [2, 90], false, false, "flash_wgmma");
    expect(relError(full.got, full.want)).toBeLessThan(2 ** -7);
  });

  it("flash attention on warpgroup MMAs, not pipelined (LINGC_FLASH_WGMMA_PIPE=off: each product waited for at once, blocks one at a time): causal GQA over odd and even block counts, a chunk after a cached prefix transposed, and not causal", () => {
    const pipe = { ...LIMITS, flashPipelined: false };
    // 150 queries and keys: tiles of 1, 2 and 3 key blocks (an odd count runs one block of masked keys more).
    const causal = runFlash([1, 4, 150, 64], [2, 150], true, false, "flash_wgmma", pipe);
    expect(kernels[0]!.kernel.wg).toBe(128);
    expect(relError(causal.got, causal.want)).toBeLessThan(2 ** -7);
    const chunk = runFlash([1, 2, 70, 128], [1, 200], true, true, "flash_wgmma", pipe);
    expect(relError(chunk.got, chunk.want)).toBeLessThan(2 ** -7);
    const full = runFlash([2, 2, 40, 128], [2, 330], false, false, "flash_wgmma", pipe);
    expect(relError(full.got, full.want)).toBeLessThan(2 ** -7);
  });

  it("flash attention on warpgroup MMAs, two warpgroups a workgroup (128 queries sharing each block's K and V): causal GQA with a partial tile, and head dim 128 not causal", () => {
    const two = { ...LIMITS, flashWarpgroups: 2 };
    const causal = runFlash([1, 4, 150, 64], [2, 150], true, false, "flash_wgmma", two);
    expect(kernels[0]!.kernel.wg).toBe(256);
    expect(relError(causal.got, causal.want)).toBeLessThan(2 ** -7);
    const full = runFlash([1, 2, 40, 128], [1, 90], false, true, "flash_wgmma", two);
    expect(relError(full.got, full.want)).toBeLessThan(2 ** -7);
  });

  it("flash attention: fewer queries than keys (a chunk after a cached prefix: the mask aligned to the end), causal", () => {
    const { got, want } = runFlash([1, 4, 20, 64], [2, 90], true);
    expect(relError(got, want)).toBeLessThan(1e-2);
  });

  it("flash attention: not causal, head dim 128, the result transposed to [B, S, heads x d]", () => {
    const { got, want } = runFlash([2, 2, 33, 128], [2, 33], false, true);
    expect(relError(got, want)).toBeLessThan(1e-2);
  });
});
