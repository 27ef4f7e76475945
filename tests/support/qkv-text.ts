/**
 * The ops of qk_norm_rope at decode as the Ling model traces them (the fused QKV projection's rows
 * split into query, key and value heads, QK RMSNorm, partial RoPE, the KV cache appends) in .lir
 * text, for tests whose module runs them (with more ops after, or without).
 */
export interface QkvShape {
  B: number;
  S: number;
  /** Cached rows before the step. */
  P: number;
  D: number;
  /** RoPE's rotated half (its tables' width). */
  H: number;
  NQ: number;
  NKV: number;
}

/** A module @m of the qk_norm_rope ops, then `more` (ops on %qr, %key, %value), returning `outs` (name: type) as `values`. */
export function qkvModule(x: QkvShape, more: string, outs: string, values: string): string {
  const { B, S, P, D, H, NQ, NKV } = x;
  const NH = NQ + 2 * NKV;
  const kv = (rows: number) => `bf16[${B}, ${NKV}, ${rows}, ${D}]`;
  return `module @m {
  func @m(%qkv: bf16[${B}, ${S}, ${NH * D}], %cos: bf16[${S}, ${H}], %sin: bf16[${S}, ${H}], %past_key: ${kv(P)}, %past_value: ${kv(P)})
      weights(@q_norm.weight: bf16[${D}], @k_norm.weight: bf16[${D}])
      -> (${outs}) {
    %heads = reshape(%qkv) {shape = [${B}, ${S}, ${NH}, ${D}]} : bf16[${B}, ${S}, ${NH}, ${D}]
    %0 = slice(%heads) {axis = 2, start = 0, end = ${NQ}} : bf16[${B}, ${S}, ${NQ}, ${D}]
    %q = transpose(%0) {perm = [0, 2, 1, 3]} : bf16[${B}, ${NQ}, ${S}, ${D}]
    %1 = slice(%heads) {axis = 2, start = ${NQ}, end = ${NQ + NKV}} : bf16[${B}, ${S}, ${NKV}, ${D}]
    %k = transpose(%1) {perm = [0, 2, 1, 3]} : ${kv(S)}
    %2 = slice(%heads) {axis = 2, start = ${NQ + NKV}, end = ${NH}} : bf16[${B}, ${S}, ${NKV}, ${D}]
    %v = transpose(%2) {perm = [0, 2, 1, 3]} : ${kv(S)}
    %qn = rms_norm(%q, @q_norm.weight) {eps = 1e-6} : bf16[${B}, ${NQ}, ${S}, ${D}]
    %kn = rms_norm(%k, @k_norm.weight) {eps = 1e-6} : ${kv(S)}
    %qr = rope(%qn, %cos, %sin) : bf16[${B}, ${NQ}, ${S}, ${D}]
    %kr = rope(%kn, %cos, %sin) : ${kv(S)}
    %key = cache_append(%past_key, %kr) {axis = 2} : ${kv(P + S)}
    %value = cache_append(%past_value, %v) {axis = 2} : ${kv(P + S)}
${more}    return ${values}
  }
}`;
}
