/**
 * The memory-bound row kernels' CUDA forms in the kir simulator, against the interpreter:
 * qk_norm_rope (the warp form and the register form, with its fused KV cache appends), RMSNorm in
 * registers, the pointwise runs and their 16-byte forms (pointwise16, the MoE combine), and the
 * embedding lookup.
 */
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { rng } from "../support/fd";
import { LIMITS, kernels, runGenerated, random, relError } from "../support/kir-run";
import { qkvModule } from "../support/qkv-text";

describe("row kernels in the kir simulator", () => {
  it.each([
    // The register form (8 elements a lane): heads of 64 with a rotary half of 16; the value heads
    // start at head 6, so two heads a warp (16 lanes each, 8 of them holding nothing), 8 a block.
    [2, 3, 64, 16, 4, 2, 8],
    // Ling-mini's heads (128, rotary half 32, 16 query / 4 KV heads): two heads a warp, all lanes holding.
    [1, 5, 128, 32, 16, 4, 8],
    // The whole head rotated (half 64), 3 query / 1 KV heads: a head a warp, 16 lanes holding.
    [2, 3, 128, 64, 3, 1, 4],
    // Heads of 32 (4 lanes' worth), 2 query / 1 KV heads: a head a warp.
    [1, 4, 32, 8, 2, 1, 4],
    // The workgroup-memory form (a warp a head, four a block): heads of 80 (not whole 8-element
    // pieces) with a rotary half of 10, 3 query and 1 KV heads: 2 x 3 x 5 = 30 heads, the last block half idle.
    [2, 3, 80, 10, 3, 1, 4],
  ])("qk_norm_rope on CUDA (B %i, S %i, head dim %i, rotary half %i, %i query / %i KV heads; %i heads a block of 128 threads): equal to the interpreter", (B, S, D, H, NQ, NKV, per) => {
    const NH = NQ + 2 * NKV;
    const text = `module @m {
  func @m(%qkv: bf16[${B}, ${S}, ${NH * D}], %cos: bf16[${S}, ${H}], %sin: bf16[${S}, ${H}])
      weights(@q_norm.weight: bf16[${D}], @k_norm.weight: bf16[${D}])
      -> (q: bf16[${B}, ${NQ}, ${S}, ${D}], k: bf16[${B}, ${NKV}, ${S}, ${D}], v: bf16[${B}, ${NKV}, ${S}, ${D}]) {
    %heads = reshape(%qkv) {shape = [${B}, ${S}, ${NH}, ${D}]} : bf16[${B}, ${S}, ${NH}, ${D}]
    %0 = slice(%heads) {axis = 2, start = 0, end = ${NQ}} : bf16[${B}, ${S}, ${NQ}, ${D}]
    %q = transpose(%0) {perm = [0, 2, 1, 3]} : bf16[${B}, ${NQ}, ${S}, ${D}]
    %1 = slice(%heads) {axis = 2, start = ${NQ}, end = ${NQ + NKV}} : bf16[${B}, ${S}, ${NKV}, ${D}]
    %k = transpose(%1) {perm = [0, 2, 1, 3]} : bf16[${B}, ${NKV}, ${S}, ${D}]
    %2 = slice(%heads) {axis = 2, start = ${NQ + NKV}, end = ${NH}} : bf16[${B}, ${S}, ${NKV}, ${D}]
    %v = transpose(%2) {perm = [0, 2, 1, 3]} : bf16[${B}, ${NKV}, ${S}, ${D}]
    %qn = rms_norm(%q, @q_norm.weight) {eps = 1e-6} : bf16[${B}, ${NQ}, ${S}, ${D}]
    %kn = rms_norm(%k, @k_norm.weight) {eps = 1e-6} : bf16[${B}, ${NKV}, ${S}, ${D}]
    %qr = rope(%qn, %cos, %sin) : bf16[${B}, ${NQ}, ${S}, ${D}]
    %kr = rope(%kn, %cos, %sin) : bf16[${B}, ${NKV}, ${S}, ${D}]
    return %qr, %kr, %v
  }
}`;
    const r = rng(9);
    const t = (shape: number[]) => random("bf16", r, shape);
    const angles = Array.from({ length: S * H }, (_, i) => Math.floor(i / H) / 10000 ** ((i % H) / H));
    const inputs = { qkv: t([B, S, NH * D]), cos: Tensor.from("bf16", [S, H], angles.map(Math.cos)), sin: Tensor.from("bf16", [S, H], angles.map(Math.sin)) };
    const weights = { "q_norm.weight": t([D]), "k_norm.weight": t([D]) };
    const outs = runGenerated(text, inputs, weights);
    // One kernel; the register form takes four tokens of each of its heads a block.
    expect(kernels.map((k) => [k.kernel.wg, k.grid.per, k.template])).toEqual([[128, H % 8 === 0 ? 4 * per : per, H % 8 === 0 ? "qk_norm_rope_registers" : "qk_norm_rope"]]);
    expect(Object.keys(outs).sort()).toEqual(["k", "q", "v"]);
    // The same roundings in the same order as the interpreter; the norm's sum of squares in another
    // order (shuffles): within a bf16 step of the largest value.
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(2 ** -7);
    expect(relError(outs["v"]!.got, outs["v"]!.want)).toBe(0); // the value heads pass through
  });

  it("pointwise runs of four elements a thread (CUDA's form): the MoE combine with its residual adds as epilogue", () => {
    // 2 x 3 tokens, 2 experts each, rows of 12 (three runs); the rows in a scrambled order.
    const [B, S, H, K] = [2, 3, 12, 2];
    const T = B * S;
    const text = `module @m {
  func @m(%y: bf16[${T * K}, ${H}], %rows: i32[${T * K}], %w: f32[${T}, ${K}], %shared: bf16[${B}, ${S}, ${H}], %h: bf16[${B}, ${S}, ${H}]) -> (out: bf16[${B}, ${S}, ${H}]) {
    %c = moe_combine(%y, %rows, %w) : bf16[${T}, ${H}]
    %r = reshape(%c) {shape = [${B}, ${S}, ${H}]} : bf16[${B}, ${S}, ${H}]
    %a = add(%r, %shared) : bf16[${B}, ${S}, ${H}]
    %out = add(%h, %a) : bf16[${B}, ${S}, ${H}]
    return %out
  }
}`;
    const r = rng(3);
    const t = (shape: number[]) => random("bf16", r, shape);
    const rows = Array.from({ length: T * K }, (_, i) => (i * 5 + 3) % (T * K));
    const inputs = { y: t([T * K, H]), rows: Tensor.from("i32", [T * K], rows), w: Tensor.from("f32", [T, K], Array.from({ length: T * K }, () => r())), shared: t([B, S, H]), h: t([B, S, H]) };
    const { got, want } = runGenerated(text, inputs, {})["out"]!;
    expect(kernels.map((k) => [k.kernel.wg, k.grid.per])).toEqual([[64, 256]]); // one kernel, 4 elements a thread
    expect(relError(got, want)).toBe(0); // the interpreter's roundings, in its order
  });

  it.each([
    // A row of 256 pieces: a piece a thread of 256.
    [3, 2048, true],
    // 25 pieces: 32 threads, 7 of them past the row.
    [2, 200, false],
    // 515 pieces: 256 threads, three pieces each, the third only in 3 threads.
    [2, 4120, true],
  ])("RMSNorm of bf16 rows in registers on CUDA (norm_registers: 8 elements a thread, 16-byte loads and stores), %i rows of %i, residual add %s: against the interpreter", (R, D, residual) => {
    const row = `bf16[${R}, ${D}]`;
    const text = `module @n {
  func @n(%h: ${row}, %a: ${row}) weights(@w: bf16[${D}]) -> (${residual ? "h1: " + row + ", " : ""}y: ${row}) {
    ${residual ? `%h1 = add(%h, %a) : ${row}
    %y = rms_norm(%h1, @w) {eps = 1e-6} : ${row}
    return %h1, %y` : `%y = rms_norm(%h, @w) {eps = 1e-6} : ${row}
    return %y`}
  }
}`;
    const r = rng(D);
    const outs = runGenerated(text, { h: random("bf16", r, [R, D]), a: random("bf16", r, [R, D]) }, { w: random("bf16", r, [D]) });
    expect(kernels.map((k) => k.template)).toEqual(["norm_registers"]);
    const body = JSON.stringify(kernels[0]!.kernel.body);
    expect(body).toContain('"k":"store16"');
    // Each of a thread's pieces: its operands' 16 bytes and the weight's (no element read by itself).
    expect(body.match(/"k":"load16"/g)?.length).toBe(Math.ceil(D / 8 / 256) * (residual ? 3 : 2));
    // The same roundings as the interpreter's; the sum of squares in another order.
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(2 ** -7);
    if (residual) expect(relError(outs["h1"]!.got, outs["h1"]!.want)).toBe(0);
  });

  it.each([
    // Ling-mini's rows (2048: 256 threads of 8 elements, 16 lanes a group), the residual add fused.
    [3, 2048, true, 128],
    // 384 (48 pieces: 32 threads, the second piece of 16 of them, a whole group, past the row), the norm alone.
    [2, 384, false, 128],
    // Groups of 32 (4 lanes each) over rows of 96.
    [2, 96, true, 32],
  ])("RMSNorm in registers with the FP8 activation quantize of its result (8 elements a thread, the group's amax by shuffles, an even lane's and its neighbour's 16 codes a store), %i rows of %i, residual add %s, groups of %i: the codes and scales bit for bit the interpreter's quantize of the kernel's own normalized rows", (R, D, residual, G) => {
    const row = `bf16[${R}, ${D}]`;
    const text = `module @n {
  func @n(%h: ${row}, %a: ${row}) weights(@w: bf16[${D}]) -> (${residual ? "h1: " + row + ", " : ""}y: ${row}, d: f32[${R}, ${D}]) {
    ${residual ? `%h1 = add(%h, %a) : ${row}
    %y = rms_norm(%h1, @w) {eps = 1e-6} : ${row}` : `%y = rms_norm(%h, @w) {eps = 1e-6} : ${row}`}
    %q = quantize(%y) {to = f8e4m3fn, block = [1, ${G}], recipe = "dynamic"} : f8e4m3fn[${R}, ${D}] scale(f32, block(1, ${G}))
    %d = dequantize(%q) {to = f32} : f32[${R}, ${D}]
    return ${residual ? "%h1, " : ""}%y, %d
  }
}`;
    const r = rng(D + G);
    // Every fifth element a thousand times smaller (subnormal codes).
    const h = Tensor.from("bf16", [R, D], Array.from({ length: R * D }, (_, i) => (2 * r() - 1) * (i % 5 === 0 ? 1e-3 : 1)));
    const outs = runGenerated(text, { h, a: random("bf16", r, [R, D]) }, { w: random("bf16", r, [D]) });
    expect(kernels.map((k) => k.template)).toEqual(["norm_registers", "pointwise"]);
    const body = JSON.stringify(kernels[0]!.kernel.body);
    expect(body).toContain('"k":"packE4m3"');
    expect(body).not.toContain('"k":"shared"');
    // Every access of the row a piece of 8 (a warp's 512 contiguous bytes).
    expect(kernels[0]!.kernel.wg).toBe(Math.min(256, 2 ** Math.floor(Math.log2(Math.max(32, D / 8)))));
    for (const name of ["y", ...(residual ? ["h1"] : [])]) expect(relError(outs[name]!.got, outs[name]!.want), name).toBeLessThan(2 ** -7);
    // The interpreter's quantize of the rows the kernel normalized: the same codes and scales.
    const q = parseModule(`module @q {
  func @q(%y: ${row}) -> (d: f32[${R}, ${D}]) {
    %q = quantize(%y) {to = f8e4m3fn, block = [1, ${G}], recipe = "dynamic"} : f8e4m3fn[${R}, ${D}] scale(f32, block(1, ${G}))
    %d = dequantize(%q) {to = f32} : f32[${R}, ${D}]
    return %d
  }
}`, "q.lir");
    const want = interpret(q, { y: Tensor.from("bf16", [R, D], [...outs["y"]!.got]) }, { get: () => undefined as never })["d"]!;
    expect([...outs["d"]!.got]).toEqual([...(want.data as Float32Array)]);
    expect(outs["d"]!.got.filter((v) => v !== 0 && Math.abs(v) < 1e-2).length).toBeGreaterThan((R * D) / 50);
  });

  it("the embedding lookup of a bf16 table (embedding16: a row's 8-element pieces copied in 16-byte loads and stores) against the interpreter, bitwise", () => {
    const text = `module @e {
  func @e(%ids: i64[2, 3]) weights(@table: bf16[50, 24]) -> (h: bf16[2, 3, 24]) {
    %h = embedding(@table, %ids) : bf16[2, 3, 24]
    return %h
  }
}`;
    const r = rng(50);
    const { got, want } = runGenerated(text, { ids: Tensor.from("i64", [2, 3], [49, 0, 7, 7, 31, 2]) }, { table: random("bf16", r, [50, 24]) })["h"]!;
    expect(kernels.map((k) => [k.template, k.grid.per])).toEqual([["embedding16", 512]]);
    expect(relError(got, want)).toBe(0);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.1);
  });

  it("qk_norm_rope's register form with the KV cache appends fused (decode): the new key and value rows written past the cache's rows, equal to the interpreter", () => {
    const [B, S, P, D, H, NQ, NKV] = [2, 1, 5, 64, 16, 4, 2];
    const NH = NQ + 2 * NKV;
    const kv = (rows: number) => `bf16[${B}, ${NKV}, ${rows}, ${D}]`;
    const text = qkvModule({ B, S, P, D, H, NQ, NKV }, "", `q: bf16[${B}, ${NQ}, ${S}, ${D}], key: ${kv(P + S)}, value: ${kv(P + S)}`, "%qr, %key, %value");
    const r = rng(77);
    const t = (shape: number[]) => random("bf16", r, shape);
    const angles = Array.from({ length: S * H }, (_, i) => (3 + Math.floor(i / H)) / 10000 ** ((i % H) / H));
    const inputs = { qkv: t([B, S, NH * D]), cos: Tensor.from("bf16", [S, H], angles.map(Math.cos)), sin: Tensor.from("bf16", [S, H], angles.map(Math.sin)), past_key: t([B, NKV, P, D]), past_value: t([B, NKV, P, D]) };
    const outs = runGenerated(text, inputs, { "q_norm.weight": t([D]), "k_norm.weight": t([D]) });
    expect(kernels.map((k) => k.template)).toContain("qk_norm_rope_registers");
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBeLessThan(2 ** -7);
    expect(relError(outs["value"]!.got, outs["value"]!.want)).toBe(0); // the cache's rows and the new value rows, as they are
  });

  it("scalar ops on bf16 values of one shape (pointwise16: the combine's kernel without the combine, 8 elements a thread, 16-byte loads and stores) against the interpreter, bitwise", () => {
    const t = "bf16[3, 5, 40]";
    const text = `module @p {
  func @p(%x: ${t}, %a: ${t}, %b: ${t}) -> (h: ${t}, y: ${t}) {
    %h = add(%x, %a) : ${t}
    %s = silu(%b) : ${t}
    %y = mul(%h, %s) : ${t}
    return %h, %y
  }
}`;
    const r = rng(16);
    const outs = runGenerated(text, { x: random("bf16", r, [3, 5, 40]), a: random("bf16", r, [3, 5, 40]), b: random("bf16", r, [3, 5, 40]) }, {});
    // (However the fusion groups them: every kernel is this form.)
    expect(kernels.length).toBeGreaterThan(0);
    for (const k of kernels) expect([k.template, k.kernel.wg, k.grid.per]).toEqual(["pointwise16", 64, 512]);
    const body = JSON.stringify(kernels.map((k) => k.kernel.body));
    expect(body.match(/"k":"store16"/g)?.length).toBe(2); // h and y, each once
    for (const [name, { got, want }] of Object.entries(outs)) expect(relError(got, want), name).toBe(0);
    expect(Math.max(...outs["y"]!.got.map(Math.abs))).toBeGreaterThan(0.1);
  });

  it("the MoE combine with the shared expert and the residual added (moe_combine: 8 elements of a row a thread, 16-byte loads and stores) against the interpreter", () => {
    const [T, H, K] = [6, 48, 3];
    const text = `module @c {
  func @c(%y: bf16[${T * K}, ${H}], %rows: i32[${T * K}], %w: f32[${T}, ${K}], %s: bf16[2, 3, ${H}], %x: bf16[2, 3, ${H}]) -> (o: bf16[2, 3, ${H}]) {
    %m = moe_combine(%y, %rows, %w) : bf16[${T}, ${H}]
    %r = reshape(%m) {shape = [2, 3, ${H}]} : bf16[2, 3, ${H}]
    %a = add(%r, %s) : bf16[2, 3, ${H}]
    %o = add(%x, %a) : bf16[2, 3, ${H}]
    return %o
  }
}`;
    const r = rng(69);
    const rows = Array.from({ length: T * K }, (_, j) => (j * 7) % (T * K));
    const inputs = { y: random("bf16", r, [T * K, H]), rows: Tensor.from("i32", [T * K], rows), w: random("f32", r, [T, K]), s: random("bf16", r, [2, 3, H]), x: random("bf16", r, [2, 3, H]) };
    const { got, want } = runGenerated(text, inputs, {}, LIMITS, "")["o"]!;
    expect(kernels).toHaveLength(1);
    const body = JSON.stringify(kernels[0]!.kernel.body);
    expect(body).toContain('"k":"store16"');
    expect(body.match(/"k":"load16"/g)?.length).toBe(3); // an expert row a step, the shared expert's and the residual's
    expect(relError(got, want)).toBeLessThan(2 ** -7);
    expect(Math.max(...got.map(Math.abs))).toBeGreaterThan(0.5);
  });
});
