/**
 * Pipelines as text: `cse,dce,fusion{profile=cuda-sm90a,disable=router,swiglu}`. Passes are
 * separated by commas; a pass's options go in braces as key=value, separated by commas or spaces,
 * and a list option takes every following item that has no '=' (so `disable=router,swiglu` is one
 * option). Unknown passes, unknown options and bad values are refused naming them. A pipeline prints
 * back in a canonical form (options in declaration order) that parses to the same pipeline.
 */
import { LingcError } from "../../ir/errors";
import type { PassInstance, PassOptionSpec, PassOptionValue, PassOptions } from "./pass";
import { getPass } from "./registry";

function splitTop(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if (ch === "{") depth++;
    if (ch === "}") {
      depth--;
      if (depth < 0) throw new LingcError(`pipeline '${text}': '}' without '{'`);
    }
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (depth !== 0) throw new LingcError(`pipeline '${text}': '{' without '}'`);
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s.length > 0);
}

function parseValue(pass: string, key: string, spec: PassOptionSpec, raw: string[]): PassOptionValue {
  const where = `option '${key}' of pass '${pass}'`;
  const checkChoice = (v: string) => {
    if (spec.choices && !spec.choices.includes(v)) throw new LingcError(`${where}: '${v}' is not one of ${spec.choices.join(", ")}`);
  };
  if (spec.kind === "list") {
    const items = raw.map((s) => s.trim()).filter(Boolean);
    items.forEach(checkChoice);
    return items;
  }
  if (raw.length !== 1) throw new LingcError(`${where} takes one value, got ${raw.join(",")}`);
  const v = raw[0]!.trim();
  switch (spec.kind) {
    case "int": {
      const n = Number(v);
      if (!Number.isSafeInteger(n)) throw new LingcError(`${where} must be an integer, got '${v}'`);
      return n;
    }
    case "bool":
      if (v !== "true" && v !== "false") throw new LingcError(`${where} must be true or false, got '${v}'`);
      return v === "true";
    case "string":
      checkChoice(v);
      return v;
  }
}

function parseInstance(text: string): PassInstance {
  const brace = text.indexOf("{");
  const name = (brace < 0 ? text : text.slice(0, brace)).trim();
  const pass = getPass(name);
  const options: Record<string, PassOptionValue> = {};
  if (brace >= 0) {
    if (!text.endsWith("}")) throw new LingcError(`pipeline element '${text}': text after '}'`);
    const body = text.slice(brace + 1, -1);
    let key: string | undefined;
    let values: string[] = [];
    const flush = () => {
      if (key === undefined) return;
      const spec = pass.options[key];
      if (!spec) {
        const known = Object.keys(pass.options);
        throw new LingcError(`pass '${name}' has no option '${key}' (${known.length ? `it has: ${known.join(", ")}` : "it takes none"})`);
      }
      if (Object.prototype.hasOwnProperty.call(options, key)) throw new LingcError(`option '${key}' of pass '${name}' is given twice`);
      options[key] = parseValue(name, key, spec, values);
    };
    for (const item of body.split(/[,\s]+/).filter(Boolean)) {
      const eq = item.indexOf("=");
      if (eq < 0) {
        if (key === undefined || pass.options[key]?.kind !== "list") throw new LingcError(`pass '${name}': '${item}' is not key=value`);
        values.push(item);
        continue;
      }
      flush();
      key = item.slice(0, eq).trim();
      values = [item.slice(eq + 1)];
    }
    flush();
  }
  return { pass, options };
}

/** Parses a pipeline text; an empty text is the empty pipeline. */
export function parsePipeline(text: string): PassInstance[] {
  return splitTop(text).map(parseInstance);
}

/** The canonical text of one pass with its options. */
export function instanceText(p: PassInstance): string {
  const keys = Object.keys(p.pass.options).filter((k) => p.options[k] !== undefined);
  if (!keys.length) return p.pass.name;
  const fmt = (v: PassOptionValue) => (Array.isArray(v) ? v.join(",") : String(v));
  return `${p.pass.name}{${keys.map((k) => `${k}=${fmt(p.options[k]!)}`).join(",")}}`;
}

export function pipelineText(ps: readonly PassInstance[]): string {
  return ps.map(instanceText).join(",");
}

/** Option values with a pass's defaults filled in by the caller's reads: a typed reader. */
export function optionReader(options: PassOptions) {
  return {
    string: (k: string, dflt?: string) => (options[k] as string | undefined) ?? dflt,
    int: (k: string, dflt: number) => (options[k] as number | undefined) ?? dflt,
    bool: (k: string, dflt: boolean) => (options[k] as boolean | undefined) ?? dflt,
    list: (k: string) => (options[k] as readonly string[] | undefined) ?? [],
  };
}
