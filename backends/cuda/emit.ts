/**
 * The CUDA emitter: a program's graphs (modules the cuda pipeline produced) as a self-contained
 * CUDA C++ source folder. The host code stays folded: each function that is not a kernel (the entry
 * and each layer function) becomes one C++ function with its own slot table and symbols, and a
 * layer call is a call of that function for the layer's frame (frames.ts; the runtime lays the
 * frames' slots side by side when it loads a graph). Dense matmuls (`linear`) become calls of the
 * runtime's linear (cuBLASLt, or its GEMV for one row); grouped expert matmuls, the SwiGLU experts,
 * attention, moe_dispatch, cache appends (in place, into a graph input with room) and lone float
 * casts and concats call the runtime's routines (runtime/);
 * every other kernel of the plan is generated from kir, and identical kernels are emitted once.
 * Steps that read only weights (such as the router weight's cast to fp32) run once at load. Where
 * GenLimits.pairLaunches holds, two independent steps near each other may share one launch (launch-pairs.ts).
 */
import { Dim, product } from "../../ir/dim";
import { LingcError, formatPos } from "../../ir/errors";
import { cachePairs, generationRole, tokensInput, type CachePair, type GenerationRole } from "../../ir/generation";
import type { Module, Value } from "../../ir/module";
import { attrsOf, OPS } from "../../ir/ops";
import { isStaged, splitStages } from "../../ir/stages";
import { weightBytesPerToken } from "../../ir/params";
import type { CudaProfile } from "../../ir/target";
import type { Program } from "../backend";
import { buildFrames, type FrameSchedule } from "../frames";
import { predictPeak, storageLifetimes, type Lifetimes } from "../frames-memory";
import { capacitySlotOf, scaleSlotOfValue, storageSlot, type Step } from "../schedule";
import { markKMajorScales, refuseScaleDtypes } from "./scale-layout";
import { generateStep, referenceTemplate, TILE_TEMPLATES, type GeneratedKernel, type GenLimits } from "../kernels/gen";
import { cudaGenLimits, cudaStorage } from "./gen-limits";
import { Library } from "./emitted-once";
import { COUNTERS_SLOT, GRID_SYNC_SLOT, SCRATCH_SLOT } from "../kernels/gen/context";
import type { BufferElem } from "../kernels/kir";
import { memberKernel, pairFlag } from "./launch-pairs";
import { prologueFlag } from "./quant-prologue";
import { epilogueFlag, type QuantEpilogue } from "./quant-epilogue";
import { stepMerges } from "./step-merges";
import { dynamicSharedBytes, literal } from "./render";
import { libraryCall, stepDispatch } from "./library";
import { LAUNCHER, makefile, runtimeSources } from "./build-files";

const DTYPE_CODE: Record<BufferElem, number> = { f32: 0, bf16: 1, i32: 2, f8e4m3: 3 };
const CPP_ELEM: Record<BufferElem, string> = { f32: "float", bf16: "__nv_bfloat16", i32: "int", f8e4m3: "__nv_fp8_e4m3" };
const SOURCE_CODE = { input: 0, weight: 1, constant: 2, computed: 3, alias: 4, param: 5, call: 6 } as const;

/** The FP8 the CUDA kernels take: e4m3 with block scales (an e5m2 tensor is refused naming the op). */
function refuseUnsupportedFp8(m: Module): void {
  for (const f of m.functions) {
    for (const op of f.body) {
      const t = [...op.operands, ...op.results].find((v) => v.type.dtype === "f8e5m2");
      if (t) throw new LingcError(`CUDA: op '${op.opName}' in @${f.name}${op.loc ? ` at ${formatPos(op.loc)}` : ""} works on ${t.type}; the CUDA kernels take e4m3 only`);
    }
  }
}

/** The CUDA profile a program was compiled for. */
export function cudaProfile(program: Program): CudaProfile {
  const p = program.profile;
  if (p?.kind !== "cuda") throw new LingcError(`the cuda backend needs a program compiled for a CUDA profile (got ${p ? p.name : "none"})`);
  return p;
}

function cppString(s: string): string {
  return JSON.stringify(s);
}

function cppIdent(s: string): string {
  return s.replace(/[^A-Za-z0-9_]/g, "_");
}

/** A C++ expression for a dim, in the symbols that are variables where it is used. */
export function cppDim(d: Dim): string {
  if (d.isConst()) return `${d.value}L`;
  return `(${d.terms.map((t) => [t.coef === 1 && t.syms.length ? "" : `${t.coef}L`, ...t.syms].filter(Boolean).join("*")).join(" + ")})`;
}

