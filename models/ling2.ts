/**
 * The Ling 2.0 architecture (BailingMoeV2), written once in the DSL for the whole family: Ling-1T,
 * Ling-flash-2.0, Ling-mini-2.0 and any config.json of the same kind. Every step follows LING2.md
 * (section numbers in the comments); weight names are the HF checkpoint names so checkpoints bind
 * by name. The graphs:
 *   forward  input_ids [B, S] -> logits [B, S, V], mtp_logits (when the model has MTP layers) and
 *            the KV cache present.{i}.key/value [B, nkv, S, d]
 *   prefill  generation's first step: forward without the MTP layers and with the logits of the
 *            last position only ([B, 1, V], the one that picks the next token: the LM head over
 *            every position is a large share of a short model's prefill, and its f32 logits of a
 *            long prompt take gigabytes), the same cache, and final_hidden [B, S, H] when the model
 *            has MTP layers (the draft graph reads every position's)
 *   decode   input_ids [B, S] + past.{i}.key/value [B, nkv, P, d] -> logits [B, S, V] and
 *            present.{i}.key/value [B, nkv, P+S, d]; the new tokens sit at positions P..P+S-1 (S = 1
 *            is a decode step; S > 1 extends the cache by a chunk: chunked prefill)
 *   draft    the first MTP layer as a draft model (speculative decoding, LING2.md section 2.7):
 *            hidden [B, S, H] (the main model's final_hidden at positions P..P+S-1) + input_ids
 *            [B, S] (the token after each of those positions) + past.{L}.key/value [B, nkv, P, d]
 *            (the MTP layer's own cache, L = num_hidden_layers) -> mtp_logits [B, S, V] (the token
 *            two ahead) and present.{L}.key/value. With MTP layers, forward and decode also output
 *            final_hidden [B, S, H] (the final-normed hidden state the MTP layer reads)
 *   train    input_ids [B, S] -> loss, loss_main, loss_mtp ([1] each, f32), the objective Ling 2.0
 *            is trained with (LING2.md section 2.7, Megatron's MTP weighting), and
 *            tokens_per_expert.{i} (i64 [E]) of each MoE layer (MTP included); the driver runs the
 *            autodiff pass on it (the module's `objective` attribute), which adds grad.<weight>
 *   train-step  the train graph, then one AdamW step (the driver runs the adamw pass: the module's
 *            `optimizer` attribute; its `expert_bias` attribute names each MoE layer's bias buffer)
 */
import { Dim } from "../ir/dim";
import { LingcError } from "../ir/errors";
import { formatCacheRules } from "../ir/generation";
import type { Module } from "../ir/module";
import { ModuleTracer, op, scope, tensor, weight, type Tensor } from "../compiler/dsl";
import { isMoeLayer, type LingConfig } from "./config";
import { ropeParams } from "./rope";
import { configRecord } from "./config-record";

export const GRAPHS = ["forward", "prefill", "decode", "draft", "train", "train-step"] as const;
/** The weight of the MTP loss in the training objective (Megatron's mtp_loss_scaling_factor for Ling 2.0). */
export const MTP_LOSS_WEIGHT = 0.1;
export type GraphKind = (typeof GRAPHS)[number];

interface Rope {
  cos: Tensor;
  sin: Tensor;
}

/** A feed-forward block: its output, and the MoE block's tokens per expert (train graph). */
interface Ffn {
  out: Tensor;
  counts?: Tensor;
}

interface Cache {
  key: Tensor;
  value: Tensor;
}

