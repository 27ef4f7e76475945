/** The ONNX backend: golden numerics through ONNX Runtime, weights by reference, determinism, errors. */
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { emitOnnx } from "../../backends/onnx/emit";
import { decodeModel } from "../../backends/onnx/proto";
import { createSession, fromOrt, loadOrt, toOrt } from "../../backends/onnx/runtime";
import { unboundLayout } from "../../backends/onnx/weights";
import { greedyGenerate } from "../../backends/generation";
import { loadCheckpoint, type TestModel } from "../support/load";
import { Checkpoint } from "../../backends/weights/checkpoint";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { buildLing2 } from "../../models/ling2";
import { resolveCheckpoint, resolveModel } from "../../models/resolve";
import { cli } from "../support/cli";
import { maxAbsDiff, tensorDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir } from "../support/paths";
import { goldenGreedy } from "../support/golden";
import { forOnnx } from "../support/onnx";

const dir = scratchDir();
const golden = readAllSafetensors(GOLDEN_FILE);

describe("onnx backend on the golden checkpoint", () => {
  let model: TestModel;
  beforeAll(async () => {
    const spec = resolveCheckpoint(GOLDEN_DIR);
    model = await loadCheckpoint("onnx", spec.checkpointDir);
  });

  it("forward matches the golden logits and mtp_logits within 1e-4", async () => {
    const out = await model.forward.run({ input_ids: golden["input_ids"]! });
    expect(tensorDiff(out["logits"]!, golden["logits"]!)).toBeLessThanOrEqual(1e-4);
    expect(tensorDiff(out["mtp_logits"]!, golden["mtp_logits"]!)).toBeLessThanOrEqual(1e-4);
  });

  it("generate reproduces greedy_ids exactly through the decode graph", async () => {
    const { prompts, tokens, steps, stepLogits } = goldenGreedy(golden);
    const r = await greedyGenerate(model, prompts, steps);
    expect(r.tokens).toEqual(tokens);
    for (let b = 0; b < prompts.length; b++) for (let s = 0; s < steps; s++) expect(maxAbsDiff(r.stepLogits[b]![s]!, stepLogits(b, s))).toBeLessThanOrEqual(1e-4);
  });
});

describe("lingc compile --target onnx", () => {
  it("from a checkpoint: external data points at the tensors' bytes inside the checkpoint's safetensors (no copy)", async () => {
    const out = join(dir, "bound");
    const r = await cli("compile", GOLDEN_DIR, "--target", "onnx", "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(out)).toEqual(["forward.onnx"]);
    const bytes = readFileSync(join(out, "forward.onnx"));
    expect(statSync(join(out, "forward.onnx")).size).toBeLessThan(200_000); // the graph only: weights stay in the checkpoint
    const m = decodeModel(bytes);
    const ck = Checkpoint.open(GOLDEN_DIR);
    const inits = m.graph!.initializer!;
    expect(inits.length).toBe(ck.names().length);
    for (const t of inits) {
      const kv = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]));
      const e = ck.entry(t.name!)!;
      expect(kv).toEqual({ location: "model.safetensors", offset: String(e.entry.begin), length: String(e.entry.end - e.entry.begin) });
    }
    ck.close();
  });

  it("from a built-in config: unbound until onnx-bind points it at a checkpoint; then ONNX Runtime loads and runs it", async () => {
    const out = join(dir, "unbound");
    expect((await cli("compile", "ling-tiny", "--target", "onnx", "--out", out)).code).toBe(0);
    const path = join(out, "forward.onnx");
    await expect(createSession(readFileSync(path), GOLDEN_DIR)).rejects.toThrow(/ONNX Runtime could not load the model/);
    const bound = join(out, "forward.bound.onnx");
    const r = await cli("onnx-bind", path, GOLDEN_DIR, "--out", bound);
    expect(r.code, r.stderr).toBe(0);
    const session = await createSession(readFileSync(bound), GOLDEN_DIR);
    const ort = await loadOrt();
    const res = await session.run({ input_ids: toOrt(ort, golden["input_ids"]!) });
    expect(tensorDiff(fromOrt(res["logits"]!, "logits"), golden["logits"]!)).toBeLessThanOrEqual(1e-4);
    // Bound from the built-in config or compiled from the checkpoint: the same bytes.
    await cli("compile", GOLDEN_DIR, "--target", "onnx", "--out", join(dir, "direct"));
    expect(readFileSync(bound).equals(readFileSync(join(dir, "direct", "forward.onnx")))).toBe(true);
  });

  it("emits identical bytes on every run", () => {
    const m = () => forOnnx(buildLing2(resolveModel("ling-tiny").config, "decode"));
    const a = emitOnnx(m(), { weights: unboundLayout() }).bytes;
    const b = emitOnnx(m(), { weights: unboundLayout() }).bytes;
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  it("compiles Ling-1T's forward graph in under 10 seconds, with symbolic input and output dims", async () => {
    const t0 = performance.now();
    const r = await cli("compile", "ling-1t", "--target", "onnx", "--graph", "forward", "--out", join(dir, "1t"));
    const seconds = (performance.now() - t0) / 1000;
    expect(r.code, r.stderr).toBe(0);
    expect(seconds).toBeLessThan(10);
    const g = decodeModel(readFileSync(join(dir, "1t", "forward.onnx"))).graph!;
    const dims = (v: NonNullable<typeof g.input>[number]) => v.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
    expect(dims(g.input![0]!)).toEqual(["B", "S"]);
    expect(g.output!.map((o) => o.name).slice(0, 3)).toEqual(["logits", "mtp_logits", "present.0.key"]);
    expect(dims(g.output![0]!)).toEqual(["B", "S", 157184]);
    // Node names carry the IR scope; doc strings the model source line.
    const topk = g.node!.find((n) => n.name!.startsWith("model.layers.7.mlp.gate/TopK"))!;
    expect(topk.docString).toMatch(/^models\/ling2\.ts:\d+:\d+$/);
    expect(existsSync(join(dir, "1t", "forward.onnx"))).toBe(true);
  });
});

