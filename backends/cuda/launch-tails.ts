/**
 * Which dependent steps of a function the CUDA emitter runs in the last workgroup of the launch
 * before them (GenLimits.tailLaunches, LINGC_TAIL_LAUNCH; kir-merge's mergeTail): a launch that
 * starts with a dense GEMV step (linear_gemv, its generated first choice) or is a launch pair, then
 * the steps right after it that read what it wrote and whose work is a few workgroups' worth at the
 * sizes where this runs: the router after the gate's GEMV and the MoE dispatch after the router, the
 * residual add + norm after the output projection, the experts' combine after the down projections'
 * pair. Where the sizes choose every step's generated kernel and each tail is at most
 * TAIL_WORKGROUPS workgroups, the group is one launch (the pair's host branch and flag, or one of
 * its own); each step runs as before otherwise. GenLimits.tailLaunches "router": only the MoE
 * dispatch after the router (a workgroup or a few at decode) is a tail.
 */
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import { generateStep, type GeneratedKernel, type GenLimits } from "../kernels/gen";
import { COUNTERS_SLOT } from "../kernels/gen/context";
import { mergeTail, tailCount, tailName, tailProblem, TAIL_FIRST } from "../kernels/kir-merge";
import { storageSlot, type Step } from "../schedule";
import type { Dim } from "../../ir/dim";
import { dynamicSharedBytes } from "./render";
import { firstGenerated, mergedChoice, workgroupCount, workgroups, type LaunchPair } from "./launch-pairs";

/** The generated template a lone step may start a tail group with. */
export const TAIL_FIRST_TEMPLATES: ReadonlySet<string> = new Set(["linear_gemv"]);
/** The generated templates a tail may run: the router, the generated dispatch, a norm of rows, the experts' combine. */
export const TAIL_TEMPLATES: ReadonlySet<string> = new Set(["router_warp", "dispatch", "norm_registers", "moe_combine"]);
/** GenLimits.tailLaunches "router": the router starts a group, the dispatch is its one tail. */
const ROUTER_FIRST: ReadonlySet<string> = new Set(["router_warp"]);
const ROUTER_TAILS: ReadonlySet<string> = new Set(["dispatch"]);

/** The templates that may start a tail group and those that may be its tails, under the limits' tail setting. */
export function tailTemplates(limits: GenLimits): { firsts: ReadonlySet<string>; tails: ReadonlySet<string> } {
  return limits.tailLaunches === "router" ? { firsts: ROUTER_FIRST, tails: ROUTER_TAILS } : { firsts: TAIL_FIRST_TEMPLATES, tails: TAIL_TEMPLATES };
}
/** The most workgroups a tail runs in turn (more: it runs as its own launch). */
export const TAIL_WORKGROUPS = 4;
/** The most (token, slot) pairs the generated dispatch sorts as a tail (each of its threads reads them all). */
const DISPATCH_TAIL_PAIRS = 256;

/** A step's generated kernel as a tail would run it, with the sizes (C++) where it is that kernel; undefined where it cannot be one. */
function tailChoice(step: Step, fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, n: number, dimText: (d: Dim) => string, templates: ReadonlySet<string>): { kernel: GeneratedKernel; when: string } | undefined {
  const c = mergedChoice(step, fr, limits, profile, n, dimText, templates, DISPATCH_TAIL_PAIRS);
  if (!c || !templates.has(c.kernel.template ?? "")) return undefined;
  const g = workgroups(c.kernel);
  if (!g) return undefined;
  const few = `${workgroupCount(g, dimText)} <= ${TAIL_WORKGROUPS}`;
  return { kernel: c.kernel, when: [c.when, few].filter((w) => w).join(" && ") };
}

/**
 * The function's launches with tails, by their first step's index: the launch pairs given (`pairs`),
 * those with tails now merged with them (their `tails` set), and new groups of a lone dense GEMV and
 * its tails (a step in a pair starts no group and is no tail); `loadTime`: the steps that run once
 * at load; `dimText`: a host-function dim as C++.
 */
