/** What a pass is: a named, documented transformation of a module, in place. */
import type { Module } from "../../ir/module";

export interface Pass {
  name: string;
  /** One line: what the pass guarantees. */
  summary: string;
  run(m: Module): void;
}
