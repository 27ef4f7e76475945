/**
 * The generation plan (which graphs prefill, decode and draft, and how their caches flow, from the
 * graphs' declarations: ir/generation.ts) and a session that steps a batch through them, holding
 * the KV cache between steps: on the backend's device where it keeps tensors there, else as tensors.
 */
import { LingcError } from "../ir/errors";
import { cachePairs, generationRole, type CachePair } from "../ir/generation";
import type { Tensor } from "../ir/tensor";
import { isDeviceTensor, type DeviceTensor, type GraphSignature, type LoadedModel } from "./backend";

export interface GenerationPlan {
  prefill: GraphSignature;
  decode: GraphSignature;
  tokens: { prefill: string; decode: string };
  logits: { prefill: string; decode: string };
  cache: CachePair[];
  vocab: number;
  /** The hidden-state outputs a draft graph reads (when prefill and decode declare them). */
  hidden?: { prefill: string; decode: string };
  /** The draft graph of speculative decoding, when the model has one loaded. */
  draft?: DraftPlan;
}

export interface DraftPlan {
  graph: GraphSignature;
  tokens: string;
  logits: string;
  /** Its input taking the main model's hidden states. */
  hidden: string;
  cache: CachePair[];
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
  const drafts = sigs.filter((s) => generationRole(s)?.role === "draft");
  if (drafts.length > 1) throw new LingcError(`generation takes at most one graph declaring generation = "draft" (found ${drafts.map((s) => s.name).join(", ")})`);
  const logits = prefill.outputs.find((o) => o.name === p.logits);
  if (!logits) throw new LingcError(`graph ${prefill.name} declares logits = "${p.logits}" but has no such output`);
  const vocab = Number(logits.shape[logits.shape.length - 1]);
  if (!Number.isSafeInteger(vocab)) throw new LingcError(`graph ${prefill.name}: the last axis of ${p.logits} (${logits.shape.join(", ")}) must be a number`);
  const cache = cachePairs(d.cache, decode.inputs.map((i) => i.name));
  for (const c of cache) {
    if (!prefill.outputs.some((o) => o.name === c.output)) throw new LingcError(`graph ${decode.name}'s cache input ${c.input} is fed by ${c.output}, which ${prefill.name} does not output`);
    if (!decode.outputs.some((o) => o.name === c.output)) throw new LingcError(`graph ${decode.name}'s cache input ${c.input} is fed by ${c.output}, which ${decode.name} does not output`);
  }
  const plan: GenerationPlan = { prefill, decode, tokens: { prefill: p.tokens, decode: d.tokens }, logits: { prefill: p.logits, decode: d.logits }, cache, vocab };
  if (p.hidden && d.hidden) plan.hidden = { prefill: p.hidden, decode: d.hidden };
  const draft = drafts[0];
  if (draft) {
    const r = generationRole(draft)!;
    plan.draft = { graph: draft, tokens: r.tokens, logits: r.logits, hidden: r.hidden!, cache: cachePairs(r.cache, draft.inputs.map((i) => i.name)) };
  }
  return plan;
}

/** The logits row of sequence b at position s (default: the last). */
export function logitsRow(logits: Tensor, b: number, s?: number): Float32Array {
  const [, S, V] = logits.shape as [number, number, number];
  const off = (b * S + (s ?? S - 1)) * V;
  return Float32Array.from(logits.data.subarray(off, off + V));
}

