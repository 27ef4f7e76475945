/**
 * A graph's activation buffers kept from one run to the next, by slot. A decode step allocates the
 * same buffers every step; creating and destroying some seventy of them per token, and binding them
 * anew, is host time that a GPU this fast turns into most of a step. A run takes its slot's buffer
 * back when the size matches (else a new one) as the last run left it, not cleared: every kernel
 * writes its outputs whole before anything reads them (tests/wgsl/wgsl.test.ts checks a model's
 * outputs after a run on other tokens), so a clear would be a command per buffer and step for
 * nothing. It gives it back once its work is submitted (the queue orders the next run's after it);
 * concurrent runs of one graph never share one (taking removes it). Only buffers up to BUFFER_BYTES
 * are kept, at most TOTAL_BYTES in all (a prefill's logits, rows x vocabulary, are not held between
 * runs).
 */

const USAGE = { COPY_SRC: 0x4, COPY_DST: 0x8, STORAGE: 0x80 };
const BUFFER_BYTES = 64 * 2 ** 20;
const TOTAL_BYTES = 512 * 2 ** 20;

export class SlotBuffers {
  private readonly kept = new Map<number, GPUBuffer>();
  private bytes = 0;

  constructor(private readonly device: GPUDevice) {}

  /** A storage buffer of `bytes` for slot `id`: a kept one as the last run left it, else a new one. */
  take(id: number, bytes: number, label: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 4) * 4);
    const b = this.kept.get(id);
    if (b) {
      this.kept.delete(id);
      this.bytes -= b.size;
      if (b.size === size) return b;
      b.destroy();
    }
    return this.device.createBuffer({ size, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST, label });
  }

  /** Slot id's buffer, back after a run (kept for the next run where the limits allow, else destroyed). */
  give(id: number, b: GPUBuffer): void {
    const old = this.kept.get(id);
    if (old) {
      this.kept.delete(id);
      this.bytes -= old.size;
      old.destroy();
    }
    if (b.size > BUFFER_BYTES || this.bytes + b.size > TOTAL_BYTES) {
      b.destroy();
      return;
    }
    this.kept.set(id, b);
    this.bytes += b.size;
  }

  destroy(): void {
    for (const b of this.kept.values()) b.destroy();
    this.kept.clear();
    this.bytes = 0;
  }
}

/**
 * Bind groups by kernel and the buffers bound (identified by object): a run that binds the same
 * buffers as an earlier one (kept slot buffers, a KV cache grown in place) reuses its bind group.
 */
export class BindGroupCache {
  private readonly groups = new Map<string, GPUBindGroup>();
  /** Each launch's last bind group and what it binds. */
  private readonly last = new Map<string, { buffers: GPUBuffer[]; uniform: GPUBufferBinding; group: GPUBindGroup }>();
  private readonly ids = new WeakMap<GPUBuffer, number>();
  private next = 0;
  /** Entries kept at most (stale ones name destroyed buffers, never bound again: dropped wholesale). */
  private static readonly MAX = 4096;

  private idOf(b: GPUBuffer): number {
    let id = this.ids.get(b);
    if (id === undefined) this.ids.set(b, (id = this.next++));
    return id;
  }

  /**
   * The bind group of a launch (`kernel`: which kernel and launch) binding `buffers` in order, then the
   * uniform block. The launch's last group is checked first by identity (a decode step binds what the
   * step before it bound): no key is built then.
   */
  get(device: GPUDevice, kernel: string, layout: GPUBindGroupLayout, buffers: readonly GPUBuffer[], uniform: GPUBufferBinding): GPUBindGroup {
    const launch = `${kernel}|${this.idOf(uniform.buffer)}`;
    const last = this.last.get(launch);
    if (last && last.uniform.offset === uniform.offset && last.uniform.size === uniform.size && last.buffers.length === buffers.length && last.buffers.every((b, j) => b === buffers[j])) return last.group;
    const key = `${launch}@${uniform.offset ?? 0}+${uniform.size ?? ""}|${buffers.map((b) => this.idOf(b)).join(",")}`;
    let g = this.groups.get(key);
    if (!g) {
      if (this.groups.size >= BindGroupCache.MAX) {
        this.groups.clear();
        this.last.clear();
      }
      g = device.createBindGroup({ layout, entries: bindGroupEntries(buffers, uniform) });
      this.groups.set(key, g);
    }
    this.last.set(launch, { buffers: [...buffers], uniform, group: g });
    return g;
  }
}

/** Bind group entries: the storage buffers at bindings 0.., the uniform block after them. */
export function bindGroupEntries(buffers: readonly GPUBuffer[], uniform: GPUBufferBinding): GPUBindGroupEntry[] {
  const entries: GPUBindGroupEntry[] = buffers.map((buffer, j) => ({ binding: j, resource: { buffer } }));
  entries.push({ binding: buffers.length, resource: uniform });
  return entries;
}
