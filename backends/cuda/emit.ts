/**
 * The CUDA emitter: the kernel plan of the forward and decode graphs as a self-contained CUDA C++
 * source folder. Dense matmuls (`linear`) become calls of the runtime's linear (cuBLASLt, or its GEMV
 * for one row); grouped expert matmuls, the SwiGLU experts, attention, moe_dispatch and lone float
 * casts and concats call the runtime's routines (runtime/), which pick their kernel by run-time
 * sizes; every other kernel of the plan is generated from kir. Steps that read only weights (such as the router weight's cast to fp32) run
 * once at load. The host code per graph is straight-line C++ with the graph's symbols (B, S, P)
 * as variables, so the generated file reads like the schedule it is.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Dim } from "../../ir/dim";
import type { DType } from "../../ir/dtype";
import { LingcError, formatPos } from "../../ir/errors";
import type { Module, Value } from "../../ir/module";
import { product } from "../../ir/dim";
import { countParams } from "../../compiler/analysis/params";
import { parsePassList, runPasses } from "../../compiler/passes/manager";
import type { LingConfig } from "../../models/config";
import { buildLing2, type GraphKind } from "../../models/ling2";
import { buildSchedule, storageSlot, type Schedule, type Step } from "../schedule";
import { generateStep, stepKind } from "../kernels/gen";
import type { BufferElem, Kernel } from "../kernels/kir";
import { literal, renderCuda } from "./render";

const HERE = dirname(fileURLToPath(import.meta.url));

/** Where the runtime sources are: beside this file in the repo, or under dist/ in the bundle. */
function runtimeDir(): string {
  for (const d of [join(HERE, "runtime"), join(HERE, "../backends/cuda/runtime")]) {
    try {
      readFileSync(join(d, "lingc_runtime.h"));
      return d;
    } catch {
      /* try the next */
    }
  }
  throw new LingcError("the CUDA runtime sources (backends/cuda/runtime) are missing from this installation");
}

/** The runtime: lingc_runtime.cu includes the .cuh parts (one translation unit). */
const RUNTIME_PARTS = ["lingc_device.cuh", "lingc_experts.cuh", "lingc_attention.cuh", "lingc_misc.cuh", "lingc_selftest.cuh"];
export const RUNTIME_FILES = ["lingc_blas.h", "lingc_runtime.h", "lingc_runtime.cu", ...RUNTIME_PARTS];

/** Storage on the GPU: bf16 stays bf16 (half the bytes), f16 is widened to f32, ints are i32. */
export function cudaStorage(dt: DType): BufferElem {
  if (dt === "bf16") return "bf16";
  if (dt === "i32" || dt === "i64" || dt === "bool" || dt === "u8") return "i32";
  return "f32";
}

const DTYPE_CODE: Record<BufferElem, number> = { f32: 0, bf16: 1, i32: 2 };
/** Float dtypes the runtime's cast takes. */
const RUNTIME_FLOATS = new Set<DType>(["f32", "bf16"]);
const SOURCE_CODE = { input: 0, weight: 1, constant: 2, computed: 3, alias: 4 } as const;

export const CUDA_PIPELINE = "cse,dce,fusion";

export function fusedForCuda(config: LingConfig, graph: GraphKind, noFuse: readonly string[] = []): Module {
  const m = buildLing2(config, graph);
  runPasses(m, parsePassList(CUDA_PIPELINE), { context: { disabledFusions: new Set(noFuse), libraryMatmuls: true, maxWorkgroupBytes: 48 * 1024 } });
  return m;
}

function cppString(s: string): string {
  return JSON.stringify(s);
}

/** Kernel sources by text, so identical kernels (the same kernel of every layer) are emitted once. */
class KernelLibrary {
  readonly sources: string[] = [];
  private readonly byBody = new Map<string, string>();

  add(kernel: Kernel, base: string): string {
    const body = renderCuda({ ...kernel, name: "KERNEL" });
    let name = this.byBody.get(body);
    if (!name) {
      name = `${base}_${this.byBody.size}`;
      this.byBody.set(body, name);
      this.sources.push(body.replace("KERNEL(", `${name}(`));
    }
    return name;
  }
}

