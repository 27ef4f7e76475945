/**
 * The Ling 2.0 configuration, read from an HF `config.json` (BailingMoeV2 keys). Keys that define
 * the architecture are required; a missing one is an error naming the file and key rather than a
 * guessed default. The defaults that remain are the HF class's for settings that are the same
 * across the whole family. Unsupported settings fail with a clear "not implemented".
 */
import { LingcError, NotImplementedError, type SourcePos } from "../ir/errors";
import type { DType } from "../ir/dtype";

export interface YarnScaling {
  type: "yarn";
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast: number;
  betaSlow: number;
  attentionFactor?: number;
  mscale?: number;
  mscaleAllDim?: number;
  truncate: boolean;
}

export interface LingConfig {
  name: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Leading dims of each head that rotate (0: no RoPE). */
  rotaryDim: number;
  ropeScaling?: YarnScaling;
  maxPositionEmbeddings: number;
  /** Token ids that end a sequence (config.json's `eos_token_id`, a number or a list; none when absent). */
  eosTokenIds: number[];
  numExperts: number;
  numExpertsPerTok: number;
  numSharedExperts: number;
  moeIntermediateSize: number;
  nGroup: number;
  topkGroup: number;
  /** Values summed for a group's score: HF hard-codes 2. */
  groupScoreTopk: number;
  routedScalingFactor: number;
  normTopkProb: boolean;
  expertBias: boolean;
  firstKDenseReplace: number;
  numMtpLayers: number;
  useQkNorm: boolean;
  tieWordEmbeddings: boolean;
  /** The dtype activations are computed in (`--dtype`; default: weightDtype, f32 for an FP8 checkpoint). */
  dtype: DType;
  /** The dtype the checkpoint stores its unquantized weights in (torch_dtype); the model casts them to `dtype`. */
  weightDtype: DType;
  /** An FP8 checkpoint's `quantization_config` (HF FineGrainedFP8): its projections are stored in fp8 with block scales. */
  quantization?: Fp8Config;
}

export interface Fp8Config {
  format: "f8e4m3fn" | "f8e5m2";
  /** How activations entering a quantized projection are treated: quantized per token (dynamic) or kept as they are. */
  activationScheme: "dynamic" | "none";
  /** Rows and columns of one weight scale block. */
  weightBlock: [number, number];
}

type Json = Record<string, unknown>;

/** Finds where a key is written in a JSON text, for error positions. */
function keyPos(text: string | undefined, file: string, key: string): SourcePos | undefined {
  if (!text) return undefined;
  const i = text.indexOf(`"${key}"`);
  if (i < 0) return undefined;
  const before = text.slice(0, i).split("\n");
  return { file, line: before.length, col: before[before.length - 1]!.length + 1 };
}

class Reader {
  constructor(
    readonly json: Json,
    readonly file: string,
    readonly text?: string,
  ) {}

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  fail(key: string, msg: string): never {
    const pos = keyPos(this.text, this.file, key);
    throw new LingcError(pos ? `config key "${key}" ${msg}` : `${this.file}: config key "${key}" ${msg}`, pos);
  }

  raw(key: string, required: boolean): unknown {
    if (!this.has(key)) {
      if (required) throw new LingcError(`${this.file}: config key "${key}" is missing (it defines the architecture; lingc will not guess it)`);
      return undefined;
    }
    return this.json[key];
  }

  int(key: string, dflt?: number, min = 1): number {
    const v = this.raw(key, dflt === undefined);
    if (v === undefined) return dflt!;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) this.fail(key, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  }

