/**
 * kir -> WGSL. Buffers are bound in order at @group(0) @binding(0..n-1); the run-time sizes are one
 * uniform struct at binding n. The grid is linearized (workgroup_id.x + workgroup_id.y * nx) so a
 * launch can exceed the 65535-workgroups-per-dimension limit.
 */
import { f32Text, type Expr, type Kernel, type KType, type Stmt } from "../kernels/kir";

const TYPE: Record<KType, string> = { f32: "f32", i32: "i32", u32: "u32", bool: "bool" };

/** Buffers split over several bindings in the kernel being rendered (their loads go through a helper). */
let split = new Set<string>();
/** Buffers of packed e4m3 codes (four per u32) in the kernel being rendered. */
let packed = new Set<string>();
/** Buffers of bf16 values (two per u32, element 2k in the low half) in the kernel being rendered. */
let halves = new Set<string>();

function literal(v: number, t: KType): string {
  if (t === "bool") return v ? "true" : "false";
  if (t === "i32") return `${v}i`;
  if (t === "u32") return `${v}u`;
  // WGSL constant expressions cannot hold infinities or NaN (Tint rejects them even through bitcast).
  // Kernels use -inf only as "below every score" (masks, running maxima), which the most negative
  // finite f32 also is.
  if (Number.isNaN(v)) throw new Error("kir: a NaN literal cannot be written in WGSL");
  if (v === Infinity) return "3.4028234e+38f";
  if (v === -Infinity) return "-3.4028234e+38f";
  return f32Text(v);
}

function expr(e: Expr): string {
  switch (e.k) {
    case "lit":
      return literal(e.v, e.t);
    case "ref":
      return e.name;
    case "uni":
      return `u.${e.name}`;
    case "load": {
      if (packed.has(e.buf)) {
        const i = expr(e.idx);
        const word = split.has(e.buf) ? `load_${e.buf}((${i}) >> 2u)` : `${e.buf}[(${i}) >> 2u]`;
        return `decode_e4m3((${word} >> (u32((${i}) & 3i) * 8u)) & 0xffu)`;
      }
      if (halves.has(e.buf)) {
        // A bf16 value is the high half of an f32: the low half of the word shifted up, or the high half kept.
        const i = expr(e.idx);
        const word = split.has(e.buf) ? `load_${e.buf}((${i}) >> 1u)` : `${e.buf}[(${i}) >> 1u]`;
        return `bf16_at(${word}, ${i})`;
      }
      if (e.uniform) return `workgroupUniformLoad(&${e.buf}[${expr(e.idx)}])`;
      return split.has(e.buf) ? `load_${e.buf}(${expr(e.idx)})` : `${e.buf}[${expr(e.idx)}]`;
    }
    case "builtin":
      if (e.name === "nwg") throw new Error("kir: this WGSL renderer has no count of workgroups launched (a grid-synced kernel runs on CUDA only)");
      return e.name === "lid" ? "lid" : "wgid";
    case "bin":
      if (e.op === "min" || e.op === "max") return `${e.op}(${expr(e.a)}, ${expr(e.b)})`;
      return `(${expr(e.a)} ${e.op} ${expr(e.b)})`;
    case "un":
      switch (e.op) {
        case "neg":
          return `(-${expr(e.a)})`;
        case "not":
          return `(!${expr(e.a)})`;
        case "rsqrt":
          return `inverseSqrt(${expr(e.a)})`;
        case "sin":
        case "cos":
          // Not WGSL's own: its precision is left to the implementation (see SINCOS).
          return `${e.op}_poly(${expr(e.a)})`;
        default:
          return `${e.op}(${expr(e.a)})`;
      }
    case "sel":
      return `select(${expr(e.b)}, ${expr(e.a)}, ${expr(e.c)})`;
    case "conv":
      return `${TYPE[e.t]}(${expr(e.a)})`;
    case "round":
      return `round_${e.to}(${expr(e.a)})`;
    case "call":
      return `${e.fn}(${expr(e.a)})`;
    case "shfl":
    case "shflIdx":
    case "warpMax":
    case "firstLane":
      throw new Error("kir: this WGSL renderer has no subgroup shuffles (a warp-level kernel runs on CUDA only)");
    case "word":
      return split.has(e.buf) ? `load_${e.buf}(${expr(e.idx)})` : `${e.buf}[${expr(e.idx)}]`;
    case "bitsF32":
      return `bitcast<f32>(${expr(e.a)})`;
    case "quot":
      // (WGSL's fma need not be fused: the division itself.)
      return `(${expr(e.a)} / ${expr(e.b)})`;
    case "packE4m3":
      throw new Error("kir: WGSL has no e4m3 packing (the 16-byte FP8 quantize runs on CUDA only)");
    case "e4m3Byte":
      throw new Error("kir: this WGSL renderer does not decode e4m3 words (the 16-byte FP8 GEMV runs on CUDA only)");
    case "pack":
      throw new Error("kir: WGSL has no bf16 pair packing (a tensor-core tile program runs on CUDA only)");
    case "half":
      // A bf16 value is the high half of an f32.
      return e.hi ? `bitcast<f32>(${expr(e.a)} & 0xffff0000u)` : `bitcast<f32>(${expr(e.a)} << 16u)`;
  }
}

