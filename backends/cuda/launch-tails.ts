/**
 * Which dependent steps of a function the CUDA emitter launches as one kernel whose last workgroup
 * runs the second step (GenLimits.tailLaunches, LINGC_TAIL_LAUNCH; kir-merge's mergeTail): a step
 * whose first dispatch choice is a generated kernel of TAIL_FIRST, and the next step that runs after
 * it, which reads its results, whose first choice is a generated kernel of TAIL_SECOND; where the
 * sizes choose both and the second is at most TAIL_WORKGROUPS workgroups (its work is then one
 * workgroup's few turns: the router of a decode batch after the gate's GEMV). The emitter runs it as
 * a launch pair (the same host branch and flag), each step as before otherwise.
 */
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import { generateStep, type GeneratedKernel, type GenLimits } from "../kernels/gen";
import { COUNTERS_SLOT } from "../kernels/gen/context";
import { mergeTail, secondName, tailProblem, TAIL_FIRST, TAIL_SECOND } from "../kernels/kir-merge";
import { storageSlot, type Step } from "../schedule";
import type { Dim } from "../../ir/dim";
import { dynamicSharedBytes } from "./render";
import { firstGenerated, workgroups, type LaunchPair } from "./launch-pairs";

/** The generated templates a tail's first step may run with, and its second step. */
const TAIL_FIRST_TEMPLATES: ReadonlySet<string> = new Set(["linear_gemv"]);
const TAIL_SECOND_TEMPLATES: ReadonlySet<string> = new Set(["router_warp"]);
/** The most workgroups of the second step a tail runs in turn (more run as their own launch). */
export const TAIL_WORKGROUPS = 2;

/**
 * The function's tails by their first step's index, among the steps `free` allows (not already in a
 * launch pair); `loadTime`: the steps that run once at load; `dimText`: a host-function dim as C++.
 */
export function launchTails(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, loadTime: (step: Step) => boolean, free: (k: number) => boolean, dimText: (d: Dim) => string): Map<number, LaunchPair> {
  const tails = new Map<number, LaunchPair>();
  for (let n = 0; n + 1 < fr.steps.length; n++) {
    const sa = fr.steps[n]?.step;
    if (!sa || loadTime(sa) || !free(n) || [...tails.values()].some((t) => t.second === n)) continue;
    // The next step that runs at run time.
    let m = n + 1;
    while (m < fr.steps.length && fr.steps[m]?.step && loadTime(fr.steps[m]!.step!)) m++;
    const sb = fr.steps[m]?.step;
    if (!sb || !free(m)) continue;
    const ca = firstGenerated(sa, profile, TAIL_FIRST_TEMPLATES, dimText);
    const cb = firstGenerated(sb, profile, TAIL_SECOND_TEMPLATES, dimText);
    if (!ca?.template || !cb?.template) continue;
    const a = generateStep(sa, fr, limits, `k${n}`, ca.template);
    const b = generateStep(sb, fr, limits, `k${m}`, cb.template);
    const merged = tailKernel(a, b, (id) => storageSlot(fr, id));
    if (!merged) continue;
    const gb = workgroups(b)!;
    const few = `((${dimText(gb.dim)}) + ${gb.per - 1}) / ${gb.per} <= ${TAIL_WORKGROUPS}`;
    const when = [ca.when, cb.when, few].filter((w) => w).join(" && ");
    tails.set(n, { a, b, merged, second: m, when });
  }
  return tails;
}

/**
 * Kernel b run by kernel a's last workgroup (mergeTail) as one launch, where a's template is one a
 * tail may start with, b's one it may end with, b reads a result of a, and both are plain launches
 * (nothing bound beyond their buffers: no scratch, second kernel or counters); undefined otherwise.
 * `storageOf`: a slot's storage (buffers of one storage are one).
 */
export function tailKernel(a: GeneratedKernel, b: GeneratedKernel, storageOf: (id: number) => number): GeneratedKernel | undefined {
  if (!TAIL_FIRST_TEMPLATES.has(a.template ?? "") || !TAIL_SECOND_TEMPLATES.has(b.template ?? "")) return undefined;
  const [ga, gb] = [workgroups(a), workgroups(b)];
  if (!ga || !gb || tailProblem(a.kernel, b.kernel)) return undefined;
  // b's buffers that hold a's results: read through a's parameter (mergeTail's `same`); none: b does not depend on a.
  const written = new Map(a.kernel.buffers.flatMap((x, j) => (x.write && a.slots[j]! >= 0 ? [[storageOf(a.slots[j]!), x.name] as const] : [])));
  const same = new Map(b.kernel.buffers.flatMap((x, j) => (b.slots[j]! >= 0 && written.has(storageOf(b.slots[j]!)) ? [[x.name, written.get(storageOf(b.slots[j]!))!] as const] : [])));
  if (!same.size) return undefined;
  const kernel = mergeTail(a.kernel, b.kernel, `${a.kernel.name}_tail`, same);
  if (dynamicSharedBytes(kernel)) return undefined;
  return {
    kernel,
    slots: [...a.slots, ...b.slots.filter((_, j) => !same.has(b.kernel.buffers[j]!.name)), COUNTERS_SLOT],
    uniforms: [
      ...a.uniforms,
      ...b.uniforms.map((u) => ({ ...u, name: secondName(u.name) })),
      { name: TAIL_FIRST, dim: ga.dim, ...(ga.per > 1 ? { per: ga.per } : {}) },
      { name: TAIL_SECOND, dim: gb.dim, ...(gb.per > 1 ? { per: gb.per } : {}) },
    ],
    grid: { dim: ga.dim, per: ga.per },
  };
}
