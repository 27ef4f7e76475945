/**
 * `--stages N` (the pipeline pass after the target's pipeline): ling-tiny's forward cut into 2 and 3
 * stages gives the one-stage outputs bit for bit on the interpreter, ONNX Runtime and WebGPU (a transfer is
 * the identity there), within 1e-4 of upstream's logits; generate --stages 2 reproduces greedy_ids; an
 * FP8 checkpoint computed in f32 sends no weight across a cut.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { tensorDiff } from "../support/compare";
import { goldenGreedy } from "../support/golden";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir, SMALL_FP8_DIR, SMALL_FP8_GOLDEN } from "../support/paths";

describe("--stages", () => {
  const golden = readAllSafetensors(GOLDEN_FILE);
  for (const backend of ["interp", "onnx", "wgsl"]) {
    it(`${backend}: 2 and 3 stages equal 1 stage bit for bit, and upstream within 1e-4`, async () => {
      const dir = scratchDir("lingc-stages-");
      const run = async (stages: string[], name: string) => {
        const out = join(dir, name);
        const r = await cli("run", GOLDEN_DIR, "--backend", backend, ...stages, "--input", GOLDEN_FILE, "--out", out);
        expect(r.code, r.stderr).toBe(0);
        return readAllSafetensors(out);
      };
      const one = await run([], "one.safetensors");
      for (const n of ["2", "3"]) {
        const got = await run(["--stages", n], `s${n}.safetensors`);
        expect(Object.keys(got).sort()).toEqual(Object.keys(one).sort());
        for (const [k, t] of Object.entries(one)) expect(Buffer.from(got[k]!.data.buffer).equals(Buffer.from(t.data.buffer)), `${n} stages: ${k}`).toBe(true);
        expect(tensorDiff(got["logits"]!, golden["logits"]!)).toBeLessThanOrEqual(1e-4);
        expect(tensorDiff(got["mtp_logits"]!, golden["mtp_logits"]!)).toBeLessThanOrEqual(1e-4);
      }
    }, 120_000);
  }

  it("an FP8 checkpoint computed in f32 (its bf16 embedding and head cast at load): each stage casts its own, nothing weight-shaped is sent, and onnx's 2 stages equal 1 bit for bit", async () => {
    const dir = scratchDir("lingc-stages-fp8-");
    const ir = await cli("compile", SMALL_FP8_DIR, "--stages", "2", "--target", "ir", "--graph", "forward", "--out", join(dir, "ir"));
    expect(ir.code, ir.stderr).toBe(0);
    const transfers = readFileSync(join(dir, "ir", "forward.lir"), "utf8").split("\n").filter((l) => l.includes("= transfer("));
    expect(transfers.length).toBeGreaterThan(0);
    // Activations carry the batch or sequence symbol; a weight (or its cast) has a fixed shape.
    for (const t of transfers) expect(/: \w+\[[^\]]*\b[BS]\b/.test(t), t).toBe(true);
    const run = async (stages: string[], name: string) => {
      const out = join(dir, name);
      const r = await cli("run", SMALL_FP8_DIR, "--backend", "onnx", "--activation-scheme", "none", ...stages, "--input", SMALL_FP8_GOLDEN, "--out", out);
      expect(r.code, r.stderr).toBe(0);
      return readAllSafetensors(out);
    };
    const one = await run([], "one.safetensors");
    const two = await run(["--stages", "2"], "two.safetensors");
    for (const [k, t] of Object.entries(one)) expect(Buffer.from(two[k]!.data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
  }, 120_000);

  it("generate --stages 2 reproduces greedy_ids (forward and decode graphs both cut)", async () => {
    const { prompts, tokens, steps } = goldenGreedy(golden);
    const r = await cli("generate", GOLDEN_DIR, "--stages", "2", "--prompt", prompts.map((p) => p.join(",")).join(";"), "--max-new-tokens", String(steps));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n").map((l) => l.split(" ").map(Number))).toEqual(tokens);
  }, 120_000);

  it("the IR shows the stages: functions that call the layer functions, transfers at the cuts", async () => {
    const dir = scratchDir("lingc-stages-ir-");
    const r = await cli("compile", GOLDEN_DIR, "--target", "ir", "--stages", "2", "--out", dir);
    expect(r.code, r.stderr).toBe(0);
    const text = (await import("node:fs")).readFileSync(join(dir, "forward.lir"), "utf8");
    expect(text).toMatch(/func @forward\.stage0\(/);
    expect(text).toMatch(/func @forward\.stage1\(/);
    expect(text).toMatch(/attributes \{role = "stage", stage = "1"\}/);
    expect(text).toMatch(/= transfer\(%\d+\) \{from = 0, to = 1\}/);
    expect(text.match(/call @moe_layer\(/g)?.length).toBeGreaterThanOrEqual(2);
  });

  it("compile --target onnx --stages 2 writes one model per stage and the chain between them", async () => {
    const dir = scratchDir("lingc-stages-onnx-");
    const r = await cli("compile", GOLDEN_DIR, "--target", "onnx", "--graph", "forward", "--stages", "2", "--out", dir);
    expect(r.code, r.stderr).toBe(0);
    const fs = await import("node:fs");
    expect(fs.existsSync(join(dir, "forward.stage0.onnx")) && fs.existsSync(join(dir, "forward.stage1.onnx"))).toBe(true);
    expect(fs.existsSync(join(dir, "forward.onnx"))).toBe(false);
    const chain = JSON.parse(fs.readFileSync(join(dir, "forward.stages.json"), "utf8")) as { stages: { model: string; inputs: Record<string, { input?: string; stage?: number; result?: string }> }[]; outputs: { name: string; stage: number }[] };
    expect(chain.stages.map((st) => st.model)).toEqual(["forward.stage0.onnx", "forward.stage1.onnx"]);
    // The second stage receives the first one's hidden state under its name, and the token ids.
    const hidden = Object.entries(chain.stages[1]!.inputs).find(([, src]) => src.stage === 0 && src.result?.startsWith("hidden."));
    expect(hidden?.[0]).toBe(hidden?.[1].result);
    expect(chain.stages[1]!.inputs["input_ids"]).toEqual({ input: "input_ids" });
    expect(chain.outputs.find((o) => o.name === "logits")?.stage).toBe(1);
  });
});
