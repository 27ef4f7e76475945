/**
 * Speculative decoding with a draft graph (Ling 2.0's MTP layer as the draft head: LING2.md section
 * 2.7). The draft graph reads the main model's hidden state at a position and the token after it,
 * and proposes the token after that. Each round runs the main model's decode graph on two tokens:
 * the last chosen token and the draft. The main model's pick at the first position is always kept;
 * when it equals the draft, its pick at the second position is kept too (two tokens for one main
 * forward); otherwise the draft's position is dropped from the KV cache. Every kept token is the main
 * model's greedy pick given the tokens before it, so the output equals plain greedy decoding.
 *
 * The draft graph keeps its own KV cache (the MTP layer's attention), filled only at positions whose
 * next token is settled, so it never needs to drop a position. Sequences run one at a time: their
 * accepted counts differ, and with them their cache lengths.
 */
import { LingcError } from "../ir/errors";
import { Tensor } from "../ir/tensor";
import type { DraftStats, LoadedModel } from "./backend";
import { ended, GenerationSession, logitsRow, type DraftPlan, type GenerationPlan } from "./generation-session";
import { TokenSampler } from "./sampling";

export interface DraftedSequence {
  tokens: number[];
  stepLogits: Float32Array[];
  stats: DraftStats;
}

/** The draft graph's empty cache inputs for one sequence (zero positions along each cache's axis). */
function emptyDraftCache(draft: DraftPlan): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const c of draft.cache) {
    const sig = draft.graph.inputs.find((i) => i.name === c.input)!;
    const shape = sig.shape.map((d, i) => (i === c.axis ? 0 : /^\d+$/.test(d) ? Number(d) : i === 0 ? 1 : NaN));
    if (shape.some((d) => Number.isNaN(d))) throw new LingcError(`draft graph ${draft.graph.name}: cache input ${c.input} [${sig.shape.join(", ")}] has a size other than the batch and its positions that is not a number`);
    out[c.input] = Tensor.zeros(sig.dtype, shape);
  }
  return out;
}

/** The plan's draft graph, or an error saying what speculative decoding lacks (checked before any work). */
export function draftOf(plan: GenerationPlan, loaded: readonly string[]): DraftPlan {
  if (!plan.draft) throw new LingcError(`speculative decoding (--draft mtp) needs the model's draft graph loaded (the MTP layer's); the graphs loaded are ${loaded.join(", ")}`);
  if (!plan.hidden) throw new LingcError(`speculative decoding needs graphs ${plan.prefill.name} and ${plan.decode.name} to declare their hidden-state outputs (attribute hidden)`);
  return plan.draft;
}

/** Greedy generation of each prompt in turn with the draft (see the file's comment); the drafts' figures summed. */
export async function generateDrafted(model: LoadedModel, plan: GenerationPlan, prompts: readonly (readonly number[])[], maxNew: number, eos: ReadonlySet<number>, onToken?: (sequence: number, token: number) => void): Promise<{ tokens: number[][]; stepLogits: Float32Array[][]; draft: DraftStats }> {
  const draft: DraftStats = { drafted: 0, accepted: 0, mainForwards: 0, draftRuns: 0 };
  const tokens: number[][] = [];
  const stepLogits: Float32Array[][] = [];
  for (let i = 0; i < prompts.length; i++) {
    const r = await generateOne(model, plan, prompts[i]!, i, maxNew, eos, onToken);
    tokens.push(r.tokens);
    stepLogits.push(r.stepLogits);
    for (const k of Object.keys(draft) as (keyof DraftStats)[]) draft[k] += r.stats[k];
  }
  return { tokens, stepLogits, draft };
}

/** One prompt. */
async function generateOne(model: LoadedModel, plan: GenerationPlan, prompt: readonly number[], index: number, maxNew: number, eos: ReadonlySet<number>, onToken?: (sequence: number, token: number) => void): Promise<DraftedSequence> {
  const draft = draftOf(plan, Object.keys(model.graphs));
  const runner = model.graphs[draft.graph.name]!;
  const greedy = new TokenSampler({ temperature: 0, seed: 0 }, index);
  const tokens: number[] = [];
  const stepLogits: Float32Array[] = [];
  const stats: DraftStats = { drafted: 0, accepted: 0, mainForwards: 0, draftRuns: 0 };
  const keep = (row: Float32Array) => {
    const id = greedy.pick(row);
    tokens.push(id);
    stepLogits.push(row);
    onToken?.(index, id);
    return id;
  };
  const done = () => tokens.length >= maxNew || ended(tokens, eos);
  let draftCache = emptyDraftCache(draft);
  /** The draft graph over positions whose hidden states and next tokens are settled; returns its proposal for the token after the last. */
  const propose = async (hidden: Tensor, next: number[]): Promise<number> => {
    const out = await runner.run({ [draft.hidden]: hidden, [draft.tokens]: Tensor.from("i64", [1, next.length], next), ...draftCache });
    stats.draftRuns++;
    draftCache = {};
    for (const c of draft.cache) draftCache[c.input] = out[c.output]!;
    const logits = out[draft.logits];
    if (!logits) throw new LingcError(`draft graph ${draft.graph.name} returned no ${draft.logits}`);
    return greedy.pick(logitsRow(logits, 0));
  };

  // Room for every position plain decoding reaches, plus the one a rejected draft takes for a step.
  const session = new GenerationSession(model, plan, prompt.length + maxNew);
  try {
    let r = await session.prefill(Tensor.from("i64", [1, prompt.length], prompt), true);
    stats.mainForwards++;
    let last = keep(logitsRow(r.logits, 0));
    let hidden = r.hidden!;
    let next = [...prompt.slice(1), last];
    while (!done()) {
      if (tokens.length + 1 === maxNew) {
        // One token left: no use drafting past it.
        r = await session.decode(Tensor.from("i64", [1, 1], [last]));
        stats.mainForwards++;
        keep(logitsRow(r.logits, 0));
        break;
      }
      const d = await propose(hidden, next);
      r = await session.decode(Tensor.from("i64", [1, 2], [last, d]), true);
      stats.mainForwards++;
      stats.drafted++;
      const a = keep(logitsRow(r.logits, 0, 0));
      if (a !== d) {
        session.rollback(1);
        hidden = r.hidden!.narrowed(1, 0, 1);
        next = [a];
        last = a;
        continue;
      }
      stats.accepted++;
      if (done()) break;
      const b = keep(logitsRow(r.logits, 0, 1));
      hidden = r.hidden!;
      next = [a, b];
      last = b;
    }
  } finally {
    session.close();
  }
  return { tokens, stepLogits, stats };
}
