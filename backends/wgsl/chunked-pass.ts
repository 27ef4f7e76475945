/**
 * A run's dispatches in compute passes submitted a chunk of kernels at a time, so that the device
 * starts on the first kernels while the host still encodes the rest: with the whole run in one
 * submission the GPU waited for all of the encoding (on the H200 through Dawn, 1.25 ms a decode step
 * of four Ling-mini-2.0 layers, next to 3.2 ms of GPU work), which a model of 20 layers would pay in
 * full again. Each chunk's sizes are written into the run's uniform buffer just before the chunk is
 * submitted (the queue runs the write first). The run's two GPU timestamps go at the beginning of
 * the first chunk's pass and at the end of the last one's.
 *
 * Chunks are runs of kernel indices (`every` kernels, 0: one chunk for the run; growing: `every`,
 * then twice as many, and so on up to GROWTH_CAP times), fixed before the run starts, so the pass
 * that holds the last kernel is known when it begins. A submission has a cost of its own (Dawn's
 * Vulkan backend records the chunk's commands and submits them then): growing chunks start the
 * device as early and submit a long run fewer times.
 */

/** How kernels are chunked: `every` kernels a chunk (0: one chunk), or, `growing`, every, 2 x every, ... */
export interface SubmitChunks {
  every: number;
  growing: boolean;
}

/** Kernels a chunk holds by default; LINGC_WGSL_SUBMIT_EVERY overrides it (0: one submission a run; N+: growing from N). */
// 64 since measured on the H200 (Ling-mini-2.0's 20 layers, about 300 launches a decode step; one
// run each, bench/results/wgsl-2026-12-04-h200.md): 16 a chunk spent 1.35 ms a step in submissions
// (about 70 us each); 64: host encode 2.71 ms, a step 4.73 ms; growing from 16: 3.24 and 5.23 ms.
export const SUBMIT_EVERY_DEFAULT: SubmitChunks = { every: 64, growing: false };

/** A growing chunk holds at most this many times the first's kernels. */
const GROWTH_CAP = 16;

export function submitEvery(): SubmitChunks {
  const env = typeof process !== "undefined" ? process.env?.["LINGC_WGSL_SUBMIT_EVERY"] : undefined;
  if (env === undefined || env === "") return SUBMIT_EVERY_DEFAULT;
  const growing = env.endsWith("+");
  const n = Number(growing ? env.slice(0, -1) : env);
  if (!Number.isInteger(n) || n < 0 || (growing && n < 1)) throw new Error(`LINGC_WGSL_SUBMIT_EVERY must be a whole number of kernels (0: one submission a run; N+: chunks of N, 2N, 4N ... kernels), not '${env}'`);
  return { every: n, growing };
}

/** The first kernel index of each chunk of a run of `kernels` kernels, chunked so. */
export function chunkStarts(kernels: number, { every, growing }: SubmitChunks): number[] {
  if (every <= 0) return [0];
  const starts = [0];
  for (let size = every; starts[starts.length - 1]! + size < kernels; size = growing ? Math.min(size * 2, every * GROWTH_CAP) : size) starts.push(starts[starts.length - 1]! + size);
  return starts;
}

export class ChunkedPass {
  encoder: GPUCommandEncoder;
  pass: GPUComputePassEncoder;
  /** The chunk the open pass holds, and the kernel index it starts at. */
  private chunk = 0;
  private start = 0;
  /** The first kernel of each chunk. */
  private readonly starts: number[];

  constructor(
    private readonly device: GPUDevice,
    /** The run's uniform buffer, and the sizes written into it: kernel n's at n x `bytesPerKernel`. */
    readonly uniforms: GPUBuffer,
    readonly sizes: Int32Array<ArrayBuffer>,
    private readonly bytesPerKernel: number,
    private readonly kernels: number,
    chunks: SubmitChunks,
    private readonly clock?: GPUQuerySet,
  ) {
    this.starts = chunkStarts(kernels, chunks);
    this.encoder = device.createCommandEncoder();
    this.pass = this.begin();
  }

  private begin(): GPUComputePassEncoder {
    const first = this.chunk === 0;
    const last = this.chunk === this.starts.length - 1;
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
    // (Kernels come in order; a load-time kernel skipped may pass a chunk's first.)
    let c = this.chunk;
    while (c + 1 < this.starts.length && n >= this.starts[c + 1]!) c++;
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
