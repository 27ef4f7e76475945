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
