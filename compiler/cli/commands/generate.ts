/** `lingc generate <checkpoint>`: generation through the decode graph and its KV cache: greedy, or sampled with a seed; a sequence stops at its end-of-sequence token. */
import { BACKEND_NAMES } from "../../../backends";
import { generate as generateTokens } from "../../../backends/generation";
import type { SamplingOptions } from "../../../backends/sampling";
import { loadModel } from "../../driver/load";
import { requireTokenizer } from "../../driver/tokenizer";
import { hasGraph, openSource } from "../../driver/source";
import { flag, int, str, UsageError, type ParsedArgs } from "../args";
import { LingcError } from "../../../ir/errors";
import type { Command } from "./command";
import { DTYPE_OPTION, MODEL_POSITIONAL, PIPELINE_OPTIONS, sourceOptions, targetSettings, WEIGHTS_OPTION, passesOption } from "./backend-options";

/** "1,2,3;4,5" -> [[1,2,3],[4,5]] */
export function parsePrompts(text: string): number[][] {
  return text.split(";").map((seq, i) => {
    const parts = seq.split(",").map((s) => s.trim());
    if (parts.length === 1 && parts[0] === "") throw new UsageError(`--prompt: sequence ${i + 1} is empty`);
    return parts.map((p, j) => {
      if (!/^\d+$/.test(p)) throw new UsageError(`--prompt: sequence ${i + 1}, item ${j + 1} ('${p}') is not a token id`);
      return Number(p);
    });
  });
}

/** "1,2" -> [1, 2], for an option. */
function parseIds(option: string, text: string): number[] {
  return text.split(",").map((p, j) => {
    if (!/^\s*\d+\s*$/.test(p)) throw new UsageError(`${option}: item ${j + 1} ('${p}') is not a token id`);
    return Number(p);
  });
}

/** --temperature, --top-k, --top-p and --seed, checked as option values (usage errors). */
function samplingOptions(args: ParsedArgs): SamplingOptions {
  const num = (name: string, ok: (v: number) => boolean, want: string): number | undefined => {
    const text = str(args, name);
    if (text === undefined) return undefined;
    const v = Number(text);
    if (text.trim() === "" || !Number.isFinite(v) || !ok(v)) throw new UsageError(`--${name}: '${text}' is not ${want}`);
    return v;
  };
  const temperature = num("temperature", (v) => v >= 0, "a number >= 0") ?? 0;
  const topK = num("top-k", (v) => Number.isSafeInteger(v) && v >= 1, "an integer >= 1");
  const topP = num("top-p", (v) => v > 0 && v <= 1, "a number in (0, 1]");
  const seed = num("seed", (v) => Number.isSafeInteger(v) && v >= 0, "an integer >= 0") ?? 0;
  if (temperature === 0 && (topK !== undefined || topP !== undefined)) throw new UsageError("--top-k and --top-p shape sampling; give --temperature T > 0 with them (0 is greedy)");
  return { temperature, ...(topK !== undefined ? { topK } : {}), ...(topP !== undefined ? { topP } : {}), seed };
}

