/**
 * Generation with a KV cache, for any backend and any program that declares it (module attributes,
 * ir/generation.ts): one prefill pass over the prompt (which also returns the cache), then one decode
 * step per new token, each cache input fed from the output the declaration names. Tokens are chosen
 * greedily or sampled (backends/sampling.ts); a sequence stops after an end-of-sequence token.
 * Prompts of different lengths run as separate batches, so no padding or mask is ever needed.
 * Generation stays within the cache capacity the decode graph declares.
 */
import { LingcError } from "../ir/errors";
import { Tensor } from "../ir/tensor";
import type { DraftStats, LoadedModel } from "./backend";
import { checkCapacity, ended, generationPlan, GenerationSession, logitsRow, type GenerationPlan, type LaunchedStep } from "./generation-session";
import { checkSampling, TokenSampler, type SamplingOptions } from "./sampling";
import { draftOf, generateDrafted } from "./speculative";

export { generationPlan, type GenerationPlan } from "./generation-session";

export interface GenerateOptions {
  /** How tokens are chosen (default: greedy). */
  sampling?: SamplingOptions;
  /** Token ids that end a sequence: it stops after the first one it generates (included in its tokens). */
  eos?: readonly number[];
  /** Called once the prompts are checked, before any work (a CLI says there what it will do). */
  onStart?: () => void;
  /** Called with each token as it is chosen (the prompt's index, the token); a backend that generates in its own program calls it once it is done. */
  onToken?: (sequence: number, token: number) => void;
  /** Speculative decoding with the model's draft graph (its MTP layer): greedy only; the same tokens as without. */
  draft?: "mtp";
  /**
   * Greedy on a backend that keeps tensors on its device (GraphRunner.launchOnDevice): launch each
   * step before the last is read back, the device choosing the tokens (the same tokens; see
   * chainedGreedy). Off by default: through Dawn on the H200 the submissions made while a step is
   * still running stalled for up to 2.0 ms each, so it was not shown to be faster there (on llvmpipe
   * it was: 24.6 against 19.4 tokens/s); `npm run bench:wgsl` measures both.
   */
  chainSteps?: boolean;
}

export interface GenerateResult {
  /** New token ids per prompt. */
  tokens: number[][];
  /** Per prompt, per step: the logits the token was chosen from (length V). */
  stepLogits: Float32Array[][];
  /** With a draft: how the drafts fared, over all prompts. */
  draft?: DraftStats;
}

async function generateBatch(model: LoadedModel, plan: GenerationPlan, prompts: number[][], indices: readonly number[], maxNew: number, opts: GenerateOptions): Promise<GenerateResult> {
  const B = prompts.length;
  const S = prompts[0]!.length;
  const eos = new Set(opts.eos ?? []);
  const tokens: number[][] = prompts.map(() => []);
  const stepLogits: Float32Array[][] = prompts.map(() => []);
  // A sampler per sequence, keyed by its index among all prompts (batching does not change its ids).
  const samplers = indices.map((i) => new TokenSampler(opts.sampling ?? { temperature: 0, seed: 0 }, i));
  const take = (logits: Tensor) =>
    prompts.map((_, b) => {
      const row = logitsRow(logits, b);
      if (ended(tokens[b]!, eos)) return tokens[b]![tokens[b]!.length - 1]!; // finished: fed its EOS again, nothing kept
      const id = samplers[b]!.pick(row);
      tokens[b]!.push(id);
      stepLogits[b]!.push(row);
      opts.onToken?.(indices[b]!, id);
      return id;
    });
  const session = new GenerationSession(model, plan, S + maxNew - 1);
  const prompt = Tensor.from("i64", [B, S], prompts.flat());
  try {
    if (opts.chainSteps && (opts.sampling?.temperature ?? 0) === 0 && session.chains) await chainedGreedy(session, prompt, maxNew, take, tokens, eos);
    else {
      let next = take((await session.prefill(prompt)).logits);
      for (let step = 1; step < maxNew && !tokens.every((t) => ended(t, eos)); step++) next = take((await session.decode(Tensor.from("i64", [B, 1], next))).logits);
    }
  } finally {
    session.close();
  }
  return { tokens, stepLogits };
}

/**
 * Greedy generation with each step launched before the last one is read back: the device chooses
 * the tokens (the argmax of the logits) and feeds them to the next step, so the host's encoding and
 * the read-back's latency overlap the device's work. The host still takes every step's logits and
 * picks its token from them as the step-by-step loop does; a token the device chose otherwise is an
 * error, never a silently different generation. A step launched past the last one needed (every
 * sequence ended) runs and is dropped.
 */
