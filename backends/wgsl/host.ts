/**
 * The WebGPU host: runs a WgslArtifact on a GPUDevice. It depends on nothing but the WebGPU API, so
 * the same code runs in Node (Dawn, the `webgpu` package) and in a browser. Weights and constants
 * are uploaded once; each run binds the symbols (B, S, P) from the input shapes, allocates the
 * activation buffers, sets each kernel's sizes and dispatches the plan in order.
 *
 * A KV cache stays on the GPU between runs as a GpuTensor: an input that a cache_append grows is
 * held in a buffer with room along its growth axis (given so by the caller, or made so on the way
 * in), the append writes only the new rows into it, and the output it returns is the same buffer,
 * one row longer. Kernels read it with the buffer's row count (a capacity symbol of the artifact).
 */
import { evalTerms, type ArtifactSlot, type WgslArtifact } from "./artifact";
import { ChunkedPass, submitEvery } from "./chunked-pass";
import { launchPlan, MAX_CHAIN, picksFew, plannedKernel, storageId, type KernelPipelines, type LaunchPlan, type PlannedKernel, type PlannedLaunch } from "./launch-plan";
import { compileChecked, pipelinesOf } from "./pipelines";
import { loadKey, SharedWeights, weightKey } from "./shared-weights";
import { NextToken } from "./next-token";
import { around, Readback } from "./readback";
import { bindGroupEntries, BindGroupCache, SlotBuffers } from "./slot-buffers";
import { upload, uploadParts } from "./upload";

// WebGPU enum values (GPUBufferUsage, GPUMapMode, GPUShaderStage), spelled out so the host needs no globals.
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80, QUERY_RESOLVE: 0x200 };
const MAP_READ = 0x1;

export interface HostTensor {
  dtype: "f32" | "i32";
  shape: number[];
  data: Float32Array | Int32Array;
  /** A scaled fp8 value: `data` holds its fp8 values, `scales` its scale grid. */
  scales?: Float32Array;
}

/**
 * Weight data by checkpoint name, as f32 (floats) or i32 values, or a bf16 weight's 16-bit patterns
 * (Uint16Array); a stacked name has its experts stacked.
 */
export type WeightData = Float32Array | Int32Array | Uint16Array;
export type WeightProvider = (name: string, shape: number[], dtype: string) => Promise<WeightData> | WeightData;

export interface KernelTiming {
  name: string;
  label: string;
  ms: number;
  /** "gpu": from timestamp queries around the kernel's pass; "wall": a submission per kernel, timed on the host. */
  clock: "gpu" | "wall";
}

/**
 * A tensor left in a GPU buffer between runs. `room`: the buffer holds `rows` positions along
 * `axis` (at least shape[axis]; the rows past it are not the tensor's); without it the buffer is
 * exactly the shape. Tensors that share a buffer (a cache before and after an append) are freed once.
 */
export interface GpuTensor {
  buffer: GPUBuffer;
  dtype: "f32" | "i32";
  shape: number[];
  room?: { axis: number; rows: number };
}

export interface RunOptions {
  /** Names of internal values to read back (those the plan materializes). */
  observe?: (name: string) => boolean;
  /** Time each kernel (one submission per kernel: slower, for profiling). */
  profile?: boolean;
  /** Outputs to leave on the GPU (in `kept`) instead of reading them back. */
  keep?: (name: string) => boolean;
  /** Outputs [B, S, ...] to read back at their last position only, as [B, 1, ...]. */
  lastPosition?: (name: string) => boolean;
  /** An output of logits [B, S, V]: also choose each sequence's next token on the GPU (its argmax at position S - 1). */
  nextToken?: string;
}

/** A run submitted to the device (WgslGraph.launch). */
export interface LaunchedRun {
  /** The outputs left on the GPU (RunResult.kept). */
  kept: Record<string, GpuTensor>;
  /** With RunOptions.nextToken: the chosen ids [B, 1] (i32) on the GPU; the caller frees the buffer. */
  nextToken?: GpuTensor;
  /** The run's read-backs, once the GPU has run it. */
  result: Promise<RunResult>;
}

