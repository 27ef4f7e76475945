/**
 * Pipelines are data and the driver owns the flow: each target's default pipeline prints; --passes
 * replaces it on every target; --print-before/--print-after show what the backend receives; an IR
 * text compiles to every target exactly as the model it was printed from.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli } from "../support/cli";
import { scratchDir } from "../support/paths";

const dir = scratchDir("lingc-pipeline-");

function files(d: string): Record<string, Buffer> {
  return Object.fromEntries(readdirSync(d).sort().map((n) => [n, readFileSync(join(d, n))]));
}

describe("target pipelines", () => {
  it.each([
    ["ir", "cse,dce"],
    ["onnx", "cse,dce,decompose{ops=rope}"],
    ["wgsl", "cse,dce,fusion{profile=webgpu-baseline}"],
    ["cuda", "castlinear,cse,dce,fusion{profile=cuda-sm90a},select{profile=cuda-sm90a}"],
  ])("--target %s --print-pipeline prints %s", async (target, pipeline) => {
    const r = await cli("compile", "--target", target, "--print-pipeline");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${pipeline}\n`);
  });

  it("--no-fuse and --limit show in the printed pipeline", async () => {
    const r = await cli("compile", "--target", "wgsl", "--print-pipeline", "--no-fuse", "router,swiglu", "--limit", "maxComputeWorkgroupStorageSize=65536");
    expect(r.stdout).toBe("cse,dce,fusion{profile=webgpu-baseline+maxComputeWorkgroupStorageSize=65536,disable=router,swiglu}\n");
  });

  it("--prefer picks the CUDA runtime's kernel for a kind of step (select's prefer), and is refused where it cannot apply", async () => {
    const printed = await cli("compile", "--target", "cuda", "--print-pipeline", "--prefer", "expert:expert_loop,attention:attn_tiles");
    expect(printed.stdout).toBe("castlinear,cse,dce,fusion{profile=cuda-sm90a},select{profile=cuda-sm90a,prefer=expert:expert_loop,attention:attn_tiles}\n");
    const out = join(dir, "prefer");
    const r = await cli("compile", "ling-tiny", "--target", "cuda", "--out", out, "--prefer", "expert:expert_loop");
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(join(out, "model.cu"), "utf8");
    expect(text).toMatch(/c\.expert_loop\(/);
    expect(text).not.toMatch(/c\.expert_gemv\(/);
    // The generated GEMVs are for bf16: ling-tiny is fp32, so its steps keep the runtime's.
    const fp32 = await cli("compile", "ling-tiny", "--target", "cuda", "--out", join(dir, "prefer-gemv"));
    expect(fp32.code, fp32.stderr).toBe(0);
    const kept = readFileSync(join(dir, "prefer-gemv", "model.cu"), "utf8");
    expect(kept).toMatch(/c\.expert_gemv\(/);
    expect(kept).not.toMatch(/grouped_gemv|linear_gemv/);
    const refused = [
      [["--target", "wgsl", "--prefer", "attention:flash_tile"], "--prefer chooses the CUDA runtime's kernels; it does not apply to target wgsl"],
      [["--target", "cuda", "--prefer", "attn:flash_tile"], "'attn' is not a kind of step the runtime runs"],
      [["--target", "cuda", "--prefer", "expert:expert_loop", "--passes", "cse,dce"], "with --passes, write select{prefer=...} in the pipeline instead"],
      // ling-tiny's heads are 16 wide: the flash kernels take 64 or 128.
      [["--target", "cuda", "--prefer", "attention:flash_tile"], "kernel 'flash_tile' cannot run this attention step (its kernels: attention_split, attn_decode, attn_tiles)"],
      [["--target", "cuda", "--prefer", "expert:grouped_gemv"], "kernel 'grouped_gemv' cannot run this expert step (its kernels: expert_gemv, expert_loop)"],
    ] as const;
    for (const [args, message] of refused) {
      const e = await cli("compile", "ling-tiny", ...args, "--out", join(dir, "prefer-bad"));
      expect(e.code, e.stderr).toBe(1);
      expect(e.stderr).toContain(message);
      expect(existsSync(join(dir, "prefer-bad"))).toBe(false);
    }
    // compare gives --prefer to its cuda side only, and refuses it where neither side is cuda.
    const cmp = await cli("compare", "ling-tiny", "--backends", "interp,onnx", "--input", "x.safetensors", "--prefer", "router:router_warp");
    expect(cmp.code).not.toBe(0);
    expect(cmp.stderr).toContain("--prefer chooses CUDA kernels; neither of --backends interp,onnx is cuda");
  });

  it("--passes replaces the cuda pipeline: cse,dce emits an unfused plan with more kernels", async () => {
    const launches = async (extra: string[]) => {
      const out = join(dir, `cuda-${extra.length}`);
      const r = await cli("compile", "ling-tiny", "--target", "cuda", "--out", out, ...extra);
      expect(r.code, r.stderr).toBe(0);
      const text = readFileSync(join(out, "model.cu"), "utf8");
      return { launches: (text.match(/c\.launch\(/g) ?? []).length, fused: /k_(swiglu|router|qk_norm_rope)/.test(text) };
    };
    const fused = await launches([]);
    const unfused = await launches(["--passes", "cse,dce"]);
    expect(fused.fused).toBe(true);
    expect(unfused.fused).toBe(false);
    expect(unfused.launches).toBeGreaterThan(fused.launches);
  });

  it("--print-before / --print-after show the module the backend receives", async () => {
    const r = await cli("compile", "ling-tiny", "--target", "cuda", "--out", join(dir, "pa"), "--print-before", "fusion", "--print-after", "fusion");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\/\/ ----- IR before fusion\{profile=cuda-sm90a\} -----\nmodule @forward/m);
    expect(r.stdout).toMatch(/^\/\/ ----- IR after fusion\{profile=cuda-sm90a\} -----\nmodule @forward/m);
    expect(r.stdout).toContain('attributes {fusion = "router", role = "kernel"}');
  });

  it("a bad pass option is refused as a usage error (exit 2), naming the pass and the option", async () => {
    // A pipeline text that does not parse is a usage error (2); a profile name is looked up among the
    // profiles this run registered (--target-profile adapter adds one) when the pipeline runs (1).
    const cases: [string, RegExp, number][] = [
      ["cse,fusion{profil=cuda-sm90a}", /pass 'fusion' has no option 'profil' \(it has: profile, disable\)/, 2],
      ["fusion{disable=swiglue}", /option 'disable' of pass 'fusion': 'swiglue' is not one of router, qk_norm_rope/, 2],
      ["fusion{profile=tpu}", /unknown target profile 'tpu' \(known: webgpu-baseline, cuda-sm90a, onnx-23/, 1],
      ["cse{x=1}", /pass 'cse' has no option 'x' \(it takes none\)/, 2],
      ["fusion{profile=cuda-sm90a", /'\{' without '\}'/, 2],
    ];
    for (const [passes, message, code] of cases) {
      const r = await cli("compile", "ling-tiny", "--target", "ir", "--out", join(dir, "bad"), "--passes", passes);
      expect(r.code, passes).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it.each(["cuda", "onnx", "wgsl"])("an IR text compiles to %s byte for byte as the model it was printed from", async (target) => {
    const ir = join(dir, `ir-${target}`);
    expect((await cli("compile", "ling-tiny", "--graph", "forward", "--target", "ir", "--out", ir)).code).toBe(0);
    const a = join(dir, `${target}-from-model`);
    const b = join(dir, `${target}-from-lir`);
    const ra = await cli("compile", "ling-tiny", "--graph", "forward", "--target", target, "--out", a);
    expect(ra.code, ra.stderr).toBe(0);
    const rb = await cli("compile", join(ir, "forward.lir"), "--target", target, "--out", b);
    expect(rb.code, rb.stderr).toBe(0);
    const fa = files(a);
    const fb = files(b);
    expect(Object.keys(fb)).toEqual(Object.keys(fa));
    for (const name of Object.keys(fa)) expect(fb[name]!.equals(fa[name]!), name).toBe(true);
  });
});
