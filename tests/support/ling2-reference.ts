/**
 * An independent, deliberately plain implementation of the Ling 2.0 forward pass (HF
 * modeling_bailing_moe_v2.py semantics, double precision, loops over arrays). It shares no code with
 * the IR, its ops or the DSL, so agreement between it and the interpreter on random checkpoints of
 * many configurations checks that models/ling2.ts is right beyond the one golden config.
 */
import type { LingConfig } from "../../models/config";
import { ropeParams } from "../../models/rope";

type W = (name: string) => ArrayLike<number>;
type Mat = Float64Array[]; // rows

function matvecT(x: ArrayLike<number>, w: ArrayLike<number>, out: number, inp: number): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let k = 0; k < inp; k++) s += x[k]! * w[o * inp + k]!;
    y[o] = s;
  }
  return y;
}

function rms(x: ArrayLike<number>, w: ArrayLike<number>, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! ** 2;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return Float64Array.from(x, (v, i) => v * inv * w[i]!);
}

const silu = (v: number) => v / (1 + Math.exp(-v));
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

function swiglu(x: Float64Array, w: W, p: string, H: number, I: number): Float64Array {
  const g = matvecT(x, w(`${p}gate_proj.weight`), I, H);
  const u = matvecT(x, w(`${p}up_proj.weight`), I, H);
  return matvecT(
    g.map((v, i) => silu(v) * u[i]!),
    w(`${p}down_proj.weight`),
    H,
    I,
  );
}

/** Top-k indices, largest first, ties to the lower index. */
function topk(v: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: v.length }, (_, i) => i)
    .sort((a, b) => (v[b]! === v[a]! ? a - b : v[b]! - v[a]!))
    .slice(0, k);
}

export interface ReferenceOutput {
  logits: Mat; // [B*S][V]
  mtpLogits: Mat | undefined;
  hidden: Mat[]; // per layer [B*S][H]
  topk: Map<number, number[][]>; // layer -> per token expert ids
}