/** One function of a graph as C++: its slot table, shape function, prepare and run functions, call sites. */
class FuncEmitter {
  readonly prepare: string[] = [];
  readonly body: string[] = [];
  readonly labels: string[] = [];
  readonly resident = new Set<number>();
  /** What each step allocates and frees (set by emit). */
  lifetimes: Lifetimes | undefined;
  /** Steps whose tile program the program's selftest checks against a reference form (referenceCheck). */
  checks = 0;
  /** The label of the step being lowered. */
  private label = "";
  /** What the kernel generators may use on this GPU (made once per function, not per kernel). */
  private readonly limits: GenLimits;

  constructor(
    readonly fr: FrameSchedule,
    /** C++ name of the function (unique in the program). */
    readonly cname: string,
    readonly funcNames: ReadonlyMap<string, string>,
    readonly library: Library,
    readonly profile: CudaProfile,
    /** The graph's functions by name, and the load-time storage of those emitted so far (callees first). */
    readonly frames: ReadonlyMap<string, FrameSchedule>,
    readonly residents: Map<string, ReadonlySet<number>>,
  ) {
    this.limits = cudaGenLimits(profile);
  }

  /** The global slot (as C++) of a value of a step. */
  slot(step: Step, v: Value): string {
    const id = step.reads.get(v) ?? step.writes.get(v);
    if (id === undefined) throw new LingcError(`CUDA emitter: value ${v.name ?? "?"} is not in step ${step.kernel?.name ?? step.op.opName}`);
    return `b + ${storageSlot(this.fr, id)}`;
  }

  /**
   * Steps that read only weights and constants and whose results have fixed shapes (no symbol: an
   * iota over the sequence is not one of them): they run once at load, and their results are kept.
   */
  loadTime(step: Step): boolean {
    const fixed = [...step.writes.values()].every((id) => this.fr.slots[id]!.type.shape.every((d) => d.isConst()));
    const symbolicAttrs = step.ops.some((o) => Object.values(o.attrs).some((a) => a instanceof Dim && !a.isConst()));
    if (!fixed || symbolicAttrs) return false;
    return [...step.reads.values()].every((id) => {
      const src = this.fr.slots[storageSlot(this.fr, id)]!;
      return src.source === "weight" || src.source === "constant" || this.resident.has(src.id);
    });
  }

  emit(): void {
    const blocks: string[][] = this.fr.steps.map(() => []);
    const { pairs, firstOf, prologues, prologueOf, epilogues, epilogueOf, pairWhen, acquiredAt } = stepMerges(this.fr, this.limits, this.profile, (st) => this.loadTime(st), cppDim);
    this.fr.steps.forEach((s, n) => {
      if (s.call !== undefined) {
        this.prepare.push(`  c.prepare_call(fr, ${s.call});`);
        blocks[n]!.push(`  c.call(fr, ${s.call});`);
        return;
      }
      const step = s.step!;
      const label = `${step.scope || this.fr.func.name}: ${step.kernel?.name ?? step.op.opName}${step.op.loc ? ` (${formatPos(step.op.loc)})` : ""}`;
      const out = this.loadTime(step) ? this.prepare : blocks[n]!;
      if (out === this.prepare) {
        for (const id of step.writes.values()) {
          const st = storageSlot(this.fr, id);
          this.resident.add(st);
          // A weight quantized at load keeps its scale grid too.
          const scales = this.fr.slots[st]!.scales;
          if (scales !== undefined) this.resident.add(scales);
        }
      }
      const idx = this.labels.length;
      this.labels.push(label);
      out.push(`  // [${idx}] ${label}`);
      out.push(`  c.mark(fr.label + ${idx});`);
      this.label = label;
      const first = pairs.get(n);
      const second = firstOf.has(n) ? pairs.get(firstOf.get(n)!) : undefined;
      const quant = prologueOf.get(n);
      const gemv = prologues.get(n);
      const tiles = epilogues.get(n);
      const quantAfter = epilogueOf.get(n);
      // A pair's flag first (a quantize epilogue's may name it).
      if (first) out.push(`  const bool ${pairFlag(n)} = (${first.when});`);
      // Where the sizes choose the program (and no pair runs the quantize or the producer), it quantizes its results itself: the quantize step does not run.
      const quantPair = tiles && pairWhen(tiles.quant);
      const producerPair = !tiles ? undefined : first ? pairFlag(n) : firstOf.has(n) ? pairFlag(firstOf.get(n)!) : undefined;
      const apart = [...new Set([quantPair, producerPair].filter((p): p is string => p !== undefined))];
      if (tiles) out.push(`  const bool ${epilogueFlag(n)} = (${tiles.when})${apart.map((p) => ` && !(${p})`).join("")};`);
      /** The step on its own (outside a launch pair or prologue): with a quantize epilogue, under its flag. */
      const own = (): string[] => {
        if (tiles) return [`if (${epilogueFlag(n)}) { ${this.epilogueLaunches(step, tiles)} }`, `else {`, ...this.lower(step, n).map((l) => `  ${l}`), `}`];
        if (quantAfter) return [`if (!${epilogueFlag(quantAfter.producer)}) {`, ...this.lower(step, n).map((l) => `  ${l}`), `}`];
        return this.lower(step, n);
      };
      if (quant) {
        // Where the sizes choose the GEMV, it quantizes its rows itself: this step does not run.
        const flag = prologueFlag(quant.consumer);
        out.push(`  const bool ${flag} = (${quant.when});`, `  if (!${flag}) {`, ...own().map((l) => `    ${l}`), `  }`);
      } else if (gemv) {
        out.push(`  if (${prologueFlag(n)}) { ${this.launches(step, gemv.merged, "_q")} }`, `  else {`, ...own().map((l) => `    ${l}`), `  }`);
      } else if (first) {
        // The pair's one launch where both steps take their generated kernels; else this step as usual.
        const flag = pairFlag(n);
        const check = this.referenceCheck(step, n, first.a, false);
        out.push(`  if (${flag}) { ${this.launches(step, first.merged, first.merged.grid.resident ? "_phases" : "_pair")}${check ? ` ${check}` : ""} }`, `  else {`);
        out.push(...own().map((l) => `    ${l}`), `  }`);
      } else if (second) {
        const flag = pairFlag(firstOf.get(n)!);
        const check = this.referenceCheck(step, n, memberKernel(second, n), false);
        if (check) out.push(`  if (${flag}) { ${check} }`);
        out.push(`  if (!${flag}) {`, ...own().map((l) => `    ${l}`), `  }`);
      } else out.push(...own().map((l) => `  ${l}`));
    });
    // Storage this function owns lives from the step that first writes it to the one that last
    // uses it (the runtime allocates and frees it there when it runs a graph without capture).
    this.residents.set(this.fr.func.name, this.resident);
    // A GEMV running a quantize as its prologue reads the quantize's input: it lives until the GEMV.
    const prologueReads = new Map([...prologues.values()].map((p) => [p.consumer, [...this.fr.steps[p.quant]!.step!.reads.values()]]));
    const life = storageLifetimes(this.fr, this.frames, this.residents, prologueReads);
    this.lifetimes = life;
    blocks.forEach((lines, n) => {
      // A pair's later steps' storage (its second's, its tails'), and a quantize epilogue's, is taken before the merged launch that writes it.
      for (const k of acquiredAt(n)) for (const st of life.acquire[k]!) this.body.push(`  c.acquire(b + ${st});`);
      this.body.push(...lines);
      for (const st of life.release[n]!) this.body.push(`  c.release(b + ${st});`);
    });
  }

