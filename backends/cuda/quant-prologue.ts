/**
 * Quantize prologues (GenLimits.quantPrologue, LINGC_QUANT_PROLOGUE=on, or =narrow for rows of at most
 * 512 (GenLimits.quantPrologueMaxK); off by default: on the H200
 * it made FP8 Ling-mini's decode step slower, 1.50 -> 1.82 ms, each warp quantizing its row again;
 * since 2026-12-02 a GEMV whose rows' codes fit workgroup memory quantizes them once a workgroup
 * instead (gemv-fp8.ts stageQuantized): bit for bit and memcheck-clean on the H200, but no faster
 * (decode batch 1 graph 1.302 / 1.278 ms against 1.268 / 1.320 without, two rounds; 1.408 / 1.374
 * without the launch pairs: bench/results/attn-epilogue-2026-12-03-h200.md call 1), so still off. An
 * activation quantize step (alone, or after the token gather) whose codes only one later FP8 matmul
 * step reads (a dense projection's GEMV, or the routed experts' by-row GEMV, their SwiGLU's too)
 * runs inside that matmul's GEMV where the sizes choose the GEMV (its dispatch's first choice): the
 * GEMV reads the quantize's input and makes the codes and scales in registers, the ones the
 * quantize kernel would store (its recipe, its rounding), and the quantize is not launched.
 * Elsewhere (prefill's rows) both run as before. The emitter runs the merged kernel under a host
 * branch, as it does a launch pair's.
 */
import type { Dim } from "../../ir/dim";
import type { Value } from "../../ir/module";
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

/**
 * The step that runs quantize step `a`'s ops (the quantize, with the token gather before it or
 * alone) as the prologue of matmul step `b`, whose value `codes` holds a's codes (a's own result for
 * a lone op, or b's kernel parameter bound to their storage); undefined where the two kernels'
 * sizes name one symbol differently.
 */
export function prologueStep(a: Step, b: Step, codes: Value): Step | undefined {
  const subst = mergedSubst(a, b);
  // b's ops that read the codes under b's name for them, rebound to read the quantize's result.
  const q = a.ops[a.ops.length - 1]!.results[0]!;
  const ops = b.ops.map((o) => (o.operands.includes(codes) ? o.rebound(o.operands.map((v) => (v === codes ? q : v))) : o));
  return subst && { op: b.op, kernel: b.kernel, ops: [...a.ops, ...ops], scope: b.scope, reads: new Map([...a.reads, ...[...b.reads].filter(([v]) => v !== codes)]), writes: b.writes, subst };
}

/** Two steps' symbols as one step's (each kernel's symbol -> entry symbol); undefined where they name one symbol differently. */
export function mergedSubst(a: Step, b: Step): Map<string, Dim> | undefined {
  const subst = new Map(a.subst);
  for (const [x, d] of b.subst) {
    const had = subst.get(x);
    if (had && !had.equals(d)) return undefined;
    subst.set(x, d);
  }
  return subst;
}

/** Whether a step is an activation quantize alone or after the token gather, writing only its codes. */
function quantizeStep(s: Step): boolean {
  const q = s.ops[s.ops.length - 1]!;
  if (q.opName !== "quantize" || s.writes.size !== 1) return false;
  return s.ops.length === 1 || (s.ops.length === 2 && s.ops[0]!.opName === "moe_permute" && q.operands[0] === s.ops[0]!.results[0]);
}

/**
 * The pairs (quantize step, its only reader) that can merge, by index, with the reader's value of
 * the codes: the quantize alone or after the token gather, its codes not kept past the reader
 * (`kept`: storage the function returns), the reader's matmuls (linear or grouped_linear) all
 * reading the codes as their input and nothing else reading them, and no step between that writes
 * what the quantize reads (the GEMV reads it later) or that is not a step (a call).
 */
export function prologueCandidates(steps: readonly (Step | undefined)[], storage: (id: number) => number, kept: ReadonlySet<number>, usable: (k: number) => boolean): { a: number; b: number; codes: Value }[] {
  const out: { a: number; b: number; codes: Value }[] = [];
  steps.forEach((sa, a) => {
    if (!sa || !quantizeStep(sa) || !usable(a)) return;
    const qSt = storage([...sa.writes.values()][0]!);
    const inputs = new Set([...sa.reads.values()].map(storage));
    if (kept.has(qSt)) return;
    const readers = steps.flatMap((s, k) => (k > a && s && [...s.reads.values()].some((id) => storage(id) === qSt) ? [k] : []));
    if (readers.length !== 1) return;
    const b = readers[0]!;
    const sb = steps[b]!;
    const codes = [...sb.reads].find(([, id]) => storage(id) === qSt)![0];
    const matmuls = sb.ops.filter((o) => o.opName === "linear" || o.opName === "grouped_linear");
    if (!usable(b) || !matmuls.length || !matmuls.every((o) => o.operands[0] === codes) || sb.ops.some((o) => !matmuls.includes(o) && o.operands.includes(codes))) return;
    for (let k = a + 1; k < b; k++) {
      const s = steps[k];
      if (!s || [...s.writes.values()].some((id) => inputs.has(storage(id)))) return;
    }
    out.push({ a, b, codes });
  });
  return out;
}

/** A merged step's kernel by `template`, or undefined where the template refuses the step (a LingcError: it cannot take the merge). */
export function mergedKernel(step: Step, fr: FrameSchedule, limits: GenLimits, name: string, template: string): GeneratedKernel | undefined {
  try {
    return generateStep(step, fr, limits, name, template);
  } catch (e) {
    if (e instanceof LingcError) return undefined;
    throw e;
  }
}

/** The C++ flag that says quantize prologue `b` (its GEMV step's index) runs. */
export const prologueFlag = (b: number): string => `qp${b}_`;

/** The function's quantize prologues, by the GEMV step's index; `usable`: a step not otherwise merged (not in a launch pair) and not run at load. */
export function quantPrologues(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, usable: (k: number) => boolean, dimText: (d: Dim) => string): Map<number, QuantPrologue> {
  const found = new Map<number, QuantPrologue>();
  const kept = new Set(fr.results.map((r) => storageSlot(fr, r)));
  const steps = fr.steps.map((s) => s.step);
  for (const { a, b, codes } of prologueCandidates(steps, (id) => storageSlot(fr, id), kept, usable)) {
    const sb = steps[b]!;
    const K = codes.type.shape[codes.type.rank - 1]!.value;
    if (limits.quantPrologueMaxK !== undefined && (K === undefined || K > limits.quantPrologueMaxK)) continue;
    const merged = prologueStep(steps[a]!, sb, codes);
    if (!merged) continue;
    const first = stepDispatch(sb, profile)?.dispatch[0];
    // The GEMV the dispatch picks first: the FP8 linear's "generated" (its warp GEMV), or the experts' by-row GEMV.
    const template = first?.kernel === "generated" ? "gemv_fp8" : first?.kernel;
    if (!first || !first.when.length || (template !== "gemv_fp8" && template !== "grouped_gemv_fp8")) continue;
    // (The GEMV's 16-code form cannot take every quantize: K not whole 512s, a narrow input.)
    const kernel = mergedKernel(merged, fr, limits, `k${b}q`, template);
    if (kernel) found.set(b, { quant: a, consumer: b, merged: kernel, when: choiceCondition(first, dimText) });
  }
  return found;
}
