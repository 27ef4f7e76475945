/**
 * The FP8 ops on the interpreter against the golden set (tests/data/golden/README.md): quantize's
 * dynamic recipe reproduces upstream's per-token 1x128 quantization bit for bit, and a linear of the
 * quantized input with the checkpoint's FP8 weight and block scales gives upstream's W8A8 output.
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { verifyModule } from "../../ir/verify";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { SMALL_FP8_DIR, SMALL_FP8_GOLDEN } from "../support/paths";
import { join } from "node:path";

const golden = readAllSafetensors(SMALL_FP8_GOLDEN);
const ckpt = readAllSafetensors(join(SMALL_FP8_DIR, "model.safetensors"));
const PROJECTIONS = ["layers.0.attention.query_key_value", "layers.0.mlp.down_proj", "layers.1.mlp.shared_experts.down_proj"];

function projectionModule(T: number, K: number, O: number): string {
  const W = `f8e4m3fn[${O}, ${K}] scale(f32, block(128, 128))`;
  return `module @p {
  func @p(%x: f32[${T}, ${K}])
      weights(
        @w: ${W}
      )
      -> (q: f8e4m3fn[${T}, ${K}] scale(f32, block(1, 128)), y: f32[${T}, ${O}]) {
    %q = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[${T}, ${K}] scale(f32, block(1, 128)) scope("aq")
    %y = linear(%q, @w) {out = f32} : f32[${T}, ${O}] scope("proj")
    return %q, %y
  }
}
`;
}

/** The checkpoint's FP8 weight with its block scales (weight_scale_inv) as one scaled tensor. */
function fp8Weight(name: string): Tensor {
  const w = ckpt[`model.${name}.weight`]!;
  const s = ckpt[`model.${name}.weight_scale_inv`]!;
  return new Tensor(w.dtype, w.shape, w.data, { layout: { scaleDtype: "f32", granularity: { kind: "block", rows: 128, cols: 128 } }, scales: Float32Array.from(s.data) });
}

describe.each(PROJECTIONS)("W8A8 projection %s on the interpreter", (name) => {
  const x = golden[`aq.${name}.x`]!;
  const w = fp8Weight(name);
  const [T, K] = x.shape as [number, number];
  const m = parseModule(projectionModule(T, K, w.shape[0]!));
  verifyModule(m);
  const out = interpret(m, { x }, { get: () => w });

  it("quantizes the input to upstream's q and s bit for bit", () => {
    const q = out["q"]!;
    expect(Array.from(q.data)).toEqual(Array.from(golden[`aq.${name}.q`]!.data));
    expect(Array.from(q.scaled!.scales)).toEqual(Array.from(golden[`aq.${name}.s`]!.data));
  });

  it("gives upstream's y within 1e-5 of its largest value", () => {
    const y = out["y"]!;
    const want = golden[`aq.${name}.y`]!;
    let peak = 0;
    let worst = 0;
    for (let i = 0; i < want.numel; i++) {
      peak = Math.max(peak, Math.abs(want.data[i]!));
      worst = Math.max(worst, Math.abs(y.data[i]! - want.data[i]!));
    }
    expect(worst / peak).toBeLessThanOrEqual(1e-5);
  });
});
