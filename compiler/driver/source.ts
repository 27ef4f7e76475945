/**
 * Where the driver's modules come from: a built-in config, an HF checkpoint folder (config.json and
 * weights), a config.json file, or an IR text (`.lir`). A source gives fresh, verified modules by
 * graph name (passes change modules in place, so each compile gets its own) and says where its
 * weights are, when it has any.
 */
import { readFileSync } from "node:fs";
import { LingcError } from "../../ir/errors";
import type { Module } from "../../ir/module";
import { parseModule } from "../../ir/parse";
import { verifyModule } from "../../ir/verify";
import type { LingConfig } from "../../models/config";
import { buildLing2, GRAPHS } from "../../models/ling2";
import { resolveModel } from "../../models/resolve";

export interface Source {
  /** What the user named, for messages. */
  label: string;
  /** The graphs the source has. */
  graphs: readonly string[];
  /** A fresh, verified module of one graph. */
  module(graph: string): Module;
  /** The checkpoint (folder or .safetensors file) holding the weights, when the source has one. */
  weights?: string;
  /** The Ling config the graphs were traced from (model sources only). */
  config?: LingConfig;
}

function lirSource(path: string): Source {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new LingcError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const parse = () => {
    const m = parseModule(text, path);
    verifyModule(m);
    return m;
  };
  const name = parse().name;
  return {
    label: path,
    graphs: [name],
    module(graph) {
      if (graph !== name) throw new LingcError(`${path} holds the graph '${name}', not '${graph}'`);
      return parse();
    },
  };
}

/** Opens a source; `weights` (a checkpoint folder or .safetensors file) overrides where weights come from. */
export function openSource(arg: string, weights?: string): Source {
  if (arg.endsWith(".lir")) return { ...lirSource(arg), ...(weights ? { weights } : {}) };
  const spec = resolveModel(arg);
  return {
    label: arg,
    graphs: GRAPHS,
    module(graph) {
      if (!(GRAPHS as readonly string[]).includes(graph)) throw new LingcError(`unknown graph '${graph}' (choose ${GRAPHS.join(" or ")})`);
      return buildLing2(spec.config, graph as (typeof GRAPHS)[number]);
    },
    weights: weights ?? spec.checkpointDir,
    config: spec.config,
  };
}
