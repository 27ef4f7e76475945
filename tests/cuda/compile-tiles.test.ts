/**
 * The tile programs in the CUDA sources lingc emits (the grouped expert GEMMs on warpgroup and warp
 * MMAs, flash and decode attention, the warp router): their instructions, tiles and dispatches, and
 * that they compile with nvcc for sm_90a without a warning.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CUDA_SM90A } from "../../ir/target";
import { cli } from "../support/cli";
import { BF16_MMA, cliEnv, compileWithBf16Tile, expectCompiles, expectKernelsCompile, expectNoSpills, kernelsNamed, warpTiles } from "../support/cuda-compile";
import { scratchDir, SMALL_DIR, SMALL_FP8_DIR } from "../support/paths";

describe("lingc compile --target cuda: tile programs", () => {
  const dir = scratchDir("lingc-cuda-tiles-");

  it("FP8 (W8A8): the routed experts are a warpgroup-MMA tile program (or, by tile, the exact mma.sync one), decode's projections the warp GEMV, and it compiles", async () => {
    const r = await cli("compile", SMALL_FP8_DIR, "--target", "cuda", "--out", join(dir, "fp8"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "fp8", "model.cu"), "utf8");
    const kernels = (name: string) => kernelsNamed(src, name);
    // SwiGLU experts (gate, up, silu, mul) and the down projection: each a tile program on the FP8
    // tensor cores (the profile's tile: one warpgroup, four m64n128k32 MMAs a 128-code stage read
    // from 128-byte-swizzled shared tiles by descriptor, each stage's sums scaled into the total) and
    // a by-row warp GEMV, chosen by rows (the dispatch: up to a quarter of the 16 experts' count, the
    // GEMV). selftest allows the FP8 MMA's rounding (1e-3 of the largest result) in their checks.
    for (const name of ["k_swiglu", "k_grouped_linear"]) {
      const ks = kernels(name);
      const tiles = ks.filter((k) => k.includes("wgmma.mma_async"));
      expect(tiles.length).toBeGreaterThan(0);
      for (const tile of tiles) {
        expect(tile.match(/wgmma\.mma_async\.sync\.aligned\.m64n128k32\.f32\.e4m3\.e4m3 /g)?.length).toBe(4);
        for (const piece of ["cp.async.cg.shared.global", "fence.proxy.async.shared::cta", "wgmma.wait_group.sync.aligned"]) expect(tile).toContain(piece);
        // Waited for at once (a stage's sums are scaled before the next stage's MMAs).
        expect(tile.match(/wgmma\.wait_group\.sync\.aligned/g)?.length).toBe(1);
        // 3 stages of (64 + 128) rows of 128 bytes: three workgroups an SM, asked of ptxas (<= 168 registers).
        expect(tile).toContain("__launch_bounds__(128, 3)");
      }
      expect(ks.filter((k) => k.includes("__shfl_xor_sync") && !k.includes("wgmma")).length).toBeGreaterThan(0);
    }
    expect(src).toMatch(/: grouped_gemm_fp8 against pointwise", 0\.001f\); \}/);
    // The activation quantizes store a lane's 16 codes at once, packed from the quotients by the
    // group's scale through its reciprocal (the pack rounds to e4m3: no conversion to e4m3, back to
    // float and again before it).
    const packs = kernels("k_quantize").flatMap((k) => k.match(/lingc::pack_e4m3x4\([^;]*;/g) ?? []);
    expect(packs.length).toBeGreaterThan(0);
    for (const p of packs) {
      expect(p).toMatch(/^lingc::pack_e4m3x4\(lingc::quot\(v_\d+, s_\d+, rs_\d+\), /);
      expect(p).not.toContain("__nv_fp8_e4m3(");
    }
    // The exact tile (mma.sync m16n8k32: its slices summed in fp32) by LINGC_FP8_TILE.
    const exact = await cliEnv({ LINGC_FP8_TILE: "64,128,64,32,3" }, "compile", SMALL_FP8_DIR, "--target", "cuda", "--out", join(dir, "fp8-mma"));
    expect(exact.code, exact.stderr).toBe(0);
    const mmaSrc = readFileSync(join(dir, "fp8-mma", "model.cu"), "utf8");
    const mmaTiles: string[] = [];
    for (const name of ["k_swiglu", "k_grouped_linear"]) {
      const tiles = kernelsNamed(mmaSrc, name).filter((k) => k.includes("mma.sync"));
      expect(tiles.length).toBeGreaterThan(0);
      mmaTiles.push(...tiles);
      for (const tile of tiles) {
        expect(tile.match(/mma\.sync\.aligned\.m16n8k32\.row\.col\.f32\.e4m3\.e4m3\.f32/g)?.length).toBe(32);
        for (const piece of ["cp.async.cg.shared.global", "cp.async.wait_group", "ldmatrix.sync.aligned.m8n8.x4.shared.b16"]) expect(tile).toContain(piece);
      }
    }
    expect(mmaSrc).toMatch(/: grouped_gemm_fp8 against pointwise", 0\.0f\); \}/);
    expect(src).toMatch(/if \(\(\(4L\*B\*S\)\) <= \(4L\)\) \{ \{ const long n_ = [^}]*c\.launch\(k_swiglu_\d+/);
    // Up to 16 rows an FP8 linear is the warp GEMV (its first choice), then cuBLASLt's FP8 GEMM.
    expect(src).toMatch(/if \(\(\(B\*S\)\) <= \(16L\)\) \{ \{ const long n_ = [^}]*c\.launch\(k_linear_\d+/);
    expect(kernels("k_linear").some((k) => k.includes("__shfl_xor_sync"))).toBe(true);
    // Activation scale grids read only by FP8 linears are stored K-block-major for cuBLASLt (no transpose at run time).
    const calls = src.match(/c\.gemm_fp8\([^;]*;/g) ?? [];
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) expect(c).toMatch(/^c\.gemm_fp8\(b \+ \d+, b \+ \d+, true, /);
    // The whole default program, and the exact tile's kernels alone (the rest is the same program);
    // the warpgroup tiles within the registers their three workgroups an SM leave (168), unspilled.
    const wgmmaTiles = [...kernels("k_swiglu"), ...kernels("k_grouped_linear")].filter((k) => k.includes("wgmma.mma_async"));
    await Promise.all([expectCompiles([join(dir, "fp8"), "model.cu"]), expectKernelsCompile(join(dir, "fp8-mma"), mmaTiles), expectNoSpills(join(dir, "fp8"), wgmmaTiles)]);
  }, 300_000);

  it("LINGC_FP8_WGMMA=overlap: the FP8 expert GEMM's two stage sums in turn (each stage's first MMA writes its sums), and ptxas neither spills nor serializes the MMAs", async () => {
    const r = await cliEnv({ LINGC_FP8_WGMMA: "overlap" }, "compile", SMALL_FP8_DIR, "--target", "cuda", "--out", join(dir, "fp8-overlap"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "fp8-overlap", "model.cu"), "utf8");
    const tiles = [...kernelsNamed(src, "k_swiglu"), ...kernelsNamed(src, "k_grouped_linear")].filter((k) => k.includes("wgmma.mma_async"));
    expect(tiles).toHaveLength(2);
    for (const tile of tiles) {
      // The K loop two stages an iteration (and the odd last one after it): each stage's first MMA with
      // scale-d 0, its wait for the stage before; the last stage's wait after the loop.
      expect(tile.match(/"n"\(0\)\);/g)?.length).toBeGreaterThanOrEqual(2);
      expect(tile.match(/wgmma\.wait_group\.sync\.aligned/g)?.length).toBeGreaterThanOrEqual(3);
    }
    await expectNoSpills(join(dir, "fp8-overlap"), tiles);
  }, 300_000);

  it("bf16 (the profile's tile): the routed experts of many rows are Hopper warpgroup MMAs from 128-byte-swizzled shared tiles, through the token gather, and it compiles", async () => {
    const r = await cli("compile", SMALL_DIR, "--target", "cuda", "--out", join(dir, "bf16"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "bf16", "model.cu"), "utf8");
    const tile = CUDA_SM90A.expertTiles["bf16"]!;
    expect(tile.wgmma).toBe(true);
    for (const name of ["k_swiglu", "k_grouped_linear"]) {
      const tiles = kernelsNamed(src, name).filter((k) => k.includes("wgmma"));
      expect(tiles.length, name).toBe(1);
      // Four k16 slices of a 64-element stage, each a 64 x bn warpgroup MMA (bm / 64 warpgroups of 128 threads).
      expect(tiles[0]!.match(new RegExp(`wgmma\\.mma_async\\.sync\\.aligned\\.m64n${tile.bn}k16\\.f32\\.bf16\\.bf16`, "g"))?.length).toBe(4);
      expect(tiles[0]).toContain(`__launch_bounds__(${2 * tile.bm})`);
      for (const piece of ["wgmma.fence.sync.aligned", "wgmma.commit_group.sync.aligned", "fence.proxy.async.shared::cta", "extern __shared__ __align__(1024)", "cp.async.cg.shared.global"]) expect(tiles[0]).toContain(piece);
      // The swizzle: chunk lc ^ (row % 8).
      expect(tiles[0]).toMatch(/\(lc_\d+ \^ \(lr_\d+ % 8\)\)/);
      // A stage's MMAs are waited for late (in the next iteration, after its copies and loads; the
      // last stage's after the loop): two waits in the text.
      expect(tiles[0]!.match(/wgmma\.wait_group\.sync\.aligned/g)?.length).toBe(2);
    }
    // SwiGLU reads its rows through the token gather (order[r] / k, ling-small's k = 4).
    expect(kernelsNamed(src, "k_swiglu").find((k) => k.includes("wgmma"))).toMatch(/\[\([^\]]*\)\] \/ 4\) \* 256\)/);
    // The dispatch: few rows the expert GEMV, many the tile program, launched with its dynamic
    // shared memory: stages x (bm + bn) rows of 128 bytes, then the tile finder's two words (16 bytes).
    const smem = tile.stages * (tile.bm + tile.bn) * 128 + 16;
    expect(src).toMatch(new RegExp(`else \\{ \\{ const long n_ = [^}]*c\\.launch_smem\\(k_swiglu_\\d+, [^,]*, ${2 * tile.bm}, ${smem}`));
    // Decode's GEMVs are generated (16-byte loads, warp-shuffle sums). ling-small: 16 experts, 4 a
    // token: by row up to 4 rows (a workgroup per row and 32 of the 128 columns: four a warp), by
    // expert up to 64 (16 experts x 4 column tiles), the tile program beyond.
    expect(src).not.toMatch(/c\.expert_gemv\(|c\.gemv_swiglu\(/);
    expect(src).toMatch(/ if \(\(\(4L\*B\*S\)\) <= \(4L\)\) \{ \{ const long n_ = \(16L\*B\*S\);[^\n]*c\.launch\(k_swiglu_\d+,[^\n]*\n\s*else if \(\(\(4L\*B\*S\)\) <= \(64L\)\) \{ \{ const long n_ = 64L;[^\n]*c\.launch\(k_swiglu_\d+,/);
    const gemvs = [...kernelsNamed(src, "k_swiglu"), ...kernelsNamed(src, "k_grouped_linear")].filter((k) => k.includes("const uint4 "));
    // SwiGLU and down, each by row and by expert, in each graph (forward, decode).
    expect(gemvs.length).toBeGreaterThanOrEqual(4);
    for (const k of gemvs) expect(k).toContain("__shfl_xor_sync");
    // The dense linears at one row too, the router gate's included: after castlinear its bf16 input
    // and weight into f32 results (no f32 copy of either).
    expect(src).not.toMatch(/c\.gemv\(/);
    const dense = kernelsNamed(src, "k_linear").filter((k) => k.includes("const uint4 "));
    expect(dense.length).toBeGreaterThanOrEqual(2);
    expect(dense.some((k) => /\(const __nv_bfloat16\* __restrict__ b0, const __nv_bfloat16\* __restrict__ b1, float\* __restrict__ b2,/.test(k))).toBe(true);
    expect(dense.some((k) => k.includes("const float* __restrict__"))).toBe(false);
    // The dense MLP's and the shared expert's SwiGLU (two linears, silu, mul: one step): the
    // generated GEMV at one row, two GEMMs and silu_mul beyond; once in each graph (forward, prefill, decode).
    expect(src.match(/if \(\(\(B\*S\)\) == \(1L\)\) \{[^\n]*c\.launch\(k_\w+_\d+, [^\n]*\n\s*else c\.gemm_swiglu\(b \+ \d+, b \+ \d+, b \+ \d+, b \+ \d+, \(B\*S\), 640L, 256L\);/g)).toHaveLength(3);
    await expectCompiles([join(dir, "bf16"), "model.cu"]);
  }, 300_000);

  it("decode attention is generated: bf16 by the GQA forms (a KV head's query heads together; 32 key splits up to 64 query rows, 4 up to 512), fp32 by the split form up to 64, each with its merge kernel launched after it through the step's scratch (stream-ordered), or with LINGC_DECODE_MERGE=last the GQA forms' merge in each item's last split (the runtime's counters); and it compiles", async () => {
    const lir = join(dir, "dec.lir");
    const text = (dt: string) => `module @att {
  func @att(%q: ${dt}[B, 8, 1, 64], %k: ${dt}[B, 2, T, 64], %v: ${dt}[B, 2, T, 64]) -> (o: ${dt}[B, 8, 1, 64]) {
    %o = attention(%q, %k, %v) {scale = 0.125, causal = true} : ${dt}[B, 8, 1, 64]
    return %o
  }
}
`;
    writeFileSync(lir, text("bf16"));
    writeFileSync(lir.replace(".lir", "32.lir"), text("f32"));
    const r = await cli("compile", lir, "--target", "cuda", "--out", join(dir, "dec"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "dec", "model.cu"), "utf8");
    // Up to 64 query rows (8 a batch row here) the GQA form of 32 key splits, its scratch 64 rows x 32 splits x (64 + 2)
    // floats; up to 512 the form of 4 splits (512 x 4 x 66 floats); more, attn_decode.
    // A split form's branch: up to `rows` query rows, its scratch taken, the kernel (then its merge; or
    // merged in its last splits: with the runtime's counters, one launch), the scratch given back.
    // The branch is one statement: the launches, then selftest's check against the plain attention kernel.
    const split = (rows: number, bytes: number, merged: boolean) =>
      `\\(\\(\\(8L\\*B\\)\\) <= \\(${rows}L\\)\\) \\{ \\{ float\\* scratch_ = \\(float\\*\\)c\\.scratch_acquire\\(${bytes}\\); \\{[^\\n]*c\\.launch\\(k_attention_\\d+, [^\\n]*scratch_${merged ? "[^\\n]*c\\.counters\\(\\)[^\\n]*" : "[^\\n]*c\\.launch\\(k_attention_then_\\d+, [^\\n]*"}c\\.scratch_release\\(scratch_\\); \\} if \\(c\\.checking\\(\\)\\) \\{[^\\n]*against attention", 0\\.0f\\); \\} \\}\\n\\s*`;
    expect(src).toMatch(new RegExp(`if ${split(64, 540672, false)}else if ${split(512, 540672, false)}else if [^\\n]*c\\.attn_decode\\(`));
    expect(kernelsNamed(src, "k_attention").filter((k) => k.includes("const uint4 "))).toHaveLength(2);
    const last = await cliEnv({ LINGC_DECODE_MERGE: "last" }, "compile", lir, "--target", "cuda", "--out", join(dir, "dec-last"));
    expect(last.code, last.stderr).toBe(0);
    const merged = readFileSync(join(dir, "dec-last", "model.cu"), "utf8");
    expect(merged).toMatch(new RegExp(`if ${split(64, 540672, true)}else if ${split(512, 540672, true)}else if [^\\n]*c\\.attn_decode\\(`));
    expect(merged).not.toContain("k_attention_then_");
    expect(kernelsNamed(merged, "k_attention").filter((k) => k.includes("atomicAdd(&counters[") && k.includes("__threadfence();"))).toHaveLength(2);
    // fp32 heads (the golden checkpoint's) take the split form, up to 64 rows (16 splits a row).
    const r32 = await cli("compile", lir.replace(".lir", "32.lir"), "--target", "cuda", "--out", join(dir, "dec32"));
    expect(r32.code, r32.stderr).toBe(0);
    expect(readFileSync(join(dir, "dec32", "model.cu"), "utf8")).toMatch(new RegExp(`if ${split(64, 270336, false)}else if [^\\n]*c\\.attn_decode\\(`));
    await expectCompiles([join(dir, "dec"), "model.cu"], [join(dir, "dec-last"), "model.cu"]);
  }, 300_000);

  it("by default (LINGC_PAIR_LAUNCH=on) two independent steps near each other are one launch where the sizes choose both generated kernels, else each as before; a pair that moves a step past one an earlier pair moved needs that pair; in functions with fp8 steps FP8's GEMVs and quantizes pair too; the merged kernels compile", async () => {
    // ling-small (its shared expert's down projection is cuBLASLt's): the routed experts' SwiGLU GEMV with the shared expert's, past the routed down projection.
    const r = await cli("compile", SMALL_DIR, "--target", "cuda", "--out", join(dir, "pair"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "pair", "model.cu"), "utf8");
    const flags = src.match(/const bool (pair\d+_) = \(\(\(4L\*B\*S\)\) <= \(4L\) && \(\(B\*S\)\) == \(1L\)\);/g) ?? [];
    expect(flags.length).toBeGreaterThan(0);
    const flag = flags[0]!.match(/pair\d+_/)![0];
    expect(src).toContain(`if (${flag}) { { const long n_ = (20L*B*S);`); // 16 workgroups a row of the routed SwiGLU, 4 of the shared one
    expect(src).toContain(`if (!${flag}) {`);
    const merged = kernelsNamed(src, "k_swiglu_pair");
    expect(merged[0]).toMatch(/if \(\(wgid < merge_split\)\)/);
    // Ling-mini's shape: both shared-expert GEMVs move up, the second pair only with the first.
    const mini = await cli("compile", "bench/cuda/ling-mini-2.0-no-mtp", "--target", "cuda", "--out", join(dir, "pair-mini"));
    expect(mini.code, mini.stderr).toBe(0);
    const miniSrc = readFileSync(join(dir, "pair-mini", "model.cu"), "utf8");
    expect(miniSrc).toMatch(/const bool (pair\d+_) = \(\(\(8L\*B\*S\)\) <= \(64L\) && \(\(B\*S\)\) == \(1L\)\);\n(?:.*\n)*?  const bool pair\d+_ = \(\1 && /);
    // FP8 (ling-small-fp8): its functions have fp8 steps, so they pair by FP8's rules by default (as
    // LINGC_PAIR_LAUNCH=fp8 would): the routed experts' SwiGLU GEMV with the shared expert's, the two
    // hidden rows' quantizes (the shared one's grid not whole workgroups as a dim: the split a
    // ceiling), then the two down projections, each pair after the one before (reach 3 counting only
    // steps that run at run time).
    const fp8 = await cli("compile", SMALL_FP8_DIR, "--target", "cuda", "--out", join(dir, "pair-fp8"));
    expect(fp8.code, fp8.stderr).toBe(0);
    const fp8Src = readFileSync(join(dir, "pair-fp8", "model.cu"), "utf8");
    const fp8Env = await cliEnv({ LINGC_PAIR_LAUNCH: "fp8" }, "compile", SMALL_FP8_DIR, "--target", "cuda", "--out", join(dir, "pair-fp8-env"));
    expect(fp8Env.code, fp8Env.stderr).toBe(0);
    expect(readFileSync(join(dir, "pair-fp8-env", "model.cu"), "utf8")).toBe(fp8Src);
    const fp8Off = await cliEnv({ LINGC_PAIR_LAUNCH: "off" }, "compile", SMALL_FP8_DIR, "--target", "cuda", "--out", join(dir, "pair-fp8-off"));
    expect(fp8Off.code, fp8Off.stderr).toBe(0);
    expect(readFileSync(join(dir, "pair-fp8-off", "model.cu"), "utf8")).not.toMatch(/pair\d+_|_pair_/);
    expect(fp8Src).toMatch(/const bool (pair\d+_) = \(\(\(4L\*B\*S\)\) <= \(4L\) && \(\(B\*S\)\) <= \(16L\)\);\n(?:.*\n)*?  const bool (pair\d+_) = \(\1\);\n(?:.*\n)*?  const bool pair\d+_ = \(\1 && \2 && /);
    const fp8Merged = ["k_swiglu_pair", "k_quantize_pair", "k_grouped_linear_pair"].map((name) => kernelsNamed(fp8Src, name));
    expect(fp8Merged.map((k) => k.length)).toEqual([1, 1, 1]);
    for (const k of fp8Merged.flat()) expect(k).toMatch(/__launch_bounds__\(256, 3\)[^]*if \(\(wgid < merge_split\)\)/);
    expect(fp8Src).toMatch(/const long n_ = [^;]*\+ 31\) \/ 32\)[^;]*; if \(n_ > 0\) \{ c\.launch\(k_quantize_pair/);
    // FP8 Ling-mini: the three pairs in its MoE layer too, their merged kernels unspilled at three workgroups a multiprocessor.
    const mini8 = await cli("compile", "bench/cuda/ling-mini-2.0-no-mtp", "--target", "cuda", "--quantize", "fp8", "--activation-scheme", "dynamic", "--dtype", "bf16", "--out", join(dir, "pair-mini8"));
    expect(mini8.code, mini8.stderr).toBe(0);
    const mini8Src = readFileSync(join(dir, "pair-mini8", "model.cu"), "utf8");
    // (No experts' quantize epilogue by default: LINGC_QUANT_EPILOGUE=on's test; the attention's is the next test's.)
    expect(mini8Src).not.toMatch(/k_swiglu_q_/);
    const mini8Merged = ["k_swiglu_pair", "k_quantize_pair", "k_grouped_linear_pair"].map((name) => kernelsNamed(mini8Src, name));
    expect(mini8Merged.map((k) => k.length)).toEqual([1, 1, 1]);
    await expectNoSpills(join(dir, "pair-mini8"), mini8Merged.flat());
    // LINGC_PAIR_LAUNCH=off: no pairs.
    const plain = await cliEnv({ LINGC_PAIR_LAUNCH: "off" }, "compile", SMALL_DIR, "--target", "cuda", "--out", join(dir, "unpaired"));
    expect(plain.code, plain.stderr).toBe(0);
    expect(readFileSync(join(dir, "unpaired", "model.cu"), "utf8")).not.toMatch(/pair\d+_|_pair_/);
    await expectKernelsCompile(join(dir, "pair"), [...merged, ...kernelsNamed(miniSrc, "k_grouped_linear_pair"), ...fp8Merged.flat()]);
  }, 300_000);

  it("LINGC_PHASE_LAUNCH=on: runs of steps whose sizes choose plain generated kernels are the phases of one launch (a grid barrier between), sized to what fits at once; a group never spans a layer call (its buffers are written there); the merged kernels compile", async () => {
    const r = await cliEnv({ LINGC_PHASE_LAUNCH: "on" }, "compile", SMALL_DIR, "--target", "cuda", "--out", join(dir, "phases"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "phases", "model.cu"), "utf8");
    const kernels = kernelsNamed(src, "k_[a-z_]+_phases");
    for (const k of kernels) expect(k).toMatch(/lingc::grid_(sync\(grid_sync, nwg\)|arrive\(grid_sync, nwg\))/);
    // The residual norm, router and dispatch run in a barrier's last arrival.
    expect(kernels.some((k) => k.includes("lingc::grid_release(grid_sync);"))).toBe(true);
    // Each group's launch: under its flag, as many workgroups as are resident (at most 4 a multiprocessor), the barrier's words from the runtime.
    const launches = [...src.matchAll(/if \((pair\d+_)\) \{ \{ const long n_ = std::max<long>\(\{[^}]*\}\); if \(n_ > 0\) \{ c\.launch\((k_[a-z_]+_phases_\d+), c\.resident\(\(const void\*\)\2, n_, \d+, 0, 4\)[^\n]*c\.grid_sync\(\)/g)];
    expect(launches.length).toBeGreaterThanOrEqual(kernels.length);
    // From a group's flag to the last step it absorbed, no layer call runs (ling-small's prefill: the
    // embedding before the layers and the final norm after them are in different launches).
    for (const fn of src.split(/\nstatic void /).slice(1)) {
      for (const [, flag] of fn.matchAll(/const bool (pair\d+_) = /g)) {
        if (!new RegExp(`c\\.launch\\(k_[a-z_]+_phases_\\d+[^\\n]*`).test(fn.slice(fn.indexOf(`if (${flag!}) {`)).split("\n")[0]!)) continue;
        const span = fn.slice(fn.indexOf(`const bool ${flag!} = `), fn.lastIndexOf(`!${flag!}`));
        expect(span, `${fn.slice(0, fn.indexOf("("))}: ${flag}`).not.toContain("c.call(");
      }
    }
    expect(src).toMatch(/static void prefill__prefill_run[^]*c\.call\(fr, 2\);[^]*if \((pair\d+_)\) \{ \{ const long n_ = std::max<long>[^\n]*c\.launch\(k_rms_norm_phases_\d+/);
    await expectKernelsCompile(join(dir, "phases"), kernels);
  }, 300_000);

  it("LINGC_QUANT_EPILOGUE=on: FP8 Ling-mini's routed SwiGLU experts quantize their hidden rows in the tile program where the sizes choose it (the quantize step skipped there), else both as before (a launch pair of the quantize at few rows excluded); the merged kernel compiles", async () => {
    const args = ["compile", "bench/cuda/ling-mini-2.0-no-mtp", "--target", "cuda", "--quantize", "fp8", "--activation-scheme", "dynamic", "--dtype", "bf16"];
    const on = await cliEnv({ LINGC_QUANT_EPILOGUE: "on" }, ...args, "--out", join(dir, "qe"));
    expect(on.code, on.stderr).toBe(0);
    const src = readFileSync(join(dir, "qe", "model.cu"), "utf8");
    // The forward and decode functions' MoE layers: the tile program past a quarter of the 256 experts'
    // rows, and not where the launch pair that holds the hidden rows' quantize runs.
    const flags = [...new Set(src.match(/const bool qe\d+_ = [^;]*;/g) ?? [])];
    // (And the attention's, step 4, by default: the next test.)
    expect(flags.filter((f) => !f.startsWith("const bool qe4_"))).toEqual(["const bool qe14_ = (!(((8L*B*S)) <= (64L))) && !(pair14_);"]);
    expect(src).toMatch(/const bool pair14_ = [^;]*;\n  const bool qe14_/);
    expect(src).toMatch(/if \(qe14_\) \{ \{ const long n_ = \(32L\*B\*S \+ 65792L\);[^\n]*c\.launch_smem\(k_swiglu_q_\d+/);
    // The quantize step, also the first of a launch pair (with the shared expert's) there: run alone only where neither merge runs.
    expect(src).toMatch(/\/\/ \[15\] mlp\.experts: quantize[^\n]*\n[^\n]*\n  const bool pair15_ = \(pair14_\);\n  if \(pair15_\) [^\n]*\n  else \{\n    if \(!qe14_\) \{\n      \{ const long n_ = \(32L\*B\*S\); if \(n_ > 0\) \{ c\.launch\(k_quantize_/);
    const merged = kernelsNamed(src, "k_swiglu_q");
    expect(merged.length).toBeGreaterThanOrEqual(1);
    for (const k of merged) expect(k).toMatch(/__launch_bounds__\(128, 3\)[^]*wgmma[^]*__shfl_xor_sync/);
    // (Off by default: the launch pairs' test compiles FP8 Ling-mini without it.)
    await expectKernelsCompile(join(dir, "qe"), merged);
  }, 300_000);

  it("LINGC_ATTN_QUANT_EPILOGUE=prefill: FP8 Ling-mini's prefill attention writes its result as the output projection's codes and scales where the sizes choose flash_wgmma (the quantize step skipped there), else both as before; unspilled; by default (=all) decode attention's merge kernels too; =off: neither", async () => {
    const args = ["compile", "bench/cuda/ling-mini-2.0-no-mtp", "--target", "cuda", "--quantize", "fp8", "--activation-scheme", "dynamic", "--dtype", "bf16"];
    const on = await cliEnv({ LINGC_ATTN_QUANT_EPILOGUE: "prefill" }, ...args, "--out", join(dir, "ae"));
    expect(on.code, on.stderr).toBe(0);
    const src = readFileSync(join(dir, "ae", "model.cu"), "utf8");
    // Step 4 (the attention) of the dense and MoE layers, in forward and prefill (S keys) and decode (P + S): past
    // the three decode forms' sizes, where the attention dispatch picks flash_wgmma.
    const decodeForms = (keys: string) => `!(((S)) <= (16L) && ((16L*B*S)) <= (64L)) && !(((S)) <= (16L) && ((16L*B*S)) <= (512L)) && !(((S)) <= (16L) && ((${keys})) <= (32768L) && ((4L*B*S)) <= (65536L))`;
    expect([...new Set(src.match(/const bool qe\d+_ = [^;]*;/g) ?? [])].sort()).toEqual([`const bool qe4_ = (${decodeForms("P + S")});`, `const bool qe4_ = (${decodeForms("S")});`]);
    expect(src.match(/if \(qe4_\) \{ \{ [^\n]*?c\.launch_smem\(k_attention_q_\d+, [^\n]*?\(__nv_fp8_e4m3\*\)[^\n]*?\(float\*\)/g)).toHaveLength(6);
    // The quantize step (step 5) runs only where the epilogue does not.
    expect(src.match(/\/\/ \[5\] attention: quantize[^\n]*\n[^\n]*\n  if \(!qe4_\) \{\n    \{ const long n_ = [^;]*; if \(n_ > 0\) \{ c\.launch\(k_quantize_/g)).toHaveLength(6);
    const merged = kernelsNamed(src, "k_attention_q");
    expect(merged.length).toBeGreaterThanOrEqual(1);
    for (const k of merged) expect(k).toMatch(/wgmma[^]*lingc::pack_e4m3x4[^]*__syncthreads\(\)[^]*uint4/);
    await expectNoSpills(join(dir, "ae"), merged);
    const off = await cliEnv({ LINGC_ATTN_QUANT_EPILOGUE: "off" }, ...args, "--out", join(dir, "ae-off"));
    expect(off.code, off.stderr).toBe(0);
    expect(readFileSync(join(dir, "ae-off", "model.cu"), "utf8")).not.toMatch(/qe\d+_|k_attention_q_/);
    // By default (=all): decode attention's two generated forms take it in their merge kernels too,
    // each under the sizes that choose it (the runtime's attn_decode between them does not),
    // flash_wgmma past them.
    const all = await cli(...args, "--out", join(dir, "ae-all"));
    expect(all.code, all.stderr).toBe(0);
    const allSrc = readFileSync(join(dir, "ae-all", "model.cu"), "utf8");
    const first = "((S)) <= (16L) && ((16L*B*S)) <= (64L)";
    const second = "((S)) <= (16L) && ((16L*B*S)) <= (512L)";
    expect([...new Set(allSrc.match(/const bool qe\d+_ = [^;]*;/g) ?? [])].sort()).toEqual(
      ["P + S", "S"].map((keys) => `const bool qe4_ = (((${first})) || (!(${first}) && (${second})) || (${decodeForms(keys)}));`),
    );
    expect(allSrc.match(/if \(qe4_\) \{ if \(\(\(\(S\)\) <= \(16L\) && \(\(16L\*B\*S\)\) <= \(64L\)\)\) \{[^\n]*c\.launch\(k_attention_q_then_\d+, [^\n]*\} else if \([^\n]*c\.launch\(k_attention_q_then_\d+, [^\n]*\} else \{[^\n]*c\.launch_smem\(k_attention_q_\d+/g)).toHaveLength(6);
    await expectKernelsCompile(join(dir, "ae-all"), kernelsNamed(allSrc, "k_attention_q_then"));
  }, 300_000);

  it("LINGC_QUANT_PROLOGUE=on: FP8 Ling-mini's quantizes read by one GEMV (the attention output's, the gathered expert rows', the routed and shared hidden rows') run inside it where the sizes choose the GEMV, else as before; the merged kernels compile", async () => {
    // (The gathered rows quantized after the gather, CUDA's default being before it; no launch pairs,
    // which would take the steps a prologue merges.)
    const args = ["compile", "bench/cuda/ling-mini-2.0-no-mtp", "--target", "cuda", "--quantize", "fp8", "--activation-scheme", "dynamic", "--dtype", "bf16", "--fp8-gather", "after"];
    const on = await cliEnv({ LINGC_QUANT_PROLOGUE: "on", LINGC_PAIR_LAUNCH: "off" }, ...args, "--out", join(dir, "qp"));
    expect(on.code, on.stderr).toBe(0);
    const src = readFileSync(join(dir, "qp", "model.cu"), "utf8");
    // The MoE layer's four: the output projection and the shared down projection (up to 16 rows),
    // the routed SwiGLU (its gathered rows) and down projection (the by-row GEMV's rows); the dense
    // layer's two (the output projection's shares a flag name with the MoE layer's).
    const flags = [...new Set(src.match(/const bool qp\d+_ = \([^;]*\);/g) ?? [])];
    expect(flags.sort()).toEqual([
      "const bool qp14_ = (((B*S)) <= (16L));",
      "const bool qp15_ = (((8L*B*S)) <= (64L));",
      "const bool qp18_ = (((8L*B*S)) <= (64L));",
      "const bool qp24_ = (((B*S)) <= (16L));",
      "const bool qp7_ = (((B*S)) <= (16L));",
    ]);
    for (const f of flags) {
      const flag = /qp\d+_/.exec(f)![0];
      expect(src).toContain(`if (!${flag}) {`);
      expect(src).toContain(`if (${flag}) { { const long n_`);
    }
    expectPrologueInputsLive(src, flags.length);
    // bench/cuda/ling-qp (f32): there the quantize is its input's last reader in the step list.
    const qp = await cliEnv({ LINGC_QUANT_PROLOGUE: "on", LINGC_PAIR_LAUNCH: "off" }, "compile", "bench/cuda/ling-qp", "--target", "cuda", "--quantize", "fp8", "--activation-scheme", "dynamic", "--out", join(dir, "qp-small"));
    expect(qp.code, qp.stderr).toBe(0);
    expectPrologueInputsLive(readFileSync(join(dir, "qp-small", "model.cu"), "utf8"), 4);
    const merged = [...kernelsNamed(src, "k_linear_q"), ...kernelsNamed(src, "k_grouped_linear_q"), ...kernelsNamed(src, "k_swiglu_q")];
    expect(merged.length).toBeGreaterThanOrEqual(4);
    for (const k of merged) expect(k).toContain("__shfl_xor_sync(0xffffffffu, ");
    const off = await cli(...args, "--out", join(dir, "qp-off"));
    expect(off.code, off.stderr).toBe(0);
    expect(readFileSync(join(dir, "qp-off", "model.cu"), "utf8")).not.toMatch(/qp\d+_|k_(?:linear|grouped_linear|swiglu)_q_\d+\(/);
    await expectKernelsCompile(join(dir, "qp"), merged);
  }, 300_000);

  it("the router a warp per token by default where it takes the step (scores in registers, source-lane shuffles, no barriers), and it compiles; --prefer router:router gives the workgroup router; router_warp refused by name where the experts are not a multiple of 32", async () => {
    const lir = join(dir, "router.lir");
    writeFileSync(
      lir,
      `module @r {
  func @r(%x: f32[T, 256]) weights(@bias: f32[256]) -> (idx: i32[T, 8], w: f32[T, 8]) {
    %s = sigmoid(%x) : f32[T, 256]
    %b = add(%s, @bias) : f32[T, 256]
    %idx = group_topk(%b) {k = 8, groups = 8, topk_groups = 4, group_score_topk = 2} : i32[T, 8]
    %g = take_along(%s, %idx) : f32[T, 8]
    %sum = reduce_sum(%g) {axes = [-1], keepdims = true} : f32[T, 1]
    %w = div(%g, %sum) : f32[T, 8]
    return %idx, %w
  }
}
`,
    );
    const plain = await cli("compile", lir, "--target", "cuda", "--prefer", "router:router", "--out", join(dir, "router-wg"));
    expect(plain.code, plain.stderr).toBe(0);
    expect(kernelsNamed(readFileSync(join(dir, "router-wg", "model.cu"), "utf8"), "k_router")[0]).toContain("__syncthreads");
    const r = await cli("compile", lir, "--target", "cuda", "--out", join(dir, "router"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "router", "model.cu"), "utf8");
    const [k] = kernelsNamed(src, "k_router");
    expect(k).toContain("__shfl_sync(0xffffffffu, ");
    // The top-k rounds: a warp max and a ballot each.
    expect(k).toContain("lingc::warp_max(");
    expect(k).toContain("__ballot_sync(0xffffffffu, ");
    expect(k).not.toContain("__syncthreads");
    // Four tokens a 128-thread workgroup.
    expect(k).toMatch(/^__global__ void __launch_bounds__\(128\) k_router_\d+\(/);
    await expectCompiles([join(dir, "router"), "model.cu"]);
    const bad = await cli("compile", SMALL_DIR, "--target", "cuda", "--prefer", "router:router_warp", "--out", join(dir, "router-bad"));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("kernel 'router_warp' cannot run this router step (its kernels: router)");
  }, 300_000);

  it("bf16 on warp MMAs (LINGC_BF16_TILE=bm,bn,wm,wn,stages): mma.sync tiles, dynamic shared memory past 48 KB, and they compile", async () => {
    const { src, tiles } = await warpTiles("128,128,64,64,3", join(dir, "mma"));
    for (const tile of tiles) {
      // A warp's mma.sync per stage: (64 / 16) x (64 / 8) fragments, two k16 steps of a 32-element stage.
      expect(tile.match(BF16_MMA)?.length).toBe(4 * 8 * 2);
      expect(tile).toContain("extern __shared__");
    }
    // 4 warps, 3 stages of (128 + 128) rows of 16 + 4 words, and 16 bytes of tile finder.
    expect(src).toMatch(new RegExp(`c\\.launch_smem\\(k_swiglu_\\d+, [^,]*, 128, ${4 * 3 * 256 * 20 + 16},`));
    await expectKernelsCompile(join(dir, "mma"), tiles);
  }, 300_000);

  it("a bf16 tile of 64-element K stages (bm,bn,wm,wn,stages,bk) doubles the MMAs per stage, and they compile", async () => {
    const { tiles } = await warpTiles("128,128,64,64,3,64", join(dir, "bk64"));
    for (const tile of tiles) {
      // (64 / 16) x (64 / 8) fragments, four k16 steps of a 64-element stage; shared rows of 32 + 4 words.
      expect(tile.match(BF16_MMA)?.length).toBe(4 * 8 * 4);
      expect(tile).toMatch(/\* 36\)/);
    }
    await expectKernelsCompile(join(dir, "bk64"), tiles);
  }, 300_000);

  it("prefill attention on mma.sync (flash_tile: by preference on sm_90a, the default past decode sizes without warpgroup MMAs): transposed V fragments, two query tiles a warp, two blocks a multiprocessor, and it compiles", async () => {
    const lir = join(dir, "att.lir");
    writeFileSync(
      lir,
      `module @att {
  func @att(%q: bf16[B, 8, S, 128], %k: bf16[B, 2, S, 128], %v: bf16[B, 2, S, 128], %q2: bf16[B, 4, S, 64], %k2: bf16[B, 4, S, 64], %v2: bf16[B, 4, S, 64]) -> (a: bf16[B, 8, S, 128], b: bf16[B, S, 256]) {
    %a = attention(%q, %k, %v) {scale = 0.08838834764831843, causal = true} : bf16[B, 8, S, 128]
    %o = attention(%q2, %k2, %v2) {scale = 0.125, causal = false} : bf16[B, 4, S, 64]
    %t = transpose(%o) {perm = [0, 2, 1, 3]} : bf16[B, S, 4, 64]
    %b = reshape(%t) {shape = [B, S, 256]} : bf16[B, S, 256]
    return %a, %b
  }
}
`,
    );
    const r = await cli("compile", lir, "--target", "cuda", "--prefer", "attention:flash_tile", "--out", join(dir, "att"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "att", "model.cu"), "utf8");
    // The flash tiles (the split decode attention's two kernels for each attention aside).
    const kernels = src.split('extern "C" __global__').slice(1).filter((k) => k.includes("mma.sync"));
    expect(kernels).toHaveLength(2);
    for (const [k, hd] of [
      [kernels[0]!, 128],
      [kernels[1]!, 64],
    ] as const) {
      expect(k).toMatch(/^ void __launch_bounds__\(128, 2\) k_attention_\d+\(/);
      // Two 16-row query tiles a warp, 64-key tiles: (64 / 8) key tiles x (hd / 16) k steps for S,
      // (hd / 8) dim tiles x 4 key steps for O, each fragment feeding both query tiles.
      expect(k.match(BF16_MMA)?.length).toBe(2 * ((64 / 8) * (hd / 16) + (hd / 8) * 4));
      expect(k.match(/ldmatrix\.sync\.aligned\.m8n8\.x4\.trans/g)?.length).toBe((hd / 16) * 4);
      // Q's fragments from shared memory (both tiles) and K's, per k step.
      expect(k.match(/ldmatrix\.sync\.aligned\.m8n8\.x4\.shared/g)?.length).toBe((hd / 16) * (2 + 4));
      // The softmax's exponentials are exp2 (one instruction: ex2.approx.ftz), none of expf.
      expect(k).toMatch(/lingc::ex2\(/);
      expect(k).not.toMatch(/[^2]expf\(/);
    }
    // d 128: Q (128 rows) and 2 x 2 x 64 K/V rows of 68 words (past 48 KB: opted in, with the largest carveout).
    expect(src).toMatch(/c\.prefer_shared\(\(const void\*\)k_attention_\d+\); c\.launch_smem\(k_attention_\d+, [^,]*, 128, 104448,/);
    await expectCompiles([join(dir, "att"), "model.cu"]);
    // Without the preference, few queries (a decode step's) take the GQA decode forms (32 key splits,
    // then 4; each with its scratch), then the runtime's decode kernel; the hand-written flash_attn is gone.
    const d = await cli("compile", lir, "--target", "cuda", "--out", join(dir, "att-default"));
    expect(d.code, d.stderr).toBe(0);
    const dsrc = readFileSync(join(dir, "att-default", "model.cu"), "utf8");
    expect(dsrc.match(/c\.scratch_acquire\(/g)?.length).toBe(4);
    expect(dsrc.match(/c\.attn_decode\(/g)?.length).toBe(2);
    expect(dsrc).not.toMatch(/flash_attn/);
  }, 300_000);

  it("LINGC_BF16_TILE=wgmma-ws,128,256,4,2: the experts' tile program is warp-specialized (a producer warpgroup hands each stage over by mbarriers, registers moved to the MMA warpgroups, two tiles a workgroup), and it compiles", async () => {
    const r = await compileWithBf16Tile("wgmma-ws,128,256,4,2", SMALL_DIR, join(dir, "ws"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "ws", "model.cu"), "utf8");
    const tiles = ["k_swiglu", "k_grouped_linear"].map((name) => kernelsNamed(src, name).filter((k) => k.includes("wgmma")));
    for (const [t] of tiles) {
      // Two MMA warpgroups and the producer's: 384 threads, one workgroup an SM (its registers all
      // moved between them: 384 x 168 = 128 x 56 + 256 x 224).
      expect(t).toMatch(/^__global__ void __launch_bounds__\(384, 1\) /);
      expect(t!.match(/setmaxnreg\.dec\.sync\.aligned\.u32 56;/g)?.length).toBe(1);
      expect(t!.match(/setmaxnreg\.inc\.sync\.aligned\.u32 224;/g)?.length).toBe(1);
      // Four stages: a full and an empty barrier each, expecting the producer's 128 threads and the
      // MMA warpgroups' 256.
      expect(t!.match(/mbarrier\.init\.shared::cta\.b64 [^\n]*?, "r"\(128\) : "memory"\);/g)?.length).toBe(4);
      expect(t!.match(/mbarrier\.init\.shared::cta\.b64 [^\n]*?, "r"\(256\) : "memory"\);/g)?.length).toBe(4);
      // No workgroup barrier inside the pipeline: the one after the tile finders' and the inits'.
      expect(t).toContain("mbarrier.try_wait.parity.shared::cta.b64");
      expect(t).toContain("mbarrier.arrive.shared::cta.b64");
      const loops = t!.slice(t!.indexOf("setmaxnreg"));
      expect(loops).not.toContain("__syncthreads()");
      // Two tiles a workgroup, each an MMA loop (four k16 MMAs a stage) and a copy loop.
      expect(t!.match(/wgmma\.mma_async\.sync\.aligned\.m64n256k16/g)?.length).toBe(8);
    }
    // The launch: a workgroup per two tiles of 128 rows.
    expect(src).toMatch(/c\.launch_smem\(k_swiglu_\d+, lingc::grid\(\(n_ \+ 255\) \/ 256\), 384, /);
    await expectKernelsCompile(join(dir, "ws"), tiles.flat());
    // One MMA warpgroup has no registers to take (256 threads enter with 256 a thread), and a tile count must be a count.
    const one = await compileWithBf16Tile("wgmma-ws,64,256,4", SMALL_DIR, join(dir, "ws-64"));
    expect(one.code).not.toBe(0);
    expect(one.stderr).toContain("cannot move registers to its MMA warpgroups (256 a thread at entry, 240 after): it needs bm of 128 or more");
    const zero = await compileWithBf16Tile("wgmma-ws,128,256,4,0", SMALL_DIR, join(dir, "ws-0"));
    expect(zero.code).not.toBe(0);
    expect(zero.stderr).toContain("LINGC_BF16_TILE 'wgmma-ws,128,256,4,0': expected wgmma-ws,bm,bn,stages[,tiles]");
  }, 300_000);

  it("prefill attention on warpgroup MMAs (flash_wgmma, the default on sm_90a past decode sizes: S = Q K^T from swizzled shared tiles, O += P V with P from registers and V read MN-major as it lies; pipelined: blocks two at a time, the next block's S issued before this one's softmax), one warpgroup a workgroup, and it compiles; LINGC_FLASH_WGMMA_PIPE=off: a block at a time, K and V a block ahead, one barrier a block", async () => {
    const r = await cli("compile", SMALL_DIR, "--target", "cuda", "--out", join(dir, "fw"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "fw", "model.cu"), "utf8");
    const ks = kernelsNamed(src, "k_attention").filter((k) => k.includes("wgmma"));
    const off = await cliEnv({ LINGC_FLASH_WGMMA_PIPE: "off" }, "compile", SMALL_DIR, "--target", "cuda", "--out", join(dir, "fw-off"));
    expect(off.code, off.stderr).toBe(0);
    const ksOff = kernelsNamed(readFileSync(join(dir, "fw-off", "model.cu"), "utf8"), "k_attention").filter((k) => k.includes("wgmma"));
    expect(ks.length).toBeGreaterThan(0);
    expect(ksOff.length).toBe(ks.length);
    const d = 64; // ling-small's head dim: S in d / 16 k-slices of 64 keys, O += P V in 4 slices of d columns
    // Pipelined: block 0's S before the loop, then two blocks a pass (S of the next, P V of this one);
    // off: one block a pass.
    for (const [k, S, PV, barriers] of [...ks.map((k) => [k, 3, 2, 4] as const), ...ksOff.map((k) => [k, 1, 1, 1] as const)]) {
      expect(k).toMatch(/^__global__ void __launch_bounds__\(128\) /);
      expect(k.match(/wgmma\.mma_async\.sync\.aligned\.m64n64k16\.f32\.bf16\.bf16 /g)?.length).toBe(S * (d / 16) + PV * 4);
      // S's B (K) K-major from shared memory; P V's A (P) from registers and its B (V) MN-major: the
      // layout flag, and its 64-dim chunks 64 rows of 128 bytes apart (LBO 8192 >> 4).
      expect(k.match(/, p, 1, 1, 0, 0;/g)?.length).toBe(S * (d / 16));
      expect(k.match(/\}, \{%\d+, %\d+, %\d+, %\d+\}, %\d+, p, 1, 1, 1;/g)?.length).toBe(PV * 4);
      expect(k.match(/\(512ull << 16\)/g)?.length).toBe(PV * 4);
      // One workgroup barrier a block of keys (and none for P, which never goes through shared
      // memory); the pipelined form's two more before its loop.
      expect(k.match(/__syncthreads\(\);/g)?.length).toBe(barriers);
      // Q, K and V: 16-byte async copies, no V transposed through registers.
      expect(k).toMatch(/cp\.async\.wait_group %0;\\n" :: "n"\(0\)/);
      for (const piece of ["cp.async.cg.shared.global", "fence.proxy.async.shared::cta", "wgmma.wait_group.sync.aligned", "__align__(1024)"]) expect(k).toContain(piece);
    }
    expect(src).not.toContain("c.flash_wgmma(");
    await expectKernelsCompile(join(dir, "fw"), ks);
    // Two warpgroups a workgroup (128 queries sharing the K and V tiles) by LINGC_FLASH_WGMMA_WARPGROUPS.
    const two = await cliEnv({ LINGC_FLASH_WGMMA_WARPGROUPS: "2" }, "compile", SMALL_DIR, "--target", "cuda", "--out", join(dir, "fw2"));
    expect(two.code, two.stderr).toBe(0);
    const ks2 = kernelsNamed(readFileSync(join(dir, "fw2", "model.cu"), "utf8"), "k_attention").filter((k) => k.includes("wgmma"));
    expect(ks2.length).toBe(ks.length);
    for (const k of ks2) expect(k).toMatch(/^__global__ void __launch_bounds__\(256\) /);
    const bad = await cliEnv({ LINGC_FLASH_WGMMA_WARPGROUPS: "3" }, "compile", SMALL_DIR, "--target", "cuda", "--out", join(dir, "fw3"));
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("LINGC_FLASH_WGMMA_WARPGROUPS must be '1' or '2', got '3'");
    // Without warpgroup MMAs' preference: the mma.sync flash tile.
    const p = await cli("compile", SMALL_DIR, "--target", "cuda", "--prefer", "attention:flash_tile", "--out", join(dir, "fw-plain"));
    expect(p.code, p.stderr).toBe(0);
    const plain = readFileSync(join(dir, "fw-plain", "model.cu"), "utf8");
    expect(kernelsNamed(plain, "k_attention").some((k) => k.includes("wgmma"))).toBe(false);
  }, 300_000);

  it("a tile setting that is not a tile is refused by name", async () => {
    const r = await compileWithBf16Tile("wgmma,96,256,4", SMALL_DIR, join(dir, "bad-tile"));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("LINGC_BF16_TILE 'wgmma,96,256,4': expected wgmma,bm,bn,stages (bm a multiple of 64");
    expect(existsSync(join(dir, "bad-tile", "model.cu"))).toBe(false);
  });
});

/**
 * What a merged GEMV reads (the quantize's input among it) stays allocated until it runs (the runtime
 * frees storage at its last listed reader when it runs without graph capture): no slot of the merged
 * launch is released between the quantize's place and the GEMV's; at least `least` such places.
 */
function expectPrologueInputsLive(src: string, least: number): void {
  const spans = [...src.matchAll(/const bool (qp\d+_) = [^\n]*\n([\s\S]*?)\n  if \(\1\) \{ ([^\n]*)/g)];
  expect(spans.length).toBeGreaterThanOrEqual(least);
  for (const [, flag, between, launch] of spans) {
    const slots = [...launch!.matchAll(/c\.ptr\(b \+ (\d+)\)/g)].map((m) => m[1]);
    expect(slots.length, flag).toBeGreaterThan(2);
    for (const st of slots) expect(between, `${flag}: slot ${st} released before its GEMV`).not.toContain(`c.release(b + ${st});`);
  }
}