export interface RunResult {
  outputs: Record<string, HostTensor>;
  observed: Record<string, HostTensor>;
  /** The outputs left on the GPU; the caller frees their buffers. */
  kept: Record<string, GpuTensor>;
  timings?: KernelTiming[];
  /** An unprofiled run's kernels on the GPU, their one pass timed (where the device has timestamp queries). */
  gpuMs?: number;
  /** With RunOptions.nextToken: the ids the GPU chose, one per sequence. */
  nextToken?: Int32Array;
  /** Host time: from the call to the submission (`encode`), and from there to the read-back's data (`wait`). */
  hostMs: { encode: number; wait: number };
}

export function isGpuTensor(t: HostTensor | GpuTensor): t is GpuTensor {
  return "buffer" in t;
}

/**
 * `t` in a new buffer with room for `rows` positions along `axis`: host data is laid out with the
 * gaps and uploaded; a GPU tensor is copied block by block. The one copy a cache makes on its way into
 * in-place growth.
 */
export function withRoom(device: GPUDevice, t: HostTensor | GpuTensor, axis: number, rows: number, label: string): GpuTensor {
  const len = t.shape[axis]!;
  if (rows < len) throw new Error(`${label}: room for ${rows} rows along axis ${axis} is less than its ${len}`);
  const { outer, inner } = around(t.shape, axis);
  const bytes = outer * rows * inner * 4;
  const max = device.limits.maxStorageBufferBindingSize;
  if (bytes > max) throw new Error(`${label}: a cache with room for ${rows} positions needs ${bytes} bytes, over maxStorageBufferBindingSize = ${max}: generate fewer tokens or a smaller batch`);
  const buffer = device.createBuffer({ size: Math.max(16, bytes), usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST, label });
  const block = len * inner;
  if (!isGpuTensor(t)) {
    const data = t.data instanceof Float32Array ? new Float32Array(outer * rows * inner) : new Int32Array(outer * rows * inner);
    for (let o = 0; o < outer; o++) data.set(t.data.subarray(o * block, (o + 1) * block), o * rows * inner);
    if (data.byteLength) device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  } else if (block > 0) {
    const srcRows = t.room?.axis === axis ? t.room.rows : len;
    const enc = device.createCommandEncoder();
    for (let o = 0; o < outer; o++) enc.copyBufferToBuffer(t.buffer, o * srcRows * inner * 4, buffer, o * rows * inner * 4, block * 4);
    device.queue.submit([enc.finish()]);
  }
  return { buffer, dtype: t.dtype, shape: [...t.shape], room: { axis, rows } };
}

const isFloat = (dt: string) => dt === "f32" || dt === "f16" || dt === "bf16" || dt === "f8e4m3fn" || dt === "f8e5m2";

/** Bytes between kernels' sizes in a run's shared uniform buffer (WebGPU's largest minUniformBufferOffsetAlignment). */
const UNIFORM_STRIDE = 256;

/** The largest read-back staging buffer a graph keeps between runs. */
const STAGING_KEEP = 64 * 2 ** 20;

function fail(message: string): never {
  throw new Error(message);
}

/** The slot that holds slot id's storage (following aliases). */
function storageSlot(a: WgslArtifact, id: number): ArtifactSlot {
  return a.slots[storageId(a, id)]!;
}

/** A storage buffer for a computed value of this shape (four bytes an element, at least 16). */
function slotBuffer(device: GPUDevice, shape: readonly number[], label: string): GPUBuffer {
  const bytes = shape.reduce((x, y) => x * y, 1) * 4;
  return device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST, label });
}

