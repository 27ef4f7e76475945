/**
 * From a fused module to a WGSL artifact: the schedule, one generated kernel per step rendered to
 * WGSL, and the checks against the target profile: threads and workgroup memory per kernel,
 * storage buffers per shader stage, and weights larger than maxStorageBufferBindingSize, which are
 * split over several bindings (re-planned) or refused with the limit, the tensor and the numbers.
 */
import { gathersScaledCodes } from "../../ir/quant";
import { Dim } from "../../ir/dim";
import { LingcError, formatPos } from "../../ir/errors";
import type { Module } from "../../ir/module";
import { signatureOf } from "../backend";
import { buildSchedule, capacitySymbol, storageSlot } from "../schedule";
import { fewRowsTemplate, generateStep, POINTWISE_RUN, type GeneratedKernel } from "../kernels/gen";
import { SCRATCH_SLOT } from "../kernels/gen/context";
import { renderWgsl } from "./render";
import type { ArtifactDtype, ArtifactKernel, ArtifactLaunch, ArtifactSlot, DimTerms, WgslArtifact } from "./artifact";
import { requiredLimits, type WebGpuProfile } from "../../ir/target/webgpu";

export function dimTerms(d: Dim): DimTerms {
  return d.terms.map((t) => [t.coef, [...t.syms]]);
}

/** Bytes a weight's element takes on the GPU: packed fp8 1, packed bf16 2, the rest 4 (f32 or i32). */
function elemBytes(sl: ArtifactSlot): number {
  return sl.packed ? 1 : sl.bf16Pairs ? 2 : 4;
}

/** How a weight is held on the GPU, for messages. */
function heldAs(sl: ArtifactSlot): string {
  return sl.packed ? "as packed fp8" : sl.bf16Pairs ? "as packed bf16" : "as f32";
}

