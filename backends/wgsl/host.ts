/**
 * The WebGPU host: runs a WgslArtifact on a GPUDevice. It depends on nothing but the WebGPU API, so
 * the same code runs in Node (Dawn, the `webgpu` package) and in a browser. Weights and constants
 * are uploaded once; each run binds the symbols (B, S, P) from the input shapes, allocates the
 * activation buffers, sets each kernel's sizes and dispatches the plan in order.
 */
import { evalTerms, type ArtifactSlot, type WgslArtifact } from "./artifact";

// WebGPU enum values (GPUBufferUsage, GPUMapMode, GPUShaderStage), spelled out so the host needs no globals.
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 };
const MAP_READ = 0x1;
const COMPUTE = 0x4;

export interface HostTensor {
  dtype: "f32" | "i32";
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Weight data by checkpoint name, as f32 (floats) or i32 values; a stacked name has its experts stacked. */
export type WeightProvider = (name: string, shape: number[], dtype: string) => Promise<Float32Array | Int32Array> | Float32Array | Int32Array;

export interface KernelTiming {
  name: string;
  label: string;
  ms: number;
}

export interface RunOptions {
  /** Names of internal values to read back (those the plan materializes). */
  observe?: (name: string) => boolean;
  /** Time each kernel (one submission per kernel: slower, for profiling). */
  profile?: boolean;
}

export interface RunResult {
  outputs: Record<string, HostTensor>;
  observed: Record<string, HostTensor>;
  timings?: KernelTiming[];
}

const isFloat = (dt: string) => dt === "f32" || dt === "f16" || dt === "bf16" || dt === "f8e4m3fn" || dt === "f8e5m2";

interface Pipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

export class WgslGraph {
  private constructor(
    readonly device: GPUDevice,
    readonly artifact: WgslArtifact,
    private readonly pipelines: Pipeline[],
    private readonly resident: Map<number, GPUBuffer[]>,
  ) {}