export class WgslGraph {
  /** Activation buffers kept between runs, and the bind groups that bind them. */
  private readonly slotBuffers: SlotBuffers;
  private readonly bindGroups = new BindGroupCache();
  /** Unprofiled runs' kernel sizes, n x UNIFORM_STRIDE bytes each (made at the first such run), two used in turn. */
  private uniforms?: GPUBuffer[];
  /** The sizes written into them, one array for every run (writeBuffer copies each chunk's out). */
  private sizes?: Int32Array<ArrayBuffer>;
  private uniformTurn = 0;
  /** Kernels a submission holds (chunked-pass.ts). */
  private readonly chunkKernels = submitEvery();
  /** The read-back staging buffer of the last run, kept for the next (up to STAGING_KEEP bytes). */
  private staging?: GPUBuffer;
  /** The next-token kernel (made at the first run that asks for it). */
  private nextTokens?: NextToken;
  /** Unprofiled runs' pass timestamps and where they resolve (made at the first such run). */
  private passClock?: { queries: GPUQuerySet; resolved: GPUBuffer };
  /** Launch plans by the forms a run's kernels take (launch-plan.ts). */
  private readonly plans = new Map<string, LaunchPlan>();

  private constructor(
    readonly device: GPUDevice,
    readonly artifact: WgslArtifact,
    private readonly pipelines: KernelPipelines[],
    private readonly resident: Map<number, GPUBuffer[]>,
  ) {
    this.slotBuffers = new SlotBuffers(device);
  }

  /**
   * Loads a graph: its pipelines, then its weights and constants. `shared`: weight buffers by what
   * they hold, for every graph of one model on this device (a model's forward, prefill and decode
   * graphs read the same weights: each uploaded once, not once a graph).
   */
  static async load(device: GPUDevice, a: WgslArtifact, weights: WeightProvider, shared = new SharedWeights()): Promise<WgslGraph> {
    if (a.format !== "lingc-wgsl-1") throw new Error(`not a lingc WGSL artifact (format ${String(a.format)})`);
    const pipelines: KernelPipelines[] = await compileChecked(device, () => Promise.all(a.kernels.map(async (k) => (k.few && !k.atLoad ? { few: await pipelinesOf(device, k.few.launch) } : { main: await pipelinesOf(device, k) }))));
    // Uploads and the load-time kernels: what WebGPU rejects among them, reported once at the end.
    device.pushErrorScope("validation");
    const resident = new Map<number, GPUBuffer[]>();
    for (const s of a.slots) {
      if (s.source === "weight") {
        // (An fp8 weight's scale grid is a weight slot of its own: HF's `<name>_scale_inv`.)
        const shape = s.shape.map((t) => evalTerms(t, new Map()));
        const key = weightKey(s, shape);
        let parts = shared.weights.get(key);
        if (!parts) {
          parts = (async () => uploadParts(device, s, shape, await weights(s.weight!, shape, s.dtype)))();
          shared.weights.set(key, parts);
        }
        resident.set(s.id, await parts);
      } else if (s.source === "constant") {
        const shape = s.shape.map((t) => evalTerms(t, new Map()));
        const n = shape.reduce((x, y) => x * y, 1);
        const vals = s.values!.length === 1 ? new Array<number>(n).fill(s.values![0]!) : s.values!;
        resident.set(s.id, [upload(device, isFloat(s.dtype) ? Float32Array.from(vals) : Int32Array.from(vals), s.name ?? `constant ${s.id}`)]);
      }
    }
    const graph = new WgslGraph(device, a, pipelines, resident);
    graph.prepare(shared);
    const err = await device.popErrorScope();
    if (err) throw new Error(`WebGPU rejected the compiled model: ${err.message}`);
    return graph;
  }

