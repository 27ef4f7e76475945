/**
 * The full list of checkpoint tensors a graph uses: each function declares its weights relative to
 * its call scope, so walking the calls from the entry gives every full name (`model.layers.7.` +
 * `attention.dense.weight`) with its type, and the function and call that use it.
 */
import { LingcError } from "./errors";
import { Func, Module, joinScope } from "./module";
import type { TensorType } from "./types";

export interface WeightUse {
  /** Full checkpoint name (a stacked weight keeps its `*`: `model.layers.1.mlp.experts.*.gate_proj.weight`). */
  name: string;
  type: TensorType;
  /** The function whose declaration this is. */
  func: Func;
  /** The declared (relative) name inside that function. */
  local: string;
  /** The functions called from the entry down to `func` (entry first), on the first path that uses it. */
  path: Func[];
}

/** Every weight a function uses, with full names, in a stable order (calls expanded in program order). */
export function collectWeights(m: Module, entry?: Func): WeightUse[] {
  const root = entry ?? m.entry;
  if (!root) throw new LingcError(`module @${m.name} has no entry function @${m.name}`);
  const out: WeightUse[] = [];
  const seen = new Map<string, WeightUse>();
  const visit = (f: Func, prefix: string, path: Func[]) => {
    for (const w of f.weights) {
      const name = joinScope(prefix, w.name!);
      const prev = seen.get(name);
      if (prev) {
        if (!prev.type.equals(w.type)) throw new LingcError(`weight ${name} is used as ${prev.type} and as ${w.type}`);
        continue;
      }
      const use = { name, type: w.type, func: f, local: w.name!, path };
      seen.set(name, use);
      out.push(use);
    }
    for (const op of f.body) {
      if (op.opName !== "call") continue;
      const callee = m.getFunc(op.callee!);
      if (callee) visit(callee, joinScope(prefix, op.scope), [...path, callee]);
    }
  };
  visit(root, "", [root]);
  return out;
}

/** The per-expert checkpoint names of a stacked weight (`*` replaced by 0..E-1). */
export function expertNames(stackedName: string, experts: number): string[] {
  return Array.from({ length: experts }, (_, e) => stackedName.replace(".*.", `.${e}.`));
}
