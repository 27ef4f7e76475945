/**
 * The WebGPU host (backends/wgsl/host.ts) across runs of one graph: activation buffers, bind groups
 * and the read-back staging kept between runs give the same numbers run after run (a buffer is
 * taken back as the last run left it: its kernels overwrite it whole); a profiled run on a device
 * without timestamp queries times each kernel by a submission of its own; an unprofiled
 * run on a device with them times its passes on the GPU; a run is submitted a chunk of kernels at a
 * time (chunked-pass.ts), with the same numbers whatever the chunk. A bf16 weight is held two values to a
 * 32-bit word, and data for it that is not bf16 is refused; given as bit patterns, the same words. Greedy generation's next token chosen on
 * the GPU (next-token.ts) is the argmax of the last position's logits, ties to the lowest index.
 */
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { compileProgramWgsl } from "../../backends/wgsl/backend";
import { WgslGraph, type HostTensor } from "../../backends/wgsl/host";
import { SharedWeights } from "../../backends/wgsl/shared-weights";
import { compileChecked, pipelinesOf } from "../../backends/wgsl/pipelines";
import type { ArtifactLaunch } from "../../backends/wgsl/artifact";
import { chunkStarts } from "../../backends/wgsl/chunked-pass";
import { nodeAdapter, nodeDevice } from "../../backends/wgsl/node";
import { scratchDir, SMALL_DIR } from "../support/paths";
import { bindWeights } from "../../compiler/driver/compile";
import { collectWeights } from "../../ir/weights";

// Two matmuls: two kernels at least, the second's buffers taken after the first is encoded.
const MODULE = `module @h {
  func @h(%x: f32[B, 8]) weights(@w: f32[4, 8], @v: f32[4, 4]) -> (y: f32[B, 4], z: f32[B, 4]) {
    %y = linear(%x, @w) : f32[B, 4]
    %n = neg(%y) : f32[B, 4]
    %e = exp(%n) : f32[B, 4]
    %u = mul(%e, %y) : f32[B, 4]
    %z = linear(%u, @v) : f32[B, 4]
    return %y, %z
  }
}
`;

const W = Array.from({ length: 32 }, (_, k) => ((k * 7) % 11) / 10 - 0.5);
const V = Array.from({ length: 16 }, (_, k) => ((k * 5) % 7) / 7 - 0.4);

/** Rows [B, n] times a weight [4, n] transposed. */
const matmul = (x: number[], B: number, w: number[], n: number) => Array.from({ length: B * 4 }, (_, k) => Array.from({ length: n }, (_, i) => x[Math.floor(k / 4) * n + i]! * w[(k % 4) * n + i]!).reduce((a, c) => a + c));

/** The module's outputs computed here, for rows x. */
function expected(x: number[], B: number): { y: number[]; z: number[] } {
  const y = matmul(x, B, W, 8);
  return { y, z: matmul(y.map((v) => Math.exp(-v) * v), B, V, 4) };
}