describe("opset limits", () => {
  const lir = (body: string, sig: string) => `module @g {\n  func @g(${sig}) -> (y: f32[4]) {\n${body}\n    return %y\n  }\n}\n`;

  it("an fp8 dtype below opset 19 is refused, naming the op and its IR location", async () => {
    const path = join(dir, "fp8.lir");
    writeFileSync(path, lir(`    %q = cast(%x) {to = f8e4m3fn} : f8e4m3fn[4] scope("quant")\n    %y = cast(%q) {to = f32} : f32[4]`, "%x: f32[4]"));
    const r = await cli("compile", path, "--target", "onnx", "--opset", "18", "--out", join(dir, "fp8"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/op 'cast' in quant at .*fp8\.lir:3:5: dtype f8e4m3fn needs ONNX opset 19 or later \(chosen: 18\)/);
    expect(existsSync(join(dir, "fp8", "g.onnx"))).toBe(false);
    expect((await cli("compile", path, "--target", "onnx", "--opset", "19", "--out", join(dir, "fp8"))).code).toBe(0);
  });

  it("a matmul on fp8 operands is refused", async () => {
    const path = join(dir, "mm.lir");
    writeFileSync(path, lir(`    %a = cast(%x) {to = f8e4m3fn} : f8e4m3fn[1, 4]\n    %b = linear(%a, %a) : f8e4m3fn[1, 1]\n    %y = constant() {values = [0.0], dtype = f32, shape = [4]} : f32[4]`, "%x: f32[1, 4]"));
    const r = await cli("compile", path, "--target", "onnx", "--passes", "", "--out", join(dir, "mm"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/op 'linear' at .*mm\.lir:4:5: ONNX MatMul does not take f8e4m3fn operands/);
  });

  it("an opset outside ONNX Runtime's range is refused", async () => {
    const r = await cli("compile", "ling-tiny", "--target", "onnx", "--opset", "27", "--out", join(dir, "o27"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ONNX opset 27 is not supported: lingc emits opsets 18 to 26/);
  });
});

describe("lingc compare", () => {
  it("reports every shared named value and passes within 1e-4 for interp vs onnx", async () => {
    const r = await cli("compare", GOLDEN_DIR, "--backends", "interp,onnx", "--input", GOLDEN_FILE);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const name of ["hidden.0", "model.layers.1.mlp.topk_idx", "model.layers.3.mlp.gate.scores", "logits", "mtp_logits"]) expect(r.stdout).toContain(name);
    expect(r.stdout).toMatch(/all \d+ values interp and onnx share are within 0\.0001/);
  });

  it("names the first value over the tolerance", async () => {
    const r = await cli("compare", GOLDEN_DIR, "--backends", "interp,onnx", "--input", GOLDEN_FILE, "--tolerance", "1e-9");
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/first value over tolerance 1e-9: model\.rotary_emb\.(cos|sin)|first value over tolerance 1e-9: model\.layers\.0/);
  });
});

