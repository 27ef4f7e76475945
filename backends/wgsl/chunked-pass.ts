/**
 * A run's dispatches in compute passes submitted a chunk of kernels at a time, so that the device
 * starts on the first kernels while the host still encodes the rest: with the whole run in one
 * submission the GPU waited for all of the encoding (on the H200 through Dawn, 1.25 ms a decode step
 * of four Ling-mini-2.0 layers, next to 3.2 ms of GPU work), which a model of 20 layers would pay in
 * full again. Each chunk's sizes are written into the run's uniform buffer just before the chunk is
 * submitted (the queue runs the write first). The run's two GPU timestamps go at the beginning of
 * the first chunk's pass and at the end of the last one's.
 *
 * Chunks are runs of kernel indices (`every` kernels, 0: one chunk for the run), fixed before the
 * run starts, so the pass that holds the last kernel is known when it begins.
 */

/** Kernels a chunk holds by default; LINGC_WGSL_SUBMIT_EVERY overrides it (0: one submission a run). */
export const SUBMIT_EVERY_DEFAULT = 16;

export function submitEvery(): number {
  const env = typeof process !== "undefined" ? process.env?.["LINGC_WGSL_SUBMIT_EVERY"] : undefined;
  if (env === undefined || env === "") return SUBMIT_EVERY_DEFAULT;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 0) throw new Error(`LINGC_WGSL_SUBMIT_EVERY must be a whole number of kernels (0: one submission a run), not '${env}'`);
  return n;
}

export class ChunkedPass {
  encoder: GPUCommandEncoder;
  pass: GPUComputePassEncoder;
  /** The chunk the open pass holds, and the kernel index it starts at. */
  private chunk = 0;
  private start = 0;
  private readonly chunks: number;

  constructor(
    private readonly device: GPUDevice,
    /** The run's uniform buffer, and the sizes written into it: kernel n's at n x `bytesPerKernel`. */
    readonly uniforms: GPUBuffer,
    readonly sizes: Int32Array<ArrayBuffer>,
    private readonly bytesPerKernel: number,
    private readonly kernels: number,
    private readonly every: number,
    private readonly clock?: GPUQuerySet,
  ) {
    this.chunks = every > 0 ? Math.max(1, Math.ceil(kernels / every)) : 1;
    this.encoder = device.createCommandEncoder();
    this.pass = this.begin();
  }

  private begin(): GPUComputePassEncoder {
    const first = this.chunk === 0;
    const last = this.chunk === this.chunks - 1;
    const stamps = this.clock && (first || last) ? { querySet: this.clock, ...(first ? { beginningOfPassWriteIndex: 0 } : {}), ...(last ? { endOfPassWriteIndex: 1 } : {}) } : undefined;
    return this.encoder.beginComputePass({ label: `graph, kernels from ${this.start}`, ...(stamps ? { timestampWrites: stamps } : {}) });
  }

  /** Ends the open pass and writes its kernels' sizes (up to kernel `end`, excluded). */
  private close(end: number): void {
    this.pass.end();
    const from = this.start * this.bytesPerKernel;
    const bytes = Math.min(end * this.bytesPerKernel, this.sizes.byteLength) - from;
    if (bytes > 0) this.device.queue.writeBuffer(this.uniforms, from, this.sizes.buffer, this.sizes.byteOffset + from, bytes);
  }

  /** Before kernel n is encoded: where n starts a new chunk, the open one is submitted and a pass begun for n's. */
  at(n: number): void {
    if (this.every <= 0) return;
    const c = Math.min(Math.floor(n / this.every), this.chunks - 1);
    if (c === this.chunk) return;
    this.close(n);
    this.device.queue.submit([this.encoder.finish()]);
    this.chunk = c;
    this.start = n;
    this.encoder = this.device.createCommandEncoder();
    this.pass = this.begin();
  }

  /** Ends the last pass (its sizes written); returns its encoder for the run's copies and final submission. */
  end(): GPUCommandEncoder {
    this.close(this.kernels);
    return this.encoder;
  }
}
