/**
 * Where the driver's modules come from: a built-in config, an HF checkpoint folder (config.json and
 * weights), a config.json file, an IR text (`.lir`), or a model file written in the DSL (`.ts`,
 * `.mjs`; model-file.ts). A source gives fresh, verified modules by graph name (passes change
 * modules in place, so each compile gets its own) and says where its weights are, when it has any.
 */
import { readFileSync } from "node:fs";
import type { DType } from "../../ir/dtype";
import { LingcError } from "../../ir/errors";
import type { Module } from "../../ir/module";
import { parseModule } from "../../ir/parse";
import { verifyModule } from "../../ir/verify";
import type { LingConfig } from "../../models/config";
import { buildLing2, GRAPHS } from "../../models/ling2";
import { resolveModel } from "../../models/resolve";
import { isModelFile, modelFileTexts } from "./model-file";

export interface Source {
  /** What the user named, for messages. */
  label: string;
  /** The graphs the source has (compiled and loaded by default). */
  graphs: readonly string[];
  /** Graphs it can also build, only when asked for by name (a model's training graph). */
  onRequest?: readonly string[];
  /** A fresh, verified module of one graph. */
  module(graph: string): Module;
  /** The checkpoint (folder or .safetensors file) holding the weights, when the source has one. */
  weights?: string;
  /** The Ling config the graphs were traced from (model sources only). */
  config?: LingConfig;
}

/** A source of modules given as text (an IR file, or what a model file printed). */
function textSource(label: string, texts: readonly string[]): Source {
  const parse = (text: string) => {
    const m = parseModule(text, label);
    verifyModule(m);
    return m;
  };
  const byName = new Map(texts.map((t) => [parse(t).name, t]));
  if (byName.size !== texts.length) throw new LingcError(`${label} defines two graphs of the same name`);
  return {
    label,
    graphs: [...byName.keys()],
    module(graph) {
      const text = byName.get(graph);
      if (text === undefined) throw new LingcError(`${label} has no graph '${graph}' (it has ${[...byName.keys()].join(", ")})`);
      return parse(text);
    },
  };
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new LingcError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** How a model source is traced (model sources only). */
export interface SourceOptions {
  /** The dtype activations are computed in (`--dtype`): weights stored otherwise are cast to it. */
  dtype?: DType;
}

/** Opens a source; `weights` (a checkpoint folder or .safetensors file) overrides where weights come from. */
export async function openSource(arg: string, weights?: string, options: SourceOptions = {}): Promise<Source> {
  const withWeights = (s: Source): Source => (weights ? { ...s, weights } : s);
  const traced = () => {
    if (options.dtype) throw new LingcError(`--dtype applies to a model traced from a config; ${arg} is already a graph (its dtypes are written in it)`);
  };
  if (arg.endsWith(".lir")) return traced(), withWeights(textSource(arg, [readText(arg)]));
  if (isModelFile(arg)) return traced(), withWeights(textSource(arg, await modelFileTexts(arg)));
  const spec = resolveModel(arg);
  const config = options.dtype ? { ...spec.config, dtype: options.dtype } : spec.config;
  return {
    label: arg,
    graphs: GRAPHS.filter((g) => g !== "draft" && g !== "train" && g !== "train-step"),
    onRequest: ["draft", "train", "train-step"],
    module(graph) {
      if (!(GRAPHS as readonly string[]).includes(graph)) throw new LingcError(`unknown graph '${graph}' (choose ${GRAPHS.join(" or ")})`);
      return buildLing2(config, graph as (typeof GRAPHS)[number]);
    },
    weights: weights ?? spec.checkpointDir,
    config,
  };
}

/** Whether the source can build a graph of this name (by default or on request). */
export function hasGraph(source: Source, graph: string): boolean {
  return source.graphs.includes(graph) || (source.onRequest ?? []).includes(graph);
}

/** The graphs to load for running `graph`: the default ones, or just it when it is built on request. */
export function graphsFor(source: Source, graph: string): readonly string[] | undefined {
  return source.graphs.includes(graph) ? undefined : [graph];
}