export function buildLing2(cfg: LingConfig, graph: GraphKind): Module {
  const dt = cfg.dtype;
  const training = graph === "train" || graph === "train-step";
  const H = cfg.hiddenSize;
  const nh = cfg.numHeads;
  const nkv = cfg.numKvHeads;
  const d = cfg.headDim;
  const eps = cfg.rmsNormEps;
  if (graph === "draft" && cfg.numMtpLayers === 0) throw new LingcError(`${cfg.name} has no MTP layer (num_nextn_predict_layers is 0): there is no draft graph to build`);
  // Each cache input fed by the same layer's present output of the step before: the main layers'
  // (decode), or the first MTP layer's (draft).
  const kvCache = formatCacheRules(["key", "value"].map((kv) => ({ input: `past.*.${kv}`, output: `present.*.${kv}`, axis: 2, capacity: cfg.maxPositionEmbeddings })));
  // What generation needs to know travels with the module (ir/generation.ts).
  const m = new ModuleTracer(graph, {
    model: cfg.name,
    // The router's expert_bias is a buffer (updated from token counts, not by the gradient).
    ...(training
      ? { objective: "loss", frozen: "expert_bias" }
      : graph === "draft"
        ? { generation: "draft", logits: "mtp_logits", hidden: "hidden" }
        : graph === "prefill" || graph === "decode"
          ? { generation: graph, logits: "logits", ...(cfg.numMtpLayers > 0 ? { hidden: "final_hidden" } : {}) }
          : {}),
    ...(graph === "train-step" ? { optimizer: "adamw", expert_bias: "model.layers.{}.mlp.gate.expert_bias" } : {}),
    tokens: "input_ids",
    vocab: String(cfg.vocabSize),
    // The config it was traced from: binding weights checks the checkpoint's against it.
    config: configRecord(cfg),
    ...(graph === "decode" || graph === "draft" ? { kv_cache: kvCache } : {}),
  });

  // A weight as the checkpoint stores it, in the compute dtype (a cast when they differ: --dtype f32
  // on a bf16 checkpoint; backends do it once, at load).
  const param = (name: string, shape: number[]) => op.cast(weight(name, shape, cfg.weightDtype), dt);
  const norm = (x: Tensor, name: string) => scope(name, () => op.rmsNorm(x, param("weight", [H]), eps));

  // §2.3 Attention: fused QKV split [Q|K|V], per-head QK RMSNorm before RoPE, partial rotate-half
  // RoPE, causal GQA, output projection. With a cache, new keys/values are appended to the past.
  const attention = (x: Tensor, rope: Rope, past?: Cache) =>
    scope("attention", () => {
      const [B, S] = x.shape as [Dim, Dim];
      const qkv = op.linear(x, param("query_key_value.weight", [(nh + 2 * nkv) * d, H]));
      const heads = op.reshape(qkv, [B, S, nh + 2 * nkv, d]);
      const toBHSD = (t: Tensor) => op.transpose(t, [0, 2, 1, 3]);
      let q = toBHSD(op.slice(heads, 2, 0, nh)).as("q");
      let k = toBHSD(op.slice(heads, 2, nh, nh + nkv)).as("k");
      let v = toBHSD(op.slice(heads, 2, nh + nkv, nh + 2 * nkv)).as("v");
      if (cfg.useQkNorm) {
        q = op.rmsNorm(q, param("query_layernorm.weight", [d]), eps);
        k = op.rmsNorm(k, param("key_layernorm.weight", [d]), eps);
      }
      if (cfg.rotaryDim > 0) {
        q = op.rope(q, rope.cos, rope.sin);
        k = op.rope(k, rope.cos, rope.sin);
      }
      if (past) {
        k = op.cacheAppend(past.key, k, 2);
        v = op.cacheAppend(past.value, v, 2);
      }
      const o = op.attention(q, k, v, { scale: 1 / Math.sqrt(d), causal: true });
      const merged = op.reshape(op.transpose(o, [0, 2, 1, 3]), [B, S, nh * d]);
      return { out: op.linear(merged, param("dense.weight", [H, nh * d])), cache: { key: k, value: v } };
    });

  // §2.4 SwiGLU: down(silu(gate(x)) * up(x)).
  const swiglu = (x: Tensor, inter: number) =>
    op.linear(
      op.mul(op.silu(op.linear(x, param("gate_proj.weight", [inter, H]))), op.linear(x, param("up_proj.weight", [inter, H]))),
      param("down_proj.weight", [H, inter]),
    );

  // §2.5 Router: fp32 logits, sigmoid scores, selection-only bias, group-limited top-k, weights
  // from the unbiased scores, normalized, times routed_scaling_factor.
  // x: the tokens' hidden states, already in fp32 (cast before the token reshape, so that the norm
  // kernel before it writes the fp32 copy too).
  const router = (x: Tensor) =>
    scope("gate", () => {
      const E = cfg.numExperts;
      const K = cfg.numExpertsPerTok;
      const logits = op.linear(x, op.cast(weight("weight", [E, H], cfg.weightDtype), "f32"));
      const scores = op.sigmoid(logits).as("scores");
      const selection = cfg.expertBias ? op.add(scores, weight("expert_bias", [E], "f32")) : scores;
      const idx = op.groupTopk(selection, { k: K, groups: cfg.nGroup, topkGroups: cfg.topkGroup, groupScoreTopk: cfg.groupScoreTopk });
      let w = op.takeAlong(scores, idx);
      if (K > 1 && cfg.normTopkProb) w = op.div(w, op.add(op.reduceSum(w, [-1], true), op.constant(1e-20, "f32")));
      w = op.mul(w, op.constant(cfg.routedScalingFactor, "f32"));
      return { idx, weights: w };
    });

  // §2.5 MoE block: dropless grouped experts (only the chosen experts run) plus the shared expert.
  // The block's output, and (train graph) the tokens each expert received, which its layer returns.
  const moe = (x: Tensor): Ffn =>
    scope("mlp", () => {
      const [B, S] = x.shape as [Dim, Dim];
      const E = cfg.numExperts;
      const K = cfg.numExpertsPerTok;
      const I = cfg.moeIntermediateSize;
      // The router's fp32 input first: right after the norm that makes x, whose kernel writes it too.
      const r = router(op.reshape(scope("gate", () => op.cast(x, "f32")), [B.mul(S), H]));
      const tokens = op.reshape(x, [B.mul(S), H]);
      r.idx.as("topk_idx");
      const { order, offsets, rowOf } = op.moeDispatch(r.idx, E);
      // Tokens each expert received (the expert-bias update's input, LING2.md section 2.5).
      const counts = training ? op.cast(op.sub(op.slice(offsets, 0, 1, E + 1), op.slice(offsets, 0, 0, E)), "i64") : undefined;
      const rows = op.moePermute(tokens, order, K);
      const y = scope("experts", () => {
        const gate = op.groupedLinear(rows, param("*.gate_proj.weight", [E, I, H]), offsets);
        const up = op.groupedLinear(rows, param("*.up_proj.weight", [E, I, H]), offsets);
        return op.groupedLinear(op.mul(op.silu(gate), up), param("*.down_proj.weight", [E, H, I]), offsets);
      });
      let out = op.reshape(op.moeCombine(y, rowOf, r.weights).as("routed"), [B, S, H]);
      if (cfg.numSharedExperts > 0) out = op.add(out, scope("shared_experts", () => swiglu(x, I * cfg.numSharedExperts)));
      return { out, counts };
    });

  const denseMlp = (x: Tensor): Ffn => ({ out: scope("mlp", () => swiglu(x, cfg.intermediateSize)) });

  // §2.2 Decoder layer: pre-norm attention and FFN, each added to the residual stream.
  const decoderLayer = (ffn: (x: Tensor) => Ffn) => (h: Tensor, cos: Tensor, sin: Tensor, pastKey?: Tensor, pastValue?: Tensor) => {
    const past = pastKey && pastValue ? { key: pastKey, value: pastValue } : undefined;
    const a = attention(norm(h, "input_layernorm"), { cos, sin }, past);
    const h1 = op.add(h, a.out);
    const f = ffn(norm(h1, "post_attention_layernorm"));
    const h2 = op.add(h1, f.out);
    const out: Record<string, Tensor> = { hidden: h2, "present.key": a.cache.key, "present.value": a.cache.value };
    if (f.counts) out["tokens_per_expert"] = f.counts;
    return out;
  };

  const withCache = graph === "decode" || graph === "draft";
  const layerParams = withCache ? ["h", "cos", "sin", "past_key", "past_value"] : ["h", "cos", "sin"];
  const denseLayer = m.fn("dense_layer", layerParams, { role: "dense" }, decoderLayer(denseMlp));
  const moeLayer = m.fn("moe_layer", layerParams, { role: "moe" }, decoderLayer(moe));

  // §2.7 MTP: enorm(embedding of token t+1) and hnorm(final-normed main hidden state), concatenated
  // in that order, projected 2H -> H, then a full MoE decoder layer and the MTP's own final norm.
  // With a cache (the draft graph), the MTP layer's attention reads and grows its own.
  const mtpParams = ["h", "next_embeds", ...layerParams.slice(1)];
  const mtpLayer = m.fn("mtp_layer", mtpParams, { role: "mtp" }, (h, e, cos, sin, pastKey, pastValue) => {
    const z = op.linear(op.concat([norm(e, "enorm"), norm(h, "hnorm")], -1), param("eh_proj.weight", [H, 2 * H]));
    const layer = moeLayer("", z, cos, sin, ...(withCache ? [pastKey!, pastValue!] : []));
    const out: Record<string, Tensor> = { hidden: norm(layer.hidden!, "final_layernorm") };
    if (withCache) {
      out["present.key"] = layer["present.key"]!;
      out["present.value"] = layer["present.value"]!;
    }
    if (layer["tokens_per_expert"]) out["tokens_per_expert"] = layer["tokens_per_expert"];
    return out;
  });

  // §2.3 RoPE tables: angles = position * inv_freq in fp32, cos/sin times the YaRN scale, cast to the model dtype.
  const ropeTables = (positions: Tensor): Rope =>
    scope("model.rotary_emb", () => {
      const { invFreq, attentionScaling } = ropeParams(cfg);
      const half = invFreq.length;
      const S = positions.shape[0]!;
      const pos = op.reshape(op.cast(positions, "f32"), [S, 1]);
      const angles = op.mul(pos, half > 0 ? op.constant(invFreq, "f32", [half]) : op.constant(0, "f32", [0]));
      const table = (t: Tensor) => op.cast(attentionScaling === 1 ? t : op.mul(t, op.constant(attentionScaling, "f32")), dt);
      return { cos: table(op.cos(angles)).as("cos"), sin: table(op.sin(angles)).as("sin") };
    });

  // The embedding table and the LM head (one weight when tied); the head's logits in fp32. Called
  // inside an entry, where the weights are declared.
  const vocab = () => {
    const embed = param("model.word_embeddings.weight", [cfg.vocabSize, H]);
    const lmHead = cfg.tieWordEmbeddings ? embed : param("lm_head.weight", [cfg.vocabSize, H]);
    return { embed, logits: (h: Tensor, name: string) => op.cast(op.linear(h, lmHead), "f32").as(name) };
  };

  const inputs: Record<string, ReturnType<typeof tensor>> = { input_ids: tensor("i64", ["B", "S"]) };
  const pastOf = (layer: number) => {
    for (const kv of ["key", "value"]) inputs[`past.${layer}.${kv}`] = tensor(dt, ["B", nkv, "P", d]);
  };
  if (graph === "draft") {
    inputs["hidden"] = tensor(dt, ["B", "S", H]);
    pastOf(cfg.numLayers);
  } else if (withCache) {
    for (let i = 0; i < cfg.numLayers; i++) pastOf(i);
  }

  // The draft graph: the first MTP layer on the main model's final hidden states and the tokens after them.
  if (graph === "draft") {
    m.entry(graph, inputs, (x) => {
      const ids = x["input_ids"]!;
      const { embed, logits } = vocab();
      const rope = ropeTables(op.iota("P", ids.shape[1]!, "i64"));
      const L = cfg.numLayers;
      const mtp = mtpLayer(`model.layers.${L}`, x["hidden"]!, op.embedding(embed, ids), rope.cos, rope.sin, x[`past.${L}.key`]!, x[`past.${L}.value`]!);
      return {
        mtp_logits: logits(mtp.hidden!, "mtp_logits"),
        [`present.${L}.key`]: mtp["present.key"]!.as(`present.${L}.key`),
        [`present.${L}.value`]: mtp["present.value"]!.as(`present.${L}.value`),
      };
    });
    return m.finish();
  }

  m.entry(graph, inputs, (x) => {
    const ids = x["input_ids"]!;
    const S = ids.shape[1]!;
    const { embed, logits } = vocab();
    const rope = ropeTables(op.iota(withCache ? "P" : 0, S, "i64"));
    const outputs: Record<string, Tensor> = {};
    const counted: Record<string, Tensor> = {};

    let h = op.embedding(embed, ids);
    for (let i = 0; i < cfg.numLayers; i++) {
      const layer = isMoeLayer(cfg, i) ? moeLayer : denseLayer;
      const args = withCache ? [x[`past.${i}.key`]!, x[`past.${i}.value`]!] : [];
      const out = layer(`model.layers.${i}`, h, rope.cos, rope.sin, ...args);
      h = out.hidden!.as(`hidden.${i}`);
      if (out["tokens_per_expert"]) counted[`tokens_per_expert.${i}`] = out["tokens_per_expert"];
      outputs[`present.${i}.key`] = out["present.key"]!.as(`present.${i}.key`);
      outputs[`present.${i}.value`] = out["present.value"]!.as(`present.${i}.value`);
    }
    const hNorm = norm(h, "model.norm").as("final_hidden");
    const result: Record<string, Tensor> = { logits: logits(graph === "prefill" ? op.takeLast(hNorm, 1, 1) : hNorm, "logits") };

    if (!withCache && graph !== "prefill") {
      let ids2 = ids;
      let prev = hNorm;
      for (let j = 0; j < cfg.numMtpLayers; j++) {
        ids2 = op.shift(ids2, 1, -1, 0);
        const e = op.embedding(embed, ids2);
        const mtp = mtpLayer(`model.layers.${cfg.numLayers + j}`, prev, e, rope.cos, rope.sin);
        prev = mtp.hidden!.as(`mtp_hidden.${j}`);
        if (mtp["tokens_per_expert"]) counted[`tokens_per_expert.${cfg.numLayers + j}`] = mtp["tokens_per_expert"];
        const name = j === 0 ? "mtp_logits" : `mtp_logits.${j}`;
        result[name] = logits(prev, name);
      }
    }
    if (training) return { ...trainingLoss(ids, result), ...counted };
    // Last, the draft graph's input (speculative decoding reads it back for the accepted positions).
    return { ...result, ...outputs, ...(cfg.numMtpLayers > 0 ? { final_hidden: hNorm } : {}) };
  });
  return m.finish();
}

