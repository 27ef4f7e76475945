/** What a pass is: a named, documented transformation of a module, in place. */
import type { Module } from "../../ir/module";

/** Settings some passes read: which fusions are off, and what the target allows. */
export interface PassContext {
  /** Fusion names switched off (`--no-fuse=swiglu`); "all" switches every fusion off. */
  disabledFusions: ReadonlySet<string>;
  /**
   * Workgroup (shared) memory a kernel may use, in bytes: the norm_matmul fusion keeps one normalized
   * row there, so it applies only when a row fits. Undefined: no limit.
   */
  maxWorkgroupBytes?: number;
  /**
   * Dense matmuls (`linear`) run in a GEMM library on this target (cuBLASLt on CUDA), so no fusion
   * may absorb one into a generated kernel: no norm_matmul, no dense swiglu, no linear epilogues,
   * and the router kernel starts after the logits.
   */
  libraryMatmuls?: boolean;
}

export const DEFAULT_PASS_CONTEXT: PassContext = { disabledFusions: new Set() };

export interface Pass {
  name: string;
  /** One line: what the pass guarantees. */
  summary: string;
  run(m: Module, ctx: PassContext): void;
}
