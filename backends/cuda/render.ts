/**
 * kir -> CUDA C++. One `__global__` function per kernel; buffers are pointer parameters (bf16 buffers
 * are `__nv_bfloat16*` and fp8 ones `__nv_fp8_e4m3*`, both read and written as float, rounding to
 * nearest even, fp8 saturating), run-time sizes are int parameters after them.
 * The grid is linearized like WGSL's (blockIdx.x + blockIdx.y * gridDim.x). A wide kernel (kir
 * Kernel.wide: a buffer past 2^31 - 1 elements) computes every integer as long long.
 */
import { f32Text, preWaitProblem, type Expr, type Kernel, type KType, type MmaShape, type Stmt } from "../kernels/kir";

const TYPE: Record<KType, string> = { f32: "float", i32: "int", u32: "unsigned", bool: "bool" };

export function literal(v: number, t: KType): string {
  if (t === "bool") return v ? "true" : "false";
  if (t === "i32") return v < 0 ? `(${v})` : `${v}`;
  if (t === "u32") return `${v}u`;
  if (Number.isNaN(v)) return "NAN";
  if (v === Infinity) return "INFINITY";
  if (v === -Infinity) return "(-INFINITY)";
  return f32Text(v);
}

/** Largest constant trip count that the CUDA output unrolls. */
const MAX_UNROLL = 256;

/** The PTX instruction of each mma shape (kir.ts MmaShape: its fragment layout). */
const MMA_PTX: Record<MmaShape, string> = { "m16n8k32.e4m3": "m16n8k32.row.col.f32.e4m3.e4m3.f32", "m16n8k16.bf16": "m16n8k16.row.col.f32.bf16.bf16.f32" };

const UN: Record<string, string> = { exp: "expf", exp2: "lingc::ex2", log: "logf", sqrt: "sqrtf", rsqrt: "rsqrtf", sin: "sinf", cos: "cosf", abs: "fabsf" };

export class CudaRenderer {
  private readonly bf16 = new Set<string>();
  private readonly fp8 = new Set<string>();
  /** The C++ type of each kir type in this kernel (i32 is long long in a wide kernel). */
  private readonly type: Record<KType, string>;
  /** mbarrier waits rendered so far (each wait loop's flag is named apart). */
  private waits = 0;
  /** The next timeline-stamp event (renderCuda's `stamps`): 1 to 14 at grid barriers. */
  private stampEvent = 1;

  constructor(
    private readonly k: Kernel,
    private readonly stamps = false,
  ) {
    this.type = k.wide ? { ...TYPE, i32: "long long" } : TYPE;
    for (const b of k.buffers) if (b.elem === "bf16") this.bf16.add(b.name);
    for (const b of k.buffers) if (b.elem === "f8e4m3") this.fp8.add(b.name);
  }

  /** The next grid barrier's stamp event (the last ones shared past 14). */
  private nextStamp(): number {
    return Math.min(this.stampEvent++, 14);
  }

  /** The shared-window address of mbarrier `idx` of array `bar` (two words each). */
  private mbar(bar: string, idx: Expr): string {
    return `(unsigned)__cvta_generic_to_shared(&${bar}[2 * (${this.expr(idx)})])`;
  }

