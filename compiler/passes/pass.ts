/**
 * What a pass is: a named, documented transformation of a module, in place, with declared options
 * (`fusion{profile=cuda-sm90a,disable=router}`) and the analyses it leaves valid.
 */
import type { Analysis, AnalysisManager } from "../../ir/analysis";
import type { Module } from "../../ir/module";
import type { ProfileRegistry } from "../../ir/target";

export type PassOptionKind = "string" | "int" | "bool" | "list";

export interface PassOptionSpec {
  kind: PassOptionKind;
  doc: string;
  /** Allowed values (for a list: allowed items). */
  choices?: readonly string[];
}

export type PassOptionValue = string | number | boolean | readonly string[];
export type PassOptions = Readonly<Record<string, PassOptionValue>>;

/** What a running pass can ask for besides the module. */
export interface PassContext {
  analyses: AnalysisManager;
  /** Target profiles by name (the built-in ones and any the driver registered). */
  profiles: ProfileRegistry;
  /** Reports what a pass decided (one line per decision; the CLI prints them to stderr). */
  remark?: (text: string) => void;
}

export interface Pass {
  name: string;
  /** One line: what the pass guarantees. */
  summary: string;
  options: Readonly<Record<string, PassOptionSpec>>;
  /** Analyses still valid after the pass ("all": it changes nothing they depend on). */
  preserves?: readonly Analysis<unknown>[] | "all";
  run(m: Module, options: PassOptions, ctx: PassContext): void;
}

/** A pass with its options, as one element of a pipeline. */
export interface PassInstance {
  pass: Pass;
  options: PassOptions;
}
