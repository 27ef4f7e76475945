/**
 * Choosing the next token from logits: greedy (argmax), or sampling with a temperature, top-k and
 * top-p, from a seeded generator, so that a seed gives the same ids on every run and on every backend
 * (they differ in the logits' last bits only; the draw is made in float64 on the host). Each sequence
 * has its own stream, derived from the seed and its index, so batching does not change its ids.
 * Order as in transformers' sampling: temperature, then top-k, then top-p over the softmax.
 */
import { LingcError } from "../ir/errors";

export interface SamplingOptions {
  /** 0 is greedy. */
  temperature: number;
  /** Keep the k most likely tokens (0 or absent: all). */
  topK?: number;
  /** Keep the most likely tokens whose probabilities sum to at least p (1 or absent: all). */
  topP?: number;
  seed: number;
}

export function checkSampling(o: SamplingOptions): void {
  if (!(o.temperature >= 0) || !Number.isFinite(o.temperature)) throw new LingcError(`temperature must be a finite number >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isSafeInteger(o.topK) && o.topK >= 0)) throw new LingcError(`top-k must be an integer >= 0, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new LingcError(`top-p must be in (0, 1], got ${o.topP}`);
  if (!Number.isSafeInteger(o.seed) || o.seed < 0) throw new LingcError(`seed must be an integer >= 0, got ${o.seed}`);
}

/** SplitMix64 over BigInt: a small, well-known generator whose streams do not depend on the platform. */
class SplitMix64 {
  private state: bigint;
  constructor(seed: bigint) {
    this.state = BigInt.asUintN(64, seed);
  }
  next(): bigint {
    this.state = BigInt.asUintN(64, this.state + 0x9e3779b97f4a7c15n);
    let z = this.state;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return z ^ (z >> 31n);
  }
  /** A float64 uniform in [0, 1) from the top 53 bits. */
  uniform(): number {
    return Number(this.next() >> 11n) / 2 ** 53;
  }
}

/** Index of the largest value; ties go to the lowest index (as torch.argmax). */
export function argmax(a: ArrayLike<number>, lo: number, hi: number): number {
  let best = lo;
  for (let i = lo + 1; i < hi; i++) if (a[i]! > a[best]!) best = i;
  return best - lo;
}

/** Picks tokens for one sequence, step after step. */
export class TokenSampler {
  private readonly rng: SplitMix64;

  constructor(
    private readonly o: SamplingOptions,
    sequence: number,
  ) {
    checkSampling(o);
    // One stream per sequence: the seed and the sequence's index, mixed.
    this.rng = new SplitMix64((BigInt(o.seed) << 20n) ^ BigInt(sequence + 1) * 0x632be59bd9b4e019n);
  }

  pick(logits: ArrayLike<number>): number {
    if (this.o.temperature === 0) return argmax(logits, 0, logits.length);
    // Candidates by logit, highest first (ties: lower id first), cut to top-k.
    const ids = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
    const k = this.o.topK ? Math.min(this.o.topK, ids.length) : ids.length;
    const kept = ids.slice(0, k);
    const t = this.o.temperature;
    const top = logits[kept[0]!]! / t;
    const p = kept.map((i) => Math.exp(logits[i]! / t - top));
    let total = p.reduce((a, b) => a + b, 0);
    // Top-p: the smallest head whose share reaches p (at least one token).
    let n = p.length;
    if (this.o.topP !== undefined && this.o.topP < 1) {
      let cum = 0;
      for (n = 0; n < p.length; ) {
        cum += p[n++]!;
        if (cum >= this.o.topP * total) break;
      }
      total = p.slice(0, n).reduce((a, b) => a + b, 0);
    }
    const u = this.rng.uniform() * total;
    let cum = 0;
    for (let j = 0; j < n; j++) {
      cum += p[j]!;
      if (u < cum) return kept[j]!;
    }
    return kept[n - 1]!;
  }
}