  expr(e: Expr): string {
    switch (e.k) {
      case "lit":
        return literal(e.v, e.t);
      case "ref":
        return e.name;
      case "uni":
        return e.name;
      case "load":
        if (this.fp8.has(e.buf)) return `float(${e.buf}[${this.expr(e.idx)}])`;
        return this.bf16.has(e.buf) ? `__bfloat162float(${e.buf}[${this.expr(e.idx)}])` : `${e.buf}[${this.expr(e.idx)}]`;
      case "builtin":
        return e.name === "lid" ? "lid" : e.name === "nwg" ? "nwg" : "wgid";
      case "bin":
        if (e.op === "min" || e.op === "max") {
          if (e.t === "f32") return `f${e.op}f(${this.expr(e.a)}, ${this.expr(e.b)})`;
          // Both sides of one type: an int size against a long long index has no overload.
          return e.t === "i32" && this.k.wide ? `${e.op}((long long)(${this.expr(e.a)}), (long long)(${this.expr(e.b)}))` : `${e.op}(${this.expr(e.a)}, ${this.expr(e.b)})`;
        }
        return `(${this.expr(e.a)} ${e.op} ${this.expr(e.b)})`;
      case "un":
        if (e.op === "neg") return `(-${this.expr(e.a)})`;
        if (e.op === "not") return `(!${this.expr(e.a)})`;
        if (e.op === "abs" && e.t !== "f32") return `${e.t === "i32" && this.k.wide ? "llabs" : "abs"}(${this.expr(e.a)})`;
        return `${UN[e.op]}(${this.expr(e.a)})`;
      case "sel":
        return `(${this.expr(e.c)} ? ${this.expr(e.a)} : ${this.expr(e.b)})`;
      case "conv":
        return `((${this.type[e.t]})(${this.expr(e.a)}))`;
      case "round":
        if (e.to === "bf16") return `__bfloat162float(__float2bfloat16_rn(${this.expr(e.a)}))`;
        if (e.to === "f16") return `__half2float(__float2half_rn(${this.expr(e.a)}))`;
        if (e.to === "f8e4m3fn") return `float(__nv_fp8_e4m3(${this.expr(e.a)}))`;
        throw new Error(`kir: the CUDA renderer rounds to e4m3, not ${e.to}`);
      case "call":
        // Device helpers of the runtime (lingc_runtime.h).
        return `lingc::${e.fn}(${this.expr(e.a)})`;
      case "shfl":
        return `__shfl_xor_sync(0xffffffffu, ${this.expr(e.a)}, ${e.mask})`;
      case "shflIdx":
        return `__shfl_sync(0xffffffffu, ${this.expr(e.a)}, ${this.expr(e.lane)})`;
      case "warpMax":
        return `lingc::warp_max(${this.expr(e.a)})`;
      case "firstLane":
        return `(__ffs(__ballot_sync(0xffffffffu, ${this.expr(e.a)})) - 1)`;
      case "word":
        return `reinterpret_cast<const unsigned int*>(${e.buf})[${this.expr(e.idx)}]`;
      case "half":
        return e.hi ? `__uint_as_float(${this.expr(e.a)} & 0xffff0000u)` : `__uint_as_float(${this.expr(e.a)} << 16)`;
      case "bitsF32":
        return `__uint_as_float(${this.expr(e.a)})`;
      case "quot":
        return `lingc::quot(${this.expr(e.a)}, ${this.expr(e.b)}, ${this.expr(e.r)})`;
      case "e4m3Byte":
        return `lingc::e4m3_byte(${this.expr(e.a)}, ${e.byte})`;
      case "pack":
        return `lingc::pack_bf16x2(${this.expr(e.lo)}, ${this.expr(e.hi)})`;
      case "packE4m3":
        return `lingc::pack_e4m3x4(${e.a.map((x) => this.expr(x)).join(", ")})`;
    }
  }

