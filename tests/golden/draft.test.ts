/**
 * Speculative decoding with the MTP layer as the draft (`generate --draft mtp`): on every backend
 * that runs the shared generation loop, the golden greedy_ids come out unchanged. ling-tiny's random
 * MTP layer never agrees with its main model, so a second run replaces the draft's proposals with
 * the known greedy continuation (wrong on every third round): both paths run, the accepted one
 * (two tokens from one main forward) and the rejected one (the draft's position dropped from the KV
 * cache, on the device for wgsl).
 */
import { describe, expect, it } from "vitest";
import type { GraphRunner, LoadedModel } from "../../backends/backend";
import { generate } from "../../backends/generation";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { loadModel } from "../../compiler/driver/load";
import { openSource } from "../../compiler/driver/source";
import { Tensor } from "../../ir/tensor";
import { cli } from "../support/cli";
import { goldenGreedy } from "../support/golden";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir } from "../support/paths";
import { agreeingDraftCheckpoint } from "../support/agreeing-draft";
import { join } from "node:path";

const golden = readAllSafetensors(GOLDEN_FILE);
const { prompts, tokens: want, steps } = goldenGreedy(golden);

async function withDraft(backend: string): Promise<LoadedModel> {
  const source = await openSource(GOLDEN_DIR);
  return (await loadModel({ source, backend, graphs: [...source.graphs, "draft"] })).model;
}

/**
 * The model with the draft graph's proposal (its last logits row) replaced by the token plain greedy
 * decoding makes there, except on every third proposal (then the next id). The draft graph still
 * runs, so its cache grows as it would. Sequences run one after another; a draft run from position
 * 0 starts the next one.
 */
function oracleDraft(model: LoadedModel): LoadedModel {
  const real = model.graphs["draft"]!;
  let seq = -1;
  let round = 0;
  const runner: GraphRunner = {
    async run(inputs) {
      const out = await real.run(inputs);
      const ids = inputs["input_ids"]!;
      const P = inputs[Object.keys(inputs).find((k) => k.startsWith("past.") && k.endsWith(".key"))!]!.shape[2]!;
      if (P === 0) seq++;
      const S = ids.shape[1]!;
      const logits = out["mtp_logits"]!;
      const V = logits.shape[2]!;
      // The last position P + S - 1 proposes the token at P + S + 1: new token P + S + 1 - prompt length.
      const at = P + S + 1 - prompts[seq]!.length;
      const right = want[seq]![at] ?? 0;
      const pick = round++ % 3 === 2 ? (right + 1) % V : right;
      const data = new Float32Array(S * V);
      data[(S - 1) * V + pick] = 1;
      return { ...out, mtp_logits: new Tensor("f32", [1, S, V], data) };
    },
  };
  return { ...model, graphs: { ...model.graphs, draft: runner } };
}

describe.each(["interp", "onnx", "wgsl"])("speculative decoding with the MTP draft (%s)", (backend) => {
  it("reproduces the golden greedy_ids with the checkpoint's own MTP layer drafting", async () => {
    const model = await withDraft(backend);
    try {
      const r = await generate(model, prompts, steps, { draft: "mtp" });
      expect(r.tokens).toEqual(want);
      expect(r.draft!.drafted).toBeGreaterThan(0);
      expect(r.draft!.mainForwards + r.draft!.accepted).toBe(prompts.length * steps);
    } finally {
      model.close();
    }
  });

  it("keeps the same ids when drafts are accepted (two tokens a forward) and rejected (the cache rolled back)", async () => {
    const model = await withDraft(backend);
    try {
      const r = await generate(oracleDraft(model), prompts, steps, { draft: "mtp" });
      expect(r.tokens).toEqual(want);
      const d = r.draft!;
      expect(d.accepted).toBeGreaterThan(0);
      expect(d.drafted - d.accepted).toBeGreaterThan(0);
      // Each forward keeps one token, and one more for each accepted draft.
      expect(d.mainForwards + d.accepted).toBe(prompts.length * steps);
      expect(d.mainForwards).toBeLessThan(prompts.length * steps);
    } finally {
      model.close();
    }
  });
});

describe.each(["interp", "onnx", "wgsl"])("speculative decoding with an MTP layer that always agrees (%s)", (backend) => {
  it("accepts every draft: two tokens a main forward, the same ids as plain greedy", async () => {
    const dir = agreeingDraftCheckpoint(GOLDEN_DIR, join(scratchDir("lingc-draft-"), "agree"));
    const source = await openSource(dir);
    const { model } = await loadModel({ source, backend, graphs: [...source.graphs, "draft"] });
    try {
      const plain = await generate(model, prompts, 9);
      const r = await generate(model, prompts, 9, { draft: "mtp" });
      expect(r.tokens).toEqual(plain.tokens);
      const d = r.draft!;
      expect(d.accepted).toBe(d.drafted);
      // Per sequence: the prefill, 4 accepted rounds (8 tokens), and nothing left to draft.
      expect(d.mainForwards).toBe(prompts.length * 5);
      expect(d.mainForwards + d.accepted).toBe(prompts.length * 9);
    } finally {
      model.close();
    }
  });
});

describe("lingc generate --draft", () => {
  const prompt = prompts.map((p) => p.join(",")).join(";");
  it("prints the same ids as without, and how the drafts fared", async () => {
    const plain = await cli("generate", GOLDEN_DIR, "--prompt", prompt, "--max-new-tokens", String(steps));
    const drafted = await cli("generate", GOLDEN_DIR, "--prompt", prompt, "--max-new-tokens", String(steps), "--draft", "mtp");
    expect(drafted.code).toBe(0);
    expect(drafted.stdout).toBe(plain.stdout);
    expect(drafted.stdout.trim().split("\n").map((l) => l.split(" ").map(Number))).toEqual(want);
    expect(drafted.stderr).toMatch(/draft \(mtp\): \d+ of \d+ drafts accepted/);
  });

  it("refuses sampling, stages, and a model without a draft graph, before any work", async () => {
    const sampled = await cli("generate", GOLDEN_DIR, "--prompt", "1,2", "--max-new-tokens", "2", "--draft", "mtp", "--temperature", "0.7");
    expect(sampled.code).not.toBe(0);
    expect(sampled.stderr).toMatch(/--draft mtp is greedy only/);
    const toy = await cli("generate", "examples/toy-mlp.ts", "--prompt", "1,2", "--max-new-tokens", "2", "--draft", "mtp");
    expect(toy.code).not.toBe(0);
    expect(toy.stderr).toMatch(/has no draft graph/);
    const staged = await cli("generate", GOLDEN_DIR, "--prompt", "1,2", "--max-new-tokens", "2", "--draft", "mtp", "--stages", "2");
    expect(staged.code).toBe(2);
    expect(staged.stderr).toMatch(/does not combine with --stages/);
    const compiled = await cli("compile", GOLDEN_DIR, "--target", "onnx", "--draft", "mtp", "--out", join(scratchDir("lingc-draft-"), "x"));
    expect(compiled.code).toBe(2);
    expect(compiled.stderr).toMatch(/--draft mtp adds the draft graph to a CUDA program/);
    const other = await cli("generate", GOLDEN_DIR, "--prompt", "1,2", "--max-new-tokens", "2", "--draft", "eagle");
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/--draft/);
  });
});
