/**
 * The rules that let a backend grow a KV cache in place (ops with the in_place trait, such as
 * cache_append): the cache gets one buffer with room along its axis, each step writes only the new
 * rows into it, and the values before and after the append are views of that one buffer, whose
 * rows past a value's length are not the value's. So:
 *
 *   - the storage an in_place op grows is a graph input: its first operand is a parameter of its
 *     function (or a value that shares a parameter's storage), and a call that binds such a
 *     parameter passes a parameter of its own, up to the entry;
 *   - each such storage is grown by one op at most (two appends would write the same rows);
 *   - a value sharing the storage is read only by attention (as keys or values, which it reads with
 *     the buffer's row stride), by the in_place op that grows it, by calls whose parameter obeys the
 *     same rules, and by `return` (a host reading an output back knows the stride).
 *
 * The verifier checks these rules; backends rely on them.
 */
import { LingcError } from "./errors";
import { Func, Module, Op, Value } from "./module";
import { hasTrait } from "./ops";

/** What a function does with the storage of each parameter, as its callers see it. */
interface ParamStorage {
  /** How many in_place ops grow the parameter's storage (in the function or its callees). */
  grows: number;
  /** The first use that a grown storage may not have, when there is one. */
  badUse?: { op: Op; value: Value; func: Func };
  /** The op that grows it (for messages). */
  grower?: Op;
}

interface FuncStorage {
  params: ParamStorage[];
  /** For each result, the parameter whose storage it is (undefined: its own storage). */
  resultRoots: (number | undefined)[];
}

const ALLOWED_ATTENTION_OPERANDS = new Set([1, 2]);

function describe(op: Op): string {
  return op.opName === "call" ? `call @${op.callee}` : `'${op.opName}'`;
}

function analyse(f: Func, m: Module, done: Map<Func, FuncStorage>): FuncStorage {
  const hit = done.get(f);
  if (hit) return hit;
  // Which parameter's storage each value shares: the parameters themselves, in_place results and
  // call results that a callee returns as (a view of) one of its parameters.
  const root = new Map<Value, number>();
  f.params.forEach((p, i) => root.set(p, i));
  const params: ParamStorage[] = f.params.map(() => ({ grows: 0 }));
  const fail = (msg: string, op: Op): never => {
    throw new LingcError(`${msg} (in @${f.name}, op ${describe(op)})`, op.textPos ?? op.loc);
  };
  for (const op of f.body) {
    if (hasTrait(op.opName, "in_place")) {
      const r = root.get(op.operands[0]!);
      if (r === undefined) fail(`the storage ${op.opName} grows in place must be a graph input, but its first operand ${op.operands[0]!.name ? `%${op.operands[0]!.name}` : ""} is computed in @${f.name}`, op);
      params[r!]!.grows++;
      params[r!]!.grower ??= op;
      root.set(op.results[0]!, r!);
      continue;
    }
    if (op.opName !== "call") continue;
    const callee = m.getFunc(op.callee!);
    if (!callee) continue;
    const s = analyse(callee, m, done);
    op.operands.forEach((arg, k) => {
      const grows = s.params[k]!.grows;
      if (grows === 0) return;
      const r = root.get(arg);
      if (r === undefined) fail(`@${callee.name} grows its parameter %${callee.params[k]!.name} in place, so it must be passed a graph input, but ${arg.name ? `%${arg.name}` : "the argument"} is computed in @${f.name}`, op);
      params[r!]!.grows += grows;
      params[r!]!.grower ??= s.params[k]!.grower;
    });
    s.resultRoots.forEach((pk, j) => {
      if (pk === undefined) return;
      const r = root.get(op.operands[pk]!);
      if (r !== undefined) root.set(op.results[j]!, r);
    });
  }
  // The uses each parameter's storage has.
  for (const op of f.body) {
    op.operands.forEach((v, k) => {
      const r = root.get(v);
      if (r === undefined || params[r]!.badUse) return;
      const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
      let ok: boolean;
      if (hasTrait(op.opName, "in_place")) ok = k === 0;
      else if (op.opName === "attention") ok = ALLOWED_ATTENTION_OPERANDS.has(k);
      else if (callee) {
        const inner = analyse(callee, m, done).params[k]!;
        if (inner.badUse) params[r]!.badUse = inner.badUse;
        return;
      } else ok = false;
      if (!ok) params[r]!.badUse = { op, value: v, func: f };
    });
  }
  const resultRoots = f.results.map((res) => root.get(res.value));
  const out = { params, resultRoots };
  done.set(f, out);
  return out;
}

/** Checks the rules above for every function the module has; throws a LingcError naming the op at fault. */
export function verifyCacheStorage(m: Module): void {
  const done = new Map<Func, FuncStorage>();
  for (const f of m.functions) {
    const s = analyse(f, m, done);
    s.params.forEach((p, i) => {
      if (p.grows === 0) return;
      const g = p.grower!;
      const name = f.params[i]!.name;
      if (p.grows > 1) throw new LingcError(`the storage of %${name} (in @${f.name}) is grown in place ${p.grows} times; one ${g.opName} may grow a cache (the others would write the same rows)`, g.textPos ?? g.loc);
      if (p.badUse) {
        const u = p.badUse;
        throw new LingcError(
          `%${u.value.name ?? "?"} shares the storage of the cache %${name} that ${g.opName} grows in place, and is read by ${describe(u.op)} (in @${u.func.name}); a cache may be read only by attention (keys, values), by the op that grows it, and returned`,
          u.op.textPos ?? u.op.loc,
        );
      }
    });
  }
}
