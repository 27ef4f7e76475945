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

/** A tail-merged kernel's uniforms: the first kernel's workgroup count, and the second's (run by the first's last workgroup). */
export const TAIL_FIRST = "tail_first";
export const TAIL_SECOND = "tail_second";
/** The tail-merged kernel's buffer of counters (the target's: zero at launch, left at zero). */
export const TAIL_COUNTERS = "tail_counters";

/** Whether a body holds a workgroup barrier (or a split-arrival one) at any depth. */
function hasBarrier(ss: readonly Stmt[]): boolean {
  const walk = (node: unknown): boolean => {
    if (Array.isArray(node)) return node.some(walk);
    if (!node || typeof node !== "object") return false;
    const n = node as Record<string, unknown>;
    if (n["k"] === "barrier" || n["k"] === "mbarWait" || n["k"] === "mbarInit" || (n["k"] === "load" && n["uniform"] === true)) return true;
    return Object.values(n).some(walk);
  };
  return walk(ss);
}

/** Why two kernels cannot be tail-merged (undefined: they can). */
export function tailProblem(a: Kernel, b: Kernel): string | undefined {
  const wg = Math.max(a.wg, b.wg);
  const narrow = [a, b].find((k) => k.wg < wg && hasBarrier(k.body));
  if (narrow) return `${narrow.name} has barriers in a workgroup of ${narrow.wg} threads, not ${wg}`;
  if ([a, b].some((k) => k.buffers.some((x) => x.name === TAIL_COUNTERS) || k.uniforms.some((u) => u === TAIL_FIRST || u === TAIL_SECOND))) return "a kernel already has the tail's names";
  if (hasMbar(b.body) || hasMbar(a.body)) return "split-arrival barriers";
  return undefined;
}

const hasMbar = (ss: readonly Stmt[]) => JSON.stringify(ss).includes('"mbar');

/**
 * Kernel b after kernel a in one launch, run by a's last workgroup to finish: for a dependent step of
 * little work (a few workgroups' worth: the router after the gate's GEMV at decode), one launch and
 * no kernel boundary where two were. Each workgroup of a fences its writes and counts itself on
 * counter 0 of TAIL_COUNTERS; the one that counts last (all of a's writes visible to it) sets the
 * counter back to zero and runs b's TAIL_SECOND workgroups one after another, a barrier between
 * (b's workgroup index is the loop's). The merged workgroup is the larger of the two; the smaller
 * kernel runs in its first threads, which it may only do without barriers (tailProblem). b's names
 * take the second kernel's suffix as in mergeKernels, but those that are a's results (`same`: b's
 * name -> a's) are a's; b's prefetches are dropped (a's stay).
 */
export function mergeTail(a: Kernel, b: Kernel, name: string, same: ReadonlyMap<string, string> = new Map()): Kernel {
  const problem = tailProblem(a, b);
  if (problem) throw new Error(`kir tail merge of ${a.name} and ${b.name}: ${problem}`);
  for (const [bn, an] of same)
    if (!a.buffers.some((x) => x.name === an && x.write) || !b.buffers.some((x) => x.name === bn)) throw new Error(`kir tail merge: ${b.name}'s ${bn} is not one of ${a.name}'s written buffers (${an})`);
  // b's buffers that are a's results (`same`) are read through a's own parameter: one pointer, writable
  // (a const __restrict__ second pointer to the same memory could be read through the non-coherent cache).
  const renamed = new Map([...namesOf(b)].map((n) => [n, same.get(n) ?? secondName(n)]));
  const first = namesOf(a);
  const clash = [...renamed].find(([n, r]) => !same.has(n) && first.has(r))?.[1];
  if (clash) throw new Error(`kir merge: ${a.name} already has a name ${clash}`);
  const wg = Math.max(a.wg, b.wg);
  const i = (v: number): Expr => ({ k: "lit", t: "i32", v });
  const bin = (op: string, t: "i32" | "bool", x: Expr, y: Expr): Expr => ({ k: "bin", t, op, a: x, b: y }) as Expr;
  const lid: Expr = { k: "builtin", t: "i32", name: "lid" };
  const inWorkgroup = (k: Kernel, body: Stmt[]): Stmt[] => (k.wg < wg ? [{ k: "if", c: bin("<", "bool", lid, i(k.wg)), then: body }] : body);
  const v = secondName("tail_wg");
  const before = secondName("tail_before");
  const flag = secondName("tail_last");
  const loopWg: Expr = { k: "ref", t: "i32", name: v };
  const second = rename(b.body, renamed, loopWg) as Stmt[];
  const lead = (body: Stmt[]): Stmt => ({ k: "if", c: bin("==", "bool", lid, i(0)), then: body });
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
      then: [
        { k: "fence" },
        lead([{ k: "store", buf: TAIL_COUNTERS, idx: i(0), e: i(0) }]),
        { k: "for", v, from: i(0), to: { k: "uni", t: "i32", name: TAIL_SECOND }, step: i(1), body: [...inWorkgroup(b, second), { k: "barrier" }], unroll: false },
      ],
    },
  ];
  return {
    name,
    wg,
    buffers: [...a.buffers, ...b.buffers.filter((x) => !same.has(x.name)).map((x) => ({ ...x, name: renamed.get(x.name)! })), { name: TAIL_COUNTERS, elem: "i32", write: true }],
    uniforms: [...a.uniforms, ...b.uniforms.map((u) => renamed.get(u)!), TAIL_FIRST, TAIL_SECOND],
    shared: [...a.shared, ...b.shared.map((x) => ({ ...x, name: renamed.get(x.name)! })), { name: flag, t: "i32", size: 1 }],
    body,
    ...(a.wide || b.wide ? { wide: true } : {}),
    ...(a.minBlocks ? { minBlocks: a.minBlocks } : {}),
    ...(a.preWait?.length ? { preWait: a.preWait } : {}),
  };
}
