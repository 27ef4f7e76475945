/** The backends `lingc run|generate --backend NAME` can use. */
import { LingcError } from "../ir/errors";
import type { Backend } from "./backend";
import { interpBackend } from "./interp";
import { onnxBackend } from "./onnx/runtime";
import { wgslBackend } from "./wgsl/backend";
import { cudaBackend } from "./cuda/backend";

const BACKENDS: Record<string, Backend> = {
  interp: interpBackend,
  onnx: onnxBackend,
  wgsl: wgslBackend,
  cuda: cudaBackend,
};

export const BACKEND_NAMES = Object.keys(BACKENDS);

export function getBackend(name: string): Backend {
  if (!(name in BACKENDS)) throw new LingcError(`unknown backend '${name}' (choose ${BACKEND_NAMES.join(", ")})`);
  return BACKENDS[name]!;
}
