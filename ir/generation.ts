/**
 * What a module declares about generation, in its attributes, so that generation loops (TypeScript
 * and the CUDA host) need no knowledge of any model:
 *
 *   generation = "prefill" | "decode" | "draft"
 *                                      this graph's role in generation; a draft graph proposes the
 *                                      token after next for speculative decoding (it reads the
 *                                      hidden states prefill and decode output, and the tokens after
 *                                      them)
 *   tokens     = "input_ids"            the input taking token ids [B, S]
 *   logits     = "logits"               the output [B, S, V] whose last position picks the next token
 *   hidden     = "final_hidden"         (optional) prefill and decode: the output [B, S, H] a draft
 *                                      graph reads; draft: the input that takes it
 *   kv_cache   = "past.*.key <- present.*.key axis 2 capacity 4096; past.*.value <- ..."
 *                                      (decode, draft) each cache input, the output of the previous step
 *                                      (prefill or decode) that feeds it, the axis it grows along and
 *                                      the most positions it may hold (generation refuses to go past
 *                                      it; the graph's cache_append ops grow it in place up to there);
 *                                      `*` stands for one name part, the same on both sides
 */
import { LingcError } from "./errors";

export interface CacheRule {
  input: string;
  output: string;
  axis: number;
  capacity: number;
}

/** A cache rule expanded to one input and its output. */
export type CachePair = CacheRule;

export interface GenerationRole {
  role: "prefill" | "decode" | "draft";
  tokens: string;
  logits: string;
  cache: CacheRule[];
  /** The hidden-state output (prefill, decode) or input (draft) of speculative decoding. */
  hidden?: string;
}

const RULE = /^\s*(\S+)\s*<-\s*(\S+)\s+axis\s+(\d+)\s+capacity\s+(\d+)\s*$/;

export function parseCacheRules(text: string, where: string): CacheRule[] {
  return text
    .split(";")
    .filter((s) => s.trim())
    .map((item) => {
      const m = RULE.exec(item);
      if (!m) throw new LingcError(`${where}: kv_cache entry '${item.trim()}' is not 'INPUT <- OUTPUT axis N capacity C'`);
      if ((m[1]!.match(/\*/g) ?? []).length !== (m[2]!.match(/\*/g) ?? []).length) throw new LingcError(`${where}: kv_cache entry '${item.trim()}' has a different number of '*' on each side`);
      const capacity = Number(m[4]);
      if (!(capacity > 0 && Number.isSafeInteger(capacity))) throw new LingcError(`${where}: kv_cache entry '${item.trim()}' has capacity ${m[4]}; it must be a positive integer`);
      return { input: m[1]!, output: m[2]!, axis: Number(m[3]), capacity };
    });
}

export function formatCacheRules(rules: readonly CacheRule[]): string {
  return rules.map((r) => `${r.input} <- ${r.output} axis ${r.axis} capacity ${r.capacity}`).join("; ");
}

/** The generation role a module declares, or undefined when it declares none. */
export function generationRole(m: { name: string; attrs: Readonly<Record<string, string>> }): GenerationRole | undefined {
  const role = m.attrs["generation"];
  if (role === undefined) return undefined;
  const where = `module @${m.name}`;
  if (role !== "prefill" && role !== "decode" && role !== "draft") throw new LingcError(`${where}: attribute generation must be "prefill", "decode" or "draft", got "${role}"`);
  const need = (k: string) => {
    const v = m.attrs[k];
    if (!v) throw new LingcError(`${where}: a ${role} graph needs the attribute ${k}`);
    return v;
  };
  const cache = role === "prefill" ? [] : parseCacheRules(need("kv_cache"), where);
  const hidden = role === "draft" ? need("hidden") : m.attrs["hidden"];
  return { role, tokens: need("tokens"), logits: need("logits"), cache, ...(hidden ? { hidden } : {}) };
}

/**
 * The input taking token ids: the one a generation role names, else the module's `tokens` attribute
 * (a forward or training graph's); undefined when neither says.
 */
export function tokensInput(m: { name: string; attrs: Readonly<Record<string, string>> }): string | undefined {
  return generationRole(m)?.tokens ?? m.attrs["tokens"];
}

function globRegex(pattern: string): RegExp {
  return new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("([^.]+)")}$`);
}

/** The cache rules expanded over a decode graph's input names: one pair per cache input. */
export function cachePairs(rules: readonly CacheRule[], inputs: readonly string[]): CachePair[] {
  const out: CachePair[] = [];
  for (const r of rules) {
    const re = globRegex(r.input);
    for (const name of inputs) {
      const m = re.exec(name);
      if (!m) continue;
      let i = 1;
      out.push({ input: name, output: r.output.replace(/\*/g, () => m[i++]!), axis: r.axis, capacity: r.capacity });
    }
  }
  return out;
}
