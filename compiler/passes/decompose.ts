/**
 * decompose: replaces ops by their op-table decomposition (OpDef.decompose), for a target that has
 * no lowering of its own for them (the driver adds `decompose{ops=...}` to such a target's
 * pipeline; `lingc compile --print-pipeline` shows it).
 * Guarantees: every op named in `ops` that has a decomposition is gone, in every function; the ops
 * that replace it keep its scope and source location, and its result keeps its value name, so
 * provenance and observed names are unchanged. A decomposition computes exactly what the op does,
 * so the module's numbers do not change.
 */
import { LingcError } from "../../ir/errors";
import type { Attrs, Module, Value } from "../../ir/module";
import { getOp } from "../../ir/ops";
import { Builder, eraseOp, replaceAllUses } from "../../ir/rewrite";
import type { Pass } from "./pass";
import { optionReader } from "./pipeline";

export const decompose: Pass = {
  name: "decompose",
  summary: "replaces the named ops by their op-table decompositions",
  options: { ops: { kind: "list", doc: "ops to decompose (each must have a decomposition)" } },
  run(m: Module, options) {
    const ops = new Set(optionReader(options).list("ops"));
    for (const name of ops) {
      const def = getOp(name);
      if (!def) throw new LingcError(`decompose: unknown op '${name}'`);
      if (!def.decompose) throw new LingcError(`decompose: op '${name}' has no decomposition`);
    }
    for (const f of m.functions) {
      for (const op of [...f.body]) {
        if (!ops.has(op.opName)) continue;
        const b = new Builder(m, f).setInsertionPointBefore(op);
        const sub = { op1: (name: string, operands: readonly Value[], attrs: Attrs = {}) => b.op1(name, operands, attrs, { scope: op.scope, loc: op.loc }) };
        const results = getOp(op.opName)!.decompose!(sub, op.operands, op.attrs);
        op.results.forEach((r, i) => {
          const v = results[i]!;
          if (v.name === undefined) v.name = r.name;
          replaceAllUses(f, r, v);
        });
        eraseOp(f, op);
      }
    }
  },
};