async function chainedGreedy(session: GenerationSession, prompt: Tensor, maxNew: number, take: (logits: Tensor) => number[], tokens: number[][], eos: ReadonlySet<number>): Promise<void> {
  let cur: LaunchedStep | undefined = await session.prefillLaunch(prompt);
  let ahead: LaunchedStep | undefined;
  try {
    for (let step = 1; cur; step++) {
      const done = tokens.map((t) => ended(t, eos));
      ahead = step < maxNew ? await session.decodeLaunch(cur.next) : undefined;
      session.release(cur.next);
      const { logits, chosen } = await cur.read;
      const picked = take(logits);
      picked.forEach((id, b) => {
        if (!done[b] && chosen[b] !== id) throw new LingcError(`generation: the device chose token ${chosen[b]} for sequence ${b + 1} at step ${step}, where the argmax of the logits read back is ${id}`);
      });
      if (tokens.every((t) => ended(t, eos))) break;
      cur = ahead;
      ahead = undefined;
    }
  } finally {
    // A step launched ahead and not needed: its read-back awaited (its buffers go back), its ids freed.
    if (ahead) {
      await ahead.read.catch(() => undefined);
      session.release(ahead.next);
    }
  }
}

/** Greedy generation (see generate). */
export function greedyGenerate(model: LoadedModel, prompts: number[][], maxNew: number, onStart?: () => void): Promise<GenerateResult> {
  return generate(model, prompts, maxNew, { onStart });
}

/** Generates up to maxNew tokens per prompt: greedy, or sampled, stopping a sequence at an end-of-sequence id. */
export async function generate(model: LoadedModel, prompts: number[][], maxNew: number, opts: GenerateOptions = {}): Promise<GenerateResult> {
  const plan = generationPlan(model.signatures);
  const V = plan.vocab;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new LingcError(`prompt ${i + 1} is empty`);
    p.forEach((id, j) => {
      if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new LingcError(`prompt ${i + 1}, token ${j + 1}: id ${id} is not in the vocabulary (0..${V - 1})`);
    });
  });
  if (opts.sampling) checkSampling(opts.sampling);
  const sampled = (opts.sampling?.temperature ?? 0) > 0;
  if (sampled && model.generate) throw new LingcError("this backend generates greedily in its own program (cuda); sampling there is not built yet: use --temperature 0, or another backend");
  if (opts.draft) {
    if (sampled) throw new LingcError("speculative decoding (--draft mtp) is greedy only: give --temperature 0 (the default)");
    draftOf(plan, Object.keys(model.signatures));
  }
  const result: GenerateResult = { tokens: prompts.map(() => []), stepLogits: prompts.map(() => []) };
  if (maxNew <= 0) return result;
  checkCapacity(plan, Math.max(...prompts.map((p) => p.length)) + maxNew - 1);
  opts.onStart?.();
  if (model.generate) {
    // Greedy in the backend's own program: a sequence's tokens end at its first end-of-sequence id.
    const r = await model.generate(prompts, maxNew, opts.draft ? { draft: opts.draft } : {});
    const eos = new Set(opts.eos ?? []);
    r.tokens.forEach((t, i) => {
      const at = t.findIndex((id) => eos.has(id));
      if (at >= 0) {
        r.tokens[i] = t.slice(0, at + 1);
        r.stepLogits[i] = r.stepLogits[i]?.slice(0, at + 1) ?? [];
      }
    });
    if (opts.onToken) for (let step = 0; step < maxNew; step++) r.tokens.forEach((t, i) => step < t.length && opts.onToken!(i, t[step]!));
    return r;
  }
  if (opts.draft) return generateDrafted(model, plan, prompts, maxNew, new Set(opts.eos ?? []), opts.onToken);
  const byLength = new Map<number, number[]>();
  prompts.forEach((p, i) => byLength.set(p.length, [...(byLength.get(p.length) ?? []), i]));
  for (const idxs of byLength.values()) {
    const r = await generateBatch(
      model,
      plan,
      idxs.map((i) => prompts[i]!),
      idxs,
      maxNew,
      opts,
    );
    idxs.forEach((i, j) => {
      result.tokens[i] = r.tokens[j]!;
      result.stepLogits[i] = r.stepLogits[j]!;
    });
  }
  return result;
}