class GraphEmitter {
  readonly prepare: string[] = [];
  readonly body: string[] = [];
  readonly labels: string[] = [];
  readonly symbols: string[];
  readonly resident = new Set<number>();

  constructor(
    readonly s: Schedule,
    readonly graph: string,
    readonly library: KernelLibrary,
  ) {
    const syms: string[] = [];
    for (const inp of s.inputs) for (const d of s.slots[inp.slot]!.type.shape) for (const sym of d.symbols()) if (!syms.includes(sym)) syms.push(sym);
    this.symbols = syms;
  }

  /** A C++ expression for a dim in the entry symbols. */
  dim(d: Dim): string {
    if (d.isConst()) return `${d.value}L`;
    return `(${d.terms.map((t) => [t.coef === 1 && t.syms.length ? "" : `${t.coef}L`, ...t.syms].filter(Boolean).join("*")).join(" + ")})`;
  }

  stepDim(step: Step, d: Dim): string {
    return this.dim(d.substitute(step.subst));
  }

  slot(step: Step, v: Value): number {
    const id = step.reads.get(v) ?? step.writes.get(v);
    if (id === undefined) throw new LingcError(`CUDA emitter: value ${v.name ?? "?"} is not in step ${step.kernel?.name ?? step.op.opName}`);
    return storageSlot(this.s, id);
  }

  /**
   * Steps that read only weights and constants and whose results have fixed shapes (no symbol: an
   * iota over the sequence is not one of them): they run once at load, and their results are kept.
   */
  loadTime(step: Step): boolean {
    const fixed = [...step.writes.values()].every((id) => this.s.slots[id]!.type.shape.every((d) => d.isConst()));
    const symbolicAttrs = step.ops.some((o) => Object.values(o.attrs).some((a) => a instanceof Dim && !a.isConst()));
    if (!fixed || symbolicAttrs) return false;
    return [...step.reads.values()].every((id) => {
      const src = this.s.slots[storageSlot(this.s, id)]!;
      return src.source === "weight" || src.source === "constant" || this.resident.has(src.id);
    });
  }

  emit(): void {
    this.s.steps.forEach((step, n) => {
      const kind = stepKind(step);
      const label = `${step.scope || this.graph}: ${step.kernel?.name ?? step.op.opName}${step.op.loc ? ` (${formatPos(step.op.loc)})` : ""}`;
      const out = this.loadTime(step) ? this.prepare : this.body;
      if (out === this.prepare) for (const id of step.writes.values()) this.resident.add(storageSlot(this.s, id));
      const idx = this.labels.length;
      this.labels.push(label);
      out.push(`  // [${idx}] ${label}`);
      out.push(`  c.mark(${idx});`);
      out.push(...this.lower(step, kind, n).map((l) => `  ${l}`));
    });
  }

