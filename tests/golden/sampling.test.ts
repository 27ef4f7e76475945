/**
 * Sampling and end-of-sequence: the sampler draws from the distribution temperature, top-k and top-p
 * describe (frequencies against the softmax), a seed gives the same ids on every run and on interp,
 * onnx and wgsl for the golden checkpoint, and a sequence stops after its end-of-sequence token.
 */
import { describe, expect, it } from "vitest";
import { generate } from "../../backends/generation";
import { TokenSampler } from "../../backends/sampling";
import { loadModel } from "../../compiler/driver/load";
import { openSource } from "../../compiler/driver/source";
import type { LoadedModel } from "../../backends/backend";
import { cli } from "../support/cli";
import { GOLDEN_DIR, GOLDEN_FILE } from "../support/paths";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { goldenGreedy } from "../support/golden";

const softmax = (l: number[], t: number) => {
  const e = l.map((x) => Math.exp(x / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
};

describe("the token sampler", () => {
  const logits = [1.0, 2.5, 0.3, 2.4, -1.0, 0.9, 1.7, 0.0];

  it("draws tokens with the softmax's frequencies at the temperature (40,000 draws, within 4 standard errors)", () => {
    const s = new TokenSampler({ temperature: 0.7, seed: 3 }, 0);
    const n = 40_000;
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[s.pick(logits)]++;
    softmax(logits, 0.7).forEach((p, i) => {
      const se = Math.sqrt((p * (1 - p)) / n);
      expect(Math.abs(counts[i] / n - p), `token ${i}: ${counts[i] / n} vs ${p}`).toBeLessThan(4 * se + 1e-9);
    });
  });

  it("keeps only the top-k tokens, and the top-p head (renormalized)", () => {
    const topK = new TokenSampler({ temperature: 1, topK: 3, seed: 1 }, 0);
    const seenK = new Set(Array.from({ length: 5000 }, () => topK.pick(logits)));
    expect([...seenK].sort()).toEqual([1, 3, 6]);
    // Probabilities at t = 1, sorted: 1 (0.313), 3 (0.283), 6 (0.141), 0 (0.070), 5 (0.063), ...: the
    // head reaching 0.7 is {1, 3, 6}; reaching 0.5, {1, 3}.
    const p = softmax(logits, 1);
    expect(p[1]! + p[3]! + p[6]!).toBeGreaterThan(0.7);
    expect(p[1]! + p[3]!).toBeLessThan(0.7);
    const topP = new TokenSampler({ temperature: 1, topP: 0.7, seed: 1 }, 0);
    const counts = new Map<number, number>();
    for (let i = 0; i < 20_000; i++) {
      const id = topP.pick(logits);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([1, 3, 6]);
    const head = p[1]! + p[3]! + p[6]!;
    expect(Math.abs(counts.get(1)! / 20_000 - p[1]! / head)).toBeLessThan(0.015);
  });

  it("is greedy at temperature 0; a seed and a sequence index give one stream", () => {
    expect(new TokenSampler({ temperature: 0, seed: 9 }, 0).pick(logits)).toBe(1);
    const draw = (seed: number, seq: number) => {
      const s = new TokenSampler({ temperature: 1, seed }, seq);
      return Array.from({ length: 64 }, () => s.pick(logits));
    };
    expect(draw(5, 0)).toEqual(draw(5, 0));
    expect(draw(5, 0)).not.toEqual(draw(6, 0));
    expect(draw(5, 0)).not.toEqual(draw(5, 1));
  });
});

describe("generation with sampling and end-of-sequence on the golden checkpoint", () => {
  const golden = goldenGreedy(readAllSafetensors(GOLDEN_FILE));
  const prompts = golden.prompts;
  const load = async (backend: string) => (await loadModel({ source: await openSource(GOLDEN_DIR), backend })).model;
  const sampling = { temperature: 0.8, topK: 50, topP: 0.9, seed: 7 };

  it("gives the same sampled ids on every run and on interp, onnx and wgsl", async () => {
    const ids: Record<string, number[][]> = {};
    for (const backend of ["interp", "onnx", "wgsl"]) {
      const m = await load(backend);
      try {
        ids[backend] = (await generate(m, prompts, 8, { sampling })).tokens;
        if (backend === "interp") expect((await generate(m, prompts, 8, { sampling })).tokens).toEqual(ids[backend]);
        if (backend === "interp") expect((await generate(m, prompts, 8, { sampling: { ...sampling, seed: 8 } })).tokens).not.toEqual(ids[backend]);
      } finally {
        m.close();
      }
    }
    expect(ids["onnx"]).toEqual(ids["interp"]);
    expect(ids["wgsl"]).toEqual(ids["interp"]);
    // Not the greedy ids: the sampler drew.
    expect(ids["interp"]).not.toEqual(golden.tokens);
  }, 120_000);

  it("stops a sequence after its end-of-sequence token; the others go on", async () => {
    const want = golden.tokens;
    const eos = want[0]![2]!;
    const m = await load("interp");
    try {
      const r = await generate(m, prompts, 6, { eos: [eos] });
      expect(r.tokens[0]).toEqual(want[0]!.slice(0, 3));
      const cut = want[1]!.indexOf(eos);
      expect(r.tokens[1]).toEqual(cut >= 0 ? want[1]!.slice(0, cut + 1) : want[1]);
      expect(r.stepLogits[0]!.length).toBe(3);
    } finally {
      m.close();
    }
  });

  it("refuses to sample on a backend that generates greedily in its own program", async () => {
    const real = await load("interp");
    const greedyOnly: LoadedModel = { ...real, generate: async () => ({ tokens: [], stepLogits: [] }) };
    try {
      await expect(generate(greedyOnly, prompts, 2, { sampling })).rejects.toThrow(/sampling there is not built yet: use --temperature 0, or another backend/);
    } finally {
      real.close();
    }
  });

  it("the CLI: --temperature/--top-k/--top-p/--seed as the API, bad values as usage errors", async () => {
    const prompt = prompts.map((p) => p.join(",")).join(";");
    const r = await cli("generate", GOLDEN_DIR, "--prompt", prompt, "--max-new-tokens", "8", "--temperature", "0.8", "--top-k", "50", "--top-p", "0.9", "--seed", "7");
    expect(r.code, r.stderr).toBe(0);
    const m = await load("interp");
    try {
      const api = (await generate(m, prompts, 8, { sampling })).tokens;
      expect(r.stdout).toBe(api.map((t) => t.join(" ") + "\n").join(""));
    } finally {
      m.close();
    }
    expect(r.stderr).toContain("sampled at temperature 0.8, top-k 50, top-p 0.9, seed 7, stopping at 1");
    for (const [opt, value, msg] of [
      ["--temperature", "-1", "--temperature: '-1' is not a number >= 0"],
      ["--top-p", "0", "--top-p: '0' is not a number in (0, 1]"],
      ["--top-k", "2.5", "--top-k: '2.5' is not an integer >= 1"],
      ["--seed", "x", "--seed: 'x' is not an integer >= 0"],
      ["--eos-token-id", "a", "--eos-token-id: item 1 ('a') is not a token id"],
    ]) {
      const base = opt === "--temperature" ? [] : ["--temperature", "1"];
      const b = await cli("generate", GOLDEN_DIR, "--prompt", "1,2", "--max-new-tokens", "2", ...base, opt!, value!);
      expect(b.code, `${opt} ${value}`).toBe(2);
      expect(b.stderr).toContain(msg!);
    }
    const k = await cli("generate", GOLDEN_DIR, "--prompt", "1,2", "--max-new-tokens", "2", "--top-k", "5");
    expect(k.code).toBe(2);
    expect(k.stderr).toContain("give --temperature T > 0 with them");
  }, 60_000);
});