  stmts(ss: Stmt[], indent: string, out: string[]): void {
    for (const s of ss) {
      switch (s.k) {
        case "let":
          out.push(`${indent}[[maybe_unused]] const ${this.type[s.e.t]} ${s.name} = ${this.expr(s.e)};`);
          break;
        case "var":
          out.push(`${indent}${this.type[s.t]} ${s.name} = ${this.expr(s.e)};`);
          break;
        case "set":
          out.push(`${indent}${s.name} = ${this.expr(s.e)};`);
          break;
        case "store":
          if (this.fp8.has(s.buf)) out.push(`${indent}${s.buf}[${this.expr(s.idx)}] = __nv_fp8_e4m3(${this.expr(s.e)});`);
          // (A value rounded to bf16 just before is stored unrounded: the store rounds as that rounding does.)
          else out.push(this.bf16.has(s.buf) ? `${indent}${s.buf}[${this.expr(s.idx)}] = __float2bfloat16_rn(${this.expr(unroundedBf16(s.e))});` : `${indent}${s.buf}[${this.expr(s.idx)}] = ${this.expr(s.e)};`);
          break;
        case "array":
          out.push(`${indent}${this.type[s.t]} ${s.name}[${s.size}];`);
          break;
        case "barrier":
          out.push(s.threads === undefined || s.threads === this.k.wg ? `${indent}__syncthreads();` : `${indent}asm volatile("bar.sync 1, ${s.threads};" ::: "memory");`);
          break;
        case "warpBarrier":
          out.push(`${indent}__syncwarp();`);
          break;
        case "if":
          out.push(`${indent}if (${this.expr(s.c)}) {`);
          this.stmts(s.then, indent + "  ", out);
          if (s.else?.length) {
            out.push(`${indent}} else {`);
            this.stmts(s.else, indent + "  ", out);
          }
          out.push(`${indent}}`);
          break;
        case "for": {
          // Loops of a known small trip count are unrolled: the per-thread arrays they index (the
          // router's group picks, a tile's accumulators) can then stay in registers, and their
          // loads are issued together. A pipeline's main loop asks not to be.
          const trips = s.from.k === "lit" && s.to.k === "lit" && s.step.k === "lit" && s.step.v > 0 ? Math.ceil((s.to.v - s.from.v) / s.step.v) : Infinity;
          if (s.unroll === false) out.push(`${indent}#pragma unroll 1`);
          else if (trips <= MAX_UNROLL) out.push(`${indent}#pragma unroll`);
          out.push(`${indent}for (${this.type.i32} ${s.v} = ${this.expr(s.from)}; ${s.v} < ${this.expr(s.to)}; ${s.v} += ${this.expr(s.step)}) {`);
          this.stmts(s.body, indent + "  ", out);
          out.push(`${indent}}`);
          break;
        }
        case "copy16":
          // cp.async with a source size of 0 when invalid: the 16 bytes are zero-filled, nothing is read.
          out.push(
            `${indent}asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\\n" :: "r"((unsigned)__cvta_generic_to_shared(&${s.dst}[${this.expr(s.dstIdx)}])), "l"(&${s.src}[${this.expr(s.srcIdx)}]), "r"(${this.expr(s.valid)} ? 16 : 0));`,
          );
          break;
        case "copyCommit":
          out.push(`${indent}asm volatile("cp.async.commit_group;\\n" ::);`);
          break;
        case "copyWait":
          out.push(`${indent}asm volatile("cp.async.wait_group %0;\\n" :: "n"(${s.pending}));`);
          break;
        case "store16":
          out.push(`${indent}*reinterpret_cast<uint4*>(reinterpret_cast<unsigned int*>(${s.buf}) + (${this.expr(s.idx)})) = make_uint4(${s.words.map((w) => this.expr(w)).join(", ")});`);
          break;
        case "load16": {
          const v = `${s.names[0]}_v16`;
          out.push(
            `${indent}const uint4 ${v} = *reinterpret_cast<const uint4*>(reinterpret_cast<const unsigned int*>(${s.buf}) + (${this.expr(s.idx)}));`,
            `${indent}const unsigned ${s.names.map((n, j) => `${n} = ${v}.${"xyzw"[j]}`).join(", ")};`,
          );
          break;
        }
        case "ldsm":
          out.push(
            `${indent}unsigned ${s.names.join(", ")};`,
            `${indent}asm volatile("ldmatrix.sync.aligned.m8n8.x4${s.trans ? ".trans" : ""}.shared.b16 {%0,%1,%2,%3}, [%4];\\n" : ${s.names.map((n) => `"=r"(${n})`).join(", ")} : "r"((unsigned)__cvta_generic_to_shared(&${s.src}[${this.expr(s.idx)}])));`,
          );
          break;
        case "wgmma": {
          // Matrix descriptors (sm_90): start address >> 4, leading byte offset (>> 4; unused in a
          // K-major swizzled layout: 16; MN-major: the 64-column chunks' distance), stride byte
          // offset 1024 (8 rows of 128 bytes), 128-byte swizzle.
          const desc = (idx: Expr, lbo: number) =>
            `(0x4000000000000000ull | (64ull << 32) | (${lbo}ull << 16) | (unsigned long long)(((unsigned)__cvta_generic_to_shared(&${s.src}[${this.expr(idx)}]) & 0x3FFFF) >> 4))`;
          const n = s.shape.n / 2;
          const regs = Array.from({ length: n }, (_, j) => `%${j}`).join(",");
          const accs = Array.from({ length: n }, (_, j) => `"+f"(${s.acc}[${j}])`).join(", ");
          // bf16 names both operands' layout (K-major 0, MN-major 1); e4m3 has no transposed form to name.
          const bDesc = `"l"(${desc(s.b, s.bMn !== undefined ? s.bMn / 4 : 1)})`;
          if (Array.isArray(s.a)) {
            // A from registers: no A descriptor and no A layout flag, only B's.
            const a = `{%${n}, %${n + 1}, %${n + 2}, %${n + 3}}`;
            out.push(
              `${indent}asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, %${n + 5}, 0;\\nwgmma.mma_async.sync.aligned.m64n${s.shape.n}k16.f32.bf16.bf16 {${regs}}, ${a}, %${n + 4}, p, 1, 1, ${s.bMn !== undefined ? 1 : 0};\\n}\\n" : ${accs} : ${s.a.map((w) => `"r"(${this.expr(w)})`).join(", ")}, ${bDesc}, "n"(${s.zero ? 0 : 1}));`,
            );
            break;
          }
          const types = s.shape.ab === "bf16" ? `k16.f32.bf16.bf16 {${regs}}, %${n}, %${n + 1}, p, 1, 1, 0, ${s.bMn !== undefined ? 1 : 0}` : `k32.f32.e4m3.e4m3 {${regs}}, %${n}, %${n + 1}, p, 1, 1`;
          out.push(
            `${indent}asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, %${n + 2}, 0;\\nwgmma.mma_async.sync.aligned.m64n${s.shape.n}${types};\\n}\\n" : ${accs} : "l"(${desc(s.a, 1)}), ${bDesc}, "n"(${s.zero ? 0 : 1}));`,
          );
          break;
        }
        case "wgmmaFence":
          out.push(`${indent}asm volatile("wgmma.fence.sync.aligned;\\n" ::: "memory");`);
          break;
        case "wgmmaCommit":
          out.push(`${indent}asm volatile("wgmma.commit_group.sync.aligned;\\n" ::: "memory");`);
          break;
        case "wgmmaWait":
          out.push(`${indent}asm volatile("wgmma.wait_group.sync.aligned %0;\\n" :: "n"(${s.pending}) : "memory");`);
          break;
        case "fenceAsyncShared":
          out.push(`${indent}asm volatile("fence.proxy.async.shared::cta;\\n" ::: "memory");`);
          break;
        case "fence":
          out.push(`${indent}__threadfence();`);
          break;
        case "gridSync": {
          const [arrive, depart] = [this.nextStamp(), this.nextStamp()];
          if (this.stamps) out.push(`${indent}__syncthreads();`, `${indent}LINGC_STAMP(KERNEL_ID, ${arrive});`);
          if (!s.last) out.push(`${indent}lingc::grid_sync(${s.buf}, nwg);`);
          else {
            // (gen_: the generation this barrier leaves, read at the launch's top and counted since.)
            out.push(`${indent}if (lingc::grid_arrive(${s.buf}, nwg)) {`);
            this.stmts(s.last, indent + "  ", out);
            out.push(`${indent}  lingc::grid_release(${s.buf});`, `${indent}} else {`, `${indent}  lingc::grid_wait(${s.buf}, gen_);`, `${indent}}`, `${indent}++gen_;`);
          }
          if (this.stamps) out.push(`${indent}LINGC_STAMP(KERNEL_ID, ${depart});`);
          break;
        }
        case "prefetchL2":
          out.push(
            `${indent}asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\\n" :: "l"(reinterpret_cast<const unsigned char*>(${s.buf}) + (${this.expr(s.byte)})), "r"((unsigned)(${this.expr(s.bytes)})) : "memory");`,
          );
          break;
        case "mbarInit":
          out.push(`${indent}asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\\n" :: "r"(${this.mbar(s.bar, s.idx)}), "r"(${s.count}) : "memory");`);
          break;
        case "mbarArrive":
          out.push(`${indent}asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\\n" :: "r"(${this.mbar(s.bar, s.idx)}) : "memory");`);
          break;
        case "mbarWait": {
          // try_wait suspends the thread for a while in hardware; the loop retries until the phase is done.
          const done = `${s.bar}_done${this.waits++}`;
          out.push(
            `${indent}for (unsigned ${done} = 0; !${done};) asm volatile("{\\n.reg .pred p;\\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\\nselp.u32 %0, 1, 0, p;\\n}\\n" : "=r"(${done}) : "r"(${this.mbar(s.bar, s.idx)}), "r"((unsigned)(${this.expr(s.parity)})) : "memory");`,
          );
          break;
        }
        case "setmaxnreg":
          out.push(`${indent}asm volatile("setmaxnreg.${s.inc ? "inc" : "dec"}.sync.aligned.u32 ${s.regs};\\n" ::: "memory");`);
          break;
        case "atomicAdd":
          out.push(`${indent}const int ${s.name} = atomicAdd(&${s.buf}[${this.expr(s.idx)}], ${this.expr(s.e)});`);
          break;
        case "mma": {
          const at = this.expr(s.at);
          const c = [0, 1, 2, 3].map((j) => `"+f"(${s.acc}[${at} + ${j}])`);
          const regs = [...s.a, ...s.b].map((e) => `"r"(${this.expr(e)})`);
          out.push(
            `${indent}asm volatile("mma.sync.aligned.${MMA_PTX[s.shape]} {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\\n" : ${c.join(", ")} : ${regs.join(", ")});`,
          );
          break;
        }
      }
    }
  }
}