  lower(step: Step, kind: string, n: number): string[] {
    const op = step.op;
    const D = (d: Dim) => this.stepDim(step, d);
    const slot = (v: Value) => this.slot(step, v);
    if (!step.kernel && op.opName === "linear") {
      const [x, w] = op.operands as [Value, Value];
      const r = op.results[0]!;
      return [`c.linear(${slot(x)}, ${slot(w)}, ${slot(r)}, ${D(product(x.type.shape.slice(0, -1)))}, ${w.type.shape[0]!.value}L, ${w.type.shape[1]!.value}L);`];
    }
    if (!step.kernel && op.opName === "grouped_linear") {
      const [x, w, off] = op.operands as [Value, Value, Value];
      const [E, O, I] = w.type.shape.map((d) => d.value!) as [number, number, number];
      return [`c.expert_linear(${slot(x)}, -1, 1, ${slot(w)}, -1, ${slot(off)}, ${slot(op.results[0]!)}, ${D(x.type.shape[0]!)}, ${E}L, ${O}L, ${I}L);`];
    }
    if (kind === "swiglu" && step.ops.some((o) => o.opName === "grouped_linear")) {
      const gl = step.ops.filter((o) => o.opName === "grouped_linear");
      const perm = step.ops.find((o) => o.opName === "moe_permute");
      const mul = step.ops[step.ops.length - 1]!;
      const silu = step.ops.find((o) => o.opName === "silu")!;
      const gate = gl.find((o) => o.results[0] === silu.operands[0])!;
      const up = gl.find((o) => o !== gate)!;
      const [E, O, I] = gate.operands[1]!.type.shape.map((d) => d.value!) as [number, number, number];
      const x = perm ? perm.operands[0]! : gate.operands[0]!;
      const order = perm ? slot(perm.operands[1]!) : -1;
      const k = perm ? ((perm.attrs as Record<string, number>)["k"] ?? 1) : 1;
      const rows = gate.operands[0]!.type.shape[0]!;
      return [`c.expert_linear(${slot(x)}, ${order}, ${k}, ${slot(gate.operands[1]!)}, ${slot(up.operands[1]!)}, ${slot(gate.operands[2]!)}, ${slot(mul.results[0]!)}, ${D(rows)}, ${E}L, ${O}L, ${I}L);`];
    }
    if (!step.kernel && op.opName === "moe_dispatch") {
      const [order, offsets, rowOf] = op.results as [Value, Value, Value];
      const E = (op.attrs as Record<string, number>)["num_experts"]!;
      return [`c.moe_dispatch(${slot(op.operands[0]!)}, ${slot(order)}, ${slot(offsets)}, ${slot(rowOf)}, ${D(order.type.shape[0]!)}, ${E}L);`];
    }
    // A lone float cast or concat is a copy: the runtime's are vectorized (16-byte accesses), the
    // generated kernel goes element by element through index arithmetic (logits to f32 at prefill,
    // the KV cache at every decode step).
    if (step.ops.length === 1 && op.opName === "cast" && RUNTIME_FLOATS.has(op.operands[0]!.type.dtype) && RUNTIME_FLOATS.has(op.results[0]!.type.dtype)) {
      return [`c.cast(${slot(op.operands[0]!)}, ${slot(op.results[0]!)}, ${D(product(op.results[0]!.type.shape))});`];
    }
    if (step.ops.length === 1 && op.opName === "concat" && op.operands.length <= 4) {
      const r = op.results[0]!;
      const axis = (((op.attrs as Record<string, number>)["axis"] ?? 0) + r.type.rank) % r.type.rank;
      const srcs = op.operands.map((v) => slot(v)).join(", ");
      const cols = op.operands.map((v) => D(product(v.type.shape.slice(axis)))).join(", ");
      return [`{ const int s_[] = {${srcs}}; const long c_[] = {${cols}}; c.concat(${slot(r)}, ${D(product(r.type.shape.slice(0, axis)))}, ${op.operands.length}, s_, c_); }`];
    }
    if (kind === "attention") {
      const att = step.ops.find((o) => o.opName === "attention")!;
      const [q, k, v] = att.operands as [Value, Value, Value];
      const last = step.ops[step.ops.length - 1]!.results[0]!;
      const a = att.attrs as Record<string, unknown>;
      const [B, nh, S, d] = q.type.shape;
      const transposed = step.ops.some((o) => o.opName === "transpose");
      return [
        `c.attention(${slot(q)}, ${slot(k)}, ${slot(v)}, ${slot(last)}, ${D(B!)}, ${nh!.value}L, ${k.type.shape[1]!.value}L, ${D(S!)}, ${D(k.type.shape[2]!)}, ${d!.value}L, ${v.type.shape[3]!.value}L, ${a["scale"]}f, ${a["causal"] ? "true" : "false"}, ${transposed ? "true" : "false"});`,
      ];
    }
    const g = generateStep(step, this.s, { maxThreads: 1024, maxWorkgroupBytes: 48 * 1024, storage: cudaStorage }, `k${n}`);
    const name = this.library.add(g.kernel, `k_${kind}`);
    const args = [
      ...g.kernel.buffers.map((b, j) => `(${b.write ? "" : "const "}${b.elem === "bf16" ? "__nv_bfloat16" : b.elem === "i32" ? "int" : "float"}*)c.ptr(${g.slots[j]})`),
      ...g.uniforms.map((u) => `(int)${this.dim(u.dim)}`),
    ];
    return [`{ const long n_ = ${this.dim(g.grid.dim)}; if (n_ > 0) { c.launch(${name}, lingc::grid((n_ + ${g.grid.per - 1}) / ${g.grid.per}), ${g.kernel.wg}, ${args.join(", ")}); c.launched(${cppString(name)}); } }`];
  }

