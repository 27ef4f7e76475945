/**
 * Two kernels as one launch (horizontal fusion of independent steps): the first kernel's workgroups,
 * then the second's. Each body runs behind a test of the workgroup index, which is the same in every
 * thread of a workgroup, so the barriers inside a body still meet the whole workgroup. The second
 * kernel's names (buffers, sizes, workgroup arrays, locals) take a suffix so that they cannot meet
 * the first's; its workgroup index is offset by the first kernel's workgroup count, a size of the
 * merged kernel (MERGE_SPLIT, the launch's last uniform).
 */
import type { Expr, Kernel, Stmt } from "./kir-expr";

/** The merged kernel's last uniform: how many workgroups the first kernel's grid has. */
export const MERGE_SPLIT = "merge_split";

/** A name of the second kernel (a buffer, a size, a local) in the merged kernel. */
export const secondName = (name: string): string => `${name}_m`;

/** Fields of kir nodes that hold an identifier (or a list of them). */
const NAME_FIELDS = new Set(["name", "names", "buf", "src", "dst", "acc", "v", "bar"]);
/** Statements that declare a local (its name in `name`, `names` or, for loops, `v`). */
const DECLARES = new Set(["let", "var", "array", "atomicAdd", "ldsm", "load16", "for"]);

export function mergeKernels(a: Kernel, b: Kernel, name: string): Kernel {
  if (a.wg !== b.wg) throw new Error(`kir merge: ${a.name} and ${b.name} have different workgroup sizes (${a.wg}, ${b.wg})`);
  if (a.minBlocks !== b.minBlocks) throw new Error(`kir merge: ${a.name} and ${b.name} ask for different resident workgroups`);
  const own = namesOf(b);
  const renamed = new Map([...own].map((n) => [n, secondName(n)]));
  const first = namesOf(a);
  const clash = [...renamed.values(), MERGE_SPLIT].find((n) => first.has(n));
  if (clash) throw new Error(`kir merge: ${a.name} already has a name ${clash}`);
  const split: Expr = { k: "uni", t: "i32", name: MERGE_SPLIT };
  const wg: Expr = { k: "builtin", t: "i32", name: "wg" };
  const shifted: Expr = { k: "bin", t: "i32", op: "-", a: wg, b: split };
  const second = rename(b.body, renamed, shifted) as Stmt[];
  const firstHalf: Expr = { k: "bin", t: "bool", op: "<", a: wg, b: split };
  // Each kernel's statements before the wait (prefetches) for its own workgroups only.
  const preWait: Stmt[] = a.preWait?.length || b.preWait?.length ? [{ k: "if", c: firstHalf, then: a.preWait ?? [], else: rename(b.preWait ?? [], renamed, shifted) as Stmt[] }] : [];
  return {
    name,
    wg: a.wg,
    buffers: [...a.buffers, ...b.buffers.map((x) => ({ ...x, name: renamed.get(x.name)! }))],
    uniforms: [...a.uniforms, ...b.uniforms.map((u) => renamed.get(u)!), MERGE_SPLIT],
    shared: [...a.shared, ...b.shared.map((x) => ({ ...x, name: renamed.get(x.name)! }))],
    body: [{ k: "if", c: firstHalf, then: a.body, else: second }],
    ...(preWait.length ? { preWait } : {}),
    ...(a.wide || b.wide ? { wide: true } : {}),
    ...(a.minBlocks ? { minBlocks: a.minBlocks } : {}),
  };
}

/** A kernel's names: buffers, sizes, workgroup arrays and the locals its body declares. */
function namesOf(k: Kernel): Set<string> {
  const out = new Set<string>([...k.buffers.map((x) => x.name), ...k.uniforms, ...k.shared.map((x) => x.name)]);
  collectLocals(k.body, out);
  return out;
}

/** The names a body declares (at any depth). */
function collectLocals(ss: readonly Stmt[], out: Set<string>): void {
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== "object") return;
    const n = node as Record<string, unknown>;
    if (typeof n["k"] === "string" && DECLARES.has(n["k"])) {
      for (const f of ["name", "v"]) if (typeof n[f] === "string") out.add(n[f] as string);
      if (Array.isArray(n["names"])) for (const x of n["names"] as string[]) out.add(x);
    }
    Object.values(n).forEach(walk);
  };
  walk(ss);
}