const ELEM: Record<string, string> = { f32: "float", i32: "int", bf16: "__nv_bfloat16", f8e4m3: "__nv_fp8_e4m3" };

/**
 * Shared memory past this many bytes cannot be declared statically: such a kernel carves its shared
 * arrays from dynamic shared memory, which its launch sizes and opts in to (Ctx::launch_smem).
 */
export const STATIC_SHARED_LIMIT = 48 * 1024;

/** Each shared array starts at a multiple of this many bytes (async copies write 16 at a time). */
const SHARED_ALIGN = 16;

/** The shared arrays' byte offsets (each at its alignment) and the kernel's total shared memory. */
function sharedLayout(k: Kernel): { offsets: number[]; bytes: number; align: number } {
  let bytes = 0;
  let align = SHARED_ALIGN;
  const offsets = k.shared.map((s) => {
    const a = Math.max(SHARED_ALIGN, s.align ?? 0);
    align = Math.max(align, a);
    const at = Math.ceil(bytes / a) * a;
    bytes = at + Math.ceil((s.size * 4) / SHARED_ALIGN) * SHARED_ALIGN;
    return at;
  });
  return { offsets, bytes, align };
}

/** e without a rounding to bf16 at its top (a bf16 store or pack rounds to nearest even itself: rounding twice is rounding once). */
const unroundedBf16 = (e: Expr): Expr => (e.k === "round" && e.to === "bf16" ? e.a : e);

