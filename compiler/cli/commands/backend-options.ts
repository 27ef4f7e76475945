/**
 * What the commands that run a checkpoint share: its positional argument, and the options for the
 * backends that compile at load time (wgsl): fusions to switch off and the WebGPU profile.
 */
import type { BackendOptions } from "../../../backends/backend";
import { str, type OptionSpec, type ParsedArgs } from "../args";

export const CHECKPOINT_POSITIONAL = { name: "checkpoint", help: "a checkpoint folder (config.json + *.safetensors)" };

export const BACKEND_OPTIONS: OptionSpec[] = [
  { name: "no-fuse", value: "LIST", help: "fusions to switch off (router, qk_norm_rope, attention, swiglu, residual_norm, norm_matmul, elementwise, or all)" },
  { name: "target-profile", value: "NAME", help: "WebGPU limits to compile for: baseline (default) or adapter", choices: ["baseline", "adapter"] },
  { name: "limit", value: "NAME=V,...", help: "override WebGPU limits, e.g. maxStorageBufferBindingSize=65536" },
];

export function backendOptions(args: ParsedArgs): BackendOptions {
  const list = (name: string) => str(args, name)?.split(",").map((s) => s.trim()).filter(Boolean);
  return { noFuse: list("no-fuse"), targetProfile: str(args, "target-profile"), limits: list("limit") };
}