  tables(): string {
    const s = this.s;
    const G = this.graph;
    const lines: string[] = [];
    const slotMeta = s.slots.map((sl) => {
      const storage = storageSlot(s, sl.id);
      return `  {${cppString(sl.name ?? "")}, ${cppString(sl.weight ?? "")}, ${DTYPE_CODE[cudaStorage(sl.type.dtype)]}, ${SOURCE_CODE[sl.source]}, ${sl.source === "alias" ? storage : -1}, ${sl.type.rank}, ${this.resident.has(sl.id) ? 1 : 0}}`;
    });
    lines.push(`static const lingc::SlotMeta ${G}_slots[] = {\n${slotMeta.join(",\n")}\n};`);
    lines.push(`static void ${G}_shape(int slot, const long* sym, long* out) {`);
    this.symbols.forEach((x, i) => lines.push(`  [[maybe_unused]] const long ${x} = sym[${i}];`));
    lines.push(`  switch (slot) {`);
    for (const sl of s.slots) lines.push(`    case ${sl.id}: ${sl.type.shape.map((d, i) => `out[${i}] = ${this.dim(d)};`).join(" ")} return;`);
    lines.push(`    default: return;`, `  }`, `}`);
    const consts = s.slots.filter((sl) => sl.source === "constant");
    for (const c of consts) {
      const vals = (c.constant!.attrs as Record<string, number[]>)["values"]!;
      lines.push(`static const float ${G}_const_${c.id}[] = {${vals.map((v) => literal(v, "f32")).join(", ")}};`);
    }
    lines.push(`static const lingc::ConstDef ${G}_consts[] = {${consts.map((c) => `{${c.id}, ${G}_const_${c.id}, ${(c.constant!.attrs as Record<string, number[]>)["values"]!.length}}`).join(", ") || "{-1, nullptr, 0}"}};`);
    lines.push(`static const lingc::IoDef ${G}_inputs[] = {${s.inputs.map((x) => `{${cppString(x.name)}, ${x.slot}}`).join(", ")}};`);
    lines.push(`static const lingc::IoDef ${G}_outputs[] = {${s.outputs.map((x) => `{${cppString(x.name)}, ${storageSlot(s, x.slot)}}`).join(", ")}};`);
    const binds: string[] = [];
    this.symbols.forEach((sym, i) => {
      for (const inp of s.inputs) {
        const axis = s.slots[inp.slot]!.type.shape.findIndex((d) => d.symbol === sym);
        if (axis >= 0) {
          binds.push(`{${i}, ${cppString(inp.name)}, ${axis}}`);
          return;
        }
      }
      throw new LingcError(`CUDA emitter: symbol ${sym} is not the size of any input axis`);
    });
    lines.push(`static const lingc::SymBind ${G}_binds[] = {${binds.join(", ")}};`);
    lines.push(`static const char* const ${G}_labels[] = {${this.labels.map(cppString).join(", ")}};`);
    const fn = (name: string, body: string[]) => [
      `static void ${G}_${name}(lingc::Ctx& c) {`,
      ...this.symbols.map((x, i) => `  [[maybe_unused]] const long ${x} = c.sym[${i}];`),
      ...body,
      `}`,
    ];
    lines.push(...fn("prepare", this.prepare), ...fn("run", this.body));
    lines.push(
      `extern const lingc::GraphDef GRAPH_${G} = {${cppString(G)}, ${s.slots.length}, ${G}_slots, ${G}_shape, ${consts.length}, ${G}_consts, ${s.inputs.length}, ${G}_inputs, ${s.outputs.length}, ${G}_outputs, ${this.symbols.length}, ${G}_binds, ${this.labels.length}, ${G}_labels, ${G}_prepare, ${G}_run};`,
    );
    return lines.join("\n");
  }
}