describe("the WebGPU host across runs", () => {
  const dir = scratchDir("lingc-wgsl-host-");

  async function graphOn(device: GPUDevice): Promise<WgslGraph> {
    writeFileSync(join(dir, "h.lir"), MODULE);
    const { program } = await compileProgram({ source: await openSource(join(dir, "h.lir")), target: "wgsl" });
    const a = compileProgramWgsl(program)[0]!;
    expect(a.kernels.length).toBeGreaterThanOrEqual(2);
    return WgslGraph.load(device, a, (name) => Float32Array.from(name === "w" ? W : V));
  }

  const input = (B: number, seed: number): HostTensor => ({ dtype: "f32", shape: [B, 8], data: Float32Array.from({ length: B * 8 }, (_, k) => Math.sin(k * 1.7 + seed)) });
  const close = (got: Float32Array | Int32Array, want: number[]) => {
    expect(got.length).toBe(want.length);
    want.forEach((v, k) => expect(Math.abs(got[k]! - v)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(v))));
  };

  it("gives each run's numbers with kept buffers, at one size and another, profiled or not", async () => {
    // A device without timestamp queries: a profiled run submits each kernel on its own.
    const device = await (await nodeAdapter()).requestDevice();
    const g = await graphOn(device);
    try {
      for (const [B, seed, profile] of [[3, 0, false], [3, 1, true], [5, 2, true], [5, 3, true], [3, 4, false], [3, 5, false]] as const) {
        const x = input(B, seed);
        // (Nothing WebGPU refuses.)
        device.pushErrorScope("validation");
        const r = await g.run({ x }, { profile });
        expect((await device.popErrorScope())?.message).toBeUndefined();
        const want = expected(Array.from(x.data), B);
        close(r.outputs["y"]!.data, want.y);
        close(r.outputs["z"]!.data, want.z);
        if (profile) {
          expect(r.timings!.length).toBeGreaterThan(0);
          expect(r.timings!.every((t) => t.clock === "wall")).toBe(true);
        }
        expect(r.gpuMs).toBeUndefined();
      }
    } finally {
      g.destroy();
      device.destroy();
    }
  });

  it("uploads a weight once for all the graphs of a model (shared weights): each graph binds the same buffers and gives its numbers", async () => {
    writeFileSync(join(dir, "h.lir"), MODULE);
    const { program } = await compileProgram({ source: await openSource(join(dir, "h.lir")), target: "wgsl" });
    const a = compileProgramWgsl(program)[0]!;
    const device = await nodeDevice();
    const asked: string[] = [];
    const provide = (name: string) => (asked.push(name), Float32Array.from(name === "w" ? W : V));
    const shared = new SharedWeights();
    const graphs = [await WgslGraph.load(device, a, provide, shared), await WgslGraph.load(device, a, provide, shared)];
    try {
      expect(asked.sort()).toEqual(["v", "w"]);
      expect(shared.weights.size).toBe(2);
      for (const g of graphs) {
        const x = input(2, 7);
        const r = await g.run({ x });
        const want = expected(Array.from(x.data), 2);
        close(r.outputs["y"]!.data, want.y);
        close(r.outputs["z"]!.data, want.z);
      }
      // Without the map, each load uploads its own.
      await WgslGraph.load(device, a, provide).then((g) => g.destroy());
      expect(asked.length).toBe(4);
    } finally {
      graphs.forEach((g) => g.destroy());
      device.destroy();
    }
  });

  it("holds a bf16 weight two values to a word, and refuses data that is not bf16 rather than round it", async () => {
    writeFileSync(join(dir, "b.lir"), "module @b {\n  func @b(%x: bf16[2, 8]) weights(@w: bf16[4, 8]) -> (y: bf16[2, 4]) {\n    %y = linear(%x, @w) : bf16[2, 4]\n    return %y\n  }\n}\n");
    const { program } = await compileProgram({ source: await openSource(join(dir, "b.lir")), target: "wgsl" });
    const a = compileProgramWgsl(program)[0]!;
    expect(a.slots.find((sl) => sl.weight === "w")?.bf16Pairs).toBe(true);
    expect(a.weightBytes).toBe(4 * 8 * 2);
    const device = await nodeDevice();
    try {
      await expect(WgslGraph.load(device, a, () => Float32Array.from(W, (v) => v + 1e-4))).rejects.toThrow(/weight w: value .* at index 0 is not a bf16 value/);
      // Given as bf16 bit patterns (a source that holds them so: BoundWeights.bf16Bits), the same
      // words; a pattern with all exponent bits set (infinity, NaN) is refused.
      const wb = Uint16Array.from(new Uint32Array(Float32Array.from(W).buffer), (b) => b >>> 16);
      const asF32 = new Float32Array(Uint32Array.from(wb, (b) => b << 16).buffer);
      const x: HostTensor = { dtype: "f32", shape: [2, 8], data: Float32Array.from({ length: 16 }, (_, k) => Math.cos(k)) };
      const [fromBits, fromValues] = await Promise.all([WgslGraph.load(device, a, () => wb), WgslGraph.load(device, a, () => asF32)]);
      expect(Array.from((await fromBits.run({ x })).outputs["y"]!.data)).toEqual(Array.from((await fromValues.run({ x })).outputs["y"]!.data));
      const inf = Uint16Array.from(wb);
      inf[5] = 0x7f80;
      await expect(WgslGraph.load(device, a, () => inf)).rejects.toThrow(/weight "w" holds Infinity at \[0, 5\]; lingc refuses non-finite weights/);
      // Unaligned (an odd offset into its buffer) and at the end: the same check, element by element.
      const odd = new Uint16Array(wb.length + 1).subarray(1);
      odd.set(wb);
      odd[31] = 0xff81;
      await expect(WgslGraph.load(device, a, () => odd)).rejects.toThrow(/weight "w" holds NaN at \[3, 7\]/);
    } finally {
      device.destroy();
    }
  });

  it("times an unprofiled run on the GPU where the device has timestamp queries, at full precision", async () => {
    const device = await nodeDevice();
    const g = await graphOn(device);
    try {
      const r = await g.run({ x: input(2, 5) });
      close(r.outputs["y"]!.data, expected(Array.from(input(2, 5).data), 2).y);
      if (device.features.has("timestamp-query")) {
        expect(r.gpuMs).toBeGreaterThanOrEqual(0);
        // At full precision (Dawn's timestamp quantization is off in Node, node.ts): with it, every
        // time would be a multiple of 65,536 ns.
        const ns: number[] = [Math.round(r.gpuMs! * 1e6)];
        for (let k = 0; k < 3; k++) ns.push(...(await g.run({ x: input(2, k) }, { profile: true })).timings!.map((t) => Math.round(t.ms * 1e6)));
        expect(ns.some((t) => t % 65536 !== 0), `GPU times ${ns.join(", ")} ns`).toBe(true);
      } else expect(r.gpuMs).toBeUndefined();
    } finally {
      g.destroy();
      device.destroy();
    }
  });

  it("submits a run a chunk of kernels at a time (LINGC_WGSL_SUBMIT_EVERY), with the same numbers and one GPU time across the chunks", async () => {
    const device = await nodeDevice();
    const queue = device.queue;
    const submit = queue.submit.bind(queue);
    let submissions = 0;
    queue.submit = (buffers: Iterable<GPUCommandBuffer>) => (submissions++, submit(buffers));
    const before = process.env["LINGC_WGSL_SUBMIT_EVERY"];
    try {
      const counts: number[] = [];
      for (const every of ["0", "1", "2", "1+"]) {
        process.env["LINGC_WGSL_SUBMIT_EVERY"] = every;
        const g = await graphOn(device);
        try {
          await g.run({ x: input(2, 1) }); // (pipelines and buffers made)
          submissions = 0;
          const r = await g.run({ x: input(2, 6) });
          counts.push(submissions);
          const want = expected(Array.from(input(2, 6).data), 2);
          close(r.outputs["y"]!.data, want.y);
          close(r.outputs["z"]!.data, want.z);
          if (device.features.has("timestamp-query")) expect(r.gpuMs).toBeGreaterThanOrEqual(0);
        } finally {
          g.destroy();
        }
      }
      const probe = await graphOn(device);
      const kernels = probe.artifact.kernels.length;
      probe.destroy();
      // One submission a run; one a kernel; one per two kernels; chunks of 1, 2, 4 ... kernels.
      expect(counts).toEqual([1, kernels, Math.ceil(kernels / 2), chunkStarts(kernels, { every: 1, growing: true }).length]);
      expect(chunkStarts(100, { every: 16, growing: false })).toEqual([0, 16, 32, 48, 64, 80, 96]);
      expect(chunkStarts(100, { every: 16, growing: true })).toEqual([0, 16, 48]);
      // (Growing up to 16 times the first chunk.)
      expect(chunkStarts(100, { every: 1, growing: true })).toEqual([0, 1, 3, 7, 15, 31, 47, 63, 79, 95]);
      expect(chunkStarts(100, { every: 0, growing: false })).toEqual([0]);
      for (const bad of ["two", "0+", "-1"]) {
        process.env["LINGC_WGSL_SUBMIT_EVERY"] = bad;
        await expect(graphOn(device)).rejects.toThrow(/LINGC_WGSL_SUBMIT_EVERY must be a whole number of kernels/);
      }
    } finally {
      if (before === undefined) delete process.env["LINGC_WGSL_SUBMIT_EVERY"];
      else process.env["LINGC_WGSL_SUBMIT_EVERY"] = before;
      device.destroy();
    }
  });

  it("chooses each sequence's next token on the GPU: the last position's argmax, ties to the lowest index", async () => {
    const Vn = 1000;
    writeFileSync(join(dir, "t.lir"), `module @t {\n  func @t(%x: f32[B, S, ${Vn}]) -> (y: f32[B, S, ${Vn}]) {\n    %y = neg(%x) : f32[B, S, ${Vn}]\n    return %y\n  }\n}\n`);
    const { program } = await compileProgram({ source: await openSource(join(dir, "t.lir")), target: "wgsl" });
    const device = await nodeDevice();
    const g = await WgslGraph.load(device, compileProgramWgsl(program)[0]!, () => new Float32Array());
    try {
      const [B, S] = [4, 2];
      const x = new Float32Array(B * S * Vn).fill(1);
      const last = (b: number, v: number, value: number) => (x[(b * S + S - 1) * Vn + v] = -value);
      // Logits y = -x. Row 0: the maximum at 300 and 700 (two threads' shares); row 1: at 5 and 261 (one
      // thread's); row 2: every logit -inf but 999; row 3: all equal. Position 0 holds larger values, not read.
      last(0, 300, 9), last(0, 700, 9);
      last(1, 261, 3), last(1, 5, 3);
      for (let v = 0; v < Vn; v++) last(2, v, -Infinity);
      last(2, 999, 0);
      for (let b = 0; b < B; b++) x[b * S * Vn + 17] = -100;
      const launched = await g.launch({ x: { dtype: "f32", shape: [B, S, Vn], data: x } }, { nextToken: "y" });
      expect(launched.nextToken!.shape).toEqual([B, 1]);
      const r = await launched.result;
      expect(Array.from(r.nextToken!)).toEqual([300, 5, 999, 0]);
      expect(r.hostMs.encode).toBeGreaterThanOrEqual(0);
      launched.nextToken!.buffer.destroy();
      await expect(g.launch({ x: { dtype: "f32", shape: [B, S, Vn], data: x } }, { nextToken: "x" })).rejects.toThrow(/no output 'x' to choose the next token from/);
    } finally {
      g.destroy();
      device.destroy();
    }
  });
});

