/**
 * Which quantize steps the CUDA emitter may run as an FP8 GEMV's prologue (backends/cuda/quant-prologue.ts):
 * a quantize whose codes only one later matmul step reads, as that step's input, and that no one
 * keeps. The candidates of small modules after the fp8 pass and CUDA fusion; the numbers of the
 * merged kernels are the simulator's test (tests/cuda/simulate.test.ts).
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { parseModule } from "../../ir/parse";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";
import { buildSchedule, storageSlot } from "../../backends/schedule";
import { prologueCandidates } from "../../backends/cuda/quant-prologue";

const FP8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,projections=a,b},cse,dce,fusion{profile=cuda-sm90a}";

/** The (quantize op, reader op) names of a module's candidates. */
function candidates(body: string, results: string, ret: string, weights = "@a: bf16[64, 512], @b: bf16[64, 512]"): string[] {
  const m = parseModule(
    `module @m {
  func @m(%x: bf16[2, 512]) weights(${weights}) -> (${results}) {
${body}
    return ${ret}
  }
}`,
    "m.lir",
  );
  runPasses(m, parsePipeline(FP8), {});
  const s = buildSchedule(m);
  const kept = new Set(s.outputs.map((o) => storageSlot(s, o.slot)));
  return prologueCandidates(s.steps, (id) => storageSlot(s, id), kept, () => true).map(({ a, b }) => `${s.steps[a]!.op.opName} -> ${s.steps[b]!.op.opName}`);
}

describe("quantize prologue candidates", () => {
  it("a quantize read by one linear is one", () => {
    expect(candidates("    %y = linear(%x, @a) : bf16[2, 64]", "y: bf16[2, 64]", "%y")).toEqual(["quantize -> linear"]);
  });

  it("a quantize whose codes two steps read is none (the linears of a and b share one quantize after cse)", () => {
    expect(candidates("    %y = linear(%x, @a) : bf16[2, 64]\n    %z = linear(%x, @b) : bf16[2, 64]", "y: bf16[2, 64], z: bf16[2, 64]", "%y, %z")).toEqual([]);
  });

  it("a quantize whose codes are also an output is none (they must be stored)", () => {
    const q = "f8e4m3fn[2, 512] scale(f32, block(1, 128))";
    const body = `    %q = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : ${q}\n    %y = linear(%q, @w) {out = bf16} : bf16[2, 64]`;
    expect(candidates(body, `y: bf16[2, 64], q: ${q}`, "%y, %q", "@w: f8e4m3fn[64, 512] scale(f32, block(128, 128))")).toEqual([]);
    expect(candidates(body, "y: bf16[2, 64]", "%y", "@w: f8e4m3fn[64, 512] scale(f32, block(128, 128))")).toEqual(["quantize -> linear"]);
  });

  it("a quantize whose input is itself made by a step is still one (the GEMV reads that step's result)", () => {
    expect(candidates("    %h = mul(%x, %x) : bf16[2, 512]\n    %y = linear(%h, @a) : bf16[2, 64]", "y: bf16[2, 64], h: bf16[2, 512]", "%y, %h")).toEqual(["quantize -> linear"]);
  });
});
