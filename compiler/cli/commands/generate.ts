/** `lingc generate <checkpoint>`: greedy decoding through the decode graph and its KV cache. */
import { BACKEND_NAMES } from "../../../backends";
import { greedyGenerate } from "../../../backends/generation";
import { loadModel } from "../../driver/load";
import { openSource } from "../../driver/source";
import { flag, int, str, UsageError } from "../args";
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

export const generate: Command = {
  spec: {
    name: "generate",
    summary: "Greedy generation: one prefill pass over the prompt, then one decode step per new token with the KV cache (as the graphs declare it). Prints the new ids, one line per sequence.",
    positionals: [MODEL_POSITIONAL],
    options: [
      { name: "backend", value: "NAME", help: "which backend runs the graphs (default interp)", choices: BACKEND_NAMES },
      { name: "prompt", value: "IDS", help: "token ids, comma separated; ';' between sequences", required: true },
      { name: "max-new-tokens", value: "N", help: "how many tokens to generate per sequence", required: true },
      { name: "allow-long-context", help: "allow a prompt plus --max-new-tokens longer than the model's max_position_embeddings" },
      WEIGHTS_OPTION,
      DTYPE_OPTION,
      ...PIPELINE_OPTIONS,
    ],
    notes: ["example: lingc generate tests/data/golden/ling-tiny --prompt '5,9,13;7,7,2' --max-new-tokens 6"],
  },
  async run(args, io) {
    const source = await openSource(args.positionals[0]!, str(args, "weights"), sourceOptions(args));
    const prompts = parsePrompts(str(args, "prompt")!);
    const maxNew = int(args, "max-new-tokens", 0)!;
    // Before any work: a sequence the model was not trained for is refused (RoPE past its positions).
    const limit = source.config?.maxPositionEmbeddings;
    const longest = Math.max(...prompts.map((p) => p.length));
    if (limit !== undefined && longest + maxNew > limit && !flag(args, "allow-long-context")) {
      throw new LingcError(`a prompt of ${longest} tokens plus --max-new-tokens ${maxNew} is ${longest + maxNew} positions, past the model's max_position_embeddings ${limit} (--allow-long-context to run it anyway)`);
    }

    const { model, backend } = await loadModel({ source, backend: str(args, "backend") ?? "interp", settings: targetSettings(args), passes: passesOption(args) });
    try {
      const t0 = performance.now();
      const r = await greedyGenerate(model, prompts, maxNew, () => io.err(`generating ${maxNew} token(s) for ${prompts.length} sequence(s) (longest prompt ${longest})\n`));
      const ms = performance.now() - t0;
      for (const t of r.tokens) io.out(t.join(" ") + "\n");
      io.err(`generated ${maxNew} token(s) for ${prompts.length} sequence(s) on ${backend} in ${ms.toFixed(0)} ms\n`);
    } finally {
      model.close();
    }
    return 0;
  },
};