/** Refuses a generation whose cache would outgrow the capacity the decode graph declares. */
export function checkCapacity(plan: GenerationPlan, rows: number): void {
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

  /** `lastOnly`: only the last position's logits are used (a prompt's: the next token's). */
  private async step(graph: string, inputs: Record<string, Tensor | DeviceTensor>, logits: string, hidden?: string, lastOnly = false): Promise<StepResult> {
    const runner = this.model.graphs[graph]!;
    const out: Record<string, Tensor | DeviceTensor> = this.onDevice ? await runner.runOnDevice!(inputs, this.keep, lastOnly ? new Set([logits]) : undefined) : await runner.run(inputs as Record<string, Tensor>);
    const l = out[logits];
    if (!l || isDeviceTensor(l)) throw new LingcError(`graph ${graph} returned no logits output ${logits}`);
    const h = hidden === undefined ? undefined : out[hidden];
    if (hidden !== undefined && (!h || isDeviceTensor(h))) throw new LingcError(`graph ${graph} returned no hidden-state output ${hidden}`);
    this.keepCache(graph, out);
    return { logits: l, ...(h ? { hidden: h as Tensor } : {}) };
  }

  /** The cache a step returned, as the next step's input. */
  private keepCache(graph: string, out: Record<string, Tensor | DeviceTensor>): void {
    for (const c of this.plan.cache) {
      const t = out[c.output];
      if (!t) throw new LingcError(`graph ${graph} returned no cache output ${c.output}`);
      if (graph === this.plan.prefill.name && this.onDevice) {
        // Into a buffer with room for the whole generation: the one copy the cache makes.
        this.cache[c.input] = this.model.reserve!(t as DeviceTensor, c.axis, this.rows);
        this.model.release!(t as DeviceTensor);
      } else this.cache[c.input] = t; // on the device: the same buffer, one position longer
    }
  }

  /** Whether steps can be launched before the last one is read back, the device choosing greedy tokens (GraphRunner.launchOnDevice). */
  get chains(): boolean {
    return this.onDevice && [this.plan.prefill.name, this.plan.decode.name].every((n) => this.model.graphs[n]!.launchOnDevice);
  }

  private async launch(graph: string, inputs: Record<string, Tensor | DeviceTensor>, logits: string, lastOnly: boolean): Promise<LaunchedStep> {
    const l = await this.model.graphs[graph]!.launchOnDevice!(inputs, this.keep, { lastPosition: lastOnly ? new Set([logits]) : undefined, nextToken: logits });
    this.keepCache(graph, l.kept);
    const read = l.read.then((r) => {
      const t = r.outputs[logits];
      if (!t) throw new LingcError(`graph ${graph} returned no logits output ${logits}`);
      return { logits: t, chosen: r.nextToken };
    });
    return { next: l.nextToken, read };
  }

  /** prefill, launched (see chains): the device's greedy choice of the next tokens at once, the logits when read back. */
  prefillLaunch(ids: Tensor): Promise<LaunchedStep> {
    return this.launch(this.plan.prefill.name, { [this.plan.tokens.prefill]: ids }, this.plan.logits.prefill, true);
  }

  /** decode, launched (see chains), from tokens on the device (a launched step's `next`). */
  decodeLaunch(ids: DeviceTensor): Promise<LaunchedStep> {
    return this.launch(this.plan.decode.name, { [this.plan.tokens.decode]: ids, ...this.cache }, this.plan.logits.decode, false);
  }

  /** Frees a launched step's token ids on the device. */
  release(t: DeviceTensor): void {
    this.model.release!(t);
  }

  /**
   * Runs the prompt [B, S]; returns its logits (and hidden states, `withHidden`): on a backend that
   * keeps tensors on its device, of the last position only ([B, 1, V]; logitsRow reads either).
   */
  prefill(ids: Tensor, withHidden = false): Promise<StepResult> {
    return this.step(this.plan.prefill.name, { [this.plan.tokens.prefill]: ids }, this.plan.logits.prefill, withHidden ? this.plan.hidden?.prefill : undefined, true);
  }

  /** Tokens [B, S] (one per sequence: a decode step) through the cache; returns their logits (and hidden states, `withHidden`). */
  decode(ids: Tensor, withHidden = false): Promise<StepResult> {
    return this.step(this.plan.decode.name, { [this.plan.tokens.decode]: ids, ...this.cache }, this.plan.logits.decode, withHidden ? this.plan.hidden?.decode : undefined);
  }

  /** Drops the cache's last `n` positions (speculative decoding's rejected draft token). */
  rollback(n: number): void {
    for (const c of this.plan.cache) {
      const t = this.cache[c.input]!;
      const keep = t.shape[c.axis]! - n;
      if (!isDeviceTensor(t)) this.cache[c.input] = t.narrowed(c.axis, 0, keep);
      else if (this.model.truncate) this.cache[c.input] = this.model.truncate(t, c.axis, keep);
      else throw new LingcError("this backend keeps the KV cache on its device and cannot shorten it (speculative decoding needs to)");
    }
  }

  /** Frees the device buffers of the cache. */
  close(): void {
    if (this.onDevice) for (const t of Object.values(this.cache)) this.model.release!(t as DeviceTensor);
    this.cache = {};
  }
}

/** A step on the device's queue: the tokens the device chose ([B, 1]), and the logits it chose them from, once read back. */
export interface LaunchedStep {
  next: DeviceTensor;
  read: Promise<{ logits: Tensor; chosen: Int32Array }>;
}

export interface StepResult {
  logits: Tensor;
  hidden?: Tensor;
}

/** Whether a sequence has ended: its last token is an end-of-sequence id. */
export const ended = (tokens: readonly number[], eos: ReadonlySet<number>) => tokens.length > 0 && eos.has(tokens[tokens.length - 1]!);
