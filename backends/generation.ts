/**
 * Greedy generation with a KV cache, for any backend and any program that declares it (module
 * attributes, ir/generation.ts): one prefill pass over the prompt (which also returns the cache),
 * then one decode step per new token, each cache input fed from the output the declaration names.
 * Prompts of different lengths run as separate batches, so no padding or mask is ever needed.
 */
import { LingcError } from "../ir/errors";
import { cachePairs, generationRole, type CachePair } from "../ir/generation";
import { Tensor } from "../ir/tensor";
import type { GraphSignature, LoadedModel } from "./backend";

export interface GenerateResult {
  /** New token ids per prompt. */
  tokens: number[][];
  /** Per prompt, per step: the logits the token was chosen from (length V). */
  stepLogits: Float32Array[][];
}

export interface GenerationPlan {
  prefill: GraphSignature;
  decode: GraphSignature;
  tokens: { prefill: string; decode: string };
  logits: { prefill: string; decode: string };
  cache: CachePair[];
  vocab: number;
}

/** Which graphs prefill and decode, and how the cache flows, from the graphs' declarations. */
export function generationPlan(signatures: Readonly<Record<string, GraphSignature>>): GenerationPlan {
  const sigs = Object.values(signatures);
  const find = (role: "prefill" | "decode") => {
    const hits = sigs.filter((s) => generationRole(s)?.role === role);
    if (hits.length !== 1) throw new LingcError(`generation needs exactly one graph declaring generation = "${role}" (found ${hits.length} among ${sigs.map((s) => s.name).join(", ")})`);
    return hits[0]!;
  };
  const prefill = find("prefill");
  const decode = find("decode");
  const p = generationRole(prefill)!;
  const d = generationRole(decode)!;
  const logits = prefill.outputs.find((o) => o.name === p.logits);
  if (!logits) throw new LingcError(`graph ${prefill.name} declares logits = "${p.logits}" but has no such output`);
  const vocab = Number(logits.shape[logits.shape.length - 1]);
  if (!Number.isSafeInteger(vocab)) throw new LingcError(`graph ${prefill.name}: the last axis of ${p.logits} (${logits.shape.join(", ")}) must be a number`);
  const cache = cachePairs(d.cache, decode.inputs.map((i) => i.name));
  for (const c of cache) {
    if (!prefill.outputs.some((o) => o.name === c.output)) throw new LingcError(`graph ${decode.name}'s cache input ${c.input} is fed by ${c.output}, which ${prefill.name} does not output`);
    if (!decode.outputs.some((o) => o.name === c.output)) throw new LingcError(`graph ${decode.name}'s cache input ${c.input} is fed by ${c.output}, which ${decode.name} does not output`);
  }
  return { prefill, decode, tokens: { prefill: p.tokens, decode: d.tokens }, logits: { prefill: p.logits, decode: d.logits }, cache, vocab };
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

async function generateBatch(model: LoadedModel, plan: GenerationPlan, prompts: number[][], maxNew: number): Promise<GenerateResult> {
  const B = prompts.length;
  const S = prompts[0]!.length;
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
  let out = await model.graphs[plan.prefill.name]!.run({ [plan.tokens.prefill]: ids });
  let next = take(out[plan.logits.prefill]!);
  for (let step = 1; step < maxNew; step++) {
    const inputs: Record<string, Tensor> = { [plan.tokens.decode]: Tensor.from("i64", [B, 1], next) };
    for (const c of plan.cache) inputs[c.input] = out[c.output]!;
    out = await model.graphs[plan.decode.name]!.run(inputs);
    next = take(out[plan.logits.decode]!);
  }
  return { tokens, stepLogits };
}

export async function greedyGenerate(model: LoadedModel, prompts: number[][], maxNew: number): Promise<GenerateResult> {
  const plan = generationPlan(model.signatures);
  const V = plan.vocab;
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
      plan,
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
