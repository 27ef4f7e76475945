/**
 * Greedy generation's next token chosen on the GPU: the argmax of each sequence's last row of
 * logits, written as i32 token ids into a buffer that the next decode step takes as its input. So a
 * step is submitted before the previous step's logits are read back, and the host's encoding and
 * the read-back's latency overlap the GPU's work instead of adding to it. Ties go to the lowest
 * index, as backends/sampling.ts's argmax; the generation checks that the two agree on every token.
 * A kir kernel, rendered to WGSL once per device.
 */
import * as K from "../kernels/kir";
import { KernelBuilder, type Kernel } from "../kernels/kir";
import { renderWgsl } from "./render";

const THREADS = 256;
const USAGE = { COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 };

/** A workgroup per sequence: logits [B, S, V] (f32) -> ids [B] (i32), from position S - 1. */
export function nextTokenKernel(): Kernel {
  const kb = new KernelBuilder("next_token", THREADS);
  const logits = kb.buffer("logits", "f32");
  const ids = kb.buffer("ids", "i32", true);
  const V = kb.uniform("V");
  const S = kb.uniform("S");
  const { i, add, mul, sub, lt, gt, eq, and, or, min } = K;
  const base = kb.let("base", mul(add(mul(kb.wg, S), sub(S, i(1))), V));
  // Each thread scans indices lid, lid + THREADS, ... in order: a strictly larger value replaces
  // its best, so among equal values its lowest index stays.
  const first = kb.let("first", min(kb.lid, sub(V, i(1))));
  const best = kb.var("best", kb.load(logits, add(base, first)));
  const at = kb.var("at", first);
  kb.for("j", add(kb.lid, i(THREADS)), V, (j) => {
    const v = kb.let("v", kb.load(logits, add(base, j)));
    kb.if(gt(v, best.ref), () => {
      best.set(v);
      at.set(j);
    });
  }, i(THREADS));
  const vals = kb.shared("vals", "f32", THREADS);
  const idx = kb.shared("idx", "i32", THREADS);
  kb.store(vals, kb.lid, best.ref);
  kb.store(idx, kb.lid, at.ref);
  kb.barrier();
  for (let s = THREADS / 2; s >= 1; s /= 2) {
    kb.if(lt(kb.lid, i(s)), () => {
      const ov = kb.let("ov", kb.load(vals, add(kb.lid, i(s))));
      const oi = kb.let("oi", kb.load(idx, add(kb.lid, i(s))));
      const cv = kb.let("cv", kb.load(vals, kb.lid));
      const ci = kb.let("ci", kb.load(idx, kb.lid));
      kb.if(or(gt(ov, cv), and(eq(ov, cv), lt(oi, ci))), () => {
        kb.store(vals, kb.lid, ov);
        kb.store(idx, kb.lid, oi);
      });
    });
    kb.barrier();
  }
  kb.if(eq(kb.lid, i(0)), () => kb.store(ids, kb.wg, kb.load(idx, i(0))));
  return kb.kernel;
}

/** The next-token kernel's pipeline on one device, and the uniform buffer of its sizes. */
export class NextToken {
  private readonly pipeline: GPUComputePipeline;
  private readonly sizes: GPUBuffer;
  private written?: [number, number];

  constructor(private readonly device: GPUDevice) {
    const code = renderWgsl(nextTokenKernel());
    this.pipeline = device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code, label: "next_token" }), entryPoint: "main" }, label: "next_token" });
    this.sizes = device.createBuffer({ size: 16, usage: USAGE.UNIFORM | USAGE.COPY_DST, label: "next_token sizes" });
  }

  /**
   * Records the argmax of logits [B, S, V] (at position S - 1) into `pass`; returns the new buffer of
   * B i32 ids (the caller's to free). The sizes are written before the caller's submission (queue order).
   */
  encode(pass: GPUComputePassEncoder, logits: GPUBuffer, shape: readonly number[]): GPUBuffer {
    const [B, S, V] = shape as [number, number, number];
    if (shape.length !== 3 || !(V > 0) || !(S > 0)) throw new Error(`next token: logits of shape [${shape.join(", ")}], not [batch, positions, vocabulary]`);
    const ids = this.device.createBuffer({ size: Math.max(16, 4 * B), usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST, label: "next token ids" });
    // Written only when they change (a decode step's are the last step's; the buffer may be on the queue).
    if (this.written?.[0] !== V || this.written[1] !== S) {
      this.device.queue.writeBuffer(this.sizes, 0, new Int32Array([V, S, 0, 0]));
      this.written = [V, S];
    }
    const group = this.device.createBindGroup({
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: logits } },
        { binding: 1, resource: { buffer: ids } },
        { binding: 2, resource: { buffer: this.sizes } },
      ],
    });
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(B);
    return ids;
  }

  destroy(): void {
    this.sizes.destroy();
  }
}
