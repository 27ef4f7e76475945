/**
 * What `lingc view` hands its page: plain JSON, made once by the CLI, read by the page (and by the
 * Model Explorer export). Functions are stored once per distinct text (a pass that leaves a function
 * alone does not copy it); each pass's snapshot names the functions it holds and what changed.
 */

export interface ViewValue {
  name: string;
  type: string;
}

export interface ViewWeight extends ViewValue {
  /** How ops name it as an operand (`@mlp.gate.weight`). */
  ref: string;
  /** Bytes of the elements (FP8 scales excluded). */
  bytes: number;
}

export interface ViewOp {
  /** The op's position in its function's body. */
  id: number;
  op: string;
  /** For calls: the function called. */
  callee?: string;
  /** Operand names as the printer writes them (`%x`, `@weight`). */
  operands: string[];
  results: ViewValue[];
  /** Attributes as the printer writes their values. */
  attrs: [string, string][];
  scope: string;
  /** `file:line:col` of the model code that made the op. */
  loc?: string;
  /** The kernels a target runs it with, when the plan chose. */
  dispatch?: string;
  /** One execution at the view's sizes (calls: the callee's whole cost). */
  flops?: number;
  bytes?: number;
  /** The op's printed line (search and diffs). */
  line: string;
}

export interface ViewFunction {
  name: string;
  attrs: Record<string, string>;
  params: ViewValue[];
  weights: ViewWeight[];
  results: ViewValue[];
  /** The values returned, as operands are written (`%x`, `@w`), one per result. */
  returns: string[];
  ops: ViewOp[];
  /** One call at the view's sizes, calls expanded (absent when no call reaches it from the entry). */
  cost?: { flops: number; bytes: number; ops: number };
  text: string;
}

export interface ViewChange {
  /** Whether the function is new in this pass or its text differs from the previous pass's. */
  status: "added" | "changed";
  /** Ops (ids) whose line did not exist before this pass. */
  ops: number[];
  /** How many lines of the previous body are gone. */
  removed: number;
}

export interface ViewSnapshot {
  /** The pass as the pipeline writes it; "input" for the traced module. */
  pass: string;
  ms: number;
  /** The module's functions in order, as keys into ViewData.functions. */
  functions: string[];
  changes: Record<string, ViewChange>;
  /** Functions the pass removed. */
  removed: string[];
}

export interface ViewData {
  model: string;
  graph: string;
  target: string;
  pipeline: string;
  /** The sizes costs are computed for (B, S, P). */
  dims: Record<string, number>;
  entry: string;
  functions: Record<string, ViewFunction>;
  snapshots: ViewSnapshot[];
  /** Source lines the ops point at: file -> line -> text. */
  sources: Record<string, Record<number, string>>;
}
