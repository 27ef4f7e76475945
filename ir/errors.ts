/**
 * Errors that reach users. A LingcError is an expected failure caused by the input (a model, an IR
 * text, a checkpoint, a command-line option); the CLI prints its message as one line and exits
 * non-zero without a stack trace. Anything else that escapes is a bug in lingc.
 */

/** A place in a source: an IR text (.lir), a DSL file (models/ling2.ts) or a config file. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

export function formatPos(p: SourcePos): string {
  return `${p.file}:${p.line}:${p.col}`;
}

export class LingcError extends Error {
  /** Where the fault is, when it has a place in a text. */
  readonly pos: SourcePos | undefined;
  readonly detail: string;

  constructor(detail: string, pos?: SourcePos) {
    super(pos ? `${formatPos(pos)}: ${detail}` : detail);
    this.name = "LingcError";
    this.detail = detail;
    this.pos = pos;
  }
}

/** Thrown by a feature that is declared but not built yet: says so instead of computing something else. */
export class NotImplementedError extends LingcError {
  constructor(what: string, pos?: SourcePos) {
    super(`not implemented: ${what}`, pos);
    this.name = "NotImplementedError";
  }
}

/**
 * An error found by an op's shape/dtype rule. It has no location of its own; the verifier or the
 * DSL adds the op's location and rethrows it as a LingcError.
 */
export class OpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OpError";
  }
}

export function fail(message: string, pos?: SourcePos): never {
  throw new LingcError(message, pos);
}

/** A list for an error message: the first `shown` items, then how many more (a message stays one short line). */
export function listSome(items: readonly string[], shown = 5): string {
  if (items.length <= shown) return items.join(", ");
  return `${items.slice(0, shown).join(", ")} and ${items.length - shown} more`;
}
