/**
 * Generation with a KV cache, for any backend and any program that declares it (module attributes,
 * ir/generation.ts): one prefill pass over the prompt (which also returns the cache), then one decode
 * step per new token, each cache input fed from the output the declaration names. Tokens are chosen
 * greedily or sampled (backends/sampling.ts); a sequence stops after an end-of-sequence token.
 * Prompts of different lengths run as separate batches, so no padding or mask is ever needed.
 * Generation stays within the cache capacity the decode graph declares.
 */
import { LingcError } from "../ir/errors";
import { cachePairs, generationRole, type CachePair } from "../ir/generation";
import { Tensor } from "../ir/tensor";
import { isDeviceTensor, type DeviceTensor, type GraphSignature, type LoadedModel } from "./backend";
import { checkSampling, TokenSampler, type SamplingOptions } from "./sampling";

export interface GenerateOptions {
  /** How tokens are chosen (default: greedy). */
  sampling?: SamplingOptions;
  /** Token ids that end a sequence: it stops after the first one it generates (included in its tokens). */
  eos?: readonly number[];
  /** Called once the prompts are checked, before any work (a CLI says there what it will do). */
  onStart?: () => void;
  /** Called with each token as it is chosen (the prompt's index, the token); a backend that generates in its own program calls it once it is done. */
  onToken?: (sequence: number, token: number) => void;
}

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

function lastLogits(logits: Tensor, b: number): Float32Array {
  const [, S, V] = logits.shape as [number, number, number];
  const off = (b * S + S - 1) * V;
  return Float32Array.from(logits.data.subarray(off, off + V));
}

/** Refuses a generation whose cache would outgrow the capacity the decode graph declares. */
function checkCapacity(plan: GenerationPlan, rows: number): void {
  for (const c of plan.cache) {
    if (rows > c.capacity) throw new LingcError(`generation needs a KV cache of ${rows} positions (prompt + new tokens - 1), over the capacity of ${c.capacity} that graph ${plan.decode.name} declares for ${c.input}`);
  }
}

/**
 * One batch's generation state: the KV cache after the last step. On a backend that keeps tensors on
 * its device (runOnDevice), the cache stays there, in buffers with room for every position the
 * generation reaches: one copy after prefill, then each decode step grows them in place (the
 * graph's cache_append writes only the new rows). Elsewhere the cache round-trips as tensors.
 */
export class GenerationSession {
  private cache: Record<string, Tensor | DeviceTensor> = {};
  private readonly onDevice: boolean;
  private readonly keep: ReadonlySet<string>;

  /** `rows`: the most positions the cache will hold (prompt length + decode steps). */
  constructor(
    readonly model: LoadedModel,
    readonly plan: GenerationPlan,
    private readonly rows: number,
  ) {
    checkCapacity(plan, rows);
    const runners = [plan.prefill.name, plan.decode.name].map((n) => model.graphs[n]!);
    this.onDevice = runners.every((r) => r.runOnDevice) && !!model.reserve && !!model.release;
    this.keep = new Set(plan.cache.map((c) => c.output));
  }

  private async step(graph: string, inputs: Record<string, Tensor | DeviceTensor>, logits: string): Promise<Tensor> {
    const runner = this.model.graphs[graph]!;
    const out: Record<string, Tensor | DeviceTensor> = this.onDevice ? await runner.runOnDevice!(inputs, this.keep) : await runner.run(inputs as Record<string, Tensor>);
    const l = out[logits];
    if (!l || isDeviceTensor(l)) throw new LingcError(`graph ${graph} returned no logits output ${logits}`);
    for (const c of this.plan.cache) {
      const t = out[c.output];
      if (!t) throw new LingcError(`graph ${graph} returned no cache output ${c.output}`);
      if (graph === this.plan.prefill.name && this.onDevice) {
        // Into a buffer with room for the whole generation: the one copy the cache makes.
        this.cache[c.input] = this.model.reserve!(t as DeviceTensor, c.axis, this.rows);
        this.model.release!(t as DeviceTensor);
      } else this.cache[c.input] = t; // on the device: the same buffer, one position longer
    }
    return l;
  }

  /** Runs the prompt [B, S]; returns its logits. */
  prefill(ids: Tensor): Promise<Tensor> {
    return this.step(this.plan.prefill.name, { [this.plan.tokens.prefill]: ids }, this.plan.logits.prefill);
  }

  /** One token per sequence [B, 1] through the cache; returns its logits. */
  decode(ids: Tensor): Promise<Tensor> {
    return this.step(this.plan.decode.name, { [this.plan.tokens.decode]: ids, ...this.cache }, this.plan.logits.decode);
  }

  /** Frees the device buffers of the cache. */
  close(): void {
    if (this.onDevice) for (const t of Object.values(this.cache)) this.model.release!(t as DeviceTensor);
    this.cache = {};
  }
}

/** Whether a sequence has ended: its last token is an end-of-sequence id. */
const ended = (tokens: readonly number[], eos: ReadonlySet<number>) => tokens.length > 0 && eos.has(tokens[tokens.length - 1]!);

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
      const row = lastLogits(logits, b);
      if (ended(tokens[b]!, eos)) return tokens[b]![tokens[b]!.length - 1]!; // finished: fed its EOS again, nothing kept
      const id = samplers[b]!.pick(row);
      tokens[b]!.push(id);
      stepLogits[b]!.push(row);
      opts.onToken?.(indices[b]!, id);
      return id;
    });
  const session = new GenerationSession(model, plan, S + maxNew - 1);
  try {
    let next = take(await session.prefill(Tensor.from("i64", [B, S], prompts.flat())));
    for (let step = 1; step < maxNew && !tokens.every((t) => ended(t, eos)); step++) next = take(await session.decode(Tensor.from("i64", [B, 1], next)));
  } finally {
    session.close();
  }
  return { tokens, stepLogits };
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
  const result: GenerateResult = { tokens: prompts.map(() => []), stepLogits: prompts.map(() => []) };
  if (maxNew <= 0) return result;
  checkCapacity(plan, Math.max(...prompts.map((p) => p.length)) + maxNew - 1);
  opts.onStart?.();
  if (model.generate) {
    // Greedy in the backend's own program: a sequence's tokens end at its first end-of-sequence id.
    const r = await model.generate(prompts, maxNew);
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
