/**
 * A small SentencePiece-style BPE tokenizer.json (Metaspace pre-tokenizer and decoder) over ling-tiny's
 * 512 ids, for the text tests: <unk> 0, </s> 1 (the config's eos_token_id), the word separator, the
 * letters, merges that make a few words whole, and filler pieces up to the vocabulary's size.
 */
export function tinyTokenizer(vocabSize = 512): { tokenizer: object; config: object } {
  const vocab: Record<string, number> = { "<unk>": 0, "</s>": 1, "\u2581": 2 };
  for (const c of "abcdefghijklmnopqrstuvwxyz") vocab[c] = Object.keys(vocab).length;
  const merges: [string, string][] = [];
  const merge = (a: string, b: string) => {
    merges.push([a, b]);
    vocab[a + b] = Object.keys(vocab).length;
  };
  for (const w of ["the", "cat", "sat", "on", "mat"]) {
    let piece = "\u2581";
    for (const ch of w) {
      merge(piece, ch);
      piece += ch;
    }
  }
  for (let i = 0; Object.keys(vocab).length < vocabSize; i++) vocab[`\u2581w${i}`] = Object.keys(vocab).length;
  const metaspace = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: true };
  return {
    tokenizer: {
      version: "1.0",
      added_tokens: [
        { id: 0, content: "<unk>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
        { id: 1, content: "</s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      ],
      normalizer: null,
      pre_tokenizer: metaspace,
      post_processor: null,
      decoder: metaspace,
      model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
    },
    config: { eos_token: "</s>", unk_token: "<unk>", model_max_length: 2048 },
  };
}