  /** The global slot (as C++) of a scaled value's scale grid. */
  scales(step: Step, v: Value): string {
    const scales = scaleSlotOfValue(this.fr, step, v);
    if (scales === undefined) throw new LingcError(`CUDA emitter: value ${v.name ?? "?"} (${v.type}) of step ${step.kernel?.name ?? step.op.opName} has no scale grid`);
    return `b + ${scales}`;
  }

  lower(step: Step, n: number): string[] {
    const lib = stepDispatch(step, this.profile);
    if (lib) {
      // An f16 result is held in f32 (cudaStorage): the library (cuBLASLt, the runtime's kernels)
      // writes it unrounded, so it is rounded after, as the generated kernels round what they store.
      const rounds = [...step.writes.keys()]
        .filter((v) => v.type.dtype === "f16" && !v.type.quant)
        .map((v) => `c.round_f16(${this.slot(step, v)}, ${cppDim(product(v.type.shape).substitute(step.subst))});`);
      return [...libraryCall(lib.kind, lib.dispatch, step, {
        slot: (v) => this.slot(step, v),
        scales: (v) => this.scales(step, v),
        scalesKMajor: (v) => this.fr.slots[scaleSlotOfValue(this.fr, step, v) ?? -1]?.kMajor === true,
        dim: (d) => cppDim(d.substitute(step.subst)),
        hostDim: cppDim,
        generated: (template) => this.generated(step, n, template),
      }), ...rounds];
    }
    return [this.generated(step, n)];
  }

  /**
   * The step as a generated kernel and its launch; a split computation's second kernel
   * (GeneratedKernel.then) launches right after it, both binding the step's scratch (taken
   * stream-ordered for the step and given back after it).
   */
  generated(step: Step, n: number, template?: string): string {
    const g = generateStep(step, this.fr, this.limits, `k${n}`, template);
    const run = this.launches(step, g, "");
    const check = this.referenceCheck(step, n, g);
    // One statement either way: a dispatch's branch (`if (...) <this> else if ...`) holds it.
    return check ? `{ ${run} ${check} }` : run;
  }

