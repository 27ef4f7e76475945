/** The golden checkpoint's greedy-generation case, derived from its tensors' shapes. */
import type { Tensor } from "../../ir/tensor";

export interface GoldenGreedy {
  /** Each row of input_ids [B, S]. */
  prompts: number[][];
  /** The ids upstream generated after each prompt (greedy_ids [B, S + steps], past S). */
  tokens: number[][];
  steps: number;
  /** Upstream's logits for sequence b at generation step s (greedy_logits [B, steps, V]). */
  stepLogits(b: number, s: number): ArrayLike<number>;
}

export function goldenGreedy(golden: Record<string, Tensor>): GoldenGreedy {
  const ids = golden["input_ids"]!;
  const want = golden["greedy_ids"]!;
  const logits = golden["greedy_logits"]!;
  const [B, S] = ids.shape as [number, number];
  const W = want.shape[1]!;
  const V = logits.shape[2]!;
  const steps = W - S;
  const rows = (t: Tensor, width: number, from: number) => Array.from({ length: B }, (_, b) => Array.from(t.data.subarray(b * width + from, (b + 1) * width)));
  return {
    prompts: rows(ids, S, 0),
    tokens: rows(want, W, S),
    steps,
    stepLogits: (b, s) => logits.data.subarray((b * steps + s) * V, (b * steps + s + 1) * V),
  };
}
