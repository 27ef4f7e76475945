/**
 * Quantize epilogues: an activation quantize step that alone reads the result of the step before it
 * runs inside that step's warpgroup tile program where the sizes choose the program, which
 * quantizes its results as it writes them (so they are never stored wide), and the quantize is not
 * launched. Elsewhere both run as before. The emitter runs the merged kernel under a host branch, as
 * it does a quantize prologue's (quant-prologue.ts, the same merge at the reader's end). Two kinds:
 *
 * - Attention's (GenLimits.attentionQuantEpilogue): FP8's output projection input, quantized by
 *   flash_wgmma's epilogue at prefill (flash-common.ts storeQuantRows: a 128-column group is one
 *   head's row, one quad's; the attention's long key loop dwarfs the epilogue's work; measured in
 *   bench/results/attn-epilogue-2026-12-03-h200.md), and by decode attention's merge kernel
 *   (attention.ts attentionMergeKernel: a row one group, a thread a column; one launch a layer
 *   fewer at decode: batch 1 1.247-1.265 -> 1.206-1.217 ms a step in one call,
 *   bench/results/prefill-graph-2026-12-03-h200.md): LINGC_ATTN_QUANT_EPILOGUE=all, the CUDA
 *   default; =prefill flash_wgmma's only; =off neither. A dispatch with several such
 *   programs gets each its merged kernel, under the sizes that choose it.
 * - The routed SwiGLU experts' (GenLimits.quantEpilogue, LINGC_QUANT_EPILOGUE=on; off by default):
 *   their hidden rows, quantized by the grouped_gemm_fp8 warpgroup program (grouped-gemm-wgmma.ts).
 *   Measured on the H200 (bench/cuda/device.sh fp8epilogue; bench/results/fp8-epilogue-2026-12-02-h200.md):
 *   bit for bit the separate quantize's codes, memcheck and racecheck clean, but FP8 Ling-mini's
 *   prefill 1x8192 slower, 49.5-49.6 -> 50.6-50.7 ms: the SwiGLU experts 9.45 ms + 0.59 for the
 *   quantize -> 11.42 ms merged. Not from running a group's two tiles in turn (that alone costs
 *   nothing) nor from ptxas's spills: the quantize adds 23% to the program's instructions and 32% to
 *   its time (Nsight Compute), work the memory-bound quantize kernel does at little cost.
 */
import type { Dim } from "../../ir/dim";
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import type { GeneratedKernel, GenLimits } from "../kernels/gen";
import { storageSlot, type Step } from "../schedule";
import { choiceCondition, stepDispatch } from "./library";
import { mergedKernel, mergedSubst } from "./quant-prologue";
import { DECODE_ATTENTION_FORMS } from "../../ir/target/kernel-forms";

type Producer = "grouped_linear" | "attention";

/** The prefill attention programs that take the epilogue (dispatch choices of the step the merge replaces). */
const PREFILL_ATTENTION = ["flash_wgmma", "flash_tile"];

/** The programs (dispatch choices of the producer's step) that may take its quantize under these limits. */
function epiloguePrograms(producer: Producer, limits: GenLimits): ReadonlySet<string> {
  if (producer === "grouped_linear") return new Set(limits.quantEpilogue ? ["grouped_gemm_fp8"] : []);
  const a = limits.attentionQuantEpilogue;
  return new Set(a === "all" ? [...PREFILL_ATTENTION, ...DECODE_ATTENTION_FORMS.map((f) => f.name)] : a === "prefill" ? PREFILL_ATTENTION : []);
}

/** The kind of step whose result an epilogue can quantize: a grouped matmul or an attention. */
const producerOf = (s: Step): Producer | undefined => (s.ops.some((o) => o.opName === "grouped_linear") ? "grouped_linear" : s.ops.some((o) => o.opName === "attention") ? "attention" : undefined);

export interface QuantEpilogue {
  /** The producing step's index (a grouped matmul's or an attention's). */
  producer: number;
  /** The quantize step's index. */
  quant: number;
  /** The programs with the quantize as their epilogue, each with when the sizes choose it (C++), in the dispatch's order. */
  choices: { merged: GeneratedKernel; when: string }[];
  /** When one of them runs (C++). */
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
 * The pairs (grouped matmul or attention step, the quantize step that alone reads its result) that
 * can merge, by index, with the first's kind: the first step writing one value, not kept past it
 * (`kept`: storage the function returns), read by one later step only, a lone quantize, with only
 * steps between (no call, which could read it unseen).
 */
export function epilogueCandidates(steps: readonly (Step | undefined)[], storage: (id: number) => number, kept: ReadonlySet<number>, usable: (a: number, b: number) => boolean): { a: number; b: number; producer: Producer }[] {
  const out: { a: number; b: number; producer: Producer }[] = [];
  steps.forEach((sa, a) => {
    const producer = sa && producerOf(sa);
    if (!sa || !producer || sa.writes.size !== 1) return;
    const st = storage([...sa.writes.values()][0]!);
    if (kept.has(st)) return;
    const readers = steps.flatMap((s, k) => (k > a && s && [...s.reads.values()].some((id) => storage(id) === st) ? [k] : []));
    if (readers.length !== 1) return;
    const b = readers[0]!;
    const sb = steps[b]!;
    if (!usable(a, b) || sb.ops.length !== 1 || sb.ops[0]!.opName !== "quantize" || sb.writes.size !== 1) return;
    for (let k = a + 1; k < b; k++) if (!steps[k]) return;
    out.push({ a, b, producer });
  });
  return out;
}

/** The C++ flag that says quantize epilogue `a` (its producing step's index) runs. */
export const epilogueFlag = (a: number): string => `qe${a}_`;

/**
 * The function's quantize epilogues, by the producing step's index; `usable`: whether producing step a and
 * quantize step b may merge (neither run at load nor merged otherwise where the merges' sizes could meet).
 */
export function quantEpilogues(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, usable: (a: number, b: number) => boolean, dimText: (d: Dim) => string): Map<number, QuantEpilogue> {
  const found = new Map<number, QuantEpilogue>();
  const kept = new Set(fr.results.map((r) => storageSlot(fr, r)));
  const steps = fr.steps.map((s) => s.step);
  for (const { a, b, producer } of epilogueCandidates(steps, (id) => storageSlot(fr, id), kept, usable)) {
    const templates = epiloguePrograms(producer, limits);
    if (!templates.size) continue;
    const dispatch = stepDispatch(steps[a]!, profile)?.dispatch;
    const merged = epilogueStep(steps[a]!, steps[b]!);
    if (!dispatch || !merged) continue;
    const choices: QuantEpilogue["choices"] = [];
    dispatch.forEach((choice, at) => {
      if (!templates.has(choice.kernel)) return;
      // (A program cannot take every quantize: a warp tile, groups not whole column tiles or not a
      // head's row; the decode attention's merge a thread a column.)
      const kernel = mergedKernel(merged, fr, limits, `k${a}e${choices.length || ""}`, choice.kernel);
      if (!kernel) return;
      // It runs where no earlier choice's sizes hold and its own do.
      const terms = [...dispatch.slice(0, at).map((c) => `!(${choiceCondition(c, dimText) || "true"})`), ...(choice.when.length ? [`(${choiceCondition(choice, dimText)})`] : [])];
      choices.push({ merged: kernel, when: terms.join(" && ") || "true" });
    });
    if (!choices.length) continue;
    found.set(a, { producer: a, quant: b, choices, when: choices.length === 1 ? choices[0]!.when : choices.map((c) => `(${c.when})`).join(" || ") });
  }
  return found;
}
