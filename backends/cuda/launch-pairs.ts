/**
 * Which adjacent steps of a function the CUDA emitter launches as one kernel (GenLimits.pairLaunches,
 * LINGC_PAIR_LAUNCH=on): both run by the library's dispatch with a generated kernel template as its
 * first choice, neither reading or writing what the other writes, their kernels of one workgroup
 * size and one workgroup per grid unit, without scratch, a second kernel, counters, dynamic shared
 * memory or a cache's sizes. The merged kernel is kir-merge's; the emitter runs it under a host
 * branch where the sizes choose both first choices, and each step as before otherwise.
 */
import { formatCond } from "../../ir/dispatch";
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import { generateStep, type GeneratedKernel, type GenLimits } from "../kernels/gen";
import { COUNTERS_SLOT } from "../kernels/gen/context";
import { mergeKernels, MERGE_SPLIT, secondName } from "../kernels/kir-merge";
import { capacitySlotOf, storageSlot, type Step } from "../schedule";
import { stepDispatch } from "./library";
import type { Dim } from "../../ir/dim";
import { dynamicSharedBytes } from "./render";

/** Two adjacent steps as one launch: their kernels, the merged one, and when the sizes choose both (C++). */
export interface LaunchPair {
  a: GeneratedKernel;
  b: GeneratedKernel;
  merged: GeneratedKernel;
  when: string;
}

/** Library dispatch choices that are generated kernel templates (launched by the emitter). */
const PAIRABLE_TEMPLATES = new Set(["linear_gemv", "grouped_gemv", "grouped_gemv_rows"]);

/** The function's launch pairs, by the first step's index (a step is in one pair at most). */
/** `loadTime`: the steps that run once at load (never paired); `dimText`: a host-function dim as C++. */
export function launchPairs(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, loadTime: (step: Step) => boolean, dimText: (d: Dim) => string): Map<number, LaunchPair> {
  const pairs = new Map<number, LaunchPair>();
  const storage = (ids: Iterable<number>) => new Set([...ids].map((id) => storageSlot(fr, id)));
  for (let n = 0; n + 1 < fr.steps.length; n++) {
    const [sa, sb] = [fr.steps[n]!.step, fr.steps[n + 1]!.step];
    if (!sa || !sb || pairs.has(n - 1) || loadTime(sa) || loadTime(sb)) continue;
    const [ca, cb] = [firstGenerated(sa, profile, dimText), firstGenerated(sb, profile, dimText)];
    if (!ca || !cb) continue;
    const [ra, wa, rb, wb] = [storage(sa.reads.values()), storage(sa.writes.values()), storage(sb.reads.values()), storage(sb.writes.values())];
    if ([...wa].some((st) => rb.has(st) || wb.has(st)) || [...wb].some((st) => ra.has(st))) continue;
    const a = generateStep(sa, fr, limits, `k${n}`, ca.template);
    const b = generateStep(sb, fr, limits, `k${n + 1}`, cb.template);
    if (!plain(a) || !plain(b) || a.kernel.wg !== b.kernel.wg || a.kernel.minBlocks !== b.kernel.minBlocks) continue;
    const kernel = mergeKernels(a.kernel, b.kernel, `${a.kernel.name}_pair`);
    if (dynamicSharedBytes(kernel)) continue;
    const merged: GeneratedKernel = {
      kernel,
      slots: [...a.slots, ...b.slots],
      uniforms: [...a.uniforms, ...b.uniforms.map((u) => ({ ...u, name: secondName(u.name) })), { name: MERGE_SPLIT, dim: a.grid.dim }],
      grid: { dim: a.grid.dim.add(b.grid.dim), per: 1 },
    };
    pairs.set(n, { a, b, merged, when: [ca.when, cb.when].filter((w) => w).join(" && ") || "true" });
  }
  return pairs;
}

/** A kernel the pair can hold: one launch, a workgroup per grid unit, nothing bound beyond its buffers. */
function plain(g: GeneratedKernel): boolean {
  return !g.then && !g.scratch && g.grid.per === 1 && !g.slots.includes(COUNTERS_SLOT) && !g.uniforms.some((u) => u.dim.symbols().some((x) => capacitySlotOf(x) !== undefined));
}

/** A library step's first dispatch choice when it is a generated kernel template: the template and its condition as C++. */
function firstGenerated(step: Step, profile: CudaProfile, dimText: (d: Dim) => string): { template: string; when: string } | undefined {
  const c = stepDispatch(step, profile)?.dispatch[0];
  if (!c || !PAIRABLE_TEMPLATES.has(c.kernel)) return undefined;
  return { template: c.kernel, when: c.when.map((w) => formatCond(w, (d) => `(${dimText(d)})`)).join(" && ") };
}
