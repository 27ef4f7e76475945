/**
 * The fuzzers' short run in CI (the long one is `npm run fuzz`, figures in the README): mutated
 * checkpoints through `lingc run` end in exit 0 with finite outputs or exit 1 naming the folder, and
 * leave no output behind; mutated IR texts are accepted and print stably, or are refused at a
 * line:column. A few mutations are also checked one by one, so that the fuzzer itself is known to
 * reach what it claims to (a fuzzer that mutates nothing passes everything).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeSafetensors } from "../../backends/weights/safetensors";
import { runCli } from "../../compiler/cli/main";
import { Tensor } from "../../ir/tensor";
import { buildLing2 } from "../../models/ling2";
import { resolveModel } from "../../models/resolve";
import { printModule } from "../../ir/print";
import { readBase, runCheckpointCase, sharded } from "../../fuzz/checkpoint";
import { applyIrMutation, checkIrText, randomIrMutation } from "../../fuzz/ir";
import { Rng } from "../../fuzz/rng";
import { GOLDEN_DIR } from "../support/paths";

const work = mkdtempSync(join(tmpdir(), "lingc-fuzz-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the checkpoint fuzzer (short run)", () => {
  const base = readBase(GOLDEN_DIR);
  const shardedBase = sharded(base);
  const input = join(work, "input.safetensors");
  writeSafetensors(input, { input_ids: Tensor.from("i64", [1, 4], [3, 14, 15, 92]) });

  it("150 mutated checkpoints: every one runs with finite outputs or is refused naming its folder", async () => {
    const findings: string[] = [];
    let refused = 0;
    for (let i = 0; i < 150; i++) {
      const r = await runCheckpointCase(base, shardedBase, input, join(work, "ckpt"), Rng.forCase(20261130, i));
      if (r.finding) findings.push(`case ${i}: ${r.finding}: ${r.message} (${r.mutations.join("; ")})`);
      if (r.code === 1) refused++;
    }
    expect(findings).toEqual([]);
    // Most mutations break the checkpoint: a fuzzer whose mutations did nothing would refuse none.
    expect(refused).toBeGreaterThan(100);
  }, 300_000);

  it("the unmutated base checkpoints (one file and sharded) run", async () => {
    for (const files of [base, shardedBase]) {
      const dir = join(work, `base-${Object.keys(files).length}`);
      mkdirSync(dir, { recursive: true });
      for (const [n, b] of Object.entries(files)) writeFileSync(join(dir, n), b);
      let err = "";
      const code = await runCli(["run", dir, "--input", input, "--out", join(work, "base-out.safetensors")], { out: () => undefined, err: (t) => (err += t) });
      expect(code, err).toBe(0);
    }
  }, 60_000);
});

describe("the IR text fuzzer (short run)", () => {
  it("1000 mutated texts (the seeded generator npm run fuzz uses): accepted and printing stably, or refused at a line:column", () => {
    const tiny = resolveModel("ling-tiny").config;
    const sources = [printModule(buildLing2(tiny, "forward")), printModule(buildLing2(tiny, "decode"))];
    const counts = { accepted: 0, rejected: 0 };
    const findings: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const rng = Rng.forCase(7, i);
      let text = rng.pick(sources);
      for (let k = 1 + rng.int(3); k > 0; k--) text = applyIrMutation(text, randomIrMutation(rng));
      const r = checkIrText(text);
      if (r.kind === "finding") findings.push(`case ${i}: ${r.what}: ${r.message}`);
      else counts[r.kind]++;
    }
    expect(findings).toEqual([]);
    expect(counts.rejected).toBeGreaterThan(500);
    expect(counts.accepted).toBeGreaterThan(0);
  }, 120_000);
});
