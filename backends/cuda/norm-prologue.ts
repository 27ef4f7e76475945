/**
 * An RMSNorm as the prologue of the dense GEMV that alone reads it (GenLimits.normPrologue,
 * LINGC_NORM_PROLOGUE; off by default: measured slower on the H200, bf16 Ling-mini decode batch 1
 * 1.120-1.127 -> 1.148-1.158 ms a step, FP8 1.108-1.128 -> 1.188-1.195, where the FP8 workgroups'
 * whole-row norm and quantize before their first weight load cost more than the launch they save:
 * bench/results/norm-prologue-2026-12-04-h200.md): where the sizes choose the
 * generated dense GEMV (`linear_gemv`) for the linear step, the norm step before it does not run;
 * each of the GEMV's warps computes the row's 1 / rms from the norm's input (one more read of a row
 * the GEMV reads anyway) and normalizes the elements as it reads them (grouped-gemv.ts densePlan's
 * `norm`). FP8: the norm with the activation quantize of its rows, before the FP8 GEMV (`gemv_fp8`),
 * whose workgroup normalizes and quantizes its rows into workgroup memory (gemv-fp8.ts rowNorms). At decode batch 1 that is the layer's input norm before the QKV projection and the final
 * norm before the LM head: a dependent launch less each (a boundary costs 1.1-1.8 us in the decode
 * graph and the norm's own span about 1 us, bench/results/stamps-2026-12-03-h200.md). Elsewhere
 * (prefill's rows: cuBLASLt's GEMM) both steps run as before. Returned in quant-prologue.ts's shape,
 * which the emitter runs alike.
 */
import type { Dim } from "../../ir/dim";
import type { Value } from "../../ir/module";
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import type { GenLimits } from "../kernels/gen";
import { storageSlot, type Step } from "../schedule";
import { choiceCondition, stepDispatch } from "./library";
import { mergedKernel, prologueStep, type QuantPrologue } from "./quant-prologue";

/**
 * Whether a step is a lone RMSNorm (no residual add or cast with it), or an RMSNorm and the
 * activation quantize of its rows (FP8), writing only its last result; the GEMV template that can
 * take it as a prologue.
 */
function normStep(s: Step): "linear_gemv" | "gemv_fp8" | undefined {
  if (s.writes.size !== 1 || s.ops[0]?.opName !== "rms_norm") return undefined;
  if (s.ops.length === 1) return "linear_gemv";
  const q = s.ops[1]!;
  return s.ops.length === 2 && q.opName === "quantize" && q.operands[0] === s.ops[0]!.results[0] ? "gemv_fp8" : undefined;
}

/**
 * The (norm step, its only reader) pairs that can merge, with the reader's value of the norm's
 * result: the norm's result not kept (`kept`: storage the function returns), the reader's linears
 * reading it as their input and nothing else of the reader reading it, no step between that writes
 * the norm's input (the GEMV reads it later) or that is not a step (a call); `usable`: a step not
 * otherwise merged.
 */
export function normPrologueCandidates(steps: readonly (Step | undefined)[], storage: (id: number) => number, kept: ReadonlySet<number>, usable: (k: number) => boolean): { a: number; b: number; normed: Value; template: "linear_gemv" | "gemv_fp8" }[] {
  const out: { a: number; b: number; normed: Value; template: "linear_gemv" | "gemv_fp8" }[] = [];
  steps.forEach((sa, a) => {
    const template = sa && normStep(sa);
    if (!sa || !template || !usable(a)) return;
    const st = storage([...sa.writes.values()][0]!);
    if (kept.has(st)) return;
    const readers = steps.flatMap((s, k) => (k > a && s && [...s.reads.values()].some((id) => storage(id) === st) ? [k] : []));
    if (readers.length !== 1 || !usable(readers[0]!)) return;
    const b = readers[0]!;
    const sb = steps[b]!;
    const normed = [...sb.reads].find(([, id]) => storage(id) === st)![0];
    const linears = sb.ops.filter((o) => o.opName === "linear");
    if (!linears.length || !linears.every((o) => o.operands[0] === normed) || sb.ops.some((o) => !linears.includes(o) && o.operands.includes(normed))) return;
    const inputs = new Set([...sa.reads.values()].map(storage));
    for (let k = a + 1; k < b; k++) {
      const s = steps[k];
      if (!s || [...s.writes.values()].some((id) => inputs.has(storage(id)))) return;
    }
    out.push({ a, b, normed, template });
  });
  return out;
}

/** The function's norm prologues, by the GEMV step's index, where the dispatch's first choice for it is the generated dense GEMV. */
export function normPrologues(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, usable: (k: number) => boolean, dimText: (d: Dim) => string): Map<number, QuantPrologue> {
  const found = new Map<number, QuantPrologue>();
  const storage = (id: number) => storageSlot(fr, id);
  const steps = fr.steps.map((s) => s.step);
  for (const { a, b, normed, template } of normPrologueCandidates(steps, storage, new Set(fr.results.map(storage)), usable)) {
    // The GEMV the dispatch picks first: the dense one (bf16), or an FP8 linear's "generated" (its warp GEMV).
    const first = stepDispatch(steps[b]!, profile)?.dispatch[0];
    if (!first || !first.when.length || (first.kernel === "generated" ? "gemv_fp8" : first.kernel) !== template) continue;
    const merged = prologueStep(steps[a]!, steps[b]!, normed);
    // (The FP8 GEMV takes it only where its rows' codes fit workgroup memory: mergedKernel refuses the rest.)
    const kernel = merged && mergedKernel(merged, fr, limits, `k${b}n`, template);
    if (kernel) found.set(b, { quant: a, consumer: b, merged: kernel, when: choiceCondition(first, dimText) });
  }
  return found;
}