export function launchTails(
  fr: FrameSchedule,
  limits: GenLimits,
  profile: CudaProfile,
  pairs: ReadonlyMap<number, LaunchPair>,
  loadTime: (step: Step) => boolean,
  dimText: (d: Dim) => string,
): Map<number, LaunchPair> {
  const out = new Map(pairs);
  const taken = new Set([...pairs].flatMap(([n, p]) => [n, p.second]));
  const runs = (k: number) => fr.steps[k]?.step !== undefined && !loadTime(fr.steps[k]!.step!);
  const storageOf = (id: number) => storageSlot(fr, id);
  const movedUp = (k: number, n: number) => [...pairs].some(([f, p]) => f < n && p.second === k);
  const routerOnly = limits.tailLaunches === "router";
  const { firsts, tails: tailKinds } = tailTemplates(limits);
  for (let n = 0; n < fr.steps.length; n++) {
    const sa = fr.steps[n]?.step;
    if (!sa || loadTime(sa) || (taken.has(n) && !pairs.has(n))) continue;
    // The group's head: a launch pair, or a lone dense GEMV step (the router, for "router").
    const pair = routerOnly ? undefined : pairs.get(n);
    if (routerOnly && taken.has(n)) continue;
    let head: { kernel: GeneratedKernel; members: number[]; when: string } | undefined;
    if (pair) head = pair.merged.grid.parts ? undefined : { kernel: pair.merged, members: [n, pair.second], when: pair.when };
    else {
      const c = firstGenerated(sa, profile, firsts, dimText);
      if (c?.template) head = { kernel: generateStep(sa, fr, limits, `k${n}`, c.template), members: [n], when: c.when };
    }
    if (!head || !workgroups(head.kernel)) continue;
    // Its tails: each the next step that runs after the group's last, with nothing else between.
    const tails: { step: number; kernel: GeneratedKernel; when: string }[] = [];
    let merged: GeneratedKernel | undefined;
    for (;;) {
      const members = new Set([...head.members, ...tails.map((t) => t.step)]);
      const last = Math.max(...members);
      let m = last + 1;
      while (m < fr.steps.length && fr.steps[m]?.step && !runs(m)) m++;
      // (A pair's second step that an earlier pair moved up ran there, not between.)
      const between = Array.from({ length: m - n - 1 }, (_, j) => n + 1 + j).filter((k) => runs(k) && !members.has(k) && !movedUp(k, n));
      const sb = fr.steps[m]?.step;
      if (!sb || taken.has(m) || between.length) break;
      const t = tailChoice(sb, fr, limits, profile, m, dimText, tailKinds);
      if (!t) break;
      const longer = tailGroup(head.kernel, [...tails.map((x) => x.kernel), t.kernel], storageOf);
      if (!longer) break;
      merged = longer;
      tails.push({ step: m, ...t });
    }
    if (!merged) continue;
    const when = [...new Set([head.when, ...tails.map((x) => x.when)].filter((w) => w))].join(" && ") || "true";
    for (const t of tails) taken.add(t.step);
    if (pair) out.set(n, { ...pair, merged, when, tails: tails.map((x) => ({ step: x.step, kernel: x.kernel })) });
    else {
      taken.add(n);
      const [first, ...rest] = tails;
      out.set(n, { a: head.kernel, b: first!.kernel, merged, second: first!.step, when, ...(rest.length ? { tails: rest.map((x) => ({ step: x.step, kernel: x.kernel })) } : {}) });
    }
  }
  return out;
}

/**
 * Kernel a and its tails (mergeTail) as one launch, where each tail reads a result of a kernel
 * before it and all are plain launches (nothing bound beyond their buffers: no scratch, second
 * kernel or counters); undefined otherwise. `storageOf`: a slot's storage (buffers of one storage
 * are one: a tail reads an earlier kernel's result through that kernel's parameter).
 */
export function tailGroup(a: GeneratedKernel, tails: readonly GeneratedKernel[], storageOf: (id: number) => number): GeneratedKernel | undefined {
  const ga = workgroups(a);
  const gt = tails.map(workgroups);
  if (!ga || gt.some((g) => !g) || tailProblem(a.kernel, tails.map((t) => t.kernel))) return undefined;
  // The merged kernel's written buffers by storage (a's, then each tail's as renamed).
  const written = new Map(a.kernel.buffers.flatMap((x, j) => (x.write && a.slots[j]! >= 0 ? [[storageOf(a.slots[j]!), x.name] as const] : [])));
  const slots = [...a.slots];
  const uniforms = [...a.uniforms, { name: TAIL_FIRST, dim: ga.dim, ...(ga.per > 1 ? { per: ga.per } : {}) }];
  const parts: { kernel: (typeof tails)[number]["kernel"]; same: Map<string, string> }[] = [];
  for (const [n, t] of tails.entries()) {
    const j = n + 1;
    const same = new Map(t.kernel.buffers.flatMap((x, k) => (t.slots[k]! >= 0 && written.has(storageOf(t.slots[k]!)) ? [[x.name, written.get(storageOf(t.slots[k]!))!] as const] : [])));
    // A tail that reads nothing an earlier kernel wrote does not depend on them: not a tail.
    if (!same.size) return undefined;
    t.kernel.buffers.forEach((x, k) => {
      if (same.has(x.name)) return;
      slots.push(t.slots[k]!);
      if (x.write && t.slots[k]! >= 0) written.set(storageOf(t.slots[k]!), tailName(x.name, j));
    });
    uniforms.push(...t.uniforms.map((u) => ({ ...u, name: tailName(u.name, j) })), { name: tailCount(j), dim: gt[n]!.dim, ...(gt[n]!.per > 1 ? { per: gt[n]!.per } : {}) });
    parts.push({ kernel: t.kernel, same });
  }
  const kernel = mergeTail(a.kernel, parts, `${a.kernel.name}_tail`);
  if (dynamicSharedBytes(kernel)) return undefined;
  return { kernel, slots: [...slots, COUNTERS_SLOT], uniforms, grid: { dim: ga.dim, per: ga.per } };
}
