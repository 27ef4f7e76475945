/** Pass tests as text before and after (MLIR/TVM style), plus meaning preservation on the golden model. */
import { describe, expect, it } from "vitest";
import { interpret } from "../../ir/interpret";
import { Tensor } from "../../ir/tensor";
import { parseModule } from "../../ir/parse";
import { printModule } from "../../ir/print";
import { verifyModule } from "../../ir/verify";
import { Checkpoint } from "../../backends/weights/checkpoint";
import { bindCheckpoint } from "../../backends/weights/bind";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { buildLing2 } from "../../models/ling2";
import { resolveCheckpoint } from "../../models/resolve";
import { getPass, parsePipeline, runPasses } from "../../compiler/passes/manager";
import { GOLDEN_DIR, GOLDEN_FILE } from "../support/paths";
import { tensorDiff } from "../support/compare";

/** Parses `before`, runs one pass, verifies, and returns the printed result. */
function runPass(name: string, before: string): string {
  const m = parseModule(before, "before.lir");
  verifyModule(m);
  runPasses(m, [{ pass: getPass(name), options: {} }], { verifyEach: true });
  return printModule(m);
}

const text = (s: string) => s.replace(/^\n/, "");

describe("dce", () => {
  it("removes unused ops, unused weights and unreachable functions; keeps parameters", () => {
    const before = text(`
module @m {
  func @unused(%x: f32[2]) -> (f32[2]) {
    %0 = neg(%x) : f32[2]
    return %0
  }

  func @m(%x: f32[B, 4], %unused_input: f32[3])
      weights(
        @w: f32[3, 4],
        @dead: f32[3, 4]
      )
      -> (y: f32[B, 3]) {
    %a = linear(%x, @w) : f32[B, 3] scope("proj")
    %b = linear(%x, @dead) : f32[B, 3]
    %c = exp(%b) : f32[B, 3]
    return %a
  }
}
`);
    expect(runPass("dce", before)).toBe(
      text(`
module @m {
  func @m(%x: f32[B, 4], %unused_input: f32[3])
      weights(
        @w: f32[3, 4]
      )
      -> (y: f32[B, 3]) {
    %a = linear(%x, @w) : f32[B, 3] scope("proj")
    return %a
  }
}
`),
    );
  });
});

describe("cse", () => {
  it("merges identical ops, keeps the first one's provenance and takes over names", () => {
    const before = text(`
module @m {
  func @f(%x: f32[4]) -> (f32[4]) {
    %0 = neg(%x) : f32[4]
    return %0
  }

  func @m(%x: f32[4]) -> (a: f32[4], b: f32[4], c: f32[4], d: f32[4]) {
    %0 = constant() {values = [2.5], dtype = f32} : f32[] loc("models/a.ts":1:1)
    %k = constant() {values = [2.5], dtype = f32} : f32[] loc("models/a.ts":2:1)
    %p = mul(%x, %0) : f32[4]
    %q = mul(%x, %k) : f32[4]
    %r = call @f(%x) : f32[4] scope("model.layers.0")
    %s = call @f(%x) : f32[4] scope("model.layers.1")
    %t = call @f(%x) : f32[4] scope("model.layers.0")
    return %p, %q, %r, %s
  }
}
`);
    expect(runPass("cse", before)).toBe(
      text(`
module @m {
  func @f(%x: f32[4]) -> (f32[4]) {
    %0 = neg(%x) : f32[4]
    return %0
  }

  func @m(%x: f32[4]) -> (a: f32[4], b: f32[4], c: f32[4], d: f32[4]) {
    %k = constant() {values = [2.5], dtype = f32} : f32[] loc("models/a.ts":1:1)
    %p = mul(%x, %k) : f32[4]
    %r = call @f(%x) : f32[4] scope("model.layers.0")
    %s = call @f(%x) : f32[4] scope("model.layers.1")
    return %p, %p, %r, %s
  }
}
`),
    );
  });

  it("does not merge ops whose attributes differ", () => {
    const before = text(`
module @m {
  func @m(%x: f32[4, 4]) -> (f32[4], f32[4]) {
    %a = reduce_sum(%x) {axes = [0]} : f32[4]
    %b = reduce_sum(%x) {axes = [1]} : f32[4]
    return %a, %b
  }
}
`);
    expect(runPass("cse", before)).toBe(before);
  });
});

