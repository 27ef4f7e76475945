/**
 * Running emitted ONNX models with onnxruntime-node (CPU). Models are loaded from memory with the
 * checkpoint folder as ONNX Runtime's external-data folder, so the weights are read straight from
 * the checkpoint's safetensors files.
 */
import { isStaged, splitStages } from "../../ir/stages";
import type * as OrtTypes from "onnxruntime-node";
import { LingcError } from "../../ir/errors";
import type { DType } from "../../ir/dtype";
import type { Module } from "../../ir/module";
import { collectWeights } from "../../ir/weights";
import { Tensor } from "../../ir/tensor";
import type { Checkpoint } from "../weights/checkpoint";
import { signatureOf, type Backend, type GraphRunner, type LoadedModel } from "../backend";
import { typedAsDeclared } from "../narrow-results";
import { emitOnnx, SCALE_SUFFIX, type ExposedValue } from "./emit";
import { onnxLowering } from "./lower";
import { checkpointLayout, unboundLayout } from "./weights";

type Ort = typeof OrtTypes;
type OrtTensor = OrtTypes.Tensor;
type OrtSession = OrtTypes.InferenceSession;

let ortModule: Promise<Ort> | undefined;

/** onnxruntime-node, loaded on first use so that commands that do not run ONNX never load its native library. */
export function loadOrt(): Promise<Ort> {
  ortModule ??= import("onnxruntime-node").then(
    (m) => ((m as unknown as { default?: Ort }).default ?? m) as Ort,
    (e: unknown) => {
      ortModule = undefined;
      // An optional peer of the lingc package: only the onnx backend needs it.
      throw new LingcError(`the onnx backend needs the onnxruntime-node package, which could not be loaded (${e instanceof Error ? e.message.split("\n")[0] : String(e)}); install it beside lingc: ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0`);
    },
  );
  return ortModule;
}

const TO_ORT: Partial<Record<DType, OrtTypes.Tensor.Type>> = { f32: "float32", i64: "int64", i32: "int32", bool: "bool", u8: "uint8" };

export function toOrt(ort: Ort, t: Tensor): OrtTensor {
  const type = TO_ORT[t.dtype];
  if (!type) throw new LingcError(`the ONNX Runtime binding cannot take ${t.dtype} tensors`);
  const n = t.numel;
  const dims = [...t.shape];
  switch (t.dtype) {
    case "f32":
      return new ort.Tensor("float32", Float32Array.from(t.data), dims);
    case "i64":
      return new ort.Tensor("int64", BigInt64Array.from(t.data, (v) => BigInt(v)), dims);
    case "i32":
      return new ort.Tensor("int32", Int32Array.from(t.data), dims);
    case "bool":
      return new ort.Tensor("bool", Uint8Array.from(t.data), dims);
    default:
      return new ort.Tensor("uint8", Uint8Array.from(t.data.subarray(0, n)), dims);
  }
}

export function fromOrt(t: OrtTensor, name: string): Tensor {
  const shape = t.dims.map(Number);
  switch (t.type) {
    case "float32":
      return new Tensor("f32", shape, Float32Array.from(t.data as Float32Array));
    case "int64":
      return new Tensor("i64", shape, Float64Array.from(t.data as BigInt64Array, (v) => Number(v)));
    case "int32":
      return new Tensor("i32", shape, Float64Array.from(t.data as Int32Array));
    case "bool":
    case "uint8":
      return new Tensor(t.type === "bool" ? "bool" : "u8", shape, Float64Array.from(t.data as Uint8Array));
    default:
      throw new LingcError(`ONNX output '${name}' has type ${t.type}, which lingc does not read back`);
  }
}