export const generate: Command = {
  spec: {
    name: "generate",
    summary: "Generation: one prefill pass over the prompt, then one decode step per new token with the KV cache (as the graphs declare it); greedy, or sampled with a seed. Prints the new ids, one line per sequence.",
    positionals: [MODEL_POSITIONAL],
    options: [
      { name: "backend", value: "NAME", help: "which backend runs the graphs (default interp)", choices: BACKEND_NAMES },
      { name: "prompt", value: "IDS", help: "token ids, comma separated; ';' between sequences" },
      { name: "prompt-text", value: "TEXT", help: "a text prompt (needs the checkpoint's tokenizer.json); the new tokens are printed as text" },
      { name: "max-new-tokens", value: "N", help: "how many tokens to generate per sequence", required: true },
      { name: "allow-long-context", help: "allow a prompt plus --max-new-tokens longer than the model's max_position_embeddings" },
      { name: "temperature", value: "T", help: "sample with this temperature (default 0: greedy)" },
      { name: "top-k", value: "K", help: "sample among the K most likely tokens (default: all)" },
      { name: "top-p", value: "P", help: "sample among the most likely tokens whose probabilities sum to P, in (0, 1] (default 1: all)" },
      { name: "seed", value: "N", help: "the sampling seed (default 0): the same seed gives the same ids on every run and backend" },
      { name: "eos-token-id", value: "IDS", help: "ids that end a sequence, comma separated (default: the config's eos_token_id)" },
      { name: "ignore-eos", help: "generate --max-new-tokens for every sequence, past end-of-sequence tokens" },
      { name: "draft", value: "HEAD", help: "speculative decoding: the model's MTP layer drafts the token after next and the main model checks it in the same forward (greedy; the same ids as without)", choices: ["mtp"] },
      WEIGHTS_OPTION,
      DTYPE_OPTION,
      ...PIPELINE_OPTIONS,
    ],
    notes: ["example: lingc generate tests/data/golden/ling-tiny --prompt '5,9,13;7,7,2' --max-new-tokens 6", "         lingc generate <checkpoint with tokenizer.json> --prompt-text 'The capital of France is' --max-new-tokens 8"],
  },
  async run(args, io) {
    const source = await openSource(args.positionals[0]!, str(args, "weights"), sourceOptions(args));
    const idsText = str(args, "prompt");
    const text = str(args, "prompt-text");
    if ((idsText === undefined) === (text === undefined)) throw new UsageError("'lingc generate' needs --prompt IDS or --prompt-text TEXT (one of them; see 'lingc generate --help')");
    const tokenizer = text !== undefined ? requireTokenizer(source.weights, source.label, "--prompt-text") : undefined;
    const prompts = text !== undefined ? [tokenizer!.encode(text)] : parsePrompts(idsText!);
    if (text !== undefined && prompts[0]!.length === 0) throw new UsageError("--prompt-text: the text encodes to no tokens");
    const maxNew = int(args, "max-new-tokens", 0)!;
    // Before any work: a sequence the model was not trained for is refused (RoPE past its positions).
    const limit = source.config?.maxPositionEmbeddings;
    const longest = Math.max(...prompts.map((p) => p.length));
    if (limit !== undefined && longest + maxNew > limit && !flag(args, "allow-long-context")) {
      throw new LingcError(`a prompt of ${longest} tokens plus --max-new-tokens ${maxNew} is ${longest + maxNew} positions, past the model's max_position_embeddings ${limit} (--allow-long-context to run it anyway)`);
    }

    const sampling = samplingOptions(args);
    const eos = flag(args, "ignore-eos") ? [] : str(args, "eos-token-id") !== undefined ? parseIds("--eos-token-id", str(args, "eos-token-id")!) : (source.config?.eosTokenIds ?? []);
    const draft = str(args, "draft") as "mtp" | undefined;
    if (draft && !hasGraph(source, "draft")) throw new UsageError(`--draft mtp: ${source.label} has no draft graph (a Ling model with an MTP layer has one)`);
    if (draft && sampling.temperature > 0) throw new UsageError("--draft mtp is greedy only: leave out --temperature (or give 0)");
    if (draft && (targetSettings(args).stages ?? 1) > 1) throw new UsageError("--draft mtp runs the model in one stage: it does not combine with --stages yet");
    const graphs = draft ? [...new Set([...source.graphs, "draft"])] : undefined;
    const { model, backend } = await loadModel({ source, backend: str(args, "backend") ?? "interp", settings: targetSettings(args), passes: passesOption(args), ...(graphs ? { graphs } : {}) });
    try {
      const t0 = performance.now();
      const how = sampling.temperature > 0 ? `sampled at temperature ${sampling.temperature}${sampling.topK ? `, top-k ${sampling.topK}` : ""}${sampling.topP !== undefined ? `, top-p ${sampling.topP}` : ""}, seed ${sampling.seed}` : "greedy";
      const stop = eos.length ? `, stopping at ${eos.join(" or ")}` : "";
      const r = await generateTokens(model, prompts, maxNew, {
        sampling,
        eos,
        ...(draft ? { draft } : {}),
        onStart: () => io.err(`generating up to ${maxNew} token(s) for ${prompts.length} sequence(s) (longest prompt ${longest}; ${how}${stop})\n`),
      });
      const ms = performance.now() - t0;
      for (const t of r.tokens) io.out(tokenizer ? `${tokenizer.decode(t)}\n` : t.join(" ") + "\n");
      const made = r.tokens.reduce((a, t) => a + t.length, 0);
      io.err(`generated ${made} token(s) for ${prompts.length} sequence(s) on ${backend} in ${ms.toFixed(0)} ms\n`);
      if (r.draft) {
        const d = r.draft;
        const rate = d.drafted ? ((100 * d.accepted) / d.drafted).toFixed(1) : "0.0";
        io.err(`draft (mtp): ${d.accepted} of ${d.drafted} drafts accepted (${rate}%); ${d.mainForwards} main-model forwards and ${d.draftRuns} draft runs for ${made} token(s)\n`);
      }
    } finally {
      model.close();
    }
    return 0;
  },
};
