/**
 * fusion: groups ops into kernels and records the plan in the IR.
 * Guarantees: each group of ops that a target runs as one kernel is outlined into its own function
 * (attributes {role = "kernel", fusion = "<pattern>"}) and called from where the group stood, so the
 * dump shows every kernel by name with its ops, inputs (parameters, weights) and outputs (results).
 * Ops keep their scopes and source locations; the call has scope "" so weight names and observed
 * value names are unchanged, and the module computes exactly what it computed before. Ops left
 * outside any group run as kernels of their own (free ops such as reshape and constant cost nothing).
 *
 * The groups come from a pattern table (fusion-patterns.ts) run by ir/'s greedy driver in table
 * order; an op joins at most one group. Options:
 *   profile=NAME   the target profile: its workgroup memory bounds norm_matmul, and a target whose
 *                  dense matmuls run in a GEMM library (CUDA) keeps them out of generated kernels
 *   disable=A,B    patterns to switch off (or `all`)
 */
import { LingcError } from "../../ir/errors";
import { outline } from "../../ir/rewrite";
import { applyPatterns } from "../../ir/pattern";
import { kernelLimits } from "../../ir/target";
import type { Module, Op } from "../../ir/module";
import { FUSIONS, fusionPatterns, type Grouping } from "./fusion-patterns";
import type { Pass } from "./pass";
import { optionReader } from "./pipeline";

export { FUSIONS, type FusionName } from "./fusion-patterns";

export function checkFusionNames(names: Iterable<string>): void {
  for (const n of names) {
    if (n !== "all" && !(FUSIONS as readonly string[]).includes(n)) throw new LingcError(`unknown fusion '${n}' (fusions: ${FUSIONS.join(", ")}, or all)`);
  }
}

export const fusion: Pass = {
  name: "fusion",
  summary: `groups ops into kernels (${FUSIONS.join(", ")}) and outlines each into a kernel function`,
  options: {
    profile: { kind: "string", doc: "target profile whose limits apply (e.g. webgpu-baseline, cuda-sm90a); none: no limits" },
    disable: { kind: "list", doc: "fusion patterns to switch off, or all", choices: [...FUSIONS, "all"] },
  },
  run(m: Module, options, ctx) {
    const o = optionReader(options);
    const profileName = o.string("profile");
    const limits = profileName ? kernelLimits(ctx.profiles.get(profileName)) : undefined;
    if (profileName && !limits) throw new LingcError(`fusion: target profile '${profileName}' runs no generated kernels`);
    const disabled = new Set(o.list("disable"));
    for (const f of [...m.functions]) {
      if (f.role === "kernel") continue;
      const g: Grouping = { owner: new Map<Op, string>(), groups: [] };
      applyPatterns(m, f, fusionPatterns(g, limits, disabled));
      // Outline in program order so kernel names read top to bottom.
      const first = (ops: Set<Op>) => Math.min(...[...ops].map((op) => f.body.indexOf(op)));
      const groups = [...g.groups].sort((a, b) => first(a.ops) - first(b.ops));
      const count = new Map<string, number>();
      for (const grp of groups) {
        const n = count.get(grp.kind) ?? 0;
        count.set(grp.kind, n + 1);
        outline(m, f, grp.ops, `${f.name}.${grp.kind}${n ? `.${n}` : ""}`, { role: "kernel", fusion: grp.kind });
      }
    }
  },
};