export function referenceForward(cfg: LingConfig, w: W, ids: number[][]): ReferenceOutput {
  const { hiddenSize: H, numHeads: nh, numKvHeads: nkv, headDim: d, rmsNormEps: eps } = cfg;
  const B = ids.length;
  const S = ids[0]!.length;
  const { invFreq, attentionScaling } = ropeParams(cfg);
  const half = invFreq.length;
  const topkOut = new Map<number, number[][]>();

  const table = w("model.word_embeddings.weight");
  const embed = (tok: number[][]): Mat => tok.flat().map((id) => Float64Array.from({ length: H }, (_, c) => table[id * H + c]!));

  const rope = (x: Float64Array, pos: number) => {
    const out = Float64Array.from(x);
    for (let j = 0; j < half; j++) {
      const c = Math.cos(pos * invFreq[j]!) * attentionScaling;
      const s = Math.sin(pos * invFreq[j]!) * attentionScaling;
      out[j] = x[j]! * c - x[j + half]! * s;
      out[j + half] = x[j + half]! * c + x[j]! * s;
    }
    return out;
  };

  const attention = (x: Mat, p: string): Mat => {
    const qkvW = w(`${p}attention.query_key_value.weight`);
    const heads = x.map((row) => matvecT(row, qkvW, (nh + 2 * nkv) * d, H));
    const head = (t: number, h: number) => heads[t]!.slice(h * d, h * d + d);
    const norm = (v: Float64Array, which: string) => (cfg.useQkNorm ? rms(v, w(`${p}attention.${which}_layernorm.weight`), eps) : v);
    const out: Mat = [];
    for (let b = 0; b < B; b++) {
      const q = (i: number, h: number) => rope(norm(head(b * S + i, h), "query"), i);
      const k = (j: number, g: number) => rope(norm(head(b * S + j, nh + g), "key"), j);
      const v = (j: number, g: number) => head(b * S + j, nh + nkv + g);
      for (let i = 0; i < S; i++) {
        const merged = new Float64Array(nh * d);
        for (let h = 0; h < nh; h++) {
          const g = Math.floor(h / (nh / nkv));
          const qi = q(i, h);
          const scores = Array.from({ length: i + 1 }, (_, j) => {
            const kj = k(j, g);
            let s = 0;
            for (let c = 0; c < d; c++) s += qi[c]! * kj[c]!;
            return s / Math.sqrt(d);
          });
          const mx = Math.max(...scores);
          const ex = scores.map((s) => Math.exp(s - mx));
          const sum = ex.reduce((a, c) => a + c, 0);
          ex.forEach((e, j) => {
            const vj = v(j, g);
            for (let c = 0; c < d; c++) merged[h * d + c]! += (e / sum) * vj[c]!;
          });
        }
        out.push(matvecT(merged, w(`${p}attention.dense.weight`), H, nh * d));
      }
    }
    return out;
  };

  const moe = (x: Mat, p: string, layer: number): Mat => {
    const E = cfg.numExperts;
    const K = cfg.numExpertsPerTok;
    const per = E / cfg.nGroup;
    const chosen: number[][] = [];
    const out = x.map((row) => {
      const s = Array.from(matvecT(row, w(`${p}mlp.gate.weight`), E, H), sigmoid);
      const bias = cfg.expertBias ? w(`${p}mlp.gate.expert_bias`) : undefined;
      const sel = s.map((v, e) => v + (bias ? bias[e]! : 0));
      let masked = sel;
      if (cfg.nGroup > 1) {
        const gscore = Array.from({ length: cfg.nGroup }, (_, g) =>
          topk(sel.slice(g * per, g * per + per), cfg.groupScoreTopk).reduce((a, i) => a + sel[g * per + i]!, 0),
        );
        const keep = new Set(topk(gscore, cfg.topkGroup));
        masked = sel.map((v, e) => (keep.has(Math.floor(e / per)) ? v : -Infinity));
      }
      const idx = topk(masked, K);
      chosen.push(idx);
      let ws = idx.map((e) => s[e]!);
      if (K > 1 && cfg.normTopkProb) {
        const sum = ws.reduce((a, c) => a + c, 0) + 1e-20;
        ws = ws.map((v) => v / sum);
      }
      const y = new Float64Array(H);
      idx.forEach((e, j) => {
        const ey = swiglu(row, w, `${p}mlp.experts.${e}.`, H, cfg.moeIntermediateSize);
        for (let c = 0; c < H; c++) y[c]! += ws[j]! * cfg.routedScalingFactor * ey[c]!;
      });
      if (cfg.numSharedExperts > 0) {
        const sh = swiglu(row, w, `${p}mlp.shared_experts.`, H, cfg.moeIntermediateSize * cfg.numSharedExperts);
        for (let c = 0; c < H; c++) y[c]! += sh[c]!;
      }
      return y;
    });
    topkOut.set(layer, chosen);
    return out;
  };

  const decoder = (x: Mat, layer: number, isMoe: boolean): Mat => {
    const p = `model.layers.${layer}.`;
    const a = attention(
      x.map((r) => rms(r, w(`${p}input_layernorm.weight`), eps)),
      p,
    );
    const x1 = x.map((r, t) => r.map((v, c) => v + a[t]![c]!));
    const n = x1.map((r) => rms(r, w(`${p}post_attention_layernorm.weight`), eps));
    const f = isMoe ? moe(n, p, layer) : n.map((r) => swiglu(r, w, `${p}mlp.`, H, cfg.intermediateSize));
    return x1.map((r, t) => r.map((v, c) => v + f[t]![c]!));
  };

  const lmHead = cfg.tieWordEmbeddings ? "model.word_embeddings.weight" : "lm_head.weight";
  const head = (x: Mat) => x.map((r) => matvecT(r, w(lmHead), cfg.vocabSize, H));

  let h = embed(ids);
  const hidden: Mat[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    h = decoder(h, i, i >= cfg.firstKDenseReplace);
    hidden.push(h);
  }
  const hn = h.map((r) => rms(r, w("model.norm.weight"), eps));
  let mtpLogits: Mat | undefined;
  if (cfg.numMtpLayers > 0) {
    const L = cfg.numLayers;
    const p = `model.layers.${L}.`;
    const shifted = ids.map((row) => [...row.slice(1), 0]);
    const e = embed(shifted).map((r) => rms(r, w(`${p}enorm.weight`), eps));
    const hh = hn.map((r) => rms(r, w(`${p}hnorm.weight`), eps));
    let z = e.map((r, t) => matvecT(Float64Array.from([...r, ...hh[t]!]), w(`${p}eh_proj.weight`), H, 2 * H));
    z = decoder(z, L, true).map((r) => rms(r, w(`${p}final_layernorm.weight`), eps));
    mtpLogits = head(z);
  }
  return { logits: head(hn), mtpLogits, hidden, topk: topkOut };
}
