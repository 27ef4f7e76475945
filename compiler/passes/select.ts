/**
 * select: kernel selection for a CUDA target, written into the kernel plan.
 * Guarantees: every op or kernel call that the target's runtime runs itself (dense linears, expert
 * matmuls, the MoE dispatch, attention, float copies; ir/target/cuda-kernels.ts) carries a
 * `dispatch(...)`: the kernels it may run with and the run-time size conditions, in the symbols of
 * the function it stands in, so the dump (and `--report`) shows which kernel runs when. Generated
 * kernels carry none. The module computes what it computed before (only annotations change).
 * Options: profile=NAME (a CUDA profile), prefer=KIND:KERNEL,... (force a kernel for a kind of step,
 * to exercise the runtime's other paths), score-bytes=N (the tiled attention's score budget).
 */
import { LingcError } from "../../ir/errors";
import type { Module } from "../../ir/module";
import { substituteDispatch } from "../../ir/dispatch";
import { LIBRARY_KINDS, selectCudaKernel } from "../../ir/target/cuda-kernels";
import { unifyTypes } from "../../ir/unify";
import type { Pass } from "./pass";
import { optionReader } from "./pipeline";

export const select: Pass = {
  name: "select",
  summary: "writes each runtime-run step's kernel dispatch (kernels and size conditions) into the plan",
  options: {
    profile: { kind: "string", doc: "the CUDA profile (e.g. cuda-sm90a)" },
    prefer: { kind: "list", doc: `KIND:KERNEL pairs forcing a kernel (kinds: ${LIBRARY_KINDS.join(", ")})` },
    "score-bytes": { kind: "int", doc: "score bytes the tiled attention keeps at once (default: the profile's)" },
  },
  preserves: "all",
  run(m: Module, options, ctx) {
    const o = optionReader(options);
    const name = o.string("profile");
    if (!name) throw new LingcError("select needs profile=NAME (a CUDA profile, e.g. cuda-sm90a)");
    const profile = ctx.profiles.get(name);
    if (profile.kind !== "cuda") throw new LingcError(`select: profile '${name}' is not a CUDA profile`);
    const prefer = new Map<string, string>();
    for (const p of o.list("prefer")) {
      const [kind, kernel] = p.split(":");
      if (!kind || !kernel) throw new LingcError(`option 'prefer' of pass 'select': '${p}' is not KIND:KERNEL`);
      if (!(LIBRARY_KINDS as readonly string[]).includes(kind)) throw new LingcError(`option 'prefer' of pass 'select': '${kind}' is not a kind of step the runtime runs (${LIBRARY_KINDS.join(", ")})`);
      prefer.set(kind, kernel);
    }
    const scoreBytes = options["score-bytes"] as number | undefined;
    for (const f of m.functions) {
      if (f.role === "kernel") continue;
      for (const op of f.body) {
        op.dispatch = undefined;
        const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
        if (callee && callee.role !== "kernel") continue;
        const sel = selectCudaKernel(callee ? callee.body : [op], profile, { prefer, scoreBytes });
        if (!sel) continue;
        if (!callee) {
          op.dispatch = sel.dispatch;
          continue;
        }
        // The kernel's sizes in the caller's symbols.
        const u = unifyTypes(
          callee.params.map((p) => p.type),
          op.operands.map((v) => v.type),
          callee.params.map((p) => p.name ?? ""),
        );
        if ("problem" in u) throw new LingcError(`select: call to @${callee.name}: ${u.problem}`);
        op.dispatch = substituteDispatch(sel.dispatch, u.bindings);
      }
    }
  },
};
