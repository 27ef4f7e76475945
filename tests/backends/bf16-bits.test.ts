/**
 * A bf16 checkpoint's weights as their 16-bit patterns (bindCheckpoint's bf16Bits, what the WebGPU
 * backend uploads without decoding to f32 and back): the file's patterns, an expert stack's experts
 * side by side, equal to `get`'s values; undefined for a weight that is not bf16 (the checkpoint's
 * dtypes are checked against the model's before).
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseModule } from "../../ir/parse";
import { Tensor } from "../../ir/tensor";
import { Checkpoint } from "../../backends/weights/checkpoint";
import { bindCheckpoint } from "../../backends/weights/bind";
import { writeSafetensors } from "../../backends/weights/safetensors";
import { scratchDir } from "../support/paths";

const MODULE = `module @m {
  func @m(%x: bf16[2, 4]) weights(@w: bf16[3, 4], @experts.*.up: bf16[2, 3, 4], @g: f32[3, 4]) -> (y: bf16[2, 3]) {
    %y = linear(%x, @w) : bf16[2, 3]
    return %y
  }
}
`;

/** bf16 values (exact: an f32 with its low 16 bits clear). */
const bf16Values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, k) => new Float32Array(Uint32Array.of(new Uint32Array(Float32Array.of(Math.sin(k * 1.3 + seed)).buffer)[0]! & 0xffff0000).buffer)[0]!);

describe("bf16 weights as bit patterns", () => {
  it("reads the file's patterns, experts side by side, equal to get's values; not for an f32 weight", () => {
    const dir = scratchDir("lingc-bf16-bits-");
    const w = bf16Values(12, 0);
    const e0 = bf16Values(12, 1);
    const e1 = bf16Values(12, 2);
    writeSafetensors(join(dir, "model.safetensors"), {
      w: new Tensor("bf16", [3, 4], w),
      "experts.0.up": new Tensor("bf16", [3, 4], e0),
      "experts.1.up": new Tensor("bf16", [3, 4], e1),
      g: new Tensor("f32", [3, 4], bf16Values(12, 3)),
    });
    const m = parseModule(MODULE, "m.lir");
    const ck = Checkpoint.open(join(dir, "model.safetensors"));
    try {
      const bound = bindCheckpoint([m], ck);
      const type = (name: string) => m.entry!.weights.find((v) => v.name === name)!.type;
      const asValues = (bits: Uint16Array) => Array.from(new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer));
      const wb = bound.bf16Bits("w", type("w"))!;
      expect(wb).toBeInstanceOf(Uint16Array);
      expect(asValues(wb)).toEqual(Array.from(w));
      const eb = bound.bf16Bits("experts.*.up", type("experts.*.up"))!;
      expect(asValues(eb)).toEqual([...e0, ...e1]);
      expect(asValues(eb)).toEqual(Array.from(bound.get("experts.*.up", type("experts.*.up")).data));
      expect(bound.bf16Bits("g", type("g"))).toBeUndefined();
    } finally {
      ck.close();
    }
  });
});