  /** A quantize epilogue's launches under its flag: its one program, or the one the sizes choose (the last where no other's do). */
  private epilogueLaunches(step: Step, e: QuantEpilogue): string {
    const run = (c: QuantEpilogue["choices"][number]) => this.launches(step, c.merged, "_q");
    const last = e.choices[e.choices.length - 1]!;
    if (e.choices.length === 1) return run(last);
    const branches = e.choices.slice(0, -1).map((c, j) => `${j ? "else " : ""}if (${c.when}) { ${run(c)} }`);
    return [...branches, `else { ${run(last)} }`].join(" ");
  }

  /** A generated kernel's launch and its chain's (GeneratedKernel.then), with the step's scratch; `into` puts results in other buffers. */
  private launches(step: Step, g: GeneratedKernel, suffix: string, into?: ReadonlyMap<number, string>): string {
    const chain: GeneratedKernel[] = [];
    for (let k: GeneratedKernel | undefined = g; k; k = k.then) chain.push(k);
    const bytes = Math.max(0, ...chain.map((k) => (k.scratch ?? 0) * 4));
    const launches = chain.map((k, j) => this.launch(step, k, suffix + (j === 0 ? "" : "_then"), into));
    if (!bytes) return launches.join(" ");
    return `{ float* scratch_ = (float*)c.scratch_acquire(${bytes}); ${launches.join(" ")} c.scratch_release(scratch_); }`;
  }

  /**
   * A tile program's check, run by the program's `selftest` (the runtime's `c.checking()`; never
   * while a CUDA graph is captured): the op table's direct form of the same step (referenceTemplate)
   * computes its results again into buffers of their own, and the runtime compares the two (within
   * the result dtype's rounding, or the tile program's `accuracy` where the hardware's is coarser). Steps
   * that write in place (a cache grown, a result in an operand's storage) are not checked: the
   * reference would read what the tile program wrote.
   */
  private referenceCheck(step: Step, n: number, g: GeneratedKernel, counted = true): string {
    const tile = g.template;
    const reference = referenceTemplate(step, this.limits);
    if (!tile || !TILE_TEMPLATES.has(tile) || !reference) return "";
    const read = new Set([...step.reads.values()].map((id) => storageSlot(this.fr, id)));
    const outs = [...step.writes].map(([v, id]) => ({ v, id, st: storageSlot(this.fr, id) }));
    if (outs.some((o) => read.has(o.st) || this.fr.slots[o.id]!.grows || this.fr.slots[o.st]!.roomAxis !== undefined)) return "";
    // (A step checked on two paths, a launch pair's and its own, counts once.)
    if (counted) this.checks++;
    const into = new Map(outs.map((o, j) => [o.st, `r${j}_`]));
    const count = (v: Value) => cppDim(product(v.type.shape).substitute(step.subst));
    const what = cppString(`${this.label}: ${tile} against ${reference}`);
    const ref = this.launches(step, generateStep(step, this.fr, this.limits, `k${n}r`, reference), "_ref", into);
    return [
      `if (c.checking()) {`,
      ...outs.map((o, j) => `void* r${j}_ = c.check_begin(b + ${o.st}, ${count(o.v)});`),
      ref,
      ...outs.map((o, j) => `c.check_end(b + ${o.st}, r${j}_, ${count(o.v)}, ${what}, ${literal(g.accuracy ?? 0, "f32")});`),
      `}`,
    ].join(" ");
  }