export async function createSession(bytes: Uint8Array, weightsDir: string): Promise<OrtSession> {
  const ort = await loadOrt();
  try {
    return await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: "all",
      extra: { session: { model_external_initializers_file_folder_path: weightsDir } },
    });
  } catch (e) {
    throw new LingcError(`ONNX Runtime could not load the model: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** A runner over an ONNX session; `observed` sessions also output every named IR value. */
export function sessionRunner(m: Module, ck: Checkpoint | undefined, opset?: number): GraphRunner {
  const weightsDir = ck?.dir ?? ".";
  const layout = () => (ck ? checkpointLayout(ck) : unboundLayout());
  // ONNX Runtime here is the Node binding (no bf16 tensors) on the CPU provider (no bf16 kernels).
  const forCpu = () => ({ opset, weights: layout(), f32Boundary: true, emulateBf16: true });
  let plain: Promise<OrtSession> | undefined;
  let exposedSession: Promise<{ s: OrtSession; exposed: Map<string, ExposedValue> }> | undefined;
  return {
    async run(inputs, observe) {
      const ort = await loadOrt();
      const feeds: Record<string, OrtTensor> = {};
      // The graph takes bf16 and f16 inputs as f32 (f32Boundary): their values, exactly.
      for (const [k, v] of Object.entries(inputs)) feeds[k] = toOrt(ort, v.dtype === "bf16" || v.dtype === "f16" ? new Tensor("f32", v.shape, v.data) : v);
      let session: OrtSession;
      let exposed = new Map<string, ExposedValue>();
      if (observe) {
        exposedSession ??= (async () => {
          const e = emitOnnx(m, { ...forCpu(), exposeNamed: true });
          return { s: await createSession(e.bytes, weightsDir), exposed: e.exposed };
        })();
        ({ s: session, exposed } = await exposedSession);
      } else {
        plain ??= createSession(emitOnnx(m, forCpu()).bytes, weightsDir);
        session = await plain;
      }
      const results = await session.run(feeds);
      const out: Record<string, Tensor> = {};
      for (const r of m.entry!.results) {
        const t = fromOrt(results[r.name!]!, r.name!);
        const q = r.value.type.quant;
        // A scaled fp8 output comes as its values (f32, exact) and its scales.
        const dt = r.value.type.dtype;
        if (q) out[r.name!] = new Tensor(dt, t.shape, t.data, { layout: q, scales: Float32Array.from(fromOrt(results[`${r.name!}${SCALE_SUFFIX}`]!, r.name!).data) });
        else out[r.name!] = typedAsDeclared(t, dt);
      }
      if (observe) for (const [onnxName, v] of exposed) if (results[onnxName]) observe(v.name, typedAsDeclared(fromOrt(results[onnxName]!, onnxName), v.dtype));
      return out;
    },
  };
}

/**
 * A graph cut into pipeline stages: one ONNX model (session) per stage, run in turn, each fed the
 * graph inputs and earlier stages' results its chain names (ir/stages.ts).
 */
function stagedRunner(m: Module, ck: Checkpoint | undefined, opset?: number): GraphRunner {
  const chain = splitStages(m);
  const runners = chain.stages.map((st) => sessionRunner(st.module, ck, opset));
  return {
    async run(inputs, observe) {
      const made: Record<string, Tensor>[] = [];
      for (const [k, st] of chain.stages.entries()) {
        const feeds: Record<string, Tensor> = {};
        st.inputs.forEach((src, j) => {
          feeds[st.module.entry!.params[j]!.name!] = "input" in src ? inputs[src.input]! : made[src.stage]![src.result]!;
        });
        made.push(await runners[k]!.run(feeds, observe));
      }
      return Object.fromEntries(chain.outputs.map((o) => [o.name, made[o.stage]![o.result]!]));
    },
  };
}

export const onnxBackend: Backend = {
  name: "onnx",
  summary: "ONNX (standard ai.onnx ops) run by ONNX Runtime on the CPU",
  target: "onnx",
  lowers: (name) => onnxLowering(name) !== undefined,
  async load(program, weights): Promise<LoadedModel> {
    const opset = program.profile?.kind === "onnx" ? program.profile.opset : undefined;
    // ONNX Runtime reads the checkpoint's files itself: every weight is checked once first (a NaN
    // weight would make every output NaN without a word).
    const checked = new Set<string>();
    for (const m of program.graphs)
      for (const w of collectWeights(m))
        if (!checked.has(w.name)) {
          checked.add(w.name);
          weights.check?.(w.name, w.type);
        }
    return {
      graphs: Object.fromEntries(program.graphs.map((m) => [m.name, (isStaged(m) ? stagedRunner : sessionRunner)(m, weights.checkpoint, opset)])),
      signatures: Object.fromEntries(program.graphs.map((m) => [m.name, signatureOf(m)])),
      close: () => undefined,
    };
  },
};