/** A copy of a kir tree with identifiers renamed and the workgroup index replaced by `wg`. */
function rename(node: unknown, names: ReadonlyMap<string, string>, wg: Expr): unknown {
  if (Array.isArray(node)) return node.map((x) => rename(x, names, wg));
  if (!node || typeof node !== "object") return node;
  const n = node as Record<string, unknown>;
  if (n["k"] === "builtin" && n["name"] === "wg") return wg;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(n)) {
    if (NAME_FIELDS.has(key) && typeof value === "string") out[key] = names.get(value) ?? value;
    else if (NAME_FIELDS.has(key) && Array.isArray(value) && value.every((x) => typeof x === "string")) out[key] = value.map((x: string) => names.get(x) ?? x);
    else out[key] = rename(value, names, wg);
  }
  return out;
}

/** A tail-merged kernel's uniform: the first kernel's workgroup count. */
export const TAIL_FIRST = "tail_first";
/** A tail-merged kernel's buffer of counters (the target's: zero at launch, left at zero). */
export const TAIL_COUNTERS = "tail_counters";
/** A name of tail j's kernel (1, 2, ...: a buffer, a size, a local) in the merged kernel. */
export const tailName = (name: string, j: number): string => `${name}_t${j}`;
/** A tail-merged kernel's uniform: tail j's workgroup count (run in turn by the first kernel's last workgroup). */
export const tailCount = (j: number): string => tailName("tail_wgs", j);

/** Whether a body holds a workgroup barrier at any depth (a uniform load counts: WGSL's holds one). */
function hasBarrier(ss: readonly Stmt[]): boolean {
  const walk = (node: unknown): boolean => {
    if (Array.isArray(node)) return node.some(walk);
    if (!node || typeof node !== "object") return false;
    const n = node as Record<string, unknown>;
    if (n["k"] === "barrier" || (n["k"] === "load" && n["uniform"] === true)) return true;
    return Object.values(n).some(walk);
  };
  return walk(ss);
}

/** Why a kernel and its tails cannot be merged (undefined: they can). */
export function tailProblem(a: Kernel, tails: readonly Kernel[]): string | undefined {
  const all = [a, ...tails];
  const wg = Math.max(...all.map((k) => k.wg));
  const narrow = all.find((k) => k.wg < wg && hasBarrier(k.body));
  if (narrow) return `${narrow.name} has barriers in a workgroup of ${narrow.wg} threads, not ${wg}`;
  if (all.some((k) => k.buffers.some((x) => x.name === TAIL_COUNTERS) || k.uniforms.includes(TAIL_FIRST))) return "a kernel is already a tail's";
  if (all.some((k) => JSON.stringify(k.body).includes('"mbar'))) return "split-arrival barriers";
  return undefined;
}

/**
 * Kernels run after kernel a in one launch by a's last workgroup to finish, in turn (tails: dependent
 * steps of little work, a few workgroups' worth, such as the router after the gate's GEMV at decode):
 * one launch and no kernel boundary where several were. Each workgroup of a fences its writes and
 * counts itself on counter 0 of TAIL_COUNTERS; the one that counts last (all of a's writes visible
 * to it) sets the counter back to zero and runs each tail's tailCount(j) workgroups one after
 * another, a barrier after each (a tail's workgroup index is its loop's; what one writes, the next
 * reads after that barrier). The merged workgroup is the largest; a smaller kernel runs in its first
 * threads, which it may only do without barriers (tailProblem). Tail j's names take tailName's
 * suffix, but those of its buffers that are an earlier kernel's results (`same`: its name -> the
 * earlier buffer's name in the merged kernel) are read through that kernel's own writable parameter
 * (a second const __restrict__ pointer to the same memory could read through the non-coherent
 * cache). The tails' prefetches are dropped (a's stay).
 */
