/**
 * The configuration a graph was traced from, recorded in it (the module attribute `config`, which a
 * printed module carries and ONNX models keep as metadata), so that binding weights later can check
 * that the checkpoint's config.json describes the same model: the same sizes, and the values that
 * change numbers without changing any shape (rope_theta, routed_scaling_factor, rms_norm_eps, ...),
 * which no tensor check can see. Keys are config.json's, values as lingc resolved them (defaults
 * applied, rotary_dim from partial_rotary_factor).
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { LingcError } from "../ir/errors";
import type { LingConfig } from "./config";
import { readConfigFile } from "./resolve";

const RECORDED: [string, (c: LingConfig) => unknown][] = [
  ["vocab_size", (c) => c.vocabSize],
  ["hidden_size", (c) => c.hiddenSize],
  ["intermediate_size", (c) => c.intermediateSize],
  ["num_hidden_layers", (c) => c.numLayers],
  ["num_attention_heads", (c) => c.numHeads],
  ["num_key_value_heads", (c) => c.numKvHeads],
  ["head_dim", (c) => c.headDim],
  ["rms_norm_eps", (c) => c.rmsNormEps],
  ["rope_theta", (c) => c.ropeTheta],
  ["rotary_dim", (c) => c.rotaryDim],
  ["rope_scaling", (c) => c.ropeScaling ?? null],
  ["max_position_embeddings", (c) => c.maxPositionEmbeddings],
  ["num_experts", (c) => c.numExperts],
  ["num_experts_per_tok", (c) => c.numExpertsPerTok],
  ["num_shared_experts", (c) => c.numSharedExperts],
  ["moe_intermediate_size", (c) => c.moeIntermediateSize],
  ["n_group", (c) => c.nGroup],
  ["topk_group", (c) => c.topkGroup],
  ["routed_scaling_factor", (c) => c.routedScalingFactor],
  ["norm_topk_prob", (c) => c.normTopkProb],
  ["moe_router_enable_expert_bias", (c) => c.expertBias],
  ["first_k_dense_replace", (c) => c.firstKDenseReplace],
  ["num_nextn_predict_layers", (c) => c.numMtpLayers],
  ["use_qk_norm", (c) => c.useQkNorm],
  ["tie_word_embeddings", (c) => c.tieWordEmbeddings],
];

/** The record of a config, as the `config` attribute's text (compact JSON, keys in a fixed order). */
export function configRecord(cfg: LingConfig): string {
  return JSON.stringify(Object.fromEntries(RECORDED.map(([k, get]) => [k, get(cfg)])));
}

/**
 * Checks that the config.json of the checkpoint at `weights` (a folder; a bare .safetensors file has
 * none, and nothing is checked) describes the model `recorded` was made from; throws naming the
 * first key that differs. `artifact` names what carries the record, for the message.
 */
export function checkConfigRecord(recorded: string, weights: string, artifact: string): void {
  const folder = existsSync(weights) && statSync(weights).isDirectory() ? weights : undefined;
  if (!folder || !existsSync(join(folder, "config.json"))) return;
  let want: Record<string, unknown>;
  try {
    want = JSON.parse(recorded) as Record<string, unknown>;
  } catch {
    throw new LingcError(`${artifact}: its recorded config is not JSON`);
  }
  const path = join(folder, "config.json");
  const have = JSON.parse(configRecord(readConfigFile(path, folder))) as Record<string, unknown>;
  for (const [key, value] of Object.entries(want)) {
    if (JSON.stringify(have[key]) === JSON.stringify(value)) continue;
    throw new LingcError(`${path}: ${key} is ${JSON.stringify(have[key])}, but ${artifact} was compiled for ${JSON.stringify(value)} (a checkpoint of another configuration; compile again from this one)`);
  }
}