  /** One generated kernel's launch (its source added to the program's library); `into` maps a storage slot to the buffer its results go to instead. */
  private launch(step: Step, g: GeneratedKernel, suffix: string, into?: ReadonlyMap<number, string>): string {
    const op = step.op;
    const name = this.library.kernel(g.kernel, `k_${step.kernel?.attrs["fusion"] ?? op.opName}${suffix}`);
    const pointer = (slot: number) => into?.get(slot) ?? `c.ptr(b + ${slot})`;
    const args = [
      ...g.kernel.buffers.map((b, j) => (g.slots[j] === SCRATCH_SLOT ? "scratch_" : g.slots[j] === COUNTERS_SLOT ? "c.counters()" : g.slots[j] === GRID_SYNC_SLOT ? "c.grid_sync()" : `(${b.write ? "" : "const "}${CPP_ELEM[b.elem]}*)${pointer(g.slots[j]!)}`)),
      ...g.uniforms.map((u) => `(int)${ceilText(u.dim, u.per ?? 1)}`),
    ];
    // A kernel with more shared memory than a static declaration may hold opts in at its launch.
    const smem = dynamicSharedBytes(g.kernel);
    // A kernel that writes into a cache grown in place (a fused append) takes the rows of the
    // cache's buffer (its capacity symbol, schedule.ts) as a size: the runtime's, from the binding;
    // so does one that reads a cache (attention over it): the buffer's rows, or the value's own
    // extent where it has no room.
    const capacities = new Set(g.uniforms.flatMap((u) => u.dim.symbols()).filter((x) => capacitySlotOf(x) !== undefined));
    const caps = [...capacities].map((x) => {
      const id = capacitySlotOf(x)!;
      const grown = [...step.writes.values()].map((w) => this.fr.slots[w]!).find((sl) => sl.grows && storageSlot(this.fr, sl.id) === id);
      if (grown) return `const long ${x} = c.room_for(b + ${id}, ${cppDim(grown.grows!.rows)}); `;
      const read = [...step.reads].find(([, sl]) => storageSlot(this.fr, sl) === id);
      const axis = this.fr.slots[id]!.roomAxis;
      if (!read || axis === undefined) throw new LingcError(`CUDA emitter: ${step.kernel?.name ?? op.opName} sizes by the buffer of a cache it neither grows nor reads (${x})`);
      return `const long ${x} = c.rows_of(b + ${id}, ${cppDim(read[0].type.shape[axis]!.substitute(step.subst))}); `;
    });
    // A kernel that must keep several blocks resident (kir minBlocks) asks for all the shared memory.
    const carve = g.kernel.minBlocks && smem ? `c.prefer_shared((const void*)${name}); ` : "";
    // A grid-synced kernel (phases) takes the workgroups its largest phase asks, no more than fit at once.
    const resident = g.grid.resident;
    const grid = resident ? `c.resident((const void*)${name}, n_, ${g.kernel.wg}, ${smem}, ${resident.perSm})` : `lingc::grid((n_ + ${g.grid.per - 1}) / ${g.grid.per})`;
    const launch = smem ? `${carve}c.launch_smem(${name}, ${grid}, ${g.kernel.wg}, ${smem}, ` : `c.launch(${name}, ${grid}, ${g.kernel.wg}, `;
    const units = resident
      ? resident.units.length > 1 ? `std::max<long>({${resident.units.map((p) => ceilText(p.dim, p.per)).join(", ")}})` : ceilText(resident.units[0]!.dim, resident.units[0]!.per)
      : g.grid.parts ? g.grid.parts.map((p) => ceilText(p.dim, p.per)).join(" + ") : cppDim(g.grid.dim);
    return `{ ${caps.join("")}const long n_ = ${units}; if (n_ > 0) { ${launch}${args.join(", ")}); c.launched(${cppString(name)}); } }`;
  }

  /** The symbols as C++ variables, read from the frame. */
  private symbolLines(): string[] {
    return this.fr.symbols.map((x, i) => `  [[maybe_unused]] const long ${x} = c.sym[fr.sym + ${i}];`);
  }

  tables(): string {
    const fr = this.fr;
    const F = this.cname;
    const lines: string[] = [];
    const slotMeta = fr.slots.map((sl) => {
      const storage = storageSlot(fr, sl.id);
      const ref = sl.source === "param" ? sl.param! : sl.source === "alias" ? storage : sl.source === "call" ? sl.call!.site : -1;
      const ref2 = sl.source === "call" ? sl.call!.result : -1;
      return `  {${cppString(sl.name ?? "")}, ${cppString(sl.weight ?? "")}, ${DTYPE_CODE[cudaStorage(sl.type.dtype)]}, ${SOURCE_CODE[sl.source]}, ${ref}, ${ref2}, ${sl.type.rank}, ${this.resident.has(sl.id) ? 1 : 0}, ${sl.grows?.axis ?? -1}}`;
    });
    lines.push(`static const lingc::LocalSlot ${F}_slots[] = {\n${slotMeta.join(",\n")}\n};`);
    lines.push(`static void ${F}_shape(int slot, const long* sym, long* out) {`);
    fr.symbols.forEach((x, i) => lines.push(`  [[maybe_unused]] const long ${x} = sym[${i}];`));
    lines.push(`  switch (slot) {`);
    for (const sl of fr.slots) lines.push(`    case ${sl.id}: ${sl.type.shape.map((d, i) => `out[${i}] = ${cppDim(d)};`).join(" ")} return;`);
    lines.push(`    default: return;`, `  }`, `}`);
    const consts = fr.slots.filter((sl) => sl.source === "constant");
    for (const c of consts) lines.push(`static const float ${F}_const_${c.id}[] = {${attrsOf(OPS.constant, c.constant!).values.map((v) => literal(v, "f32")).join(", ")}};`);
    lines.push(`static const lingc::ConstDef ${F}_consts[] = {${consts.map((c) => `{${c.id}, ${F}_const_${c.id}, ${attrsOf(OPS.constant, c.constant!).values.length}}`).join(", ") || "{-1, nullptr, 0}"}};`);
    lines.push(`static const int ${F}_results[] = {${fr.results.join(", ")}};`);
    lines.push(`static const char* const ${F}_labels[] = {${this.labels.map(cppString).join(", ") || "\"\""}};`);
    const sites = fr.calls.map((cs, k) => {
      // The callee's symbols (in its order) from this function's.
      const callee = this.funcNames.get(cs.callee.name)!;
      const calleeSyms = [...cs.symbols.keys()].sort();
      const body = [
        `static void SYMS(const long* in, long* out) {`,
        ...fr.symbols.map((x, i) => `  [[maybe_unused]] const long ${x} = in[${i}];`),
        ...calleeSyms.map((x, i) => `  out[${i}] = ${cppDim(cs.symbols.get(x)!)};`),
        `  (void)out;`,
        `}`,
      ].join("\n");
      const syms = this.library.add(body, "symbols", (nm) => body.replace("SYMS(", `${nm}(`));
      lines.push(`static const int ${F}_call${k}_args[] = {${cs.args.join(", ") || "-1"}};`);
      return `{&FUNC_${callee}, ${cppString(cs.scope)}, ${cs.args.length}, ${F}_call${k}_args, ${syms}}`;
    });
    lines.push(`static const lingc::CallSite ${F}_calls[] = {${sites.join(", ") || "{nullptr, \"\", 0, nullptr, nullptr}"}};`);
    const fn = (name: string, body: string[]) => [`static void ${F}_${name}(lingc::Ctx& c, const lingc::Frame& fr) {`, `  [[maybe_unused]] const int b = fr.base;`, ...this.symbolLines(), ...body, `}`];
    lines.push(...fn("prepare", this.prepare), ...fn("run", this.body));
    lines.push(
      `extern const lingc::FuncDef FUNC_${F} = {${cppString(fr.func.name)}, ${fr.slots.length}, ${F}_slots, ${F}_shape, ${fr.symbols.length}, ${fr.results.length}, ${F}_results, ${fr.calls.length}, ${F}_calls, ${consts.length}, ${F}_consts, ${this.labels.length}, ${F}_labels, ${F}_prepare, ${F}_run};`,
    );
    return lines.join("\n");
  }
}

