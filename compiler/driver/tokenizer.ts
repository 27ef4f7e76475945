/**
 * Text in and out: a checkpoint folder's tokenizer.json (and tokenizer_config.json, when present),
 * read by Hugging Face's tokenizers.js (@huggingface/tokenizers: pure JS, the Hub's tokenizer
 * formats). Without a tokenizer.json, text is refused by name: ids are the model's only language.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { LingcError } from "../../ir/errors";
import { textTokenizer, type TextTokenizer } from "../text-tokenizer";

export type { TextTokenizer } from "../text-tokenizer";

function readJson(path: string): object {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as object;
  } catch (e) {
    throw new LingcError(`${path}: ${e instanceof SyntaxError ? `not JSON (${e.message})` : ((e as NodeJS.ErrnoException).code ?? String(e))}`);
  }
}

/** A checkpoint folder's tokenizer files as JSON and the tokenizer read from them (which also checks them), or undefined when it has no tokenizer.json. */
function readTokenizer(dir: string | undefined): { files: { tokenizer: object; config: object }; tokenizer: TextTokenizer } | undefined {
  if (!dir || !existsSync(dir) || !statSync(dir).isDirectory() || !existsSync(join(dir, "tokenizer.json"))) return undefined;
  const files = { tokenizer: readJson(join(dir, "tokenizer.json")), config: existsSync(join(dir, "tokenizer_config.json")) ? readJson(join(dir, "tokenizer_config.json")) : {} };
  return { files, tokenizer: textTokenizer(files.tokenizer, files.config, join(dir, "tokenizer.json")) };
}

/** The tokenizer files as JSON (what a web app's bundle embeds; a broken file is an error here, where it is named). */
export function tokenizerFiles(dir: string | undefined): { tokenizer: object; config: object } | undefined {
  return readTokenizer(dir)?.files;
}

/** The tokenizer of a checkpoint folder, or undefined when it has no tokenizer.json. */
export function folderTokenizer(dir: string | undefined): TextTokenizer | undefined {
  return readTokenizer(dir)?.tokenizer;
}

/** The tokenizer, or an error saying that text needs one. */
export function requireTokenizer(dir: string | undefined, label: string, what: string): TextTokenizer {
  const t = folderTokenizer(dir);
  if (!t) throw new LingcError(`${what} needs a tokenizer.json in the checkpoint folder, and ${label} has none${dir ? ` (looked in ${dir})` : ""}; give token ids instead`);
  return t;
}
