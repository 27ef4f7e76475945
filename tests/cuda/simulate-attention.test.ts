/**
 * Attention's CUDA tile programs in the kir simulator, against the interpreter: flash attention on
 * mma.sync (flash_tile) and on warpgroup MMAs (flash_wgmma: pipelined, not, and two warpgroups),
 * causal GQA with partial tiles, a chunk after a cached prefix, transposed results; and decode
 * attention's split and GQA forms with their merges; both flash programs and decode attention's merge
 * with the quantize of their result (FP8's output projection input) as their epilogue.
 */
import { describe, expect, it } from "vitest";
import { rng } from "../support/fd";
import { Tensor } from "../../ir/tensor";
import { LIMITS, kernels, runGenerated, runFlash, random, relError, prefetchedWhole } from "../support/kir-run";
import { qkvModule } from "../support/qkv-text";

describe("attention tile programs in the kir simulator", () => {
  it("flash attention: causal, 4 query heads on 2 KV heads, head dim 64, 150 queries (two query tiles of 128, the second partial; a warp's second 16-row tile)", () => {
    const { got, want } = runFlash([1, 4, 150, 64], [2, 150], true);
    // bf16 outputs: a sum in another order can round one bf16 step (2^-8 of a value) the other way;
    // the probabilities enter the P V products as bf16 (the interpreter keeps them f32).
    expect(relError(got, want)).toBeLessThan(1e-2);
    expect(relError(got, want)).toBeGreaterThan(0); // the simulator computed something of its own
  });

  it("decode attention's generated split form on CUDA (attention_split, the default up to 64 query rows): the keys in 16 workgroups a query row, then the merge kernel through the step's scratch, GQA, against the interpreter", () => {
    // 2 x 4 query rows of one position (decode), 2 KV heads, 40 cached keys (splits of 3: the last short, two empty).
    const [B, NH, NKV, T, D] = [2, 4, 2, 40, 64];
    const text = `module @a {
  func @a(%q: bf16[${B}, ${NH}, 1, ${D}], %k: bf16[${B}, ${NKV}, ${T}, ${D}], %v: bf16[${B}, ${NKV}, ${T}, ${D}]) -> (o: bf16[${B}, ${NH}, 1, ${D}]) {
    %o = attention(%q, %k, %v) {scale = 0.125, causal = true} : bf16[${B}, ${NH}, 1, ${D}]
    return %o
  }
}`;
    const r = rng(77);
    const inputs = { q: random("bf16", r, [B, NH, 1, D]), k: random("bf16", r, [B, NKV, T, D]), v: random("bf16", r, [B, NKV, T, D]) };
    const { got, want } = runGenerated(text, inputs, {}, LIMITS, "", (ops) => (ops.some((o) => o.opName === "attention") ? "attention_split" : undefined))["o"]!;
    expect(kernels.length).toBe(2); // the split kernel and its merge
    expect(kernels[0]!.scratch).toBeGreaterThan(0);
    expect(relError(got, want)).toBeLessThan(1e-2);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.05);
  });

  it.each([
    // 8 query heads over 2 KV heads (4 a group), 40 cached keys: 32 splits of 2 keys, the last 12 empty; head 64: four keys a warp step.
    ["decode_attention", 1, 8, 2, 1, 40, 64, "kernel", "key"],
    ["decode_attention", 1, 8, 2, 1, 40, 64, "last", "chunk"],
    // 2 query positions (a drafted step: the second sees one key more), 2 KV heads of 3 query heads, head 128: two keys a warp step, 300 keys (10 a split, a partial unrolled group).
    ["decode_attention", 1, 6, 2, 2, 300, 128, "kernel", "key"],
    ["decode_attention", 1, 6, 2, 2, 300, 128, "last", "key"],
    ["decode_attention", 1, 6, 2, 2, 300, 128, "kernel", "chunk"],
    // The form for more rows: 4 splits of 45 keys (several unrolled groups a warp, the last partial).
    ["decode_attention_wide", 2, 8, 2, 1, 180, 128, "kernel", "key"],
    ["decode_attention_wide", 2, 8, 2, 1, 180, 128, "last", "key"],
    ["decode_attention_wide", 2, 8, 2, 1, 180, 128, "kernel", "chunk"],
  ] as const)("decode attention's GQA form on CUDA (%s: B %i, heads %i over %i KV heads, %i positions, %i keys of %i): a KV head's query heads over key splits, merged by a merge kernel or by each item's last split (%s), the online softmax a key or a group of keys at a time (%s), against the interpreter", (form, B, NH, NKV, S, T, D, merge, softmax) => {
    const text = `module @a {
  func @a(%q: bf16[${B}, ${NH}, ${S}, ${D}], %k: bf16[${B}, ${NKV}, ${T}, ${D}], %v: bf16[${B}, ${NKV}, ${T}, ${D}]) -> (o: bf16[${B}, ${NH}, ${S}, ${D}]) {
    %o = attention(%q, %k, %v) {scale = ${1 / Math.sqrt(D)}, causal = true} : bf16[${B}, ${NH}, ${S}, ${D}]
    return %o
  }
}`;
    const r = rng(91);
    const inputs = { q: random("bf16", r, [B, NH, S, D], 2), k: random("bf16", r, [B, NKV, T, D], 2), v: random("bf16", r, [B, NKV, T, D]) };
    // Each split's cached rows prefetched before the wait (LINGC_ATTN_PREFETCH): in their buffers (the
    // simulator checks each range), and at one position a sequence the whole of both, every byte once.
    const limits = { ...LIMITS, mergeInLastSplit: merge === "last", decodeSoftmaxChunk: softmax === "chunk", prefetchKv: true };
    const { got, want } = runGenerated(text, inputs, {}, limits, "", (ops) => (ops.some((o) => o.opName === "attention") ? form : undefined))["o"]!;
    if (S === 1) expect(prefetchedWhole()).toHaveLength(2);
    expect(kernels[0]!.kernel.preWait).toBeDefined();
    // "kernel": the splits, then the merge kernel; "last": one kernel, each item's last split merging
    // (counted with an atomic; the harness checks the counters are back at zero).
    expect(kernels.length).toBe(merge === "last" ? 1 : 2);
    expect(kernels[0]!.kernel.name).not.toMatch(/merge/);
    const body = JSON.stringify(kernels[0]!.kernel.body);
    expect(body).toContain('"load16"');
    expect(body.includes('"atomicAdd"') && body.includes('"fence"')).toBe(merge === "last");
    expect(relError(got, want)).toBeLessThan(1e-2);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.05);
  });

  it.each([
    // One position a sequence (decode): 2 sequences, 8 query heads over 2 KV heads, head 128, 40 cached keys.
    [2, 1, 39, 128, 8, 2],
    // Two positions (a drafted step: the new rows in two splits' ranges, written by the items that see them), head 64, 4 query heads a KV head.
    [1, 2, 70, 64, 8, 2],
  ] as const)("qk_norm_rope as decode attention's prologue (LINGC_ATTN_PROLOGUE, attention-prologue.ts): B %i, %i positions after %i cached keys, head %i, %i query heads over %i KV heads: the queries from the QKV rows in each workgroup, the new key and value rows written by the splits that cover them; the same outputs as the two kernels, bit for bit, and the interpreter's", (B, S, P, D, NQ, NKV) => {
    const NH = NQ + 2 * NKV;
    const H = D / 4; // a rotary half of 32 or 16: partial RoPE
    const kv = (rows: number) => `bf16[${B}, ${NKV}, ${rows}, ${D}]`;
    const more = `    %o = attention(%qr, %key, %value) {scale = ${1 / Math.sqrt(D)}, causal = true} : bf16[${B}, ${NQ}, ${S}, ${D}]\n`;
    const text = qkvModule({ B, S, P, D, H, NQ, NKV }, more, `o: bf16[${B}, ${NQ}, ${S}, ${D}], key: ${kv(P + S)}, value: ${kv(P + S)}`, "%o, %key, %value");
    const r = rng(93);
    const t = (shape: number[], scale = 1) => random("bf16", r, shape, scale);
    const angles = Array.from({ length: S * H }, (_, i) => (P + Math.floor(i / H)) / 10000 ** ((i % H) / H));
    const inputs = { qkv: t([B, S, NH * D], 2), cos: Tensor.from("bf16", [S, H], angles.map(Math.cos)), sin: Tensor.from("bf16", [S, H], angles.map(Math.sin)), past_key: t([B, NKV, P, D], 2), past_value: t([B, NKV, P, D]) };
    const weights = { "q_norm.weight": t([D]), "k_norm.weight": t([D]) };
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "attention") ? "decode_attention" : undefined);
    const apart = runGenerated(text, inputs, weights, { ...LIMITS, attentionPrologue: false }, "", pick, true);
    expect(kernels.map((k) => k.template)).toEqual(["qk_norm_rope_registers", "decode_attention", undefined]); // (the merge kernel has no template of its own)
    const merged = runGenerated(text, inputs, weights, { ...LIMITS, attentionPrologue: true }, "", pick, true);
    // The split kernel and its merge: no qk_norm_rope kernel; the split kernel writes the cache's new rows.
    expect(kernels.map((k) => k.template)).toEqual(["decode_attention", undefined]);
    expect(JSON.stringify(kernels[0]!.kernel.body)).toContain('"store16"');
    for (const name of ["o", "key", "value"]) {
      expect([...merged[name]!.got], name).toEqual([...apart[name]!.got]);
      expect(relError(merged[name]!.got, merged[name]!.want), name).toBeLessThan(1e-2);
    }
    expect(Math.max(...merged["o"]!.got.map(Math.abs))).toBeGreaterThan(0.05);
  });

  it("flash attention on warpgroup MMAs (flash_wgmma, the sm_90a default, pipelined: the next block's scores issued before this block's softmax, blocks two at a time): causal GQA, head dim 64, 150 queries (three tiles of 64, the last partial: 1, 2 and 3 key blocks, an odd count runs a block of masked keys more), the keys' last block partial", () => {
    const { got, want } = runFlash([1, 4, 150, 64], [2, 150], true, false, "flash_wgmma");
    expect(kernels[0]!.kernel.wg).toBe(128);
    expect(JSON.stringify(kernels[0]!.kernel.body)).toContain('"k":"wgmma"');
    expect(JSON.stringify(kernels[0]!.kernel.body)).toMatch(/"pair_\d+"/); // the loop over pairs of blocks
    expect(relError(got, want)).toBeLessThan(2 ** -7);
  });

  it("flash attention on warpgroup MMAs: fewer queries than keys (a chunk after a cached prefix), head dim 128, the result transposed; and not causal", () => {
    const causal = runFlash([1, 2, 70, 128], [1, 200], true, true, "flash_wgmma");
    expect(relError(causal.got, causal.want)).toBeLessThan(2 ** -7);
    const full = runFlash([2, 2, 40, 128], [2, 90], false, false, "flash_wgmma");
    expect(relError(full.got, full.want)).toBeLessThan(2 ** -7);
  });

  it("flash attention on warpgroup MMAs, not pipelined (LINGC_FLASH_WGMMA_PIPE=off: each product waited for at once, blocks one at a time): causal GQA over odd and even block counts, a chunk after a cached prefix transposed, and not causal", () => {
    const pipe = { ...LIMITS, flashPipelined: false };
    // 150 queries and keys: tiles of 1, 2 and 3 key blocks (an odd count runs one block of masked keys more).
    const causal = runFlash([1, 4, 150, 64], [2, 150], true, false, "flash_wgmma", pipe);
    expect(kernels[0]!.kernel.wg).toBe(128);
    expect(relError(causal.got, causal.want)).toBeLessThan(2 ** -7);
    const chunk = runFlash([1, 2, 70, 128], [1, 200], true, true, "flash_wgmma", pipe);
    expect(relError(chunk.got, chunk.want)).toBeLessThan(2 ** -7);
    const full = runFlash([2, 2, 40, 128], [2, 330], false, false, "flash_wgmma", pipe);
    expect(relError(full.got, full.want)).toBeLessThan(2 ** -7);
  });

  it("flash attention on warpgroup MMAs, two warpgroups a workgroup (128 queries sharing each block's K and V): causal GQA with a partial tile, and head dim 128 not causal", () => {
    const two = { ...LIMITS, flashWarpgroups: 2 };
    const causal = runFlash([1, 4, 150, 64], [2, 150], true, false, "flash_wgmma", two);
    expect(kernels[0]!.kernel.wg).toBe(256);
    expect(relError(causal.got, causal.want)).toBeLessThan(2 ** -7);
    const full = runFlash([1, 2, 40, 128], [1, 90], false, true, "flash_wgmma", two);
    expect(relError(full.got, full.want)).toBeLessThan(2 ** -7);
  });

  it.each([
    // Head dim 128, one 128-column group a head's row; 150 queries (the last tile partial), causal GQA.
    ["flash_wgmma", 128, 150, 150, true, 128],
    // Head dim 128 in two groups of 64; a chunk after a cached prefix (20 queries, 90 keys), not causal.
    ["flash_wgmma", 128, 20, 90, false, 64],
    // The mma.sync program (a warp's two 16-row tiles staged together), head dim 64 in one group.
    ["flash_tile", 64, 150, 150, true, 64],
  ] as const)("flash attention (%s) with the FP8 quantize of its transposed result as its epilogue (head dim %i, %i queries over %i keys, causal %s, groups of %i): the codes and scales the separate quantize kernel makes, so the output projection's results bit for bit", (template, D, S, T, causal, G) => {
    const [NH, NKV, O] = [4, 2, 64];
    const flat = `bf16[1, ${S}, ${NH * D}]`;
    const text = `module @att {
  func @att(%q: bf16[1, ${NH}, ${S}, ${D}], %k: bf16[1, ${NKV}, ${T}, ${D}], %v: bf16[1, ${NKV}, ${T}, ${D}]) weights(@proj: bf16[${O}, ${NH * D}]) -> (y: bf16[1, ${S}, ${O}]) {
    %o = attention(%q, %k, %v) {scale = ${1 / Math.sqrt(D)}, causal = ${causal}} : bf16[1, ${NH}, ${S}, ${D}]
    %t = transpose(%o) {perm = [0, 2, 1, 3]} : bf16[1, ${S}, ${NH}, ${D}]
    %r = reshape(%t) {shape = [1, ${S}, ${NH * D}]} : ${flat}
    %y = linear(%r, @proj) : bf16[1, ${S}, ${O}]
    return %y
  }
}`;
    const r = rng(17);
    const inputs = { q: random("bf16", r, [1, NH, S, D]), k: random("bf16", r, [1, NKV, T, D]), v: random("bf16", r, [1, NKV, T, D]) };
    const weights = { proj: random("bf16", r, [O, NH * D], 0.1) };
    const fp8 = `fp8{format=e4m3,weight-block=128,activation-group=${G},activations=dynamic,weights=quantize,projections=proj}`;
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "attention") ? template : undefined);
    const run = (epilogues: boolean) => {
      const y = runGenerated(text, inputs, weights, LIMITS, fp8, pick, false, epilogues)["y"]!;
      return { y, bodies: kernels.map((k) => ({ template: k.template, body: JSON.stringify(k.kernel.body) })) };
    };
    const apart = run(false);
    const merged = run(true);
    // One launch fewer: the attention program writes the codes (it packs them), no quantize kernel of its result.
    expect(merged.bodies).toHaveLength(apart.bodies.length - 1);
    expect(apart.bodies.filter((k) => k.template === "quantize").length).toBe(merged.bodies.filter((k) => k.template === "quantize").length + 1);
    expect(merged.bodies.filter((k) => k.template === template && k.body.includes('"packE4m3"') && k.body.includes('"store16"'))).toHaveLength(1);
    expect([...merged.y.got]).toEqual([...apart.y.got]);
    // Against the interpreter: the MMAs' bf16 probabilities, then an e4m3 code a step away where a value sits near a rounding boundary.
    expect(relError(merged.y.got, merged.y.want)).toBeLessThan(2 ** -5);
    expect(Math.max(...merged.y.got.map(Math.abs))).toBeGreaterThan(0.01);
  });

  it.each([
    ["decode_attention", 1],
    ["decode_attention_wide", 3],
  ] as const)("decode attention (%s, batch %i) with the FP8 quantize of its transposed result as its merge kernel's epilogue (a head's row one 128-wide group, a thread a column): the codes and scales the separate quantize kernel makes, so the output projection's results bit for bit", (form, B) => {
    const [NH, NKV, T, D, O] = [8, 2, 40, 128, 64];
    const text = `module @att {
  func @att(%q: bf16[${B}, ${NH}, 1, ${D}], %k: bf16[${B}, ${NKV}, ${T}, ${D}], %v: bf16[${B}, ${NKV}, ${T}, ${D}]) weights(@proj: bf16[${O}, ${NH * D}]) -> (y: bf16[${B}, 1, ${O}]) {
    %o = attention(%q, %k, %v) {scale = ${1 / Math.sqrt(D)}, causal = true} : bf16[${B}, ${NH}, 1, ${D}]
    %t = transpose(%o) {perm = [0, 2, 1, 3]} : bf16[${B}, 1, ${NH}, ${D}]
    %r = reshape(%t) {shape = [${B}, 1, ${NH * D}]} : bf16[${B}, 1, ${NH * D}]
    %y = linear(%r, @proj) : bf16[${B}, 1, ${O}]
    return %y
  }
}`;
    const r = rng(29);
    const inputs = { q: random("bf16", r, [B, NH, 1, D], 2), k: random("bf16", r, [B, NKV, T, D], 2), v: random("bf16", r, [B, NKV, T, D]) };
    const weights = { proj: random("bf16", r, [O, NH * D], 0.1) };
    const fp8 = "fp8{format=e4m3,weight-block=128,activations=dynamic,weights=quantize,projections=proj}";
    const pick = (ops: readonly { opName: string }[]) => (ops.some((o) => o.opName === "attention") ? form : undefined);
    const run = (epilogues: boolean) => {
      const y = runGenerated(text, inputs, weights, LIMITS, fp8, pick, false, epilogues)["y"]!;
      return { y, templates: kernels.map((k) => k.template), bodies: kernels.map((k) => ({ name: k.kernel.name, body: JSON.stringify(k.kernel.body) })) };
    };
    const apart = run(false);
    const merged = run(true);
    // The quantize kernel of the attention's result gone; the merge kernel stores the codes (a byte a thread) and the scale.
    expect(apart.templates.filter((t) => t === "quantize").length).toBe(merged.templates.filter((t) => t === "quantize").length + 1);
    expect(merged.bodies).toHaveLength(apart.bodies.length - 1);
    expect(merged.bodies.filter((k) => k.name.endsWith("_merge") && k.body.includes('"k":"quot"'))).toHaveLength(1);
    expect([...merged.y.got]).toEqual([...apart.y.got]);
    expect(relError(merged.y.got, merged.y.want)).toBeLessThan(2 ** -5);
    expect(Math.max(...merged.y.got.map(Math.abs))).toBeGreaterThan(0.01);
  });

  it("flash attention: fewer queries than keys (a chunk after a cached prefix: the mask aligned to the end), causal", () => {
    const { got, want } = runFlash([1, 4, 20, 64], [2, 90], true);
    expect(relError(got, want)).toBeLessThan(1e-2);
  });

  it("flash attention: not causal, head dim 128, the result transposed to [B, S, heads x d]", () => {
    const { got, want } = runFlash([2, 2, 33, 128], [2, 33], false, true);
    expect(relError(got, want)).toBeLessThan(1e-2);
  });
});