/** A graph's definition: its entry, named inputs and outputs, and how the entry's symbols are read from the inputs. */
function graphTable(m: Module, entry: FrameSchedule, cname: string): string {
  const G = cppIdent(m.name);
  const e = m.entry!;
  const binds: string[] = [];
  // Each symbol is read off the first input that has it, the generation's inputs (tokens, then the
  // caches) first: generation and bench size a graph from those alone, even a pipeline stage's whose
  // other inputs arrive from the stage before.
  const role = generationRole(m);
  const cacheInputs = new Set(role ? cachePairs(role.cache, e.params.map((p) => p.name!)).map((c) => c.input) : []);
  const tokens = tokensInput(m);
  const rank = (name: string) => (name === tokens ? 0 : cacheInputs.has(name) ? 1 : 2);
  const params = [...e.params].sort((a, b) => rank(a.name!) - rank(b.name!));
  entry.symbols.forEach((sym, i) => {
    for (const p of params) {
      const axis = p.type.shape.findIndex((d) => d.symbol === sym);
      if (axis >= 0) {
        binds.push(`{${i}, ${cppString(p.name!)}, ${axis}}`);
        return;
      }
    }
    throw new LingcError(`CUDA emitter: symbol ${sym} of graph ${m.name} is not the size of any input axis`);
  });
  // Outputs by result; a scaled fp8 result also outputs its scale grid as `<name>.scale` (an entry slot).
  const outputs: string[] = [];
  e.results.forEach((r, i) => {
    const name = r.name ?? String(i);
    outputs.push(`{${cppString(name)}, ${i}, -1}`);
    const scales = entry.slots[storageSlot(entry, entry.results[i]!)]!.scales;
    if (scales !== undefined) outputs.push(`{${cppString(`${name}.scale`)}, ${i}, ${scales}}`);
  });
  return [
    `static const lingc::IoDef GRAPH_${G}_inputs[] = {${e.params.map((p, i) => `{${cppString(p.name!)}, ${i}, -1}`).join(", ") || "{\"\", -1, -1}"}};`,
    `static const lingc::IoDef GRAPH_${G}_outputs[] = {${outputs.join(", ")}};`,
    `static const lingc::SymBind GRAPH_${G}_binds[] = {${binds.join(", ") || "{-1, \"\", -1}"}};`,
    `static const lingc::GraphDef GRAPH_${G} = {${cppString(m.name)}, &FUNC_${cname}, ${e.params.length}, GRAPH_${G}_inputs, ${outputs.length}, GRAPH_${G}_outputs, ${binds.length}, GRAPH_${G}_binds};`,
  ].join("\n");
}

/**
 * GENERATION: which graphs prefill, decode and draft (speculative decoding), how their caches flow,
 * and the hidden states a draft reads (from the modules' attributes).
 */