describe("select on CUDA", () => {
  it("refuses a MoE dispatch whose experts' counts and cursors do not fit a block's shared memory, naming the sizes", () => {
    const text = (E: number) => `module @d {
  func @d(%idx: i32[T, 8]) -> (order: i32[T*8], offsets: i32[${E + 1}], rows: i32[T*8]) {
    %order, %offsets, %rows = moe_dispatch(%idx) {num_experts = ${E}} : i32[T*8], i32[${E + 1}], i32[T*8]
    return %order, %offsets, %rows
  }
}`;
    const select = parsePipeline("select{profile=cuda-sm90a}");
    const fits = parseModule(text(6144), "d.lir");
    runPasses(fits, select, {});
    expect(printModule(fits)).toContain('dispatch("dispatch_block if T*8 <= 32768; dispatch_scan")');
    expect(() => runPasses(parseModule(text(6145), "d.lir"), select, {})).toThrow("moe_dispatch: 6145 experts' counts and cursors (49160 bytes) do not fit a block's shared memory on cuda-sm90a (49152 bytes)");
  });
});

describe("pass manager", () => {
  it("names unknown passes and refuses --print-after for a pass not in the pipeline", () => {
    expect(() => parsePipeline("cse,fuse")).toThrow(/unknown pass 'fuse' \(available: cse, dce, castlinear, decompose, fusion, select, fp8, autodiff, recompute, adamw, pipeline\)/);
    const m = buildLing2(resolveCheckpoint(GOLDEN_DIR).config, "forward");
    expect(() => runPasses(m, parsePipeline("dce"), { printAfter: new Set(["cse"]) })).toThrow(/pass 'cse' is not in this pipeline/);
  });

  it("prints after the requested passes", () => {
    const m = buildLing2(resolveCheckpoint(GOLDEN_DIR).config, "decode");
    const printed: string[] = [];
    runPasses(m, parsePipeline("cse,dce"), { printAfter: "all", print: (t) => printed.push(t) });
    expect(printed.map((p) => p.split("\n")[0])).toEqual(["// ----- IR after cse -----", "// ----- IR after dce -----"]);
    expect(() => verifyModule(parseModule(printed[1]!, "after.lir"))).not.toThrow();
  });

  /** The golden model's forward graph after `pipeline`, and whether it gives exactly the numbers it gave before. */
  function exactAfter(pipeline: string) {
    const spec = resolveCheckpoint(GOLDEN_DIR);
    const before = buildLing2(spec.config, "forward");
    const after = buildLing2(spec.config, "forward");
    runPasses(after, parsePipeline(pipeline), { verifyEach: true });
    const ck = Checkpoint.open(spec.checkpointDir);
    const w = bindCheckpoint([before, after], ck);
    const ids = readAllSafetensors(GOLDEN_FILE)["input_ids"]!;
    const a = interpret(before, { input_ids: ids }, w);
    const b = interpret(after, { input_ids: ids }, w);
    for (const k of Object.keys(a)) expect(tensorDiff(a[k]!, b[k]!), k).toBe(0);
    ck.close();
    return after;
  }

  it("decompose{ops=rope} preserves the golden model's numbers exactly", () => {
    expect(printModule(exactAfter("decompose{ops=rope}"))).not.toMatch(/= rope\(/);
  });

  it("cse and dce preserve the golden model's numbers exactly", () => {
    exactAfter("cse,dce");
  });
});

describe("castlinear", () => {
  it("computes what the linear of the f32 casts computed, bit for bit, in the interpreter (Ling's router gate shape, through the token reshape)", () => {
    const src = `
module @m {
  func @m(%h: bf16[2, 3, 256]) weights(@gate.weight: bf16[16, 256]) -> (logits: f32[6, 16]) {
    %x = cast(%h) {to = f32} : f32[2, 3, 256]
    %t = reshape(%x) {shape = [6, 256]} : f32[6, 256]
    %w = cast(@gate.weight) {to = f32} : f32[16, 256]
    %logits = linear(%t, %w) : f32[6, 16]
    return %logits
  }
}
`;
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const h = Tensor.from("bf16", [2, 3, 256], Array.from({ length: 1536 }, rnd));
    const wv = Tensor.from("bf16", [16, 256], Array.from({ length: 4096 }, () => rnd() * 0.1));
    const weights = { get: () => wv };
    const run = (m: ReturnType<typeof parseModule>) => interpret(m, { h }, weights)["logits"]!;
    const before = parseModule(src, "castlinear.lir");
    const want = run(before);
    const after = parseModule(src, "castlinear.lir");
    runPasses(after, parsePipeline("castlinear,dce"), { verifyEach: true });
    expect(printModule(after)).toContain("linear(%0, @gate.weight) {out = f32} : f32[6, 16]");
    expect(printModule(after)).not.toContain("cast(");
    const got = run(after);
    expect(got.dtype).toBe("f32");
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
    expect(Math.max(...Array.from(want.data, Math.abs))).toBeGreaterThan(0.1);
  });
});
