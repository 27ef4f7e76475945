/**
 * The plan's cost model: an op's predicted seconds from the op table's FLOPs and bytes (its `cost`
 * rule) and a device's rates, as a roofline: the longer of computing (contractions at the GEMM rate
 * of their operand dtype, everything else at the SIMT rate) and moving its bytes through memory,
 * each side at the fraction of its rate the device's kernels were measured to reach for that kind of
 * op (DeviceRates.achieved), where the rates record them.
 */
import type { Op, Value } from "../../ir/module";
import { getOp, type ShapedType } from "../../ir/ops";
import { defaultCost } from "../../ir/ops/registry";
import type { DeviceRates } from "../../ir/target/cuda";

const shaped = (v: Value, sizes: ReadonlyMap<string, number>): ShapedType => ({ dtype: v.type.dtype, shape: v.type.shape.map((d) => d.eval(sizes)) });

export function opSeconds(op: Op, sizes: ReadonlyMap<string, number>, rates: DeviceRates): { s: number; flops: number } {
  const def = getOp(op.opName);
  if (!def) return { s: 0, flops: 0 };
  const ins = op.operands.map((v) => shaped(v, sizes));
  const outs = op.results.map((v) => shaped(v, sizes));
  const c = def.cost ? def.cost(ins, outs, op.attrs) : defaultCost(ins, outs);
  const contraction = def.traits?.includes("contraction") === true || op.opName === "attention";
  const rate = contraction ? (rates.gemmFlops[op.operands[0]!.type.dtype] ?? rates.simtFlops) : rates.simtFlops;
  const a = rates.achieved?.[op.opName] ?? rates.achieved?.["default"] ?? { compute: 1, memory: 1 };
  return { s: Math.max(c.flops / (rate * a.compute), (c.bytesRead + c.bytesWritten) / (rates.memoryBandwidth * a.memory)), flops: c.flops };
}