/**
 * Mean cross-entropy of logits [B, S, V] (f32) against the ids `ahead` positions later, over the
 * positions that have such an id (t < S - ahead): the log-sum-exp with its max held constant (its
 * derivative is zero by construction), minus the target's logit.
 */
function crossEntropy(logits: Tensor, ids: Tensor, ahead: number): Tensor {
  const [B, S, V] = logits.shape as [Dim, Dim, Dim];
  const rows = B.mul(S);
  const targets = op.reshape(op.shift(ids, 1, -ahead, 0), [rows, 1]);
  const mask = op.reshape(op.shift(op.broadcastTo(op.constant(1, "f32"), [B, S]), 1, -ahead, 0), [rows, 1]);
  const z = op.sub(logits, op.stopGradient(op.reduceMax(logits, [-1], true)));
  const lse = op.reshape(op.log(op.reduceSum(op.exp(z), [-1], true)), [rows, 1]);
  const nll = op.sub(lse, op.takeAlong(op.reshape(z, [rows, V]), targets));
  return op.div(op.reduceSum(op.mul(nll, mask), [0, 1]), op.reduceSum(mask, [0, 1]));
}

/** loss = main + MTP_LOSS_WEIGHT * mtp (no MTP term without an MTP layer), each [1]. */
function trainingLoss(ids: Tensor, result: Record<string, Tensor>): Record<string, Tensor> {
  const one = (t: Tensor) => op.reshape(t, [1]);
  const main = crossEntropy(result["logits"]!, ids, 1);
  const mtpLogits = result["mtp_logits"];
  if (!mtpLogits) return { loss: one(main).as("loss"), loss_main: one(main).as("loss_main") };
  const mtp = crossEntropy(mtpLogits, ids, 2);
  const loss = op.add(main, op.mul(mtp, op.constant(MTP_LOSS_WEIGHT, "f32")));
  return { loss: one(loss).as("loss"), loss_main: one(main).as("loss_main"), loss_mtp: one(mtp).as("loss_mtp") };
}
