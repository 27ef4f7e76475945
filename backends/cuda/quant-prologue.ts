/**
 * Quantize prologues (GenLimits.quantPrologue, LINGC_QUANT_PROLOGUE=on; not yet timed on a GPU): a
 * lone activation quantize step whose codes only one later lone FP8 matmul step reads (a dense
 * projection's GEMV, or the routed experts' by-row GEMV) runs inside that matmul's GEMV where the
 * sizes choose the GEMV (its dispatch's first choice): the GEMV reads the quantize's input and makes
 * the codes and scales in registers, the ones the quantize kernel would store (its recipe, its
 * rounding), and the quantize is not launched. Elsewhere (prefill's rows) both run as before. The
 * emitter runs the merged kernel under a host branch, as it does a launch pair's.
 */
import type { Dim } from "../../ir/dim";
import { LingcError } from "../../ir/errors";
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import { generateStep, type GeneratedKernel, type GenLimits } from "../kernels/gen";
import { storageSlot, type Step } from "../schedule";
import { choiceCondition, stepDispatch } from "./library";

export interface QuantPrologue {
  /** The quantize step's index. */
  quant: number;
  /** The GEMV step's index. */
  consumer: number;
  /** The GEMV with the quantize as its prologue. */
  merged: GeneratedKernel;
  /** When the sizes choose the GEMV (C++). */
  when: string;
}

/** The step that runs quantize step `a`'s op as the prologue of lone matmul step `b`, which reads a's codes and nothing else of a. */
export function prologueStep(a: Step, b: Step): Step {
  const q = a.op.results[0]!;
  return { op: b.op, ops: [a.op, ...b.ops], scope: b.scope, reads: new Map([...a.reads, ...[...b.reads].filter(([v]) => v !== q)]), writes: b.writes, subst: b.subst };
}

/**
 * The pairs (quantize step, its only reader) that can merge, by index: both lone ops of the
 * function (their values the function's own), the quantize's codes not kept past the reader (`kept`:
 * storage the function returns), the reader a linear or grouped_linear of them, and no step between
 * that writes the quantize's input (the GEMV reads it later) or that is not a step (a call).
 */
export function prologueCandidates(steps: readonly (Step | undefined)[], storage: (id: number) => number, kept: ReadonlySet<number>, usable: (k: number) => boolean): { a: number; b: number }[] {
  const out: { a: number; b: number }[] = [];
  steps.forEach((sa, a) => {
    if (!sa || sa.kernel || sa.ops.length !== 1 || sa.op.opName !== "quantize" || !usable(a)) return;
    const q = sa.op.results[0]!;
    const qSt = storage(sa.writes.get(q)!);
    const xSt = storage(sa.reads.get(sa.op.operands[0]!)!);
    if (kept.has(qSt)) return;
    const readers = steps.flatMap((s, k) => (k > a && s && [...s.reads.values()].some((id) => storage(id) === qSt) ? [k] : []));
    if (readers.length !== 1) return;
    const b = readers[0]!;
    const sb = steps[b]!;
    if (sb.kernel || sb.ops.length !== 1 || !["linear", "grouped_linear"].includes(sb.op.opName) || sb.op.operands[0] !== q || !usable(b)) return;
    for (let k = a + 1; k < b; k++) {
      const s = steps[k];
      if (!s || [...s.writes.values()].some((id) => storage(id) === xSt)) return;
    }
    out.push({ a, b });
  });
  return out;
}

/** The C++ flag that says quantize prologue `b` (its GEMV step's index) runs. */
export const prologueFlag = (b: number): string => `qp${b}_`;

/** The function's quantize prologues, by the GEMV step's index; `usable`: a step not otherwise merged (not in a launch pair) and not run at load. */
export function quantPrologues(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, usable: (k: number) => boolean, dimText: (d: Dim) => string): Map<number, QuantPrologue> {
  const found = new Map<number, QuantPrologue>();
  const kept = new Set(fr.results.map((r) => storageSlot(fr, r)));
  const steps = fr.steps.map((s) => s.step);
  for (const { a, b } of prologueCandidates(steps, (id) => storageSlot(fr, id), kept, usable)) {
    const sb = steps[b]!;
    const first = stepDispatch(sb, profile)?.dispatch[0];
    // The GEMV the dispatch picks first: the FP8 linear's "generated" (its warp GEMV), or the experts' by-row GEMV.
    const template = first?.kernel === "generated" ? "gemv_fp8" : first?.kernel;
    if (!first || !first.when.length || (template !== "gemv_fp8" && template !== "grouped_gemv_fp8")) continue;
    let merged: GeneratedKernel;
    try {
      merged = generateStep(prologueStep(steps[a]!, sb), fr, limits, `k${b}q`, template);
    } catch (e) {
      // The GEMV's 16-code form cannot take this quantize (K not whole 512s, a narrow input): the template refuses it.
      if (e instanceof LingcError) continue;
      throw e;
    }
    found.set(b, { quant: a, consumer: b, merged, when: choiceCondition(first, dimText) });
  }
  return found;
}
