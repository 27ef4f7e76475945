/**
 * Dimension sizes: non-negative integer polynomials over named symbols (B, S, P, ...).
 * Model sizes are plain numbers; batch, sequence and cache lengths are symbols, and shapes such as
 * `B*S*8` (routed token copies) or `P+1` (cache after one decode step) stay exact. A Dim is kept in
 * canonical form (terms sorted, like terms merged, zero terms dropped) so equality is structural.
 */
import { OpError } from "./errors";

interface Term {
  readonly coef: number;
  /** Symbol names, sorted; a repeated name is a power. */
  readonly syms: readonly string[];
}

const SYMBOL_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isSymbolName(s: string): boolean {
  return SYMBOL_RE.test(s);
}

function termKey(t: Term): string {
  return t.syms.join("*");
}

function checkSafe(n: number): number {
  if (!Number.isSafeInteger(n)) throw new OpError(`dimension arithmetic overflowed (${n})`);
  return n;
}

export class Dim {
  private constructor(readonly terms: readonly Term[]) {}

  static readonly zero: Dim = new Dim([]);

  static of(n: number): Dim {
    if (!Number.isSafeInteger(n) || n < 0) throw new OpError(`invalid dimension size ${n}`);
    return n === 0 ? Dim.zero : new Dim([{ coef: n, syms: [] }]);
  }

  static sym(name: string): Dim {
    if (!isSymbolName(name)) throw new OpError(`invalid dimension symbol '${name}'`);
    return new Dim([{ coef: 1, syms: [name] }]);
  }

  static from(x: Dim | number): Dim {
    return typeof x === "number" ? Dim.of(x) : x;
  }

  private static canonical(terms: Term[]): Dim {
    const merged = new Map<string, Term>();
    for (const t of terms) {
      const k = termKey(t);
      const prev = merged.get(k);
      merged.set(k, { coef: checkSafe((prev?.coef ?? 0) + t.coef), syms: t.syms });
    }
    const out = [...merged.values()].filter((t) => t.coef !== 0);
    out.sort((a, b) => {
      if (a.syms.length !== b.syms.length) return b.syms.length - a.syms.length;
      const ka = termKey(a);
      const kb = termKey(b);
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
    return out.length === 0 ? Dim.zero : new Dim(out);
  }

  add(o: Dim | number): Dim {
    return Dim.canonical([...this.terms, ...Dim.from(o).terms]);
  }

  mul(o: Dim | number): Dim {
    const other = Dim.from(o);
    const terms: Term[] = [];
    for (const a of this.terms) {
      for (const b of other.terms) {
        terms.push({ coef: checkSafe(a.coef * b.coef), syms: [...a.syms, ...b.syms].sort() });
      }
    }
    return Dim.canonical(terms);
  }

  /** Exact division by a positive integer, or undefined when some coefficient is not divisible. */
  divExact(n: number): Dim | undefined {
    if (!(n > 0) || !Number.isSafeInteger(n)) return undefined;
    if (this.terms.some((t) => t.coef % n !== 0)) return undefined;
    return Dim.canonical(this.terms.map((t) => ({ coef: t.coef / n, syms: t.syms })));
  }

  equals(o: Dim | number): boolean {
    return this.key === Dim.from(o).key;
  }

  isConst(): boolean {
    return this.terms.every((t) => t.syms.length === 0);
  }

  /** The numeric value when constant, else undefined. */
  get value(): number | undefined {
    if (!this.isConst()) return undefined;
    return this.terms.length === 0 ? 0 : this.terms[0]!.coef;
  }

  /** The symbol name when this dim is exactly one symbol (coefficient 1), else undefined. */
  get symbol(): string | undefined {
    if (this.terms.length !== 1) return undefined;
    const t = this.terms[0]!;
    return t.coef === 1 && t.syms.length === 1 ? t.syms[0] : undefined;
  }

  symbols(): string[] {
    return [...new Set(this.terms.flatMap((t) => t.syms))].sort();
  }

  /** Evaluates with every symbol bound to a number; throws OpError naming an unbound symbol. */
  eval(bindings: ReadonlyMap<string, number>): number {
    let total = 0;
    for (const t of this.terms) {
      let v = t.coef;
      for (const s of t.syms) {
        const b = bindings.get(s);
        if (b === undefined) throw new OpError(`dimension symbol '${s}' has no value`);
        v = checkSafe(v * b);
      }
      total = checkSafe(total + v);
    }
    return total;
  }

  /** Replaces symbols by dims (symbols not in the map stay). */
  substitute(map: ReadonlyMap<string, Dim>): Dim {
    let out: Dim = Dim.zero;
    for (const t of this.terms) {
      let term: Dim = Dim.of(t.coef);
      for (const s of t.syms) term = term.mul(map.get(s) ?? Dim.sym(s));
      out = out.add(term);
    }
    return out;
  }

  get key(): string {
    return this.toString();
  }

  toString(): string {
    if (this.terms.length === 0) return "0";
    return this.terms
      .map((t) => {
        if (t.syms.length === 0) return String(t.coef);
        const s = t.syms.join("*");
        return t.coef === 1 ? s : `${s}*${t.coef}`;
      })
      .join("+");
  }
}

export type DimLike = Dim | number | string;

/** Builds a dim from a number, a symbol name or a Dim. */
export function dim(x: DimLike): Dim {
  if (typeof x === "string") return Dim.sym(x);
  return Dim.from(x);
}

export function product(dims: readonly Dim[]): Dim {
  return dims.reduce((acc, d) => acc.mul(d), Dim.of(1));
}
