/** The fusion pass: the plan it records, the report, and that it never changes the numbers. */
import { describe, expect, it } from "vitest";
import { kernelReport } from "../../compiler/analysis/kernel-report";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";
import { ProfileRegistry, WEBGPU_BASELINE } from "../../ir/target";
import { withLimits } from "../../ir/target/webgpu";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { printModule } from "../../ir/print";
import { verifyModule } from "../../ir/verify";
import { Checkpoint } from "../../backends/weights/checkpoint";
import { bindCheckpoint } from "../../backends/weights/bind";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { buildLing2 } from "../../models/ling2";
import { resolveCheckpoint, resolveModel } from "../../models/resolve";
import { cli } from "../support/cli";
import { tensorDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE } from "../support/paths";

const BASELINE_WG = 16384;

/** The model after cse, dce and fusion for WebGPU's baseline limits with this much workgroup memory. */
function fused(name: string, graph: "forward" | "decode", noFuse: string[] = [], maxWorkgroupBytes = BASELINE_WG, gpuForms = false) {
  const m = buildLing2(resolveModel(name).config, graph);
  const profiles = new ProfileRegistry();
  const limited = withLimits(WEBGPU_BASELINE, [`maxComputeWorkgroupStorageSize=${maxWorkgroupBytes}`]);
  const profile = gpuForms ? { ...limited, name: `${limited.name}+gpu-forms`, gpuForms } : limited;
  profiles.register(profile);
  const disable = noFuse.length ? `,disable=${noFuse.join(",")}` : "";
  runPasses(m, parsePipeline(`cse,dce,fusion{profile=${profile.name}${disable}}`), { verifyEach: true, profiles });
  return m;
}

describe("fusion plan", () => {
  it("Ling-1T's MoE layer (forward) is at most 14 kernels, and the router is one kernel (with its logits, unless matmuls are tiled)", () => {
    const m = fused("ling-1t", "forward");
    const r = kernelReport(m, new Map([["B", 1], ["S", 1]])).find((x) => x.function === "moe_layer")!;
    expect(r.unfusedKernels).toBeGreaterThanOrEqual(40);
    expect(r.kernels).toBeLessThanOrEqual(14);
    const router = m.getFunc("moe_layer.router")!;
    expect(router.attrs).toEqual({ role: "kernel", fusion: "router" });
    expect(router.body.map((o) => o.opName)).toEqual(expect.arrayContaining(["linear", "sigmoid", "add", "group_topk", "take_along", "reduce_sum", "div", "mul"]));
    expect(m.getFunc("moe_layer")!.body.filter((o) => o.opName === "group_topk" || o.opName === "sigmoid")).toHaveLength(0);
    // Where dense matmuls are tiled (the GPU kernel forms), the logits are a matmul of their own
    // (a gemv over many workgroups for a decode step), and the router starts after them.
    const tiled = fused("ling-1t", "forward", [], BASELINE_WG, true);
    const ops = tiled.getFunc("moe_layer.router")!.body.map((o) => o.opName);
    expect(ops).not.toContain("linear");
    expect(ops).toEqual(expect.arrayContaining(["sigmoid", "add", "group_topk", "take_along", "reduce_sum", "div", "mul"]));
  });

  it("counts a KV cache append inside a kernel as the new rows it writes, not the cache", () => {
    const m = fused("ling-tiny", "decode");
    expect(m.getFunc("moe_layer.qk_norm_rope")!.body.filter((o) => o.opName === "cache_append")).toHaveLength(2);
    const at = (P: number) => kernelReport(m, new Map([["B", 1], ["S", 1], ["P", P]])).find((x) => x.function === "moe_layer")!.bytesAfter;
    // Only attention reads the cache's rows: keys and values, P + S rows of 2 KV heads x 16 f32 each.
    // (Counted whole, the appends' kernel would add the caches' rows read and written too.)
    expect(at(2048) - at(16)).toBe(2 * (2048 - 16) * 2 * 16 * 4);
  });

  it("shows every kernel in the dump as a named function, and the dump parses back", () => {
    const text = printModule(fused("ling-tiny", "decode"));
    expect(text).toMatch(/func @moe_layer\.swiglu\(.*\n(.*\n)*.*attributes \{fusion = "swiglu", role = "kernel"\}/);
    expect(text).toContain("call @moe_layer.router(");
    const back = parseModule(text, "fused.lir");
    verifyModule(back);
    expect(printModule(back)).toBe(text);
  });

  it("each fusion switches off by name", () => {
    const names = (noFuse: string[]) => fused("ling-tiny", "forward", noFuse).functions.filter((f) => f.role === "kernel").map((f) => f.attrs["fusion"]);
    expect(new Set(names([]))).toEqual(new Set(["qk_norm_rope", "attention", "residual_norm", "swiglu", "epilogue", "router", "norm_matmul"]));
    expect(names(["swiglu"])).not.toContain("swiglu");
    expect(names(["router", "attention"]).filter((n) => n === "router" || n === "attention")).toEqual([]);
    expect(names(["all"])).toEqual([]);
    expect(() => fused("ling-tiny", "forward", ["swiglue"])).toThrow(/option 'disable' of pass 'fusion': 'swiglue' is not one of router, qk_norm_rope/);
  });

  it("norm_matmul applies only where a normalized row fits the target's workgroup memory", () => {
    const kinds = (bytes: number) => fused("ling-1t", "forward", [], bytes).functions.map((f) => f.attrs["fusion"]);
    expect(kinds(16384)).not.toContain("norm_matmul"); // 8192 f32 = 32 KiB
    expect(kinds(65536)).toContain("norm_matmul");
    // Not where dense matmuls are tiled (the GPU kernel forms): the norm is a kernel of its own.
    const tiled = fused("ling-1t", "forward", [], 65536, true).functions.map((f) => f.attrs["fusion"]);
    expect(tiled).not.toContain("norm_matmul");
    expect(tiled).toContain("residual_norm");
  });

  it("the interpreter gives the same numbers with every fusion on and every fusion off", () => {
    const spec = resolveCheckpoint(GOLDEN_DIR);
    const ck = Checkpoint.open(spec.checkpointDir);
    const on = fused("ling-tiny", "forward");
    const off = fused("ling-tiny", "forward", ["all"]);
    const w = bindCheckpoint([on, off], ck);
    const ids = readAllSafetensors(GOLDEN_FILE)["input_ids"]!;
    const a = interpret(on, { input_ids: ids }, w);
    const b = interpret(off, { input_ids: ids }, w);
    for (const k of ["logits", "mtp_logits"]) expect(tensorDiff(a[k]!, b[k]!), k).toBeLessThanOrEqual(1e-5);
    ck.close();
  });

  it("lingc compile --report prints kernels per layer kind and bytes per token", async () => {
    const r = await cli("compile", "ling-1t", "--target", "ir", "--passes", "cse,dce,fusion{profile=webgpu-baseline}", "--report", "--out", "/tmp/lingc-report-test");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/moe_layer +77 +43 -> 13/);
    expect(r.stdout).toMatch(/whole graph per token: [\d.]+ GB -> [\d.]+ GB/);
  });
});
