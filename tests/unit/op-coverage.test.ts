/**
 * Every op of the op table against every backend: lowered (by a lowering of its own, by its scalar
 * formula or index rule, or by a library routine), or refused with a stated reason. A gap (an op a
 * backend has no way to run and no reason for) fails the test; the table is printed.
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { Op } from "../../ir/module";
import { allOps, type OpDef } from "../../ir/ops";
import { LOWERINGS, onnxLowering } from "../../backends/onnx/lower";
import { templateForOp } from "../../backends/kernels/gen";
import { runtimeKindOf } from "../../backends/cuda/library";

type Status = { how: string } | { gap: string };

function interp(d: OpDef): Status {
  if (d.interpret) return { how: "reference" };
  if (d.scalar) return { how: "scalar formula" };
  if (d.index) return { how: "index rule" };
  return { gap: "no meaning" };
}

function onnx(d: OpDef): Status {
  if (LOWERINGS[d.name]) return { how: "lowering" };
  if (onnxLowering(d.name)) return { how: "scalar formula" };
  if (d.decompose) return { how: "decomposed" };
  return { gap: "no ONNX lowering" };
}

function gpu(d: OpDef): Status {
  const t = templateForOp(new Op(d.name, [], {}, [], "", undefined));
  if (!t) return { gap: "no kernel template" };
  if (t === "pointwise") return { how: d.scalar ? "pointwise (scalar formula)" : d.index ? "pointwise (index rule)" : "pointwise" };
  return { how: `${t} kernel` };
}

function cuda(d: OpDef): Status {
  const kind = runtimeKindOf([new Op(d.name, [], {}, [], "", undefined)]);
  return kind ? { how: `runtime: ${kind}` } : gpu(d);
}

const BACKENDS: Record<string, (d: OpDef) => Status> = { interp, onnx, wgsl: gpu, cuda };

describe("op coverage", () => {
  const ops = allOps().sort((a, b) => a.name.localeCompare(b.name));
  const table = ops.map((d) => ({ op: d.name, ...Object.fromEntries(Object.entries(BACKENDS).map(([b, f]) => [b, f(d)])) })) as ({ op: string } & Record<string, Status>)[];

  it("every op runs on every backend (or is refused with a reason)", () => {
    const w = Math.max(...ops.map((d) => d.name.length));
    const cell = (s: Status) => ("how" in s ? s.how : `GAP: ${s.gap}`);
    const lines = [`${"op".padEnd(w)}  ${Object.keys(BACKENDS).map((b) => b.padEnd(28)).join("")}`];
    for (const row of table) lines.push(`${row.op.padEnd(w)}  ${Object.keys(BACKENDS).map((b) => cell(row[b]!).padEnd(28)).join("")}`);
    console.log(lines.join("\n"));
    const gaps = table.flatMap((row) => Object.keys(BACKENDS).filter((b) => "gap" in row[b]!).map((b) => `${row.op} on ${b}: ${(row[b] as { gap: string }).gap}`));
    expect(gaps).toEqual([]);
  });

  it("covers the whole table (the ops Ling uses and the rest)", () => {
    expect(ops.map((d) => d.name)).toEqual(expect.arrayContaining(["attention", "grouped_linear", "group_topk", "rms_norm", "rope", "silu", "embedding", "moe_dispatch"]));
    expect(ops.length).toBeGreaterThanOrEqual(39);
  });
});
