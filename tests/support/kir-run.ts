/**
 * What the kir simulator's tests share (tests/cuda/simulate*.test.ts): a module's steps generated
 * for CUDA and run in the simulator next to the interpreter, a flash attention of random inputs,
 * the routed experts' module, random tensors and the relative error.
 */
import { expect } from "vitest";
import "../../ir/ops";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { Tensor } from "../../ir/tensor";
import { encodeBits, decodeBits } from "../../ir/numerics";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";
import { buildSchedule, capacitySymbol, storageSlot, type Step } from "../../backends/schedule";
import { generateStep, type GeneratedKernel, type GenLimits } from "../../backends/kernels/gen";
import { COUNTER_SLOTS, COUNTERS_SLOT, GRID_SYNC_SLOT, SCRATCH_SLOT } from "../../backends/kernels/gen/context";
import { cudaGenLimits, cudaStorage } from "../../backends/cuda/gen-limits";
import { CUDA_SM90A } from "../../ir/target";
import { simulate, type SimArray } from "../../backends/kernels/simulate";
import { prologueCandidates, prologueStep } from "../../backends/cuda/quant-prologue";
import { attentionPrologueSteps } from "../../backends/cuda/attention-prologue";
import { normPrologueCandidates } from "../../backends/cuda/norm-prologue";
import { epilogueCandidates, epilogueStep } from "../../backends/cuda/quant-epilogue";
import { tailGroup, tailTemplates } from "../../backends/cuda/launch-tails";
import { phaseGroup, serialPhase } from "../../backends/cuda/launch-phases";
import { rng } from "./fd";

export const LIMITS: GenLimits = cudaGenLimits(CUDA_SM90A);

const ARRAYS = { f32: Float32Array, i32: Int32Array, bf16: Uint16Array, f8e4m3: Uint8Array } as const;

/** The kernels the last runGenerated generated, in order. */
export const kernels: GeneratedKernel[] = [];

/** The L2 prefetches the last runGenerated's kernels made: kernel (its template and index in `kernels`), buffer (its size in bytes, whether a weight's), byte range. */
export const prefetches: { kernel: string; buf: string; size: number; weight: boolean; byte: number; bytes: number }[] = [];

/**
 * The buffers the last runGenerated's kernels prefetched, as "template#index.buffer" (weight buffers marked
 * " (weight)"), after checking that each was prefetched whole, every byte once.
 */