  /**
   * Runs the load-time kernels (weights quantized at load) once; what they write stays resident. A
   * kernel that another graph of the model ran on the same buffers is not run again: its results are
   * that graph's (shared.computed).
   */
  private prepare(shared: SharedWeights): void {
    const a = this.artifact;
    const kernels = a.kernels.flatMap((k, n) => (k.atLoad ? [plannedKernel(a, n, false, this.pipelines[n]!)] : []));
    if (!kernels.length) return;
    const none = new Map<string, number>();
    const transient: GPUBuffer[] = [];
    const bufferOf = (id: number): GPUBuffer[] => {
      const s = storageSlot(a, id);
      let b = this.resident.get(s.id);
      if (!b) {
        b = [slotBuffer(this.device, s.shape.map((t) => evalTerms(t, none)), `${s.name ?? `slot ${s.id}`} (at load)`)];
        this.resident.set(s.id, b);
      }
      return b;
    };
    const encoder = this.device.createCommandEncoder();
    let ran = 0;
    for (const k of kernels) {
      const key = loadKey(k, bufferOf);
      const written = k.launches.flatMap((l) => l.launch.bindings.flatMap((b, j) => (b.write ? [l.slots[j]!] : [])));
      const had = shared.computed.get(key);
      if (had) {
        written.forEach((id, j) => this.resident.set(id, [had[j]!]));
        continue;
      }
      this.encode(encoder, k, none, bufferOf, transient);
      shared.computed.set(key, written.map((id) => bufferOf(id)[0]!));
      ran++;
    }
    if (!ran) return;
    this.device.queue.submit([encoder.finish()]);
    // Uniform buffers may go once the queue has run the kernels.
    void this.device.queue.onSubmittedWorkDone().then(() => transient.forEach((b) => b.destroy()));
  }

  /**
   * Records a planned kernel (a form of kernel n) into a command encoder: its sizes, bindings and
   * workgroups. With `shared`, into its open compute pass (a chunk of a run's dispatches share one
   * pass: WebGPU orders each dispatch's storage accesses after the previous ones', so passes need not
   * separate them) with its sizes in that run's uniform buffer, launch c of kernel n at
   * (n x MAX_CHAIN + c) x UNIFORM_STRIDE (one buffer a run, one write a chunk, instead of one a
   * kernel), and the bind group it had last where it binds the same buffers (a decode step binds what
   * the step before it bound); else in a pass of its own (GPU timestamps around it) with a uniform
   * buffer of its own.
   */
  private encode(encoder: GPUCommandEncoder, k: PlannedKernel, bindings: ReadonlyMap<string, number>, bufferOf: (id: number) => GPUBuffer[], transient: GPUBuffer[], timestamps?: GPUComputePassTimestampWrites, shared?: ChunkedPass): boolean {
    const device = this.device;
    const groupsOf = (l: PlannedLaunch) => Math.ceil(evalTerms(l.launch.grid.dim, bindings) / l.launch.grid.per);
    const first = groupsOf(k.launches[0]!);
    if (first === 0) return false;
    const pass = shared?.pass ?? encoder.beginComputePass(timestamps ? { label: k.kernel.label, timestampWrites: timestamps } : { label: k.kernel.label });
    for (const [c, l] of k.launches.entries()) {
      const { launch, words, block } = l;
      const groups = c === 0 ? first : groupsOf(l);
      if (groups === 0) continue;
      let group: GPUBindGroup;
      if (shared && words <= UNIFORM_STRIDE / 4) {
        const at = block * (UNIFORM_STRIDE / 4);
        for (let j = 0; j < launch.uniforms.length; j++) shared.sizes[at + j] = evalTerms(launch.uniforms[j]!.dim, bindings);
        const turn = this.uniformTurn;
        const last = l.last[turn];
        let same = last !== undefined;
        for (let j = 0; same && j < l.slots.length; j++) same = bufferOf(l.slots[j]!)[l.parts[j]!] === last!.buffers[j];
        if (same) group = last!.group;
        else {
          const buffers = l.slots.map((id, j) => bufferOf(id)[l.parts[j]!]!);
          group = this.bindGroups.get(device, l.key, l.pipeline.layout, buffers, { buffer: shared.uniforms, offset: block * UNIFORM_STRIDE, size: words * 4 });
          l.last[turn] = { buffers, group };
        }
      } else {
        const sizes = new Int32Array(words);
        launch.uniforms.forEach((u, j) => (sizes[j] = evalTerms(u.dim, bindings)));
        const ubuf = device.createBuffer({ size: sizes.byteLength, usage: USAGE.UNIFORM | USAGE.COPY_DST });
        transient.push(ubuf);
        device.queue.writeBuffer(ubuf, 0, sizes);
        group = device.createBindGroup({ layout: l.pipeline.layout, entries: bindGroupEntries(l.slots.map((id, j) => bufferOf(id)[l.parts[j]!]!), { buffer: ubuf }) });
      }
      pass.setPipeline(l.pipeline.pipeline);
      pass.setBindGroup(0, group);
      const x = Math.min(groups, 65535);
      pass.dispatchWorkgroups(x, Math.ceil(groups / x));
    }
    if (!shared) pass.end();
    return true;
  }