function stmts(ss: Stmt[], indent: string, out: string[]): void {
  for (const s of ss) {
    switch (s.k) {
      case "let":
        out.push(`${indent}let ${s.name} = ${expr(s.e)};`);
        break;
      case "var":
        out.push(`${indent}var ${s.name}: ${TYPE[s.t]} = ${expr(s.e)};`);
        break;
      case "set":
        out.push(`${indent}${s.name} = ${expr(s.e)};`);
        break;
      case "store":
        out.push(`${indent}${s.buf}[${expr(s.idx)}] = ${expr(s.e)};`);
        break;
      case "array":
        out.push(`${indent}var ${s.name}: array<${TYPE[s.t]}, ${s.size}>;`);
        break;
      case "barrier":
        if (s.threads !== undefined) throw new Error("kir: WGSL has no barrier among part of a workgroup (a phase-merged kernel runs on CUDA only)");
        out.push(`${indent}workgroupBarrier();`);
        break;
      case "warpBarrier":
        throw new Error("kir: this WGSL renderer has no subgroups (a warp-level kernel runs on CUDA only)");
      case "if":
        out.push(`${indent}if (${expr(s.c)}) {`);
        stmts(s.then, indent + "  ", out);
        if (s.else?.length) {
          out.push(`${indent}} else {`);
          stmts(s.else, indent + "  ", out);
        }
        out.push(`${indent}}`);
        break;
      case "copy16":
        // No asynchronous copies in WGSL: four words now (a packed fp8 buffer: four codes a word).
        if (!packed.has(s.src)) throw new Error(`kir: WGSL copies 16 bytes only from a packed fp8 buffer, not ${s.src}`);
        for (let j = 0; j < 4; j++) out.push(`${indent}${s.dst}[${expr(s.dstIdx)} + ${j}i] = select(0u, ${s.src}[${expr(s.srcIdx)} / 4i + ${j}i], ${expr(s.valid)});`);
        break;
      case "copyCommit":
      case "copyWait":
        break;
      case "store16":
        throw new Error(`kir: WGSL has no 16-byte stores of bf16 pairs (${s.buf}): only CUDA templates use them (the wgmma expert GEMM, moe_combine)`);
      case "load16":
        // No 16-byte loads into registers in WGSL: four words.
        // (An f32 buffer's words as their bits: load16 gives words, K.bitsF32 the values.)
        s.names.forEach((n, j) => {
          const w = split.has(s.buf) ? `load_${s.buf}(${expr(s.idx)} + ${j}i)` : `${s.buf}[${expr(s.idx)} + ${j}i]`;
          out.push(`${indent}let ${n} = ${halves.has(s.buf) || packed.has(s.buf) ? w : `bitcast<u32>(${w})`};`);
        });
        break;
      case "ldsm":
        throw new Error("kir: WGSL has no ldmatrix (a tensor-core tile program runs on CUDA only)");
      case "mma":
        throw new Error(`kir: WGSL has no tensor-core ${s.shape} (a tile program that uses one runs on CUDA only)`);
      case "wgmma":
      case "wgmmaFence":
      case "wgmmaCommit":
      case "wgmmaWait":
      case "fenceAsyncShared":
        throw new Error("kir: WGSL has no warpgroup MMA (a Hopper tile program runs on CUDA only)");
      case "mbarInit":
      case "mbarArrive":
      case "mbarWait":
      case "setmaxnreg":
        throw new Error("kir: WGSL has no split-arrival barriers or register moves (a warp-specialized tile program runs on CUDA only)");
      case "prefetchL2":
        // A cache hint WGSL cannot give (a kernel's preWait is not rendered at all).
        break;
      case "gridSync":
        throw new Error("kir: WGSL has no grid-wide barrier (workgroups have no forward-progress guarantee; a grid-synced kernel runs on CUDA only)");
      case "fence":
      case "atomicAdd":
        throw new Error("kir: this WGSL renderer has no grid-wide fences or atomics (a kernel whose last workgroup merges the others' results runs on CUDA only)");
      case "for":
        out.push(`${indent}for (var ${s.v}: i32 = ${expr(s.from)}; ${s.v} < ${expr(s.to)}; ${s.v} = ${s.v} + ${expr(s.step)}) {`);
        stmts(s.body, indent + "  ", out);
        out.push(`${indent}}`);
        break;
    }
  }
}