export function prefetchedWhole(): string[] {
  const groups = new Map<string, typeof prefetches>();
  for (const p of prefetches) {
    const key = `${p.kernel}.${p.buf}${p.weight ? " (weight)" : ""}`;
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  for (const [key, ps] of groups) {
    const sorted = [...ps].sort((a, b) => a.byte - b.byte);
    let at = 0;
    for (const p of sorted) {
      expect(p.byte, `${key}: a gap or an overlap at byte ${at}`).toBe(at);
      at += p.bytes;
    }
    expect(at, `${key}: prefetched up to byte ${at} of ${sorted[0]!.size}`).toBe(sorted[0]!.size);
  }
  return [...groups.keys()];
}

/**
 * A module whose every step is a generated kernel, fused for CUDA and run step by step in the
 * simulator (static shapes: a size left symbolic is refused as a missing uniform), and by the
 * interpreter: the outputs of both, by name.
 */
export function runGenerated(
  text: string,
  inputs: Record<string, Tensor>,
  weights: Record<string, Tensor>,
  limits: GenLimits = LIMITS,
  before = "",
  /** The template a step runs with (the CUDA dispatch's choice for these sizes), where not the first that covers it. */
  pick: (ops: readonly { opName: string }[]) => string | undefined = () => undefined,
  /** Each quantize step whose codes only one matmul step reads runs as that matmul's prologue (backends/cuda/quant-prologue.ts), the quantize step not run; and with limits.attentionPrologue, qk_norm_rope as decode attention's (attention-prologue.ts); with limits.normPrologue, an RMSNorm as the dense GEMV's (norm-prologue.ts). */
  prologues = false,
  /** Each quantize step that alone reads a grouped matmul step's result runs as that step's epilogue (backends/cuda/quant-epilogue.ts), the quantize step not run. */
  epilogues = false,
  /** A dense GEMV step and the steps after it that can be its tails as one kernel whose last workgroup runs them (backends/cuda/launch-tails.ts tailGroup). */
  tails = false,
  /**
   * Runs of consecutive steps as the phases of one kernel (backends/cuda/launch-phases.ts
   * phaseGroup), a grid barrier between each (a tail's kind of work after the first run by its last arrival), simulated on this many workgroups (fewer than a
   * phase's own: its workgroups visited in turn); 0 for none.
   */
  phases = 0,
): Record<string, { got: Float32Array; want: Float32Array }> {
  kernels.length = 0;
  prefetches.length = 0;
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
  const steps: (Step | undefined)[] = [...s.steps];
  if (prologues) {
    const kept = new Set(s.outputs.map((o) => storageSlot(s, o.slot)));
    // qk_norm_rope as decode attention's prologue (backends/cuda/attention-prologue.ts) where the limits ask for it.
    if (limits.attentionPrologue) {
      for (const { a, b, step } of attentionPrologueSteps(steps, (id) => storageSlot(s, id), kept, () => true)) {
        steps[b] = step;
        steps[a] = undefined;
      }
    }
    // An RMSNorm as the dense GEMV's prologue (backends/cuda/norm-prologue.ts) where the limits ask for it.
    if (limits.normPrologue) {
      for (const { a, b, normed } of normPrologueCandidates(steps, (id) => storageSlot(s, id), kept, () => true)) {
        const merged = prologueStep(steps[a]!, steps[b]!, normed);
        if (!merged) continue;
        steps[b] = merged;
        steps[a] = undefined;
      }
    }
    for (const { a, b, codes } of prologueCandidates(steps, (id) => storageSlot(s, id), kept, () => true)) {
      const merged = prologueStep(steps[a]!, steps[b]!, codes);
      if (!merged) continue;
      steps[b] = merged;
      steps[a] = undefined;
    }
  }
  if (epilogues) {
    const kept = new Set(s.outputs.map((o) => storageSlot(s, o.slot)));
    for (const { a, b } of epilogueCandidates(steps, (id) => storageSlot(s, id), kept, () => true)) {
      const merged = epilogueStep(steps[a]!, steps[b]!);
      if (!merged) continue;
      steps[a] = merged;
      steps[b] = undefined;
    }
  }
  for (let n = 0; n < steps.length; n++) {
    const step = steps[n];
    if (!step) continue;
    let g = generateStep(step, s, limits, "k", pick(step.ops));
    const { firsts, tails: tailKinds } = tailTemplates(limits);
    if (tails && firsts.has(g.template ?? "")) {
      // The steps after it that can be its tails, in turn (as launch-tails.ts takes them).
      const after: GeneratedKernel[] = [];
      for (let m = n + 1; steps[m]; m++) {
        const t = generateStep(steps[m]!, s, limits, "k", pick(steps[m]!.ops));
        if (!tailKinds.has(t.template ?? "") || !tailGroup(g, [...after, t], (id) => storageSlot(s, id))) break;
        after.push(t);
      }
      if (after.length) {
        g = tailGroup(g, after, (id) => storageSlot(s, id))!;
        after.forEach((_, j) => (steps[n + 1 + j] = undefined));
      }
    }
    if (phases) {
      // The steps after it that can join it as phases, in turn.
      const after: GeneratedKernel[] = [];
      for (let m = n + 1; steps[m]; m++) {
        const t = generateStep(steps[m]!, s, limits, "k", pick(steps[m]!.ops));
        // (A tail's kind of work after the first runs in the barrier's last arrival, as launch-phases.ts has it.)
        const serial = (ks: GeneratedKernel[]) => ks.map((k, j) => j > 0 && serialPhase(k));
        if (!phaseGroup([g, ...after, t], 2, (id) => storageSlot(s, id), serial([g, ...after, t]))) break;
        after.push(t);
      }
      if (after.length) {
        g = phaseGroup([g, ...after], 2, (id) => storageSlot(s, id), [false, ...after.map((k) => serialPhase(k))])!;
        after.forEach((_, j) => (steps[n + 1 + j] = undefined));
      }
    }
    // A split computation's kernels run in turn, sharing the step's scratch (as the CUDA emitter binds it).
    const scratch = new Float32Array(g.scratch ?? 0);
    const counters = new Int32Array(COUNTER_SLOTS);
    const bar = new Int32Array(2);  // the grid barriers' words
    for (let k: GeneratedKernel | undefined = g; k; k = k.then) {
      kernels.push(k);
      const buffers: Record<string, SimArray> = {};
      k.kernel.buffers.forEach((b, j) => (buffers[b.name] = k!.slots[j] === SCRATCH_SLOT ? scratch : k!.slots[j] === COUNTERS_SLOT ? counters : k!.slots[j] === GRID_SYNC_SLOT ? bar : storage(k!.slots[j]!)));
      const gk = k;
      const prefetch = (buf: string, byte: number, bytes: number) => {
        const slot = gk.slots[gk.kernel.buffers.findIndex((b) => b.name === buf)]!;
        const weight = slot >= 0 && s.slots[storageSlot(s, slot)]?.source === "weight";
        prefetches.push({ kernel: `${gk.template}#${kernels.indexOf(gk)}`, buf, size: buffers[buf]!.byteLength, weight, byte, bytes });
      };
      // Sizes are static here: a uniform's value is its dim's (a merge's workgroup counts), or a cache's capacity.
      const values: Record<string, number> = Object.fromEntries(k.uniforms.filter((u) => u.dim.value !== undefined).map((u) => [u.name, Math.ceil(u.dim.value! / (u.per ?? 1))]));
      for (const u of k.kernel.uniforms) if (uniforms[u] !== undefined) values[u] = uniforms[u]!;
      simulate(k.kernel, buffers, Object.fromEntries(k.kernel.uniforms.filter((u) => values[u] !== undefined).map((u) => [u, values[u]!])), k.grid.resident ? phases : Math.ceil(k.grid.dim.value! / k.grid.per), { prefetch });
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
export function runFlash([B, NH, S, D]: [number, number, number, number], [NKV, T]: [number, number], causal: boolean, transposed = false, template = "flash_tile", limits = LIMITS): { got: Float32Array; want: Float32Array } {
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
export function expertModule(dt: string, [T, H, F, E, K]: [number, number, number, number, number], proj?: number): string {
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
export function random(dt: "bf16" | "f32", r: () => number, shape: number[], scale = 1): Tensor {
  return Tensor.from(dt, shape, Array.from({ length: shape.reduce((a, b) => a * b) }, () => scale * (2 * r() - 1)));
}

/** max |got - want| over max |want|. */
export function relError(got: Float32Array, want: Float32Array): number {
  let err = 0;
  let big = 0;
  want.forEach((w, i) => {
    err = Math.max(err, Math.abs(got[i]! - w));
    big = Math.max(big, Math.abs(w));
  });
  return err / big;
}

/** Ling's router on scores `x` (f32[T, E]): sigmoid, bias, group top-k (%idx), the chosen scores normalized (%n). */
export const routerOps = (x: string, T: number, E: number, G: number, TG: number, GST: number, K2: number) => `    %s = sigmoid(${x}) : f32[${T}, ${E}]
    %b = add(%s, @bias) : f32[${T}, ${E}]
    %idx = group_topk(%b) {k = ${K2}, groups = ${G}, topk_groups = ${TG}, group_score_topk = ${GST}} : i32[${T}, ${K2}]
    %g = take_along(%s, %idx) : f32[${T}, ${K2}]
    %sum = reduce_sum(%g) {axes = [-1], keepdims = true} : f32[${T}, 1]
    %eps = constant() {values = [1e-20], dtype = f32} : f32[]
    %d = add(%sum, %eps) : f32[${T}, 1]
    %n = div(%g, %d) : f32[${T}, ${K2}]`;
