/**
 * RoPE frequencies, computed at compile time as float32 the way HF's rope init functions do
 * (default and YaRN), over the rotary dims only (Ling rotates the first rotary_dim dims of a head,
 * and the exponent is over rotary_dim, not head_dim: LING2.md §2.3).
 */
import type { LingConfig } from "./config";

const f = Math.fround;

export interface RopeParams {
  /** One frequency per rotated pair (rotary_dim / 2 values), float32. */
  invFreq: number[];
  /** Multiplies cos and sin (YaRN's mscale; 1 otherwise). */
  attentionScaling: number;
}

function baseFreqs(theta: number, dim: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < dim; i += 2) out.push(f(Math.pow(theta, f(i / dim))));
  return out;
}

function yarnMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

export function ropeParams(cfg: LingConfig): RopeParams {
  const dim = cfg.rotaryDim;
  const pos = baseFreqs(cfg.ropeTheta, dim);
  const ys = cfg.ropeScaling;
  if (!ys) return { invFreq: pos.map((p) => f(1 / p)), attentionScaling: 1 };

  const factor = ys.factor;
  let attentionScaling = ys.attentionFactor;
  if (attentionScaling === undefined) {
    attentionScaling = ys.mscale && ys.mscaleAllDim ? yarnMscale(factor, ys.mscale) / yarnMscale(factor, ys.mscaleAllDim) : yarnMscale(factor);
  }
  const correctionDim = (rot: number) => (dim * Math.log(ys.originalMaxPositionEmbeddings / (rot * 2 * Math.PI))) / (2 * Math.log(cfg.ropeTheta));
  let low = correctionDim(ys.betaFast);
  let high = correctionDim(ys.betaSlow);
  if (ys.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const invFreq = pos.map((p, i) => {
    const ramp = Math.min(Math.max(f(f(i - low) / f(high - low)), 0), 1);
    const extrapolationFactor = f(1 - ramp);
    const extrapolation = f(1 / p);
    const interpolation = f(1 / f(factor * p));
    return f(f(interpolation * f(1 - extrapolationFactor)) + f(extrapolation * extrapolationFactor));
  });
  return { invFreq, attentionScaling };
}
