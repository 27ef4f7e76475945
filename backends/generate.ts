/**
 * Greedy generation with a KV cache, for any backend: one forward pass over the prompt (which
 * also returns the cache), then one decode step per new token that appends to the cache. Prompts
 * of different lengths run as separate batches, so no padding or mask is ever needed.
 */
import { LingcError } from "../ir/errors";
import { Tensor } from "../ir/tensor";
import type { LoadedModel } from "./backend";

export interface GenerateResult {
  /** New token ids per prompt. */
  tokens: number[][];
  /** Per prompt, per step: the logits the token was chosen from (length V). */
  stepLogits: Float32Array[][];
}

/** Index of the largest value; ties go to the lowest index (as torch.argmax). */
export function argmax(a: ArrayLike<number>, lo: number, hi: number): number {
  let best = lo;
  for (let i = lo + 1; i < hi; i++) if (a[i]! > a[best]!) best = i;
  return best - lo;
}

function lastLogits(logits: Tensor, b: number): Float32Array {
  const [, S, V] = logits.shape as [number, number, number];
  const off = (b * S + S - 1) * V;
  return Float32Array.from(logits.data.subarray(off, off + V));
}

async function generateBatch(model: LoadedModel, prompts: number[][], maxNew: number): Promise<GenerateResult> {
  const B = prompts.length;
  const S = prompts[0]!.length;
  const L = model.config.numLayers;
  const tokens: number[][] = prompts.map(() => []);
  const stepLogits: Float32Array[][] = prompts.map(() => []);
  const take = (logits: Tensor) =>
    prompts.map((_, b) => {
      const row = lastLogits(logits, b);
      const id = argmax(row, 0, row.length);
      tokens[b]!.push(id);
      stepLogits[b]!.push(row);
      return id;
    });

  const ids = Tensor.from("i64", [B, S], prompts.flat());
  let out = await model.forward.run({ input_ids: ids });
  let next = take(out["logits"]!);
  for (let step = 1; step < maxNew; step++) {
    const inputs: Record<string, Tensor> = { input_ids: Tensor.from("i64", [B, 1], next) };
    for (let i = 0; i < L; i++) {
      inputs[`past.${i}.key`] = out[`present.${i}.key`]!;
      inputs[`past.${i}.value`] = out[`present.${i}.value`]!;
    }
    out = await model.decode.run(inputs);
    next = take(out["logits"]!);
  }
  return { tokens, stepLogits };
}

export async function greedyGenerate(model: LoadedModel, prompts: number[][], maxNew: number): Promise<GenerateResult> {
  const V = model.config.vocabSize;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new LingcError(`prompt ${i + 1} is empty`);
    p.forEach((id, j) => {
      if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new LingcError(`prompt ${i + 1}, token ${j + 1}: id ${id} is not in the vocabulary (0..${V - 1})`);
    });
  });
  const result: GenerateResult = { tokens: prompts.map(() => []), stepLogits: prompts.map(() => []) };
  if (maxNew <= 0) return result;
  if (model.generate) return model.generate(prompts, maxNew);
  const byLength = new Map<number, number[]>();
  prompts.forEach((p, i) => byLength.set(p.length, [...(byLength.get(p.length) ?? []), i]));
  for (const idxs of byLength.values()) {
    const r = await generateBatch(
      model,
      idxs.map((i) => prompts[i]!),
      maxNew,
    );
    idxs.forEach((i, j) => {
      result.tokens[i] = r.tokens[j]!;
      result.stepLogits[i] = r.stepLogits[j]!;
    });
  }
  return result;
}