function generationTable(graphs: readonly Module[]): string {
  const roles = graphs.map((m) => generationRole(m));
  const p = roles.findIndex((r) => r?.role === "prefill");
  const d = roles.findIndex((r) => r?.role === "decode");
  const x = roles.findIndex((r) => r?.role === "draft");
  if (p < 0 || d < 0) return `extern const lingc::GenerationDef GENERATION = {-1, -1, "", "", "", "", 0, nullptr, -1, "", "", "", "", "", 0, nullptr};`;
  const pr = roles[p]!;
  const dr = roles[d]!;
  const xr = x >= 0 && pr.hidden && dr.hidden ? roles[x]! : undefined;
  const pairs = (r: GenerationRole, m: Module) => cachePairs(r.cache, m.entry!.params.map((q) => q.name!));
  const table = (name: string, list: CachePair[]) =>
    `static const lingc::CacheDef ${name}[] = {${list.map((c) => `{${cppString(c.input)}, ${cppString(c.output)}, ${c.axis}, ${c.capacity}L}`).join(", ") || "{\"\", \"\", 0, 0}"}};`;
  const main = pairs(dr, graphs[d]!);
  const draft = xr ? pairs(xr, graphs[x]!) : [];
  const draftPart = xr
    ? `${x}, ${cppString(xr.tokens)}, ${cppString(xr.logits)}, ${cppString(xr.hidden!)}, ${cppString(pr.hidden!)}, ${cppString(dr.hidden!)}, ${draft.length}, DRAFT_CACHE`
    : `-1, "", "", "", "", "", 0, nullptr`;
  return [
    table("CACHE", main),
    ...(xr ? [table("DRAFT_CACHE", draft)] : []),
    `extern const lingc::GenerationDef GENERATION = {${p}, ${d}, ${cppString(pr.tokens)}, ${cppString(pr.logits)}, ${cppString(dr.tokens)}, ${cppString(dr.logits)}, ${main.length}, CACHE, ${draftPart}};`,
  ].join("\n");
}

/** A graph's functions (callees first, the entry last), emitted. */
function emitGraph(m: Module, library: Library, profile: CudaProfile): { frames: FrameSchedule[]; funcNames: Map<string, string>; emitters: FuncEmitter[] } {
  const frames = buildFrames(m);
  const funcNames = new Map(frames.map((f) => [f.func.name, cppIdent(`${m.name}__${f.func.name}`)]));
  const byName = new Map(frames.map((f) => [f.func.name, f]));
  const residents = new Map<string, ReadonlySet<number>>();
  const emitters = frames.map((fr) => {
    markKMajorScales(fr);
    const e = new FuncEmitter(fr, funcNames.get(fr.func.name)!, funcNames, library, profile, byName, residents);
    e.emit();
    return e;
  });
  return { frames, funcNames, emitters };
}

/**
 * The activation memory the CUDA host will use running graph `m` of `program` at the entry's sizes
 * `sizes` (storage allocated at first write, freed after last use: backends/frames-memory.ts): the
 * peak of live bytes and what is still live at the end (the results). Kernel and library
 * temporaries are not in it.
 */
export function cudaMemoryPrediction(program: Program, m: Module, sizes: ReadonlyMap<string, number>): { peak: number; end: number } {
  const { frames, emitters } = emitGraph(m, new Library(), cudaProfile(program));
  return predictPeak(frames, new Map(emitters.map((e) => [e.fr, e.lifetimes!])), sizes);
}

export interface CudaSources {
  /** File name -> contents. */
  files: Record<string, string>;
}

export function emitCuda(program: Program): CudaSources {
  const profile = cudaProfile(program);
  if (!program.graphs.length) throw new LingcError("the CUDA emitter got a program with no graphs");
  refuseScaleDtypes(program.graphs);
  const names = program.graphs.map((m) => m.name);
  if (new Set(names).size !== names.length) throw new LingcError(`the program has two graphs of the same name (${names.join(", ")})`);
  const runtime = runtimeSources();
  const staged = program.graphs.filter(isStaged);
  if (!staged.length) return { files: { "model.cu": modelSource(program.graphs, profile, { index: 0, count: 1, chain: "" }), Makefile: makefile(profile, ["model"]), ...runtime } };
  // One program per stage (rank): each graph's stage k, named like the graph; the chain says where
  // each stage's inputs come from (ir/stages.ts) and is the same text in every stage program.
  if (staged.length !== program.graphs.length) throw new LingcError(`graphs ${names.join(", ")}: either all or none are cut into stages`);
  const chains = program.graphs.map((m) => splitStages(m, { asGraph: true }));
  const count = chains[0]!.stages.length;
  const odd = chains.find((c) => c.stages.length !== count);
  if (odd) throw new LingcError(`the graphs are cut into different numbers of stages (${chains.map((c, i) => `${names[i]}: ${c.stages.length}`).join(", ")})`);
  const chain = JSON.stringify({
    vocab: Number(program.graphs[0]!.attrs["vocab"] ?? 0),
    graphs: Object.fromEntries(
      chains.map((c, i) => [
        names[i],
        {
          stages: c.stages.map((st) => st.inputs.map((src, j) => ({ name: st.module.entry!.params[j]!.name!, ...src }))),
          outputs: c.outputs,
        },
      ]),
    ),
  });
  // Each stage's prefill must make the caches its decode reads (the graphs cut at the same layers).
  const pre = program.graphs.findIndex((m) => generationRole(m)?.role === "prefill");
  const dec = program.graphs.findIndex((m) => generationRole(m)?.role === "decode");
  if (pre >= 0 && dec >= 0) {
    for (let k = 0; k < count; k++) {
      const d = chains[dec]!.stages[k]!.module;
      const made = new Set(chains[pre]!.stages[k]!.module.entry!.results.map((r) => r.name));
      const missing = cachePairs(generationRole(d)!.cache, d.entry!.params.map((x) => x.name!)).find((c) => !made.has(c.output));
      if (missing) throw new LingcError(`stage ${k}: its decode reads ${missing.input}, but its part of ${names[pre]} does not make ${missing.output} (the graphs are cut at different layers; cut them at the same ones)`);
    }
  }
  const files: Record<string, string> = { ...runtime };
  const models: string[] = [];
  for (let k = 0; k < count; k++) {
    files[`model.stage${k}.cu`] = modelSource(
      chains.map((c) => c.stages[k]!.module),
      profile,
      { index: k, count, chain },
    );
    models.push(`model.stage${k}`);
  }
  files["Makefile"] = makefile(profile, models);
  files["launch.sh"] = LAUNCHER;
  return { files };
}