/** Whether a kernel reads the count of workgroups launched (the nwg builtin, or a grid barrier's). */
function usesWorkgroupCount(k: Kernel): boolean {
  const walk = (node: unknown): boolean => {
    if (Array.isArray(node)) return node.some(walk);
    if (!node || typeof node !== "object") return false;
    const n = node as Record<string, unknown>;
    return n["k"] === "gridSync" || (n["k"] === "builtin" && n["name"] === "nwg") || Object.values(n).some(walk);
  };
  return walk(k.body);
}

/** The buffers of a kernel's grid barriers with last-arrival work (gridSync's last: their generation is read at the top). */
function lastWorkBuffers(k: Kernel): string[] {
  return [...new Set(k.body.flatMap((s) => (s.k === "gridSync" && s.last ? [s.buf] : [])))];
}

/** The dynamic shared memory a kernel's launch must give (0: its arrays are static). */
export function dynamicSharedBytes(k: Kernel): number {
  const { bytes } = sharedLayout(k);
  return bytes > STATIC_SHARED_LIMIT ? bytes : 0;
}

/** The C++ parameter list of a kernel (buffers, then sizes), for declarations and launches. */
export function cudaParams(k: Kernel): string[] {
  return [
    ...k.buffers.map((b) => `${b.write ? "" : "const "}${ELEM[b.elem]}* __restrict__ ${b.name}`),
    ...k.uniforms.map((u) => `int ${u}`),
  ];
}

