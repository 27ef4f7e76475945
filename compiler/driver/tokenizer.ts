/**
 * Text in and out: a checkpoint folder's tokenizer.json (and tokenizer_config.json, when present),
 * read by Hugging Face's tokenizers.js (@huggingface/tokenizers: pure JS, the Hub's tokenizer
 * formats). Without a tokenizer.json, text is refused by name: ids are the model's only language.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { LingcError } from "../../ir/errors";

export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

function readJson(path: string): object {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as object;
  } catch (e) {
    throw new LingcError(`${path}: ${e instanceof SyntaxError ? `not JSON (${e.message})` : ((e as NodeJS.ErrnoException).code ?? String(e))}`);
  }
}

/** The tokenizer of a checkpoint folder, or undefined when it has no tokenizer.json. */
export function folderTokenizer(dir: string | undefined): TextTokenizer | undefined {
  if (!dir || !existsSync(dir) || !statSync(dir).isDirectory() || !existsSync(join(dir, "tokenizer.json"))) return undefined;
  const json = readJson(join(dir, "tokenizer.json"));
  const config = existsSync(join(dir, "tokenizer_config.json")) ? readJson(join(dir, "tokenizer_config.json")) : {};
  let t: Tokenizer;
  try {
    t = new Tokenizer(json, config);
  } catch (e) {
    throw new LingcError(`${join(dir, "tokenizer.json")}: not a tokenizer tokenizers.js can read (${e instanceof Error ? e.message : String(e)})`);
  }
  return {
    // The prompt as written: no special tokens added (a chat template is the caller's to apply).
    encode: (text) => t.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => t.decode([...ids], { skip_special_tokens: true }),
  };
}

/** The tokenizer, or an error saying that text needs one. */
export function requireTokenizer(dir: string | undefined, label: string, what: string): TextTokenizer {
  const t = folderTokenizer(dir);
  if (!t) throw new LingcError(`${what} needs a tokenizer.json in the checkpoint folder, and ${label} has none${dir ? ` (looked in ${dir})` : ""}; give token ids instead`);
  return t;
}