  /**
   * The launch plan for a run whose kernels take these forms (`forms[n]`: "f" kernel n's few-rows
   * form, "m" its main one), the main forms not compiled at load compiled first (checked as the load
   * checks them); kept for the next runs that pick the same forms.
   */
  private async planFor(forms: string): Promise<LaunchPlan> {
    const a = this.artifact;
    const device = this.device;
    const few = [...forms].map((f) => f === "f");
    const missing = a.kernels.map((k, n) => ({ k, n })).filter(({ k, n }) => !k.atLoad && !this.pipelines[n]!.main && !few[n]);
    if (missing.length) await compileChecked(device, () => Promise.all(missing.map(async ({ k, n }) => (this.pipelines[n]!.main = await pipelinesOf(device, k)))));
    const plan = launchPlan(a, few, this.pipelines);
    this.plans.set(forms, plan);
    return plan;
  }

  /** Runs the graph. Inputs by name (ids as i32), on the host or the GPU; returns the outputs (and observed values) read back, or kept. */
  async run(inputs: Record<string, HostTensor | GpuTensor>, opts: RunOptions = {}): Promise<RunResult> {
    return (await this.launch(inputs, opts)).result;
  }

  /**
   * Submits a run: resolves once its work is on the device's queue, with the outputs it keeps on the
   * GPU (`kept`: inputs of another launch at once, the queue runs launches in order), the next
   * token ids where `opts.nextToken` asks for them, and the promise of the run's read-backs.
   */
  async launch(inputs: Record<string, HostTensor | GpuTensor>, opts: RunOptions = {}): Promise<LaunchedRun> {
    const started = performance.now();
    const a = this.artifact;
    const logitsOut = opts.nextToken === undefined ? undefined : (a.outputs.find((x) => x.name === opts.nextToken) ?? fail(`no output '${opts.nextToken}' to choose the next token from`));
    const device = this.device;
    const bindings = new Map<string, number>();
    for (const sym of a.symbols) {
      const t = inputs[sym.input];
      if (!t) throw new Error(`missing input '${sym.input}'`);
      bindings.set(sym.name, t.shape[sym.axis]!);
    }
    // Which form of each kernel this run's sizes pick (its few-rows form, where it has one): the plan
    // made for those forms at the first run that picked them.
    let forms = "";
    for (const k of a.kernels) forms += picksFew(k, bindings) ? "f" : "m";
    const plan = this.plans.get(forms) ?? (await this.planFor(forms));

    const storage = (id: number): ArtifactSlot => storageSlot(a, id);

    const shapeOf = (s: ArtifactSlot) => s.shape.map((t) => evalTerms(t, bindings));
    const maxBinding = device.limits.maxStorageBufferBindingSize;
    // This run's buffers by storage slot, over the graph's resident ones (weights: not copied a run).
    const buffers = new Map<number, GPUBuffer[]>();
    const transient: GPUBuffer[] = [];
    /** This run's activation buffers (from the graph's kept ones), by storage slot: given back once submitted. */
    const taken = new Map<number, GPUBuffer>();
    /** Rows along the growth axis of each growing storage's buffer. */
    const rowsOf = new Map<number, number>();
    const bufferOf = (id: number): GPUBuffer[] => {
      const s = storage(id);
      let b = buffers.get(s.id) ?? this.resident.get(s.id);
      if (!b) {
        const bytes = shapeOf(s).reduce((x, y) => x * y, 1) * 4;
        if (bytes > maxBinding) {
          throw new Error(`tensor ${s.name ?? `#${s.id}`} [${shapeOf(s).join(", ")}] needs ${bytes} bytes, over maxStorageBufferBindingSize = ${maxBinding}: run with a smaller batch or sequence`);
        }
        b = [this.slotBuffers.take(s.id, bytes, s.name ?? `slot ${s.id}`)];
        taken.set(s.id, b[0]!);
        buffers.set(s.id, b);
      }
      return b;
    };
    for (const inp of a.inputs) {
      const t = inputs[inp.name];
      if (!t) throw new Error(`missing input '${inp.name}'`);
      const s = a.slots[inp.slot]!;
      if (s.scales) throw new Error(`input '${inp.name}' is a scaled fp8 tensor; graph inputs with scales are not supported`);
      const want = shapeOf(s);
      if (want.length !== t.shape.length || want.some((d, k) => d !== t.shape[k])) throw new Error(`input '${inp.name}' has shape [${t.shape}], the graph expects [${want}]`);
      if (s.grows) {
        // A cache grown in place: its buffer needs room for the rows the append adds.
        const need = evalTerms(s.grows.rows, bindings);
        let g = isGpuTensor(t) && t.room?.axis === s.grows.axis && t.room.rows >= need ? t : undefined;
        if (!g) {
          g = withRoom(device, t, s.grows.axis, need, inp.name);
          transient.push(g.buffer);
        }
        buffers.set(s.id, [g.buffer]);
        rowsOf.set(s.id, g.room!.rows);
        bindings.set(s.grows.capacity, g.room!.rows);
      } else if (isGpuTensor(t)) {
        if (t.room && t.room.rows !== t.shape[t.room.axis]) throw new Error(`input '${inp.name}' lies in a buffer with room to grow, which this graph does not grow`);
        buffers.set(s.id, [t.buffer]);
      } else device.queue.writeBuffer(bufferOf(inp.slot)[0]!, 0, t.data.buffer, t.data.byteOffset, t.data.byteLength);
    }

    // Every buffer the run binds or reads back, taken before any pass begins.
    for (const id of plan.slots) bufferOf(id);
    for (const o of a.outputs) bufferOf(o.slot);

    const timings: KernelTiming[] = [];
    // Profiling: GPU timestamps around each kernel's pass where the device has them (one submission,
    // the kernels' own time), else a submission per kernel timed on the host (launch costs included).
    // (A query set holds at most 4096 queries, two a kernel.)
    const gpuClock = opts.profile === true && device.features.has("timestamp-query") && 2 * a.kernels.length <= 4096;
    const queries = gpuClock ? device.createQuerySet({ type: "timestamp", count: 2 * a.kernels.length }) : undefined;
    const timed: number[] = [];
    // Unprofiled: compute passes submitted a chunk of kernels at a time (chunked-pass.ts), the sizes
    // in the graph's uniform buffer (the queue runs each chunk's write of it before the chunk).
    let shared: ChunkedPass | undefined;
    if (!opts.profile && a.kernels.length) {
      // Two, used in turn: a launch writes the one the run before it did not bind (that run may still be on the queue).
      this.uniforms ??= [0, 1].map(() => device.createBuffer({ size: UNIFORM_STRIDE * MAX_CHAIN * a.kernels.length, usage: USAGE.UNIFORM | USAGE.COPY_DST, label: `${a.graph} sizes` }));
      this.uniformTurn ^= 1;
      // Its time on the GPU, where the device has timestamps: read back with the outputs.
      if (device.features.has("timestamp-query")) {
        this.passClock ??= { queries: device.createQuerySet({ type: "timestamp", count: 2 }), resolved: device.createBuffer({ size: 16, usage: USAGE.QUERY_RESOLVE | USAGE.COPY_SRC }) };
      }
      // One array for every run: each chunk's sizes are copied out by writeBuffer as it is submitted.
      this.sizes ??= new Int32Array((UNIFORM_STRIDE / 4) * MAX_CHAIN * a.kernels.length);
      shared = new ChunkedPass(device, this.uniforms[this.uniformTurn]!, this.sizes, UNIFORM_STRIDE * MAX_CHAIN, a.kernels.length, this.chunkKernels, this.passClock?.queries);
    }
    let encoder = shared?.encoder ?? device.createCommandEncoder();
    const submit = (enc: GPUCommandEncoder) => device.queue.submit([enc.finish()]);
    // (Load-time kernels ran when the graph was loaded: their results are resident, the plan has none.)
    for (const pk of plan.kernels) {
      const { n, kernel: k } = pk;
      const at = 2 * timed.length;
      const stamps = queries ? { querySet: queries, beginningOfPassWriteIndex: at, endOfPassWriteIndex: at + 1 } : undefined;
      shared?.at(n);
      if (!this.encode(encoder, pk, bindings, bufferOf, transient, stamps, shared)) continue;
      if (queries) timed.push(n);
      else if (opts.profile) {
        const t0 = performance.now();
        submit(encoder);
        await device.queue.onSubmittedWorkDone();
        timings.push({ name: k.name, label: k.label, ms: performance.now() - t0, clock: "wall" });
        encoder = device.createCommandEncoder();
      }
    }
    // Greedy generation's next token, chosen on the GPU from the logits (next-token.ts).
    let nextIds: GpuTensor | undefined;
    if (logitsOut) {
      const o = logitsOut;
      const shape = shapeOf(a.slots[o.slot]!);
      this.nextTokens ??= new NextToken(device);
      const pass = shared?.pass ?? encoder.beginComputePass({ label: "next token" });
      nextIds = { buffer: this.nextTokens.encode(pass, bufferOf(o.slot)[0]!, shape), dtype: "i32", shape: [shape[0]!, 1] };
      if (!shared) pass.end();
    }
    // The last chunk's pass ends, its sizes written before the submission below.
    if (shared) encoder = shared.end();
    let stampsRead: GPUBuffer | undefined;
    if (queries && timed.length) {
      const resolved = device.createBuffer({ size: 16 * timed.length, usage: USAGE.QUERY_RESOLVE | USAGE.COPY_SRC });
      stampsRead = device.createBuffer({ size: 16 * timed.length, usage: USAGE.MAP_READ | USAGE.COPY_DST });
      encoder.resolveQuerySet(queries, 0, 2 * timed.length, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, stampsRead, 0, 16 * timed.length);
      transient.push(resolved);
    }

    /** A value as a GPU tensor: its storage's buffer, with the room that buffer has. */
    const onGpu = (id: number): GpuTensor => {
      const s = storage(id);
      const rows = rowsOf.get(s.id);
      return { buffer: bufferOf(s.id)[0]!, dtype: isFloat(s.dtype) ? "f32" : "i32", shape: shapeOf(a.slots[id]!), room: rows !== undefined ? { axis: s.grows!.axis, rows } : undefined };
    };
    const readback = new Readback(onGpu, storage, (id) => a.slots[id]!.name ?? `slot ${id}`);
    const outputs: Record<string, HostTensor> = {};
    const kept: Record<string, GpuTensor> = {};
    for (const o of a.outputs) {
      if (!opts.keep?.(o.name)) {
        readback.stage(o.slot, opts.lastPosition?.(o.name));
        continue;
      }
      const t = onGpu(o.slot);
      kept[o.name] = t;
      // The caller owns it now.
      const at = transient.indexOf(t.buffer);
      if (at >= 0) transient.splice(at, 1);
      for (const [id, b] of taken) if (b === t.buffer) taken.delete(id);
    }
    const observedSlots = opts.observe ? a.slots.filter((s) => s.name && s.source === "computed" && opts.observe!(s.name)) : [];
    for (const s of observedSlots) readback.stage(s.id);
    // The shared pass's two timestamps after the values.
    const clocked = shared !== undefined && this.passClock !== undefined;
    if (clocked) encoder.resolveQuerySet(this.passClock!.queries, 0, 2, this.passClock!.resolved, 0);
    const clockAt = clocked ? readback.raw(this.passClock!.resolved, 16) : 0;
    const tokensAt = nextIds ? readback.raw(nextIds.buffer, 4 * nextIds.shape[0]!) : 0;
    // The graph's staging buffer where it is large enough (taken for this run: a concurrent run makes its own).
    const need = Math.max(16, readback.bytes);
    let staging = this.staging && this.staging.size >= need ? this.staging : undefined;
    if (staging) this.staging = undefined;
    else staging = device.createBuffer({ size: need, usage: USAGE.MAP_READ | USAGE.COPY_DST });
    readback.copy(encoder, staging);
    submit(encoder);
    const submittedAt = performance.now();
    // The activation buffers go back for the next run now: the queue runs its work after this run's
    // (the read-back copies included), so a launch need not wait for this one's read-back.
    for (const [id, b] of taken) this.slotBuffers.give(id, b);
    const result = (async (): Promise<RunResult> => {
      if (stampsRead) {
        await stampsRead.mapAsync(MAP_READ);
        const ns = new BigUint64Array(stampsRead.getMappedRange().slice(0));
        stampsRead.unmap();
        stampsRead.destroy();
        timed.forEach((n, j) => {
          const k = a.kernels[n]!;
          timings.push({ name: k.name, label: k.label, ms: Number(ns[2 * j + 1]! - ns[2 * j]!) / 1e6, clock: "gpu" });
        });
      }
      queries?.destroy();
      await staging.mapAsync(MAP_READ, 0, need);
      const raw = staging.getMappedRange(0, need).slice(0);
      staging.unmap();
      // Kept for the next run up to STAGING_KEEP bytes (a prompt's full logits are not).
      if (staging.size <= STAGING_KEEP && !this.staging) this.staging = staging;
      else staging.destroy();
      const read = (id: number) => readback.read(raw, id);
      for (const o of a.outputs) if (!kept[o.name]) outputs[o.name] = read(o.slot);
      const observed: Record<string, HostTensor> = {};
      for (const s of observedSlots) observed[s.name!] = read(s.id);
      for (const b of transient) b.destroy();
      const stamps = clocked ? new BigUint64Array(raw, clockAt, 2) : undefined;
      return {
        outputs,
        observed,
        kept,
        timings: opts.profile ? timings : undefined,
        ...(stamps ? { gpuMs: Number(stamps[1]! - stamps[0]!) / 1e6 } : {}),
        ...(nextIds ? { nextToken: new Int32Array(raw.slice(tokensAt, tokensAt + 4 * nextIds.shape[0]!)) } : {}),
        hostMs: { encode: submittedAt - started, wait: performance.now() - submittedAt },
      };
    })();
    return { kept, ...(nextIds ? { nextToken: nextIds } : {}), result };
  }

  /**
   * Frees the graph's buffers, its weights among them: weights shared with the model's other graphs
   * (SharedWeights) go too, so a model's graphs are destroyed together (the backends' close does).
   */
  destroy(): void {
    for (const bs of this.resident.values()) for (const b of bs) b.destroy();
    this.slotBuffers.destroy();
    this.uniforms?.forEach((b) => b.destroy());
    this.staging?.destroy();
    this.passClock?.queries.destroy();
    this.passClock?.resolved.destroy();
    this.nextTokens?.destroy();
  }
}
