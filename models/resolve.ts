/**
 * Turns the `<model>` argument of the CLI into a configuration: a built-in name, a checkpoint
 * folder holding config.json, or a config.json file.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { LingcError } from "../ir/errors";
import { BUILTIN_CONFIGS } from "./builtin";
import { configFromHf, type LingConfig } from "./config";

export interface ModelSpec {
  config: LingConfig;
  /** The checkpoint folder, when the model came from one. */
  checkpointDir?: string;
}

export function readConfigFile(path: string, name: string): LingConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new LingcError(`cannot read ${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LingcError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return configFromHf(json, name, path, text);
}

export function resolveModel(arg: string): ModelSpec {
  const builtin = BUILTIN_CONFIGS[arg];
  if (builtin) return { config: configFromHf(builtin, arg, `built-in config ${arg}`) };
  const path = resolve(arg);
  if (existsSync(path) && statSync(path).isDirectory()) {
    const cfgPath = join(path, "config.json");
    if (!existsSync(cfgPath)) throw new LingcError(`${arg}: the folder has no config.json`);
    return { config: readConfigFile(cfgPath, basename(path)), checkpointDir: path };
  }
  if (existsSync(path) && path.endsWith(".json")) {
    return { config: readConfigFile(path, basename(dirname(path))) };
  }
  throw new LingcError(`unknown model '${arg}': not a built-in (${Object.keys(BUILTIN_CONFIGS).join(", ")}) and not a folder with a config.json`);
}

/** Like resolveModel, but the model must be a checkpoint folder (for commands that need weights). */
export function resolveCheckpoint(arg: string): ModelSpec & { checkpointDir: string } {
  const spec = resolveModel(arg);
  if (!spec.checkpointDir) throw new LingcError(`'${arg}' is a built-in config with no weights: give a checkpoint folder (config.json + *.safetensors)`);
  return spec as ModelSpec & { checkpointDir: string };
}