export function compileWgsl(m: Module, profile: WebGpuProfile): WgslArtifact {
  const s = buildSchedule(m);
  // Runs of elements a pointwise thread only on a GPU (the CUDA backend's runs halved the MoE combine
  // on the H200); on llvmpipe they were slower (prefill 457-473 vs 565-628 tokens/s, ling-tiny,
  // `npm run bench:wgsl`): it spreads invocations over SIMD lanes, and fewer of them lose.
  const limits = { maxThreads: Math.min(profile.maxComputeInvocationsPerWorkgroup, profile.maxComputeWorkgroupSizeX), maxWorkgroupBytes: profile.maxComputeWorkgroupStorageSize, gpuForms: profile.gpuForms, gemvUnroll: profile.gemvUnroll, ...(profile.gpuForms ? { pointwiseRun: POINTWISE_RUN } : {}) };
  const slots: ArtifactSlot[] = s.slots.map((sl) => {
    const out: ArtifactSlot = { id: sl.id, dtype: sl.type.dtype as ArtifactDtype, shape: sl.type.shape.map(dimTerms), source: sl.source as ArtifactSlot["source"] };
    if (sl.name !== undefined) out.name = sl.name;
    if (sl.weight !== undefined) out.weight = sl.weight;
    if (sl.aliasOf !== undefined) out.aliasOf = sl.aliasOf;
    if (sl.constant) {
      const a = sl.constant.attrs as Record<string, number[]>;
      out.values = [...a["values"]!];
    }
    const q = sl.type.quant;
    if (q && sl.source !== "alias") {
      if (q.granularity.kind !== "block") throw new LingcError(`WGSL: ${sl.name ?? sl.weight ?? `slot ${sl.id}`} has ${q.granularity.kind} scales; the kernels read block scales`);
      out.scales = { slot: sl.scales!, block: [q.granularity.rows, q.granularity.cols] };
      if (sl.source === "weight" && sl.type.dtype === "f8e4m3fn") out.packed = true;
    }
    // bf16 weights two to a word (kernels read them as kir "bf16"): half the bytes of f32, and a
    // decode step reads every weight once.
    if (!q && sl.source === "weight" && sl.type.dtype === "bf16") out.bf16Pairs = true;
    return out;
  });
  // Inputs grown in place: the rows their buffers need, and the symbol that carries the rows they have.
  for (const sl of s.slots) {
    if (!sl.grows) continue;
    const st = s.slots[storageSlot(s, sl.id)]!;
    if (st.source !== "input") throw new LingcError(`WGSL: the storage a cache_append grows must be a graph input (${sl.name ?? `slot ${sl.id}`} grows a ${st.source} slot)`);
    slots[st.id]!.grows = { axis: sl.grows.axis, rows: dimTerms(sl.grows.rows), capacity: capacitySymbol(st.id) };
  }

  // Weights over the binding limit are split along their leading axis.
  const maxBinding = profile.maxStorageBufferBindingSize;
  for (const sl of slots) {
    if (sl.source !== "weight") continue;
    const shape = sl.shape.map((t) => (t.length === 0 ? 0 : t[0]![0]));
    const rowBytes = shape.slice(1).reduce((a, b) => a * b, 1) * elemBytes(sl);
    const total = rowBytes * (shape[0] ?? 1);
    if (total <= maxBinding) continue;
    const held = heldAs(sl);
    if (rowBytes > maxBinding || shape.length < 2) {
      throw new LingcError(`weight ${sl.weight} (${sl.dtype} [${shape.join(", ")}], ${total} bytes ${held} on the GPU) exceeds maxStorageBufferBindingSize = ${maxBinding} bytes, and one row of it (${rowBytes} bytes) does too, so it cannot be split (profile ${profile.name})`);
    }
    let rows = Math.floor(maxBinding / rowBytes);
    // A packed part holds whole 32-bit words: its values start at a word.
    while (rows > 0 && (rows * rowBytes) % 4 !== 0) rows--;
    if (rows === 0) throw new LingcError(`weight ${sl.weight} (${sl.dtype} [${shape.join(", ")}] ${held}) cannot be split into parts of whole 32-bit words within maxStorageBufferBindingSize = ${maxBinding} bytes (profile ${profile.name})`);
    sl.parts = { rows, count: Math.ceil(shape[0]! / rows) };
  }

  const kernels: ArtifactKernel[] = s.steps.map((step, n) => {
    // A label only: the fusion pattern that formed the kernel, or the op.
    const kind = step.kernel?.attrs["fusion"] ?? step.op.opName;
    const label = `${step.scope || m.name}: ${step.kernel ? step.kernel.name : step.op.opName}${step.op.loc ? ` (${formatPos(step.op.loc)})` : ""}`;
    // The step's scratch buffer (GeneratedKernel.scratch), a computed slot of its own, made when first bound.
    let scratch: number | undefined;
    const scratchSlot = (elems: number): number => {
      if (scratch === undefined) {
        scratch = slots.length;
        slots.push({ id: scratch, dtype: "f32", shape: [[[elems, []]]], source: "computed", name: `${step.kernel?.name ?? step.op.opName} scratch` });
      }
      return scratch;
    };
    const launch = (name: string, template?: string): ArtifactLaunch => render(generateStep(step, s, limits, name, template));
    const render = (g: GeneratedKernel): ArtifactLaunch => {
      g.slots = g.slots.map((id) => (id === SCRATCH_SLOT ? scratchSlot(g.scratch!) : id));
      const where = `kernel ${step.kernel?.name ?? step.op.opName} in ${step.scope || m.name}`;
      if (g.kernel.wg > limits.maxThreads) throw new LingcError(`${where} needs ${g.kernel.wg} threads per workgroup; maxComputeInvocationsPerWorkgroup = ${limits.maxThreads}`);
      const shared = g.kernel.shared.reduce((acc, x) => acc + x.size * 4, 0);
      if (shared > profile.maxComputeWorkgroupStorageSize) {
        throw new LingcError(`${where} needs ${shared} bytes of workgroup memory; maxComputeWorkgroupStorageSize = ${profile.maxComputeWorkgroupStorageSize} (profile ${profile.name})`);
      }
      // Split weights: one binding per part; the shader picks the part by index range.
      const bindings: { slot: number; part: number; write: boolean }[] = [];
      const splits: string[] = [];
      g.kernel.buffers.forEach((b, j) => {
        const slot = slots[g.slots[j]!]!;
        if (!slot.parts) {
          bindings.push({ slot: g.slots[j]!, part: 0, write: b.write });
          return;
        }
        const shape = slot.shape.map((t) => (t.length === 0 ? 0 : t[0]![0]));
        const perElems = slot.parts.rows * shape.slice(1).reduce((x, y) => x * y, 1);
        // Parts are indexed in their array's units: f32 values, or words of packed values.
        b.parts = { count: slot.parts.count, per: (perElems * elemBytes(slot)) / 4 };
        const bytes = shape.reduce((x, y) => x * y, 1) * elemBytes(slot);
        splits.push(`${slot.weight} (${bytes} bytes ${heldAs(slot)}) is split into ${slot.parts.count} bindings of at most maxStorageBufferBindingSize = ${maxBinding} bytes`);
        for (let p = 0; p < slot.parts.count; p++) bindings.push({ slot: g.slots[j]!, part: p, write: false });
      });
      if (bindings.length > profile.maxStorageBuffersPerShaderStage) {
        // (The routed experts reading gathered fp8 codes bind their scale grid too: one more.)
        const scaledGather = step.ops.some(gathersScaledCodes);
        const hint = scaledGather ? "; the experts here read gathered fp8 codes and their scales (--fp8-gather before): --fp8-gather after, or a profile with more (--target-profile adapter)" : "";
        throw new LingcError(`${where} needs ${bindings.length} storage buffers${splits.length ? ` because ${splits.join("; ")}` : ""}, over maxStorageBuffersPerShaderStage = ${profile.maxStorageBuffersPerShaderStage} (profile ${profile.name})${hint}`);
      }
      return {
        name: step.kernel?.name ?? step.op.opName,
        wgsl: renderWgsl(g.kernel),
        workgroupSize: g.kernel.wg,
        bindings,
        uniforms: g.uniforms.map((u) => ({ name: u.name, dim: dimTerms(u.dim) })),
        grid: { dim: dimTerms(g.grid.dim), per: g.grid.per },
        ...(g.then ? { then: render({ ...g.then, scratch: g.then.scratch ?? g.scratch }) } : {}),
      };
    };
    const kernel: ArtifactKernel = { ...launch(`k${n}_${kind}`), label, fusion: kind };
    // Few rows: the host launches another template's kernel (the tiled experts' pointwise form).
    const few = fewRowsTemplate(step, limits);
    if (few) kernel.few = { dim: dimTerms(few.rows), max: few.max, launch: launch(`k${n}_${kind}_few`, few.template) };
    return kernel;
  });

  // Kernels that only transform weights (quantize at load) run once, when the graph is loaded.
  const fixed = new Set(slots.filter((sl) => sl.source === "weight" || sl.source === "constant").map((sl) => sl.id));
  const constant = (t: DimTerms) => t.every(([, syms]) => syms.length === 0);
  for (const k of kernels) {
    const st = (id: number) => storageSlot(s, id);
    const reads = k.bindings.filter((b) => !b.write).map((b) => st(b.slot));
    const writes = k.bindings.filter((b) => b.write).map((b) => st(b.slot));
    const sized = constant(k.grid.dim) && k.uniforms.every((u) => constant(u.dim)) && writes.every((w) => slots[w]!.shape.every(constant));
    if (sized && writes.length && reads.every((r) => fixed.has(r)) && writes.every((w) => slots[w]!.source === "computed")) {
      k.atLoad = true;
      for (const w of writes) fixed.add(w);
    }
  }

  const symbols: WgslArtifact["symbols"] = [];
  for (const inp of s.inputs) {
    s.slots[inp.slot]!.type.shape.forEach((d, axis) => {
      if (d.symbol && !symbols.some((x) => x.name === d.symbol)) symbols.push({ name: d.symbol, input: inp.name, axis });
    });
  }
  const concrete = (terms: DimTerms[]) => terms.map((t) => (t.length === 0 ? 0 : t[0]![0])).reduce((a, b) => a * b, 1);
  // Scale grids of fp8 weights are weight slots of their own (f32).
  const weightBytes = slots.filter((sl) => sl.source === "weight").reduce((sum, sl) => sum + concrete(sl.shape) * elemBytes(sl), 0);
  return {
    format: "lingc-wgsl-1",
    weightBytes,
    model: m.attrs["model"] ?? "",
    graph: m.name,
    signature: signatureOf(m),
    profile: profile.name,
    requiredLimits: requiredLimits(profile),
    symbols,
    inputs: s.inputs,
    outputs: s.outputs,
    slots,
    kernels,
  };
}
