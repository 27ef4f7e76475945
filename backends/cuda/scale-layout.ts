/**
 * Which activation scale grids the CUDA backend stores K-block-major ([C / 128][rows]) instead of
 * row-major: those read only by FP8 linears and their SwiGLU pairs (cuBLASLt's block-scaled GEMM, or their
 * generated GEMV), because cuBLASLt takes activation scales (VEC128_32F) in that layout, and by the
 * routed experts' steps (generated kernels only, which read a grid through Gen.scaleAt in either
 * layout: with `gather=before` the tokens' codes are the shared expert's cuBLASLt input too, and
 * row-major scales there cost Ling-mini's 1x8192 prefill 0.29 ms on the H200). The quantize kernel
 * that makes the grid writes it so, and the GEMM runs without a transposing pass before it. A grid
 * that leaves its function (a result, an output) keeps the row-major layout of the IR's meaning;
 * an observed one is named `<value>.scale_t` with its transposed shape. And which stored scale
 * dtypes the target takes: f32 only (refuseScaleDtypes).
 */
import { Dim, product } from "../../ir/dim";
import { LingcError } from "../../ir/errors";
import type { Module } from "../../ir/module";
import { TensorType } from "../../ir/types";
import { collectWeights } from "../../ir/weights";
import { libraryKind } from "../../ir/target/cuda-kernels";
import type { FrameSchedule } from "../frames";
import { storageSlot } from "../schedule";

/** The library kinds whose every kernel reads an activation scale grid K-block-major. */
const K_MAJOR_READERS = ["fp8_linear", "fp8_swiglu", "fp8_expert"];

export function markKMajorScales(fr: FrameSchedule): void {
  const steps = fr.steps.flatMap((s) => (s.step ? [s.step] : []));
  const results = new Set(fr.results.map((r) => storageSlot(fr, r)));
  for (const step of steps) {
    for (const [v, id] of step.writes) {
      const g = v.type.quant?.granularity;
      const producer = step.ops.find((o) => o.results.includes(v));
      if (!g || g.kind !== "block" || g.rows !== 1 || producer?.opName !== "quantize") continue;
      const st = storageSlot(fr, id);
      const scales = fr.slots[st]!.scales;
      if (scales === undefined || results.has(st)) continue;
      const readers = steps.filter((r) => [...r.reads.values()].some((x) => storageSlot(fr, x) === st));
      if (!readers.length || !readers.every((r) => K_MAJOR_READERS.includes(libraryKind(r.ops) ?? ""))) continue;
      const slot = fr.slots[scales]!;
      const [blocks] = slot.type.shape.slice(-1) as [Dim];
      slot.kMajor = true;
      slot.type = new TensorType(slot.type.dtype, [blocks, product(slot.type.shape.slice(0, -1))]);
      if (slot.name !== undefined) slot.name = slot.name.replace(/\.scale$/, ".scale_t");
    }
  }
}

/**
 * The CUDA runtime loads scales as the checkpoint stores them and its kernels read f32 factors: a
 * bf16 or UE8M0 (u8) scale grid is refused by name (interp, onnx and wgsl widen or decode them).
 */
export function refuseScaleDtypes(graphs: readonly Module[]): void {
  for (const m of graphs) {
    const values = [...collectWeights(m).map((w) => ({ what: `weight ${w.name}`, type: w.type })), ...m.entry!.params.map((p) => ({ what: `input ${p.name}`, type: p.type }))];
    for (const v of values) {
      const dt = v.type.quant?.scaleDtype;
      if (dt && dt !== "f32") throw new LingcError(`graph ${m.name}: ${v.what} has ${dt === "u8" ? "UE8M0 (u8)" : dt} scales (${v.type}); the cuda target runs f32 scales only (not implemented for ${dt} yet; the interp, onnx and wgsl backends run them)`);
    }
  }
}