describe("a kernel WebGPU rejects", () => {
  it("is named with the shader compiler's message, line and column", async () => {
    const device = await nodeDevice();
    // A constant out of f32's range: a shader-creation error (as round_f8e5m2's infinity was).
    const wgsl = "// k_broken\n@compute @workgroup_size(1)\nfn main() {\n  let x = bitcast<f32>(0x7f800000u);\n}\n";
    const k: ArtifactLaunch = { name: "broken_kernel", wgsl, workgroupSize: 1, bindings: [], uniforms: [], grid: { dim: [], per: 1 } };
    await expect(compileChecked(device, () => pipelinesOf(device, k))).rejects.toThrow(/WebGPU rejected a kernel of the compiled model: [^]*broken_kernel:4:\d+: [^\n]*inf/);
  });
});

describe("weights quantized at load, for a model's graphs", () => {
  it("are computed once: the second graph's load runs no load-time kernel and binds the first's results, with the same numbers", async () => {
    const { program } = await compileProgram({ source: await openSource(SMALL_DIR), target: "wgsl", settings: { quantize: "fp8", activationScheme: "none" } });
    const a = compileProgramWgsl(program)[0]!;
    expect(a.kernels.some((k) => k.atLoad)).toBe(true);
    const device = await nodeDevice();
    const queue = device.queue;
    const submit = queue.submit.bind(queue);
    let submissions = 0;
    queue.submit = (buffers: Iterable<GPUCommandBuffer>) => (submissions++, submit(buffers));
    const weights = bindWeights(await openSource(SMALL_DIR), program);
    const provide = (name: string) => {
      const type = program.graphs.flatMap((m) => collectWeights(m)).find((w) => w.name === name)!.type;
      return weights.bf16Bits?.(name, type) ?? (weights.get(name, type).data as Float32Array);
    };
    const shared = new SharedWeights();
    try {
      const first = await WgslGraph.load(device, a, provide, shared);
      expect(submissions).toBe(1);
      const computed = shared.computed.size;
      expect(computed).toBe(a.kernels.filter((k) => k.atLoad).length);
      const second = await WgslGraph.load(device, a, provide, shared);
      expect(submissions).toBe(1);
      expect(shared.computed.size).toBe(computed);
      const ids: HostTensor = { dtype: "i32", shape: [1, 5], data: Int32Array.from([3, 14, 15, 92, 65]) };
      const [x, y] = [await first.run({ input_ids: ids }), await second.run({ input_ids: ids })];
      expect(Array.from(y.outputs["logits"]!.data)).toEqual(Array.from(x.outputs["logits"]!.data));
      first.destroy();
      second.destroy();
    } finally {
      weights.checkpoint?.close();
      device.destroy();
    }
  });
});
