/**
 * Quantize epilogues (GenLimits.quantEpilogue, LINGC_QUANT_EPILOGUE=on; off by default): an activation
 * quantize step that reads the result of the grouped expert matmul step before it, the only reader
 * of that result (FP8 Ling's routed SwiGLU experts, whose hidden rows the down experts read as
 * codes), runs inside that step's warpgroup tile program where the sizes choose the program (its
 * dispatch's grouped_gemm_fp8 choice): the program quantizes its results as it writes them
 * (grouped-gemm-wgmma.ts), so they are never stored wide, and the quantize is not launched. Elsewhere
 * (decode's GEMVs) both run as before. The emitter runs the merged kernel under a host branch, as it
 * does a quantize prologue's (quant-prologue.ts, the same merge at the reader's end).
 *
 * Measured on the H200 (bench/cuda/device.sh fp8epilogue; bench/results/fp8-epilogue-2026-12-02-h200.md):
 * bit for bit the separate quantize's codes, memcheck and racecheck clean, but FP8 Ling-mini's
 * prefill 1x8192 slower, 49.5-49.6 -> 50.6-50.7 ms: the SwiGLU experts 9.45 ms + 0.59 for the
 * quantize -> 11.42 ms merged. Not from running a group's two tiles in turn (that alone costs
 * nothing) nor from ptxas's spills: the quantize adds 23% to the program's instructions and 32% to
 * its time (Nsight Compute), work the memory-bound quantize kernel does at little cost. Off by default.
 */
import type { Dim } from "../../ir/dim";
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import type { GeneratedKernel, GenLimits } from "../kernels/gen";
import { storageSlot, type Step } from "../schedule";
import { choiceCondition, stepDispatch } from "./library";
import { mergedKernel, mergedSubst } from "./quant-prologue";

/** The tile program's template: the dispatch choice of the expert step that the merge replaces. */
const TILE_TEMPLATE = "grouped_gemm_fp8";

export interface QuantEpilogue {
  /** The matmul step's index. */
  matmul: number;
  /** The quantize step's index. */
  quant: number;
  /** The tile program with the quantize as its epilogue. */
  merged: GeneratedKernel;
  /** When the sizes choose the tile program (C++). */
  when: string;
}

/**
 * The step that runs matmul step `a` with quantize step `b` (which reads a's only result under its
 * own name for it, rebound here to read a's) after its matmuls: a's reads, b's writes; undefined where
 * the two kernels' sizes name one symbol differently.
 */
export function epilogueStep(a: Step, b: Step): Step | undefined {
  const subst = mergedSubst(a, b);
  const result = [...a.writes.keys()][0]!;
  return subst && { op: a.op, kernel: a.kernel, ops: [...a.ops, ...b.ops.map((o) => o.rebound([result]))], scope: a.scope, reads: a.reads, writes: b.writes, subst };
}

/**
 * The pairs (grouped matmul step, the quantize step that alone reads its result) that can merge, by
 * index: the matmul step writing one value, not kept past it (`kept`: storage the function
 * returns), read by one later step only, a lone quantize, with only steps between (no call, which
 * could read it unseen).
 */
export function epilogueCandidates(steps: readonly (Step | undefined)[], storage: (id: number) => number, kept: ReadonlySet<number>, usable: (a: number, b: number) => boolean): { a: number; b: number }[] {
  const out: { a: number; b: number }[] = [];
  steps.forEach((sa, a) => {
    if (!sa || sa.writes.size !== 1 || !sa.ops.some((o) => o.opName === "grouped_linear")) return;
    const st = storage([...sa.writes.values()][0]!);
    if (kept.has(st)) return;
    const readers = steps.flatMap((s, k) => (k > a && s && [...s.reads.values()].some((id) => storage(id) === st) ? [k] : []));
    if (readers.length !== 1) return;
    const b = readers[0]!;
    const sb = steps[b]!;
    if (!usable(a, b) || sb.ops.length !== 1 || sb.ops[0]!.opName !== "quantize" || sb.writes.size !== 1) return;
    for (let k = a + 1; k < b; k++) if (!steps[k]) return;
    out.push({ a, b });
  });
  return out;
}

/** The C++ flag that says quantize epilogue `a` (its matmul step's index) runs. */
export const epilogueFlag = (a: number): string => `qe${a}_`;

/**
 * The function's quantize epilogues, by the matmul step's index; `usable`: whether matmul step a and
 * quantize step b may merge (neither run at load nor merged otherwise where the merges' sizes could meet).
 */
export function quantEpilogues(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, usable: (a: number, b: number) => boolean, dimText: (d: Dim) => string): Map<number, QuantEpilogue> {
  const found = new Map<number, QuantEpilogue>();
  const kept = new Set(fr.results.map((r) => storageSlot(fr, r)));
  const steps = fr.steps.map((s) => s.step);
  for (const { a, b } of epilogueCandidates(steps, (id) => storageSlot(fr, id), kept, usable)) {
    const dispatch = stepDispatch(steps[a]!, profile)?.dispatch;
    const at = dispatch?.findIndex((c) => c.kernel === TILE_TEMPLATE) ?? -1;
    if (!dispatch || at < 0) continue;
    const merged = epilogueStep(steps[a]!, steps[b]!);
    if (!merged) continue;
    // (The tile program cannot take every quantize: a warp tile, groups not whole column tiles.)
    const kernel = mergedKernel(merged, fr, limits, `k${a}e`, TILE_TEMPLATE);
    if (!kernel) continue;
    // The tile program runs where no earlier choice's sizes hold and its own do.
    const terms = [...dispatch.slice(0, at).map((c) => `!(${choiceCondition(c, dimText) || "true"})`), ...(dispatch[at]!.when.length ? [`(${choiceCondition(dispatch[at]!, dimText)})`] : [])];
    found.set(a, { matmul: a, quant: b, merged: kernel, when: terms.join(" && ") || "true" });
  }
  return found;
}
