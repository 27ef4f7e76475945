/**
 * A pipeline's hand-over: `transfer(x) {from, to}` is x, sent from stage `from` to stage `to` (the
 * pipeline pass puts one at every cut). Its value is x's; a host that runs the stages on different
 * devices copies it there (NCCL between GPUs), one that runs them in one place passes it on.
 */
import { TensorType } from "../types";
import { defineOp } from "./registry";

export const TRANSFER = defineOp({
  name: "transfer",
  summary: "x, sent from pipeline stage `from` to stage `to` (the value unchanged)",
  operands: ["x"],
  attrs: {
    from: { kind: "int", doc: "the stage that made x" },
    to: { kind: "int", doc: "the stage that reads it" },
  },
  traits: ["elementwise", "scaled"],
  infer: ([x]) => [new TensorType(x!.dtype, x!.shape, x!.quant)],
  scalar: (_S, [x]) => x!,
  // The cotangent travels back the other way.
  vjp: (b, _ins, _outs, [ct], attrs) => [b.op1("transfer", [ct!], { from: attrs["to"]!, to: attrs["from"]! })],
  // No arithmetic and no memory traffic on either device: the plan charges the link per cut.
  cost: () => ({ flops: 0, bytesRead: 0, bytesWritten: 0 }),
});
