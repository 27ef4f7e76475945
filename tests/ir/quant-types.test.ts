/**
 * Quantization lives in the type (DESIGN principle 7): a scaled FP8 type survives every type
 * operation, a call (the callee's result type is substituted, not rebuilt), the text form, and the
 * pass pipelines of every target.
 */
import { describe, expect, it } from "vitest";
import { Dim } from "../../ir/dim";
import { parseModule } from "../../ir/parse";
import { printModule } from "../../ir/print";
import { tensor } from "../../ir/types";
import { verifyModule } from "../../ir/verify";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";
import { pipelineFor } from "../../compiler/driver/compile";
import { ProfileRegistry } from "../../ir/target";

const SCALED = "f8e4m3fn[256, 128] scale(f32, block(128, 128))";
const ROWS = "f8e4m3fn[T, 128] scale(f32, block(1, 128))";

const MODULE = `module @q attributes {model = "quant-test"} {
  func @pass_through(%w: ${SCALED}, %a: ${ROWS}, %x: f32[T, 4]) -> (w: ${SCALED}, a: ${ROWS}, y: f32[T, 4]) attributes {role = "layer"} {
    %y = neg(%x) : f32[T, 4] scope("neg")
    return %w, %a, %y
  }

  func @q(%x: f32[T, 4], %a: ${ROWS})
      weights(
        @proj.weight: ${SCALED}
      )
      -> (w: ${SCALED}, a: ${ROWS}, y: f32[T, 4]) {
    %w, %a2, %y = call @pass_through(@proj.weight, %a, %x) : ${SCALED}, ${ROWS}, f32[T, 4] scope("layers.0")
    return %w, %a2, %y
  }
}
`;

