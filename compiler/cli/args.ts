/**
 * A small declarative command-line parser: each command lists its positionals and options, and
 * anything else (an unknown option, a missing value, a missing positional) is a usage error that
 * names the culprit and points to --help.
 */
import { LingcError } from "../../ir/errors";

export interface OptionSpec {
  name: string;
  /** Placeholder of the option's value; options without one are flags. */
  value?: string;
  help: string;
  required?: boolean;
  choices?: readonly string[];
}

export interface CommandSpec {
  name: string;
  summary: string;
  positionals: { name: string; help: string; optional?: boolean }[];
  options: OptionSpec[];
  /** Extra lines for --help (examples, notes). */
  notes?: string[];
}

export class UsageError extends LingcError {
  constructor(msg: string, readonly command?: string) {
    super(msg);
    this.name = "UsageError";
  }
}

export interface ParsedArgs {
  positionals: string[];
  options: Map<string, string | true>;
}

export function parseArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const positionals: string[] = [];
  const options = new Map<string, string | true>();
  const help = `(see 'lingc ${spec.name} --help')`;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--") || a === "--") {
      if (a.startsWith("-") && a.length > 1 && a !== "-") throw new UsageError(`unknown option '${a}' ${help}`, spec.name);
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = a.slice(2, eq < 0 ? undefined : eq);
    const opt = spec.options.find((o) => o.name === name);
    if (!opt) throw new UsageError(`unknown option '--${name}' for '${spec.name}' ${help}`, spec.name);
    if (options.has(name)) throw new UsageError(`option '--${name}' is given twice`, spec.name);
    if (!opt.value) {
      if (eq >= 0) throw new UsageError(`option '--${name}' takes no value`, spec.name);
      options.set(name, true);
      continue;
    }
    let v: string;
    if (eq >= 0) v = a.slice(eq + 1);
    else {
      const nextArg = argv[i + 1];
      if (nextArg === undefined || (nextArg.startsWith("--") && nextArg.length > 2)) throw new UsageError(`option '--${name}' needs a value (${opt.value})`, spec.name);
      v = nextArg;
      i++;
    }
    if (opt.choices && !opt.choices.includes(v)) {
      throw new UsageError(`option '--${name}' must be one of ${opt.choices.join(", ")}, got '${v}'`, spec.name);
    }
    options.set(name, v);
  }
  for (const o of spec.options) {
    if (o.required && !options.has(o.name)) throw new UsageError(`'lingc ${spec.name}' needs --${o.name} ${o.value ?? ""} ${help}`.replace(/\s+/g, " "), spec.name);
  }
  if (positionals.length < spec.positionals.filter((p) => !p.optional).length) {
    throw new UsageError(`'lingc ${spec.name}' needs ${spec.positionals.map((p) => `<${p.name}>`).join(" ")} ${help}`, spec.name);
  }
  if (positionals.length > spec.positionals.length) {
    throw new UsageError(`unexpected argument '${positionals[spec.positionals.length]}' ${help}`, spec.name);
  }
  return { positionals, options };
}

export function str(a: ParsedArgs, name: string): string | undefined {
  const v = a.options.get(name);
  return typeof v === "string" ? v : undefined;
}

export function flag(a: ParsedArgs, name: string): boolean {
  return a.options.get(name) === true;
}

export function int(a: ParsedArgs, name: string, min = 0): number | undefined {
  const v = str(a, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`option '--${name}' must be an integer >= ${min}, got '${v}'`);
  return Number(v);
}

export function helpText(spec: CommandSpec): string {
  const lines = [`usage: lingc ${spec.name} ${spec.positionals.map((p) => (p.optional ? `[<${p.name}>]` : `<${p.name}>`)).join(" ")} [options]`, "", spec.summary, ""];
  if (spec.positionals.length) {
    lines.push("arguments:");
    for (const p of spec.positionals) lines.push(`  <${p.name}>`.padEnd(28) + p.help);
    lines.push("");
  }
  lines.push("options:");
  for (const o of [...spec.options, { name: "debug", help: "show stack traces of internal errors" }, { name: "help", help: "show this help" }] as OptionSpec[]) {
    const head = `  --${o.name}${o.value ? ` ${o.value}` : ""}`;
    const extra = o.choices ? ` (${o.choices.join(" | ")})` : "";
    lines.push(head.padEnd(28) + o.help + extra + (o.required ? " [required]" : ""));
  }
  if (spec.notes?.length) lines.push("", ...spec.notes);
  return lines.join("\n") + "\n";
}

/** `--dims B=2,S=5`: sizes of a graph's symbols. */
export function parseDims(text: string | undefined, option = "--dims"): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of (text ?? "").split(",").filter(Boolean)) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\d+)\s*$/.exec(item);
    if (!m || Number(m[2]) < 1) throw new UsageError(`${option}: '${item}' is not SYMBOL=N with N >= 1`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}