/**
 * sin and cos in f32 from polynomials: WGSL leaves their precision to the implementation, and
 * Chromium's (SwiftShader) is off by 2e-4 at a few radians, which RoPE turns into 1e-3 in the logits.
 * x is reduced to r in [-pi/4, pi/4] by its nearest multiple j of pi/2 (pi/2 split in three parts so
 * that j times the first two is exact for |j| < 2^15), then sin r and cos r by minimax polynomials of
 * degree 7 and 8 (under 1 ulp on that range); the quadrant j mod 4 picks and signs them.
 */
const SINCOS = `fn sincos_quadrant(x: f32) -> vec3f {
  let j = round(x * 0.63661977236758134f);
  let r = ((x - j * 1.5703125f) - j * 4.837512969970703125e-4f) - j * 7.54978995489188216e-8f;
  let r2 = r * r;
  let s = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  let c = 1.0f - 0.5f * r2 + r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  return vec3f(s, c, f32(i32(j) & 3));
}`;

/** An f32 constant in WGSL (a decimal point for integers). */
const wgslF32 = (x: number) => `${Number.isInteger(x) ? x.toFixed(1) : String(x)}f`;

/**
 * WGSL that rounds an f32 to a narrow float with `mant` mantissa bits, to nearest even: below the
 * smallest normal 2^minExp to multiples of 2^(minExp - mant) (the subnormals), above it by its bits
 * (the low 23 - mant dropped). Past the largest value: infinity from `infinityFrom` (the tie above the
 * largest), made from the run-time sign since a constant infinity is a WGSL shader-creation error;
 * or saturation at `saturate` (e4m3fn), the input first clamped to `clampAt` (the tie above it).
 */
function roundNarrow(name: string, mant: number, minExp: number, top: { infinityFrom: number } | { saturate: number; clampAt: number }): string {
  const drop = 23 - mant;
  const hex = (n: number) => `0x${(n >>> 0).toString(16)}u`;
  const bits = (b: string) => `bitcast<f32>((${b} + ${hex(2 ** (drop - 1) - 1)} + ((${b} >> ${drop}u) & 1u)) & ${hex(2 ** 32 - 2 ** drop)})`;
  const sub = wgslF32(2 ** (mant - minExp));
  const normal =
    "infinityFrom" in top
      ? `  else if (a >= ${wgslF32(top.infinityFrom)}) { return bitcast<f32>(0x7f800000u | sgn); }
  else {
    let b = bitcast<u32>(a);
    r = ${bits("b")};
  }`
      : `  else {
    let b = bitcast<u32>(min(a, ${wgslF32(top.clampAt)}));
    r = min(${bits("b")}, ${wgslF32(top.saturate)});
  }`;
  return `fn ${name}(x: f32) -> f32 {
  if (x != x) { return x; }
  let sgn = bitcast<u32>(x) & 0x80000000u;
  let a = abs(x);
  var r: f32;
  if (a < ${wgslF32(2 ** minExp)}) { r = round(a * ${sub}) / ${sub}; }
${normal}
  return bitcast<f32>(bitcast<u32>(r) | sgn);
}`;
}