  num(key: string, dflt?: number): number {
    const v = this.raw(key, dflt === undefined);
    if (v === undefined) return dflt!;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, `must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.raw(key, false);
    if (v === undefined) return dflt;
    if (typeof v !== "boolean") this.fail(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string, dflt: string): string {
    const v = this.raw(key, false);
    if (v === undefined) return dflt;
    if (typeof v !== "string") this.fail(key, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }
}

/** `eos_token_id`: one id or a list of them (HF writes both), each within the vocabulary. */
function readEos(r: Reader): number[] {
  const v = r.raw("eos_token_id", false);
  if (v === undefined) return [];
  const ids = Array.isArray(v) ? v : [v];
  const vocab = r.int("vocab_size");
  for (const id of ids) if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || id >= vocab) r.fail("eos_token_id", `must be a token id in 0..${vocab - 1} (or a list of them), got ${JSON.stringify(v)}`);
  return ids as number[];
}

const DTYPES: Record<string, DType> = { float32: "f32", bfloat16: "bf16", float16: "f16" };

/** An HF FineGrainedFP8 `quantization_config`; anything lingc does not run is refused naming the key. */
function readQuantization(r: Reader): Fp8Config | undefined {
  const v = r.raw("quantization_config", false);
  if (v === undefined) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) r.fail("quantization_config", "must be an object");
  const q = new Reader(v as Json, r.file, r.text);
  const where = (key: string) => keyPos(r.text, r.file, key);
  const method = q.str("quant_method", "");
  if (method !== "fp8") throw new NotImplementedError(`quantization_config.quant_method "${method}" (lingc reads FP8 checkpoints: quant_method "fp8")`, where("quant_method"));
  const fmt = q.str("fmt", "e4m3");
  const format = ({ e4m3: "f8e4m3fn", e5m2: "f8e5m2" } as const)[fmt as "e4m3" | "e5m2"];
  if (!format) throw new NotImplementedError(`quantization_config.fmt "${fmt}" (lingc reads e4m3 and e5m2)`, where("fmt"));
  const scheme = q.str("activation_scheme", "dynamic");
  if (scheme !== "dynamic") throw new NotImplementedError(`quantization_config.activation_scheme "${scheme}" (lingc quantizes activations dynamically, per token in 1x128 groups)`, where("activation_scheme"));
  const block: unknown = q.raw("weight_block_size", false) ?? [128, 128];
  if (!Array.isArray(block) || block.length !== 2 || !block.every((b) => Number.isSafeInteger(b) && b > 0)) q.fail("weight_block_size", `must be two positive integers [rows, cols], got ${JSON.stringify(block)}`);
  const [rows, cols] = block as [number, number];
  return { format, activationScheme: "dynamic", weightBlock: [rows, cols] };
}

function readRopeScaling(r: Reader, maxPos: number): YarnScaling | undefined {
  const v = r.raw("rope_scaling", false);
  if (v === undefined) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) r.fail("rope_scaling", "must be an object or null");
  const s = new Reader(v as Json, r.file, r.text);
  const type = s.str("rope_type", s.str("type", "default"));
  if (type === "default") return undefined;
  if (type !== "yarn") throw new NotImplementedError(`rope_scaling type "${type}" (lingc supports yarn)`, keyPos(r.text, r.file, "rope_scaling"));
  const out: YarnScaling = {
    type: "yarn",
    factor: s.num("factor"),
    originalMaxPositionEmbeddings: s.int("original_max_position_embeddings", maxPos),
    betaFast: s.num("beta_fast", 32),
    betaSlow: s.num("beta_slow", 1),
    truncate: s.bool("truncate", true),
  };
  if (s.has("attention_factor")) out.attentionFactor = s.num("attention_factor");
  if (s.has("mscale")) out.mscale = s.num("mscale");
  if (s.has("mscale_all_dim")) out.mscaleAllDim = s.num("mscale_all_dim");
  if (!(out.factor > 0)) s.fail("factor", `must be positive, got ${out.factor}`);
  return out;
}

/** Reads an HF BailingMoeV2 config.json object. `text` (the file's contents) lets errors point at a line. */
export function configFromHf(json: unknown, name: string, file: string, text?: string): LingConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new LingcError(`${file}: a config must be a JSON object`);
  const r = new Reader(json as Json, file, text);

  const mt = r.str("model_type", "bailing_moe");
  if (!["bailing_moe", "bailing_moe_v2"].includes(mt)) {
    throw new NotImplementedError(`model_type "${mt}" (lingc compiles Ling 2.0: bailing_moe / bailing_moe_v2)`, keyPos(text, file, "model_type"));
  }
  for (const [key, want] of [
    ["use_bias", false],
    ["use_qkv_bias", false],
  ] as const) {
    if (r.bool(key, want) !== want) throw new NotImplementedError(`${key}: true (Ling 2.0 has no biases)`, keyPos(text, file, key));
  }
  const act = r.str("hidden_act", "silu");
  if (act !== "silu") throw new NotImplementedError(`hidden_act "${act}" (Ling 2.0 uses silu)`, keyPos(text, file, "hidden_act"));
  const score = r.str("score_function", "sigmoid");
  if (score !== "sigmoid") throw new NotImplementedError(`score_function "${score}" (Ling 2.0 routes with sigmoid)`, keyPos(text, file, "score_function"));

  const hiddenSize = r.int("hidden_size");
  const numHeads = r.int("num_attention_heads");
  const numKvHeads = r.int("num_key_value_heads");
  const headDim = r.int("head_dim", Math.floor(hiddenSize / numHeads));
  const numLayers = r.int("num_hidden_layers");
  const numExperts = r.int("num_experts");
  const numExpertsPerTok = r.int("num_experts_per_tok");
  const nGroup = r.int("n_group");
  const topkGroup = r.int("topk_group");
  const maxPos = r.int("max_position_embeddings", 32768);

  // Partial rotary: Ling-1T gives rotary_dim, mini/flash give partial_rotary_factor (LING2.md §2.3).
  let rotaryDim: number;
  const hasDim = r.has("rotary_dim");
  const hasFactor = r.has("partial_rotary_factor");
  if (!hasDim && !hasFactor) {
    throw new LingcError(`${file}: neither "rotary_dim" nor "partial_rotary_factor" is given (Ling 2.0 rotates part of each head; lingc will not guess how much)`);
  }
  const fromFactor = hasFactor ? Math.floor(headDim * r.num("partial_rotary_factor")) : undefined;
  rotaryDim = hasDim ? r.int("rotary_dim", undefined, 0) : fromFactor!;
  if (hasDim && fromFactor !== undefined && fromFactor !== rotaryDim) {
    r.fail("rotary_dim", `(${rotaryDim}) disagrees with partial_rotary_factor (head_dim x factor = ${fromFactor})`);
  }
  if (rotaryDim % 2 !== 0 || rotaryDim > headDim || rotaryDim < 0) r.fail(hasDim ? "rotary_dim" : "partial_rotary_factor", `gives ${rotaryDim} rotary dims; it must be even and at most head_dim (${headDim})`);

  const dtypeName = r.str("torch_dtype", r.str("dtype", "bfloat16"));
  const dtype = DTYPES[dtypeName];
  if (!dtype) r.fail(r.has("torch_dtype") ? "torch_dtype" : "dtype", `must be one of ${Object.keys(DTYPES).join(", ")}, got "${dtypeName}"`);

  const quantization = readQuantization(r);
  const cfg: LingConfig = {
    name,
    vocabSize: r.int("vocab_size"),
    hiddenSize,
    intermediateSize: r.int("intermediate_size"),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: r.num("rms_norm_eps", 1e-6),
    ropeTheta: r.num("rope_theta", 600000),
    rotaryDim,
    ropeScaling: readRopeScaling(r, maxPos),
    maxPositionEmbeddings: maxPos,
    eosTokenIds: readEos(r),
    numExperts,
    numExpertsPerTok,
    numSharedExperts: r.int("num_shared_experts", undefined, 0),
    moeIntermediateSize: r.int("moe_intermediate_size"),
    nGroup,
    topkGroup,
    groupScoreTopk: 2,
    routedScalingFactor: r.num("routed_scaling_factor"),
    normTopkProb: r.bool("norm_topk_prob", true),
    expertBias: r.bool("moe_router_enable_expert_bias", true),
    firstKDenseReplace: r.int("first_k_dense_replace", undefined, 0),
    numMtpLayers: r.int("num_nextn_predict_layers", 0, 0),
    useQkNorm: r.bool("use_qk_norm", true),
    tieWordEmbeddings: r.bool("tie_word_embeddings", false),
    // An FP8 checkpoint computes in f32 by default: its reference (and Ling's recipe outside the
    // FP8 GEMMs) keeps activations in high precision; --dtype bf16 trades that for speed.
    dtype: quantization ? "f32" : dtype,
    weightDtype: dtype,
    quantization,
  };

  if (numHeads % numKvHeads !== 0) r.fail("num_key_value_heads", `(${numKvHeads}) must divide num_attention_heads (${numHeads})`);
  if (numExperts % nGroup !== 0) r.fail("n_group", `(${nGroup}) must divide num_experts (${numExperts})`);
  if (topkGroup > nGroup) r.fail("topk_group", `(${topkGroup}) must be at most n_group (${nGroup})`);
  const perGroup = numExperts / nGroup;
  if (numExpertsPerTok > perGroup * topkGroup) {
    r.fail("num_experts_per_tok", `(${numExpertsPerTok}) exceeds the experts in the kept groups (${topkGroup} groups x ${perGroup})`);
  }
  if (nGroup > 1 && perGroup < cfg.groupScoreTopk) r.fail("n_group", `leaves ${perGroup} expert(s) per group; a group's score sums its best ${cfg.groupScoreTopk}`);
  if (cfg.firstKDenseReplace > numLayers) r.fail("first_k_dense_replace", `(${cfg.firstKDenseReplace}) exceeds num_hidden_layers (${numLayers})`);
  // Sizes far past any model of this family would only make tracing slow or exhaust memory (a million
  // layers took `info` past a minute): refused with the bound named. Ling-1T is well inside them.
  for (const [key, value, most] of [
    ["num_hidden_layers", numLayers, 512],
    ["num_experts", numExperts, 65536],
    ["num_attention_heads", numHeads, 4096],
    ["hidden_size", hiddenSize, 1 << 20],
    ["vocab_size", cfg.vocabSize, 1 << 26],
    ["num_nextn_predict_layers", cfg.numMtpLayers, 64],
    ["head_dim", cfg.headDim, 1 << 16],
    ["intermediate_size", cfg.intermediateSize, 1 << 22],
    ["moe_intermediate_size", cfg.moeIntermediateSize, 1 << 22],
    ["num_shared_experts", cfg.numSharedExperts, 1024],
    ["max_position_embeddings", cfg.maxPositionEmbeddings, 1 << 24],
  ] as const) {
    if (value > most) r.fail(key, `(${value}) is past what lingc accepts (${most})`);
  }
  // Values that would make every number NaN or infinite, refused here rather than found in the logits.
  if (!(cfg.rmsNormEps > 0 && Number.isFinite(cfg.rmsNormEps))) r.fail("rms_norm_eps", `must be a positive number, got ${cfg.rmsNormEps}`);
  if (!(cfg.ropeTheta > 1 && Number.isFinite(cfg.ropeTheta))) r.fail("rope_theta", `must be a number above 1, got ${cfg.ropeTheta}`);
  if (!Number.isFinite(cfg.routedScalingFactor)) r.fail("routed_scaling_factor", `must be a finite number, got ${cfg.routedScalingFactor}`);
  return cfg;
}

/** Layer i of the main stack is MoE iff i >= first_k_dense_replace. */
export function isMoeLayer(cfg: LingConfig, i: number): boolean {
  return i >= cfg.firstKDenseReplace;
}
