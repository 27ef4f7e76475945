/**
 * qk_norm_rope as decode attention's prologue (GenLimits.attentionPrologue, LINGC_ATTN_PROLOGUE):
 * where the sizes choose the GQA decode form for the attention step, the qk_norm_rope step just
 * before it does not run; the attention's workgroups compute their query heads from the fused QKV
 * projection's rows themselves and each split writes the step's new key and value rows it covers
 * into the cache before reading it (decode-attention.ts qkPrologue). The timeline stamps put a
 * kernel boundary in the decode graph at 1.1-1.8 us and qk_norm_rope's own span at about 1.7 us
 * (bench/results/stamps-2026-12-03-h200.md): a dependent step removed, not merged into a barrier.
 * Elsewhere (prefill's rows, the other attention forms) both steps run as before. Returned in
 * quant-prologue.ts's shape (the producer step, the consumer, the merged kernel, its condition),
 * which the emitter runs alike.
 */
import type { Dim } from "../../ir/dim";
import type { Value } from "../../ir/module";
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import type { GenLimits } from "../kernels/gen";
import { storageSlot, type Step } from "../schedule";
import { choiceCondition, stepDispatch } from "./library";
import { mergedKernel, mergedSubst, type QuantPrologue } from "./quant-prologue";

/**
 * The step that runs qk_norm_rope step `a` and attention step `b` as one: b's ops reading what a
 * writes (the query, the grown caches) rebound to a's values, the query no longer written.
 */
function prologueStep(a: Step, b: Step, storage: (id: number) => number): Step | undefined {
  const subst = mergedSubst(a, b);
  if (!subst) return undefined;
  const written = new Map([...a.writes].map(([v, id]) => [storage(id), v] as const));
  const bound = new Map<Value, Value>();
  for (const [v, id] of b.reads) {
    const u = written.get(storage(id));
    if (u) bound.set(v, u);
  }
  const ops = b.ops.map((o) => (o.operands.some((x) => bound.has(x)) ? o.rebound(o.operands.map((x) => bound.get(x) ?? x)) : o));
  const att = ops.find((o) => o.opName === "attention");
  if (!att) return undefined;
  const q = att.operands[0]!;
  return {
    op: b.op,
    kernel: b.kernel,
    ops: [...a.ops, ...ops],
    scope: b.scope,
    reads: new Map([...a.reads, ...[...b.reads].filter(([v]) => !bound.has(v))]),
    writes: new Map([...[...a.writes].filter(([v]) => v !== q), ...b.writes]),
    subst,
  };
}

/**
 * The (qk_norm_rope step, attention step just after it) pairs that can merge, with the merged step:
 * the attention the only reader of what qk_norm_rope writes that the function does not keep (its
 * query; `kept`: storage the function returns, such as the grown caches); `usable`: a step not
 * otherwise merged.
 */
export function attentionPrologueSteps(steps: readonly (Step | undefined)[], storage: (id: number) => number, kept: ReadonlySet<number>, usable: (k: number) => boolean): { a: number; b: number; step: Step }[] {
  const out: { a: number; b: number; step: Step }[] = [];
  steps.forEach((sa, a) => {
    const sb = steps[a + 1];
    if (!sa || !sb || sa.kernel?.attrs["fusion"] !== "qk_norm_rope" || !usable(a) || !usable(a + 1)) return;
    if (!sb.ops.some((o) => o.opName === "attention")) return;
    const local = [...sa.writes.values()].map(storage).filter((st) => !kept.has(st));
    const readers = steps.flatMap((s, k) => (k > a && s && [...s.reads.values()].some((id) => local.includes(storage(id))) ? [k] : []));
    if (readers.some((k) => k !== a + 1)) return;
    const step = prologueStep(sa, sb, storage);
    if (step) out.push({ a, b: a + 1, step });
  });
  return out;
}

/** The function's attention prologues, by the attention step's index, where the dispatch's first choice for it is a GQA decode form. */
export function attentionPrologues(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, usable: (k: number) => boolean, dimText: (d: Dim) => string): Map<number, QuantPrologue> {
  const found = new Map<number, QuantPrologue>();
  const storage = (id: number) => storageSlot(fr, id);
  const steps = fr.steps.map((s) => s.step);
  for (const { a, b, step } of attentionPrologueSteps(steps, storage, new Set(fr.results.map(storage)), usable)) {
    const first = stepDispatch(steps[b]!, profile)?.dispatch[0];
    if (!first || !first.when.length || !first.kernel.startsWith("decode_attention")) continue;
    const kernel = mergedKernel(step, fr, limits, `k${b}r`, first.kernel);
    if (kernel) found.set(b, { quant: a, consumer: b, merged: kernel, when: choiceCondition(first, dimText) });
  }
  return found;
}