const HELPERS: Record<string, string> = {
  sin_poly: `${SINCOS}
fn sin_poly(x: f32) -> f32 {
  let t = sincos_quadrant(x);
  let q = i32(t.z);
  return select(select(-t.y, -t.x, q == 2), select(t.y, t.x, q == 0), q < 2);
}`,
  cos_poly: `fn cos_poly(x: f32) -> f32 {
  let t = sincos_quadrant(x);
  let q = i32(t.z);
  return select(select(t.x, -t.y, q == 2), select(-t.x, t.y, q == 0), q < 2);
}`,
  bf16_at: `fn bf16_at(w: u32, i: i32) -> f32 {
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1i) == 1i));
}`,
  round_bf16: `fn round_bf16(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u) { return x; }
  return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
}`,
  // By bits, not unpack2x16float(pack2x16float(x)), which a driver may fold to x (Mesa's lavapipe did:
  // f16 results came out unrounded).
  round_f16: roundNarrow("round_f16", 10, -14, { infinityFrom: 65520 }),
  round_f8e4m3fn: roundNarrow("round_f8e4m3fn", 3, -6, { saturate: 448, clampAt: 464 }),
  round_f8e5m2: roundNarrow("round_f8e5m2", 2, -14, { infinityFrom: 61440 }),
  decode_e4m3: `fn decode_e4m3(c: u32) -> f32 {
  let e = (c >> 3u) & 15u;
  let m = f32(c & 7u);
  var v: f32;
  if (e == 0u) { v = m * 0.001953125f; } else { v = ldexp(1.0f + m * 0.125f, i32(e) - 7); }
  return select(v, -v, (c & 0x80u) != 0u);
}`,
  // The smallest power of two at least x (x > 0, finite): a UE8M0 scale.
  pow2_ceil: `fn pow2_ceil(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if ((b & 0x007fffffu) == 0u) { return x; }
  return bitcast<f32>((b & 0x7f800000u) + 0x00800000u);
}`,
};

/** The WGSL source of a kernel (entry point `main`). */
export function renderWgsl(k: Kernel): string {
  const out: string[] = [`// ${k.name}`];
  const fields = k.uniforms.length ? k.uniforms : ["unused"];
  const padded = [...fields, ...Array.from({ length: (4 - (fields.length % 4)) % 4 }, (_, j) => `pad${j}`)];
  out.push(`struct Sizes { ${padded.map((n) => `${n}: i32`).join(", ")} }`);
  split = new Set(k.buffers.filter((b) => b.parts).map((b) => b.name));
  packed = new Set(k.buffers.filter((b) => b.elem === "f8e4m3").map((b) => b.name));
  halves = new Set(k.buffers.filter((b) => b.elem === "bf16").map((b) => b.name));
  const elemOf = (e: string) => (e === "f8e4m3" || e === "bf16" ? "u32" : e);
  let binding = 0;
  for (const b of k.buffers) {
    if (b.elem === "f8e4m3" && b.write) throw new Error(`kir: kernel ${k.name} writes the packed fp8 buffer ${b.name}`);
    if (b.elem === "bf16" && b.write) throw new Error(`kir: kernel ${k.name} writes the bf16 buffer ${b.name}, which WGSL holds only as packed read-only weights`);
    if (!b.parts) {
      out.push(`@group(0) @binding(${binding++}) var<storage, ${b.write ? "read_write" : "read"}> ${b.name}: array<${elemOf(b.elem)}>;`);
      continue;
    }
    const { count, per } = b.parts;
    for (let p = 0; p < count; p++) out.push(`@group(0) @binding(${binding++}) var<storage, read> ${b.name}_p${p}: array<${elemOf(b.elem)}>;`);
    const cases = Array.from({ length: count }, (_, p) => (p < count - 1 ? `  if (i < ${(p + 1) * per}i) { return ${b.name}_p${p}[i - ${p * per}i]; }` : `  return ${b.name}_p${p}[i - ${p * per}i];`));
    out.push(`fn load_${b.name}(i: i32) -> ${elemOf(b.elem)} {`, ...cases, "}");
  }
  out.push(`@group(0) @binding(${binding}) var<uniform> u: Sizes;`);
  for (const s of k.shared) out.push(`var<workgroup> ${s.name}: array<${TYPE[s.t]}, ${s.size}>;`);
  const body: string[] = [];
  stmts(k.body, "  ", body);
  const text = body.join("\n");
  const used = Object.keys(HELPERS).filter((name) => text.includes(`${name}(`));
  // cos_poly shares sin_poly's quadrant reduction: declared once, with whichever comes first.
  if (used.includes("cos_poly") && !used.includes("sin_poly")) out.push(SINCOS);
  for (const name of used) out.push(HELPERS[name]!);
  out.push(`@compute @workgroup_size(${k.wg})`);
  out.push(`fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) n: vec3u) {`);
  out.push(`  let lid = i32(l.x);`);
  out.push(`  let wgid = i32(w.x + w.y * n.x);`);
  out.push(text);
  out.push("}");
  return out.join("\n") + "\n";
}