export function mergeTail(a: Kernel, tails: readonly { kernel: Kernel; same?: ReadonlyMap<string, string> }[], name: string): Kernel {
  const problem = tailProblem(a, tails.map((t) => t.kernel));
  if (problem) throw new Error(`kir tail merge of ${[a, ...tails.map((t) => t.kernel)].map((k) => k.name).join(", ")}: ${problem}`);
  const wg = Math.max(a.wg, ...tails.map((t) => t.kernel.wg));
  const i = (v: number): Expr => ({ k: "lit", t: "i32", v });
  const bin = (op: string, t: "i32" | "bool", x: Expr, y: Expr): Expr => ({ k: "bin", t, op, a: x, b: y }) as Expr;
  const lid: Expr = { k: "builtin", t: "i32", name: "lid" };
  const inWorkgroup = (k: Kernel, body: Stmt[]): Stmt[] => (k.wg < wg ? [{ k: "if", c: bin("<", "bool", lid, i(k.wg)), then: body }] : body);
  const lead = (body: Stmt[]): Stmt => ({ k: "if", c: bin("==", "bool", lid, i(0)), then: body });
  // The merged kernel's names so far (a's, then each tail's as renamed), and what it writes.
  const taken = namesOf(a);
  const written = new Set(a.buffers.filter((x) => x.write).map((x) => x.name));
  const buffers = [...a.buffers];
  const uniforms = [...a.uniforms, TAIL_FIRST];
  const shared = [...a.shared];
  const runs: Stmt[] = [];
  tails.forEach(({ kernel: b, same = new Map<string, string>() }, n) => {
    const j = n + 1;
    for (const [bn, an] of same) if (!written.has(an) || !b.buffers.some((x) => x.name === bn)) throw new Error(`kir tail merge: ${b.name}'s ${bn} is not a buffer an earlier kernel writes (${an})`);
    const renamed = new Map([...namesOf(b)].map((x) => [x, same.get(x) ?? tailName(x, j)]));
    const clash = [...renamed].find(([x, r]) => !same.has(x) && taken.has(r))?.[1];
    if (clash) throw new Error(`kir tail merge: ${a.name} already has a name ${clash}`);
    for (const [x, r] of renamed) if (!same.has(x)) taken.add(r);
    for (const x of b.buffers.filter((x) => !same.has(x.name))) {
      buffers.push({ ...x, name: renamed.get(x.name)! });
      if (x.write) written.add(renamed.get(x.name)!);
    }
    uniforms.push(...b.uniforms.map((u) => renamed.get(u)!), tailCount(j));
    shared.push(...b.shared.map((x) => ({ ...x, name: renamed.get(x.name)! })));
    const v = tailName("tail_wg", j);
    const body = rename(b.body, renamed, { k: "ref", t: "i32", name: v }) as Stmt[];
    runs.push({ k: "for", v, from: i(0), to: { k: "uni", t: "i32", name: tailCount(j) }, step: i(1), body: [...inWorkgroup(b, body), { k: "barrier" }], unroll: false });
  });
  const before = "tail_before";
  const flag = "tail_last";
  if (taken.has(before) || taken.has(flag)) throw new Error(`kir tail merge: ${a.name} already has a name ${before} or ${flag}`);
  const body: Stmt[] = [
    ...inWorkgroup(a, a.body),
    { k: "fence" },
    { k: "barrier" },
    lead([
      { k: "atomicAdd", name: before, buf: TAIL_COUNTERS, idx: i(0), e: i(1) },
      { k: "store", buf: flag, idx: i(0), e: { k: "sel", t: "i32", c: bin("==", "bool", { k: "ref", t: "i32", name: before }, bin("-", "i32", { k: "uni", t: "i32", name: TAIL_FIRST }, i(1))), a: i(1), b: i(0) } as Expr },
    ]),
    { k: "barrier" },
    {
      k: "if",
      c: bin("==", "bool", { k: "load", t: "i32", buf: flag, idx: i(0), uniform: true } as Expr, i(1)),
      then: [{ k: "fence" }, lead([{ k: "store", buf: TAIL_COUNTERS, idx: i(0), e: i(0) }]), ...runs],
    },
  ];
  return {
    name,
    wg,
    buffers: [...buffers, { name: TAIL_COUNTERS, elem: "i32", write: true }],
    uniforms,
    shared: [...shared, { name: flag, t: "i32", size: 1 }],
    body,
    ...(a.wide || tails.some((t) => t.kernel.wide) ? { wide: true } : {}),
    ...(a.minBlocks ? { minBlocks: a.minBlocks } : {}),
    ...(a.preWait?.length ? { preWait: a.preWait } : {}),
  };
}