  static async load(device: GPUDevice, a: WgslArtifact, weights: WeightProvider): Promise<WgslGraph> {
    if (a.format !== "lingc-wgsl-1") throw new Error(`not a lingc WGSL artifact (format ${String(a.format)})`);
    device.pushErrorScope("validation");
    const pipelines = a.kernels.map((k) => {
      const entries: GPUBindGroupLayoutEntry[] = [];
      const module = device.createShaderModule({ code: k.wgsl, label: k.name });
      k.bindings.forEach((b, j) => entries.push({ binding: j, visibility: COMPUTE, buffer: { type: b.write ? "storage" : "read-only-storage" } }));
      entries.push({ binding: k.bindings.length, visibility: COMPUTE, buffer: { type: "uniform" } });
      const layout = device.createBindGroupLayout({ entries, label: k.name });
      const pipeline = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: "main" }, label: k.label });
      return { pipeline, layout };
    });
    const resident = new Map<number, GPUBuffer[]>();
    for (const s of a.slots) {
      if (s.source === "weight") {
        const shape = s.shape.map((t) => evalTerms(t, new Map()));
        const data = await weights(s.weight!, shape, s.dtype);
        resident.set(s.id, uploadParts(device, s, shape, data));
      } else if (s.source === "constant") {
        const shape = s.shape.map((t) => evalTerms(t, new Map()));
        const n = shape.reduce((x, y) => x * y, 1);
        const vals = s.values!.length === 1 ? new Array<number>(n).fill(s.values![0]!) : s.values!;
        resident.set(s.id, [upload(device, isFloat(s.dtype) ? Float32Array.from(vals) : Int32Array.from(vals), s.name ?? `constant ${s.id}`)]);
      }
    }
    const err = await device.popErrorScope();
    if (err) throw new Error(`WebGPU rejected the compiled model: ${err.message}`);
    return new WgslGraph(device, a, pipelines, resident);
  }

  /** Runs the graph. Inputs by name (ids as i32); returns the outputs (and observed values) read back. */
  async run(inputs: Record<string, HostTensor>, opts: RunOptions = {}): Promise<RunResult> {
    const a = this.artifact;
    const device = this.device;
    const bindings = new Map<string, number>();
    for (const sym of a.symbols) {
      const t = inputs[sym.input];
      if (!t) throw new Error(`missing input '${sym.input}'`);
      bindings.set(sym.name, t.shape[sym.axis]!);
    }
    const storage = (id: number): ArtifactSlot => {
      let s = a.slots[id]!;
      while (s.source === "alias") s = a.slots[s.aliasOf!]!;
      return s;
    };
    const shapeOf = (s: ArtifactSlot) => s.shape.map((t) => evalTerms(t, bindings));
    const maxBinding = device.limits.maxStorageBufferBindingSize;
    const buffers = new Map<number, GPUBuffer[]>(this.resident);
    const transient: GPUBuffer[] = [];
    const bufferOf = (id: number): GPUBuffer[] => {
      const s = storage(id);
      let b = buffers.get(s.id);
      if (!b) {
        const bytes = shapeOf(s).reduce((x, y) => x * y, 1) * 4;
        if (bytes > maxBinding) {
          throw new Error(`tensor ${s.name ?? `#${s.id}`} [${shapeOf(s).join(", ")}] needs ${bytes} bytes, over maxStorageBufferBindingSize = ${maxBinding}: run with a smaller batch or sequence`);
        }
        b = [device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST, label: s.name ?? `slot ${s.id}` })];
        transient.push(b[0]!);
        buffers.set(s.id, b);
      }
      return b;
    };
    for (const inp of a.inputs) {
      const t = inputs[inp.name];
      if (!t) throw new Error(`missing input '${inp.name}'`);
      const s = a.slots[inp.slot]!;
      const want = shapeOf(s);
      if (want.length !== t.shape.length || want.some((d, k) => d !== t.shape[k])) throw new Error(`input '${inp.name}' has shape [${t.shape}], the graph expects [${want}]`);
      device.queue.writeBuffer(bufferOf(inp.slot)[0]!, 0, t.data.buffer, t.data.byteOffset, t.data.byteLength);
    }

    const timings: KernelTiming[] = [];
    let encoder = device.createCommandEncoder();
    for (let n = 0; n < a.kernels.length; n++) {
      const k = a.kernels[n]!;
      const groups = Math.ceil(evalTerms(k.grid.dim, bindings) / k.grid.per);
      if (groups === 0) continue;
      const sizes = new Int32Array(Math.max(4, Math.ceil(k.uniforms.length / 4) * 4));
      k.uniforms.forEach((u, j) => (sizes[j] = evalTerms(u.dim, bindings)));
      const ubuf = device.createBuffer({ size: sizes.byteLength, usage: USAGE.UNIFORM | USAGE.COPY_DST });
      transient.push(ubuf);
      device.queue.writeBuffer(ubuf, 0, sizes);
      const entries: GPUBindGroupEntry[] = k.bindings.map((b, j) => ({ binding: j, resource: { buffer: bufferOf(b.slot)[b.part]! } }));
      entries.push({ binding: k.bindings.length, resource: { buffer: ubuf } });
      const { pipeline, layout } = this.pipelines[n]!;
      const pass = encoder.beginComputePass({ label: k.label });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, device.createBindGroup({ layout, entries }));
      const x = Math.min(groups, 65535);
      pass.dispatchWorkgroups(x, Math.ceil(groups / x));
      pass.end();
      if (opts.profile) {
        const t0 = performance.now();
        device.queue.submit([encoder.finish()]);
        await device.queue.onSubmittedWorkDone();
        timings.push({ name: k.name, label: k.label, ms: performance.now() - t0 });
        encoder = device.createCommandEncoder();
      }
    }
    device.queue.submit([encoder.finish()]);

    const read = async (id: number): Promise<HostTensor> => {
      const s = storage(id);
      const shape = shapeOf(a.slots[id]!);
      const bytes = shape.reduce((x, y) => x * y, 1) * 4;
      const staging = device.createBuffer({ size: Math.max(16, bytes), usage: USAGE.MAP_READ | USAGE.COPY_DST });
      const enc = device.createCommandEncoder();
      if (bytes > 0) enc.copyBufferToBuffer(bufferOf(s.id)[0]!, 0, staging, 0, bytes);
      device.queue.submit([enc.finish()]);
      await staging.mapAsync(MAP_READ);
      const raw = staging.getMappedRange().slice(0, bytes);
      staging.unmap();
      staging.destroy();
      return isFloat(s.dtype) ? { dtype: "f32", shape, data: new Float32Array(raw) } : { dtype: "i32", shape, data: new Int32Array(raw) };
    };
    const outputs: Record<string, HostTensor> = {};
    for (const o of a.outputs) outputs[o.name] = await read(o.slot);
    const observed: Record<string, HostTensor> = {};
    if (opts.observe) {
      for (const s of a.slots) if (s.name && s.source === "computed" && opts.observe(s.name)) observed[s.name] = await read(s.id);
    }
    for (const b of transient) b.destroy();
    return { outputs, observed, timings: opts.profile ? timings : undefined };
  }

  destroy(): void {
    for (const bs of this.resident.values()) for (const b of bs) b.destroy();
  }
}

function upload(device: GPUDevice, data: Float32Array | Int32Array, label: string): GPUBuffer {
  const b = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 4) * 4), usage: USAGE.STORAGE | USAGE.COPY_DST, label });
  if (data.byteLength) device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
  return b;
}

function uploadParts(device: GPUDevice, s: ArtifactSlot, shape: number[], data: Float32Array | Int32Array): GPUBuffer[] {
  const n = shape.reduce((x, y) => x * y, 1);
  if (data.length !== n) throw new Error(`weight ${s.weight}: got ${data.length} values for shape [${shape}]`);
  if (!s.parts) return [upload(device, data, s.weight!)];
  const per = s.parts.rows * shape.slice(1).reduce((x, y) => x * y, 1);
  return Array.from({ length: s.parts.count }, (_, p) => upload(device, data.subarray(p * per, Math.min(n, (p + 1) * per)), `${s.weight} part ${p}`));
}