describe("scaled FP8 types", () => {
  it("keep their scale layout through withShape, withDtype (to fp8) and withQuant", () => {
    const t = tensor("f8e4m3fn", [256, 128], { scaleDtype: "f32", granularity: { kind: "block", rows: 128, cols: 128 } });
    expect(t.withShape([Dim.of(512), Dim.of(128)]).toString()).toBe("f8e4m3fn[512, 128] scale(f32, block(128, 128))");
    expect(t.withDtype("f8e5m2").toString()).toBe("f8e5m2[256, 128] scale(f32, block(128, 128))");
    // A wide dtype holds real values: no scales.
    expect(t.withDtype("bf16").toString()).toBe("bf16[256, 128]");
    expect(t.withQuant(undefined).toString()).toBe("f8e4m3fn[256, 128]");
  });

  it("pass through a call, print and parse back unchanged, and verify", () => {
    const m = parseModule(MODULE, "q.lir");
    verifyModule(m);
    const text = printModule(m);
    expect(text).toBe(MODULE);
    expect(text).toContain(`call @pass_through(@proj.weight, %a, %x) : ${SCALED}, ${ROWS}, f32[T, 4]`);
  });

  it.each(["ir", "onnx", "wgsl", "cuda"] as const)("keep their scales through the default pipeline of target %s", async (target) => {
    const profiles = new ProfileRegistry();
    const { text } = await pipelineFor(target, {}, undefined, profiles);
    const m = parseModule(MODULE, "q.lir");
    verifyModule(m);
    runPasses(m, parsePipeline(text), { verifyEach: true, profiles });
    const after = printModule(m);
    verifyModule(parseModule(after, "after.lir"));
    expect(after).toContain(`-> (w: ${SCALED}, a: ${ROWS}, y: f32[T, 4])`);
    expect(after).toContain(`@proj.weight: ${SCALED}`);
  });

  it("a call that passes an unscaled fp8 tensor where a scaled one is declared is refused, naming both types", () => {
    const bad = MODULE.replace(`func @q(%x: f32[T, 4], %a: ${ROWS})`, "func @q(%x: f32[T, 4], %a: f8e4m3fn[T, 128])").replace(`-> (w: ${SCALED}, a: ${ROWS}, y: f32[T, 4]) {\n    %w`, `-> (w: ${SCALED}, a: ${ROWS}, y: f32[T, 4]) {\n    %w`);
    const m = parseModule(bad, "bad.lir");
    expect(() => verifyModule(m)).toThrow(/bad\.lir:\d+:\d+: call to @pass_through: argument %a: expected f8e4m3fn\[T, 128\] scale\(f32, block\(1, 128\)\), got f8e4m3fn\[T, 128\]/);
  });

  // Before this rule, a reshape of a quantized activation verified and ran: its result, typed unscaled
  // fp8, held the codes alone, and a cast of it gave 112, -448, 24, ... where x was 0.25, -0.99, 0.05.
  it.each([
    ["neg", "%1 = neg(%0) : f8e4m3fn[4, 256]", "x"],
    ["transpose", "%1 = transpose(%0) {perm = [1, 0]} : f8e4m3fn[256, 4]", "x"],
    ["cast", "%1 = cast(%0) {to = f32} : f32[4, 256]", "x"],
    ["add", "%1 = add(%0, %0) : f8e4m3fn[4, 256]", "a"],
  ])("an op that does not read scale layouts (%s) refuses a scaled operand, naming it and the line", (name, line, operand) => {
    const text = `module @m {
  func @m(%x: f32[4, 256], %order: i32[8]) -> (y: f32[4, 256]) {
    %0 = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[4, 256] scale(f32, block(1, 128))
    ${line}
    return %x
  }
}
`;
    const want = new RegExp(`drop\\.lir:4:5: '${name}' does not take a scaled fp8 operand \\(${operand}: f8e4m3fn\\[4, 256\\] scale\\(f32, block\\(1, 128\\)\\)\\): it would drop the scales; dequantize it first`);
    expect(() => verifyModule(parseModule(text, "drop.lir"))).toThrow(want);
  });

  it("reshape keeps per-row and 1 x G scales where only the leading axes change, and refuses to move elements between groups", () => {
    const text = (shape: string) => `module @m {
  func @m(%x: f32[4, 256]) -> (y: f32[4, 256]) {
    %0 = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[4, 256] scale(f32, block(1, 128))
    %1 = reshape(%0) {shape = [${shape}]} : f8e4m3fn[${shape}] scale(f32, block(1, 128))
    return %x
  }
}
`;
    expect(() => verifyModule(parseModule(text("2, 2, 256"), "ok.lir"))).not.toThrow();
    expect(() => verifyModule(parseModule(text("2, 512"), "bad.lir"))).toThrow(/bad\.lir:4:5: reshape of f8e4m3fn\[4, 256\] scale\(f32, block\(1, 128\)\) to \[2, 512\]: its scales would not stay with their elements/);
  });

  it("moe_permute moves a row's scales with it (per-row and 1 x G layouts), and refuses scales that span rows", () => {
    const ok = `module @m {
  func @m(%x: f32[4, 256], %order: i32[8]) -> (y: f32[8, 256]) {
    %0 = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[4, 256] scale(f32, block(1, 128))
    %1 = moe_permute(%0, %order) {k = 2} : f8e4m3fn[8, 256] scale(f32, block(1, 128))
    %2 = dequantize(%1) {to = f32} : f32[8, 256]
    return %2
  }
}
`;
    expect(() => verifyModule(parseModule(ok, "ok.lir"))).not.toThrow();
    const blocks = ok.replaceAll("block = [1, 128]", "block = [2, 128]").replaceAll("block(1, 128)", "block(2, 128)");
    expect(() => verifyModule(parseModule(blocks, "blocks.lir"))).toThrow(/blocks\.lir:4:5: moe_permute of f8e4m3fn\[4, 256\] scale\(f32, block\(2, 128\)\): its scales span rows that the gather moves apart/);
  });

  it("the ops with the scaled trait take it: dequantize, linear, grouped_linear, transfer", () => {
    const text = `module @m {
  func @m(%x: f32[4, 256], %offsets: i32[3]) weights(@w: ${"f8e4m3fn[128, 256] scale(f32, block(128, 128))"}, @e: f8e4m3fn[2, 128, 256] scale(f32, block(128, 128))) -> (a: f32[4, 256], b: f32[4, 128], c: f32[4, 128]) {
    %0 = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[4, 256] scale(f32, block(1, 128))
    %1 = transfer(%0) {from = 0, to = 1} : f8e4m3fn[4, 256] scale(f32, block(1, 128))
    %2 = dequantize(%1) {to = f32} : f32[4, 256]
    %3 = linear(%1, @w) {out = f32} : f32[4, 128]
    %4 = grouped_linear(%1, @e, %offsets) {out = f32} : f32[4, 128]
    return %2, %3, %4
  }
}
`;
    expect(() => verifyModule(parseModule(text, "ok.lir"))).not.toThrow();
  });
});