/** A phase-merged kernel's buffer of two i32 words for its grid barriers (the target's: see kir gridSync). */
export const GRID_SYNC = "grid_sync";
/** A name of phase j's kernel (1, 2, ...: a buffer, a size, a local) in the phase-merged kernel. */
export const phaseName = (name: string, j: number): string => `${name}_p${j}`;
/** A phase-merged kernel's uniform: phase j's workgroup count (0: the first kernel's). */
export const phaseCount = (j: number): string => `phase_wgs_${j}`;

/** Why kernels cannot run as the phases of one launch (undefined: they can). */
export function phaseProblem(kernels: readonly Kernel[]): string | undefined {
  const wg = Math.max(...kernels.map((k) => k.wg));
  const ragged = kernels.find((k) => k.wg < wg && k.wg % 32 !== 0 && hasBarrier(k.body));
  if (ragged) return `${ragged.name} has barriers in a workgroup of ${ragged.wg} threads, not whole warps`;
  const text = kernels.map((k) => JSON.stringify(k.body));
  if (text.some((t) => t.includes('"gridSync"') || t.includes('"nwg"'))) return "a kernel is already grid-synced";
  if (kernels.some((k) => k.buffers.some((x) => x.name === TAIL_COUNTERS))) return "a kernel is a tail's";
  if (text.some((t) => t.includes('"mbar'))) return "split-arrival barriers";
  return undefined;
}

/**
 * Kernels run one after another in one launch, each across the whole grid (phases: dependent steps
 * such as a norm, the GEMV that reads it and the router after that at decode), a grid barrier
 * (gridSync) between each and the next. The grid is what fits on the device at once (the target's
 * choice, read as the nwg builtin), so each phase's workgroups are visited by a workgroup-strided
 * loop: workgroup w runs phase j's workgroups w, w + nwg, ... (phaseCount(j) in all), a workgroup
 * barrier after each (its workgroup arrays are then free for the next). The merged workgroup is the
 * largest; a smaller kernel runs in its first threads, its barriers among those threads only (whole
 * warps: phaseProblem). A `serial` phase (not the first) of a few workgroups' work runs in the last
 * workgroup to arrive at the barrier before it, its workgroups in turn (gridSync's `last`), the others
 * released when it is done: one barrier instead of two; serial phases in a row share it.
 * Phase j's names take phaseName's suffix, except its buffers that hold the storage
 * of an earlier phase's written buffer (`same`: its name -> that buffer's name in the merged kernel),
 * read and written through that buffer's own parameter (as mergeTail's tails are). The first
 * kernel's prefetches stay (for its first visit); the others' are dropped.
 */
