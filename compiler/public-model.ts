/**
 * The API's Model over a loaded program (compiler/api.ts declares the types): shared by the Node API
 * and the browser's compiled models, so it imports nothing Node-only.
 */
import type { LoadedModel } from "../backends/backend";
import { generate as generateTokens } from "../backends/generation";
import type { DType } from "../ir/dtype";
import { LingcError } from "../ir/errors";
import { Tensor as InternalTensor } from "../ir/tensor";
import type { Model, Tensor } from "./api";

const asInternal = (name: string, t: Tensor): InternalTensor => {
  if (t instanceof InternalTensor) return t;
  if (!Array.isArray(t.shape) || !t.data) throw new LingcError(`input ${name}: a tensor needs dtype, shape and data`);
  const data = t.data instanceof BigInt64Array ? Array.from(t.data, Number) : (t.data as ArrayLike<number>);
  return InternalTensor.from(t.dtype as DType, t.shape, data);
};

export function publicModel(loaded: LoadedModel, backend: string, eos: readonly number[], tokenizer?: Model["tokenizer"]): Model {
  return {
    ...(tokenizer ? { tokenizer } : {}),
    graphs: Object.fromEntries(Object.entries(loaded.signatures).map(([name, s]) => [name, { inputs: s.inputs, outputs: s.outputs }])),
    backend,
    async run(inputs, graph = "forward") {
      const runner = loaded.graphs[graph];
      if (!runner) throw new LingcError(`the model has no graph '${graph}' (it has ${Object.keys(loaded.graphs).join(", ")})`);
      return runner.run(Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, asInternal(k, t)])));
    },
    async generate(prompts, o) {
      const r = await generateTokens(
        loaded,
        prompts.map((p) => [...p]),
        o.maxNewTokens,
        {
          sampling: { temperature: o.temperature ?? 0, ...(o.topK !== undefined ? { topK: o.topK } : {}), ...(o.topP !== undefined ? { topP: o.topP } : {}), seed: o.seed ?? 0 },
          eos: o.eosTokenIds ?? eos,
          ...(o.onToken ? { onToken: o.onToken } : {}),
          ...(o.draft ? { draft: o.draft } : {}),
        },
      );
      return r.tokens;
    },
    close: () => loaded.close(),
  };
}