/** One program's model.cu: the graphs' tables, the generation declaration and its place in a pipeline. */
function modelSource(graphModules: readonly Module[], profile: CudaProfile, stage: { index: number; count: number; chain: string }): string {
  const names = graphModules.map((m) => m.name);
  const library = new Library();
  const decls: string[] = [];
  const funcs: string[] = [];
  const graphs: string[] = [];
  let checks = 0;
  for (const m of graphModules) {
    refuseUnsupportedFp8(m);
    const { frames, funcNames, emitters } = emitGraph(m, library, profile);
    // Function definitions refer to their callees' FUNC_ objects: all are declared first.
    for (const n of funcNames.values()) decls.push(`extern const lingc::FuncDef FUNC_${n};`);
    for (const e of emitters) funcs.push(e.tables());
    for (const e of emitters) checks += e.checks;
    graphs.push(graphTable(m, frames[frames.length - 1]!, funcNames.get(m.entry!.name)!));
  }
  const model = graphModules[0]!.attrs["model"] ?? graphModules[0]!.name;
  const decode = graphModules.find((m) => generationRole(m)?.role === "decode");
  const decodeWeightBytes = decode ? weightBytesPerToken(decode) : 0;
  const header = [
    `// Generated by lingc for ${model}: the kernel plans of the graphs ${names.join(", ")}${stage.count > 1 ? ` (pipeline stage ${stage.index} of ${stage.count})` : ""}.`,
    `// Build: make (nvcc for ${profile.arch}). Run: ./${stage.count > 1 ? `lingc_stage${stage.index}` : "lingc_model"} --help`,
    ...(library.stamps ? [`#define LINGC_STAMPS  // LINGC_STAMPS=on at compile: the kernels stamp their timelines (lingc_runtime.h)`] : []),
    `#include "lingc_runtime.h"`,
    ``,
    `extern const char* const MODEL_NAME = ${cppString(model)};`,
    // The config the graphs were traced from (the module attribute), checked against a checkpoint's config.json at load.
    `extern const char* const MODEL_CONFIG = ${cppString(graphModules.find((m) => m.attrs["config"])?.attrs["config"] ?? "")};`,
    `extern const double DECODE_WEIGHT_BYTES = ${decodeWeightBytes};`,
    `extern const int STAGE_INDEX = ${stage.index};`,
    `extern const int STAGE_COUNT = ${stage.count};`,
    `extern const char* const STAGE_CHAIN = ${cppString(stage.chain)};`,
    // Steps whose tile program selftest checks against the op table's direct form (FuncEmitter.referenceCheck).
    `extern const int CHECKED_STEPS = ${checks};`,
    ``,
  ];
  const tables = [
    ...graphs,
    `extern const int NGRAPHS = ${graphModules.length};`,
    `extern const lingc::GraphDef* const GRAPHS[] = {${graphModules.map((m) => `&GRAPH_${cppIdent(m.name)}`).join(", ")}};`,
    generationTable(graphModules),
  ];
  return [...header, ...library.sources, ...decls, ...funcs, ...tables].join("\n") + "\n";
}

/** ceil(d / per) as C++ (d itself where per is 1). */
function ceilText(d: Dim, per: number): string {
  return per === 1 ? cppDim(d) : `((${cppDim(d)} + ${per - 1}) / ${per})`;
}