export function mergePhases(phases: readonly { kernel: Kernel; same?: ReadonlyMap<string, string>; serial?: boolean }[], name: string): Kernel {
  const kernels = phases.map((p) => p.kernel);
  const problem = phaseProblem(kernels);
  if (problem) throw new Error(`kir phase merge of ${kernels.map((k) => k.name).join(", ")}: ${problem}`);
  const wg = Math.max(...kernels.map((k) => k.wg));
  const i = (v: number): Expr => ({ k: "lit", t: "i32", v });
  const lid: Expr = { k: "builtin", t: "i32", name: "lid" };
  const taken = new Set<string>([GRID_SYNC]);
  const written = new Map<string, Kernel["buffers"][number]>();
  const buffers: Kernel["buffers"] = [];
  const uniforms: string[] = [];
  const shared: Kernel["shared"] = [];
  const body: Stmt[] = [];
  // The last-arrival work of the barrier before the phase being added (a serial phase's), if any.
  let serialAt: Stmt[] | undefined;
  phases.forEach(({ kernel: b, same = new Map<string, string>(), serial }, j) => {
    if (serial && j === 0) throw new Error(`kir phase merge: the first phase (${b.name}) cannot be serial (no barrier before it)`);
    for (const [bn, an] of same) {
      const mine = b.buffers.find((x) => x.name === bn);
      if (!written.has(an) || !mine) throw new Error(`kir phase merge: ${b.name}'s ${bn} is not a buffer an earlier phase writes (${an})`);
      if (written.get(an)!.elem !== mine.elem) throw new Error(`kir phase merge: ${b.name}'s ${bn} (${mine.elem}) is ${an} (${written.get(an)!.elem})`);
    }
    const renamed = new Map([...namesOf(b)].map((x) => [x, same.get(x) ?? (j === 0 ? x : phaseName(x, j))]));
    const clash = [...renamed].find(([x, r]) => !same.has(x) && taken.has(r))?.[1];
    if (clash) throw new Error(`kir phase merge: ${b.name}'s name ${clash} is taken`);
    for (const [x, r] of renamed) if (!same.has(x)) taken.add(r);
    for (const x of b.buffers.filter((x) => !same.has(x.name))) {
      const y = { ...x, name: renamed.get(x.name)! };
      buffers.push(y);
      if (x.write) written.set(y.name, y);
    }
    uniforms.push(...b.uniforms.map((u) => renamed.get(u)!), phaseCount(j));
    shared.push(...b.shared.map((x) => ({ ...x, name: renamed.get(x.name)! })));
    const v = `phase_wg_${j}`;
    if (taken.has(v) || taken.has(phaseCount(j))) throw new Error(`kir phase merge: ${b.name} already has a name ${v} or ${phaseCount(j)}`);
    // A narrower kernel's barriers are among its threads only (the others skip its body).
    const inner = narrowBarriers(rename(b.body, renamed, { k: "ref", t: "i32", name: v }) as Stmt[], b.wg < wg ? b.wg : undefined);
    const run = b.wg < wg ? [{ k: "if", c: { k: "bin", t: "bool", op: "<", a: lid, b: i(b.wg) }, then: inner } as Stmt] : inner;
    if (serial) {
      // Run by the barrier's last arrival, its workgroups in turn; a serial phase after it joins it.
      const visit: Stmt = { k: "for", v, from: i(0), to: { k: "uni", t: "i32", name: phaseCount(j) }, step: i(1), body: [...run, { k: "barrier" }], unroll: false };
      if (serialAt) serialAt.push(visit);
      else {
        serialAt = [visit];
        body.push({ k: "gridSync", buf: GRID_SYNC, last: serialAt });
      }
      return;
    }
    // (After serial phases, their barrier's release is this phase's barrier.)
    if (j > 0 && !serialAt) body.push({ k: "gridSync", buf: GRID_SYNC });
    serialAt = undefined;
    body.push({ k: "for", v, from: { k: "builtin", t: "i32", name: "wg" }, to: { k: "uni", t: "i32", name: phaseCount(j) }, step: { k: "builtin", t: "i32", name: "nwg" }, body: [...run, { k: "barrier" }], unroll: false });
  });
  const first = kernels[0]!;
  const minBlocks = Math.max(0, ...kernels.map((k) => k.minBlocks ?? 0));
  return {
    name,
    wg,
    buffers: [...buffers, { name: GRID_SYNC, elem: "i32", write: true }],
    uniforms,
    shared,
    body,
    ...(kernels.some((k) => k.wide) ? { wide: true } : {}),
    ...(minBlocks ? { minBlocks } : {}),
    ...(first.preWait?.length ? { preWait: first.preWait } : {}),
  };
}

/** A body with each workgroup barrier among its first `threads` threads only (undefined: unchanged). */
function narrowBarriers(ss: Stmt[], threads: number | undefined): Stmt[] {
  if (threads === undefined) return ss;
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (!node || typeof node !== "object") return node;
    const n = node as Record<string, unknown>;
    if (n["k"] === "barrier") return { k: "barrier", threads };
    return Object.fromEntries(Object.entries(n).map(([key, value]) => [key, walk(value)]));
  };
  return walk(ss) as Stmt[];
}
