/**
 * Choosing the generator for each step of the schedule: fused kernels by their fusion kind, single
 * ops by op name. Every op in the op table has a GPU kernel this way (most through the pointwise
 * generator), so a graph runs with any set of fusions switched off.
 */
import { LingcError } from "../../../ir/errors";
import type { Schedule, Step } from "../../schedule";
import { attentionKernel } from "./attention";
import { Gen, type GeneratedKernel, type GenLimits } from "./context";
import { dispatchKernel } from "./dispatch";
import { normKernel, normWorkgroup } from "./norm";
import { isPointwiseOp, pointwise } from "./pointwise";
import { qkvKernel } from "./qkv";
import { routerKernel, routerWorkgroup } from "./router";

export type { GeneratedKernel, GenLimits } from "./context";

/** The kind a step is compiled as: its fusion kind, or the op's name. */
export function stepKind(step: Step): string {
  return step.kernel?.attrs["fusion"] ?? step.op.opName;
}

export function generateStep(step: Step, schedule: Schedule, limits: GenLimits, name: string): GeneratedKernel {
  const kind = stepKind(step);
  const gen = (wg: number) => new Gen(step, schedule, name, wg, limits);
  switch (kind) {
    case "router":
    case "group_topk": {
      const gt = step.ops.find((o) => o.opName === "group_topk")!;
      return routerKernel(gen(routerWorkgroup(gt.operands[0]!.type.shape[1]!.value!, limits.maxThreads)), step.ops);
    }
    case "qk_norm_rope": {
      const heads = step.ops.find((o) => o.opName === "reshape")!.results[0]!;
      return qkvKernel(gen(normWorkgroup(heads.type.shape[3]!.value!, limits.maxThreads)), step.ops);
    }
    case "attention":
      return attentionKernel(gen(64), step.ops);
    case "rms_norm":
    case "residual_norm":
    case "norm_matmul": {
      const norm = step.ops.find((o) => o.opName === "rms_norm")!;
      const d = norm.operands[0]!.type.shape[norm.operands[0]!.type.rank - 1]!.value!;
      return normKernel(gen(normWorkgroup(d, limits.maxThreads)), step.ops);
    }
    case "moe_dispatch":
      return dispatchKernel(gen(1), step.ops);
    case "swiglu":
    case "epilogue":
    case "elementwise":
      return pointwise(gen(64), step.ops);
  }
  if (!step.kernel && isPointwiseOp(kind)) return pointwise(gen(64), step.ops);
  throw new LingcError(`no GPU kernel for ${step.kernel ? `fused kernel kind '${kind}'` : `op '${kind}'`} (in ${step.scope || "the graph"})`);
}