export interface CudaSources {
  /** File name -> contents. */
  files: Record<string, string>;
}

export function emitCuda(config: LingConfig, noFuse: readonly string[] = []): CudaSources {
  const parts: string[] = [];
  const library = new KernelLibrary();
  for (const graph of ["forward", "decode"] as const) {
    const e = new GraphEmitter(buildSchedule(fusedForCuda(config, graph, noFuse)), graph, library);
    e.emit();
    parts.push(e.tables());
  }
  const kernels = library.sources;
  // Weight bytes one batch-1 decode step must read (the benchmark's bandwidth share): the active
  // parameters, less all but one row of an untied embedding table. Counted on the unfused graph:
  // after fusion a grouped_linear sits in a kernel function apart from its moe_dispatch, which is
  // where countParams reads K from.
  const counts = countParams(buildLing2(config, "decode"));
  const embeddingRows = config.tieWordEmbeddings ? 0 : (config.vocabSize - 1) * config.hiddenSize;
  const decodeWeightBytes = (counts.active + counts.mtpActive - embeddingRows) * (cudaStorage(config.dtype) === "bf16" ? 2 : 4);
  const header = [
    `// Generated by lingc for ${config.name}: the forward and decode graphs' kernel plans.`,
    `// Build: make (nvcc -arch=sm_90a). Run: ./lingc_model --help`,
    `#include "lingc_runtime.h"`,
    ``,
    `extern const lingc::ModelDef MODEL = {${cppString(config.name)}, ${config.vocabSize}, ${config.numLayers}, ${config.numKvHeads}, ${config.headDim}, ${config.numMtpLayers}, ${cudaStorage(config.dtype) === "bf16" ? 1 : 0}, ${decodeWeightBytes}};`,
    ``,
  ];
  const model = [...header, ...kernels, ...parts].join("\n") + "\n";
  const rt = runtimeDir();
  const files: Record<string, string> = { "model.cu": model, Makefile: MAKEFILE };
  for (const f of RUNTIME_FILES) files[f] = readFileSync(join(rt, f), "utf8");
  return { files };
}

export const NVCC_FLAGS = "-arch=sm_90a -O3 -std=c++17 --expt-relaxed-constexpr";
/** What CI checks the emitted sources with: no warning of any kind. */
export const NVCC_STRICT_FLAGS = `${NVCC_FLAGS} -Werror all-warnings`;

const MAKEFILE = `# Builds the lingc model runner with nvcc and nothing else.
NVCC ?= nvcc
NVCCFLAGS ?= ${NVCC_FLAGS}
# cuBLASLt: the CUDA toolkit's, or else the nvidia-cublas Python package's (as on machines with PyTorch).
CUBLAS_HOME ?= $(shell python3 -c "import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))" 2>/dev/null)
CUBLASLT ?= $(firstword $(wildcard $(CUBLAS_HOME)/lib/libcublasLt.so) $(wildcard $(CUBLAS_HOME)/lib/libcublasLt.so.*))
ifneq ($(CUBLASLT),)
  NVCCFLAGS += -I$(CUBLAS_HOME)/include
  LIBS = $(CUBLASLT) -Xlinker -rpath=$(CUBLAS_HOME)/lib
else
  LIBS = -lcublasLt
endif

lingc_model: model.o lingc_runtime.o
\t$(NVCC) $(NVCCFLAGS) -o $@ $^ $(LIBS)

model.o: model.cu lingc_runtime.h lingc_blas.h
\t$(NVCC) $(NVCCFLAGS) -c -o $@ model.cu

lingc_runtime.o: lingc_runtime.cu lingc_runtime.h lingc_blas.h ${RUNTIME_PARTS.join(" ")}
\t$(NVCC) $(NVCCFLAGS) -c -o $@ lingc_runtime.cu

clean:
\trm -f lingc_model *.o
`;