/**
 * The CUDA source of a kernel (an `extern "C" __global__` function named k.name). With `stamps`
 * (a diagnostic: lingc_runtime.h's timeline stamps) it stamps its launch's events under the id
 * KERNEL_ID, which the caller replaces by a number unique in the program.
 */
export function renderCuda(k: Kernel, stamps = false): string {
  const r = new CudaRenderer(k, stamps);
  const body: string[] = [];
  r.stmts(k.body, "  ", body);
  if (stamps) body.push("  __syncthreads();", "  LINGC_STAMP(KERNEL_ID, 15);");
  const out = [`// ${k.name}`, `extern "C" __global__ void __launch_bounds__(${k.wg}${k.minBlocks ? `, ${k.minBlocks}` : ""}) ${k.name}(${cudaParams(k).join(", ")}) {`];
  // 16-byte aligned: async copies write 16 bytes at a time. Shared arrays stay 32-bit in a wide
  // kernel (they hold per-workgroup counts and tiles, sized by the generator at 4 bytes).
  if (dynamicSharedBytes(k)) {
    const { offsets, align } = sharedLayout(k);
    // Named by its alignment: extern shared arrays of one name must agree on it across the
    // translation unit, and a wgmma kernel's (1024) is not an mma.sync kernel's (16).
    const base = `lingc_smem${align}`;
    out.push(`  extern __shared__ __align__(${align}) unsigned char ${base}[];`);
    k.shared.forEach((s, j) => out.push(`  ${TYPE[s.t]}* const ${s.name} = reinterpret_cast<${TYPE[s.t]}*>(${base} + ${offsets[j]});`));
  } else for (const s of k.shared) out.push(`  __shared__ __align__(${Math.max(SHARED_ALIGN, s.align ?? 0)}) ${TYPE[s.t]} ${s.name}[${s.size}];`);
  if (k.wide) out.push(`  [[maybe_unused]] const long long lid = (long long)threadIdx.x;`, `  [[maybe_unused]] const long long wgid = (long long)blockIdx.x + (long long)blockIdx.y * (long long)gridDim.x;`);
  else out.push(`  [[maybe_unused]] const int lid = (int)threadIdx.x;`, `  [[maybe_unused]] const int wgid = (int)(blockIdx.x + blockIdx.y * gridDim.x);`);
  if (usesWorkgroupCount(k)) out.push(`  const int nwg = (int)(gridDim.x * gridDim.y);`);
  // Launched with programmatic dependent launch (lingc_runtime.h): let the next kernel be
  // scheduled now, start what reads no kernel's results (preWait: weight prefetches), and wait for
  // the previous kernel's results before reading anything.
  out.push(`  asm volatile("griddepcontrol.launch_dependents;");`);
  if (k.preWait?.length) {
    const problem = preWaitProblem(k.preWait);
    if (problem) throw new Error(`kir: ${k.name}'s statements before the wait must not depend on other kernels, but it has ${problem}`);
    r.stmts(k.preWait, "  ", out);
  }
  out.push(`  asm volatile("griddepcontrol.wait;" ::: "memory");`);
  const generation = lastWorkBuffers(k);
  if (generation.length > 1) throw new Error(`kir: ${k.name}'s grid barriers with last-arrival work use more than one buffer (${generation.join(", ")})`);
  if (generation.length) out.push(`  unsigned gen_ = lingc::grid_generation(${generation[0]});`);
  if (stamps) out.push(`  LINGC_STAMP_BEGIN(KERNEL_ID);`);
  out.push(...body, "}");
  return out.join("\n") + "\n";
}
