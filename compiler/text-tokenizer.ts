/**
 * Encode and decode over a tokenizer.json's contents with Hugging Face's tokenizers.js
 * (@huggingface/tokenizers): browser-safe (no files), for the CLI and API in Node
 * (compiler/driver/tokenizer.ts reads the files) and for web apps (the esbuild plugin embeds them).
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { LingcError } from "../ir/errors";

export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** Encode and decode over tokenizer.json's contents (browser-safe: no files). */
export function textTokenizer(json: object, config: object, where = "tokenizer.json"): TextTokenizer {
  let t: Tokenizer;
  try {
    t = new Tokenizer(json, config);
  } catch (e) {
    throw new LingcError(`${where}: not a tokenizer tokenizers.js can read (${e instanceof Error ? e.message : String(e)})`);
  }
  return {
    // The prompt as written: no special tokens added (a chat template is the caller's to apply).
    encode: (text) => t.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => t.decode([...ids], { skip_special_tokens: true }),
  };
}
