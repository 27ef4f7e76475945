/** The backends `lingc run|generate --backend NAME` can use. */
import { LingcError, NotImplementedError } from "../ir/errors";
import type { Backend } from "./backend";
import { interpBackend } from "./interp";
import { onnxBackend } from "./onnx/runtime";
import { wgslBackend } from "./wgsl/backend";

const BACKENDS: Record<string, Backend | undefined> = {
  interp: interpBackend,
  onnx: onnxBackend,
  wgsl: wgslBackend,
  cuda: undefined,
};

export const BACKEND_NAMES = Object.keys(BACKENDS);

export function getBackend(name: string): Backend {
  if (!(name in BACKENDS)) throw new LingcError(`unknown backend '${name}' (choose ${BACKEND_NAMES.join(", ")})`);
  const b = BACKENDS[name];
  if (!b) throw new NotImplementedError(`the ${name} backend cannot run models yet (use --backend interp)`);
  return b;
}
