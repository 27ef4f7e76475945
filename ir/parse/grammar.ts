/**
 * The grammar of the IR text, as a chevrotain parser that builds a plain syntax tree (ast.ts
 * types below). Name resolution and typing happen afterwards in build.ts, so every semantic error
 * there can point at the token it concerns.
 */
import { EmbeddedActionsParser, type IToken } from "chevrotain";
import * as T from "./lexer";

export interface Pos {
  line: number;
  col: number;
}

export type Expr =
  | { kind: "num"; text: string; pos: Pos }
  | { kind: "ident"; name: string; pos: Pos }
  | { kind: "add"; items: Expr[]; pos: Pos }
  | { kind: "mul"; items: Expr[]; pos: Pos };

export type AttrAst = { kind: "list"; items: AttrAst[]; pos: Pos } | { kind: "string"; value: string; pos: Pos } | { kind: "expr"; expr: Expr; pos: Pos };

export interface TypeAst {
  dtype: string;
  dims: Expr[];
  scale?: { dtype: string; gran: string; block?: [string, string]; pos: Pos };
  pos: Pos;
}

export interface OpAst {
  results: { name: string; pos: Pos }[];
  opName: string;
  callee?: string;
  operands: { ref: string; weight: boolean; pos: Pos }[];
  attrs: { key: string; value: AttrAst; pos: Pos }[];
  types: TypeAst[];
  scope?: string;
  loc?: { file: string; line: string; col: string };
  dispatch?: { text: string; pos: Pos };
  pos: Pos;
  namePos: Pos;
}

export interface FuncAst {
  name: string;
  params: { name: string; type: TypeAst; pos: Pos }[];
  weights: { name: string; type: TypeAst; pos: Pos }[];
  results: { name?: string; type: TypeAst; pos: Pos }[];
  attrs: { key: string; value: string; pos: Pos }[];
  ops: OpAst[];
  ret: { ref: string; weight: boolean; pos: Pos }[];
  retPos: Pos;
  pos: Pos;
}

export interface ModuleAst {
  name: string;
  attrs: { key: string; value: string; pos: Pos }[];
  funcs: FuncAst[];
  pos: Pos;
}

const pos = (t: IToken): Pos => ({ line: t.startLine ?? 0, col: t.startColumn ?? 0 });

/** The text of a `%name`, `@name` or string token without its sigil and quotes. */
export function unquoteRef(image: string, sigil: boolean): string {
  const body = sigil ? image.slice(1) : image;
  if (!body.startsWith('"')) return body;
  try {
    return JSON.parse(body) as string;
  } catch {
    return body.slice(1, -1);
  }
}

class IrParser extends EmbeddedActionsParser {
  constructor() {
    super(T.ALL_TOKENS, { recoveryEnabled: false, maxLookahead: 3 });
    this.performSelfAnalysis();
  }

  public module = this.RULE("module", (): ModuleAst => {
    const kw = this.CONSUME(T.Module);
    const name = this.CONSUME(T.SymRef);
    let attrs: ModuleAst["attrs"] = [];
    this.OPTION(() => {
      this.CONSUME(T.Attributes);
      attrs = this.SUBRULE(this.stringAttrs);
    });
    this.CONSUME(T.LBrace);
    const funcs: FuncAst[] = [];
    this.MANY(() => {
      const f = this.SUBRULE(this.func);
      this.ACTION(() => funcs.push(f));
    });
    this.CONSUME(T.RBrace);
    return { name: this.ACTION(() => unquoteRef(name.image, true)), attrs, funcs, pos: pos(kw) };
  });

  private stringAttrs = this.RULE("stringAttrs", (): ModuleAst["attrs"] => {
    const out: ModuleAst["attrs"] = [];
    this.CONSUME(T.LBrace);
    this.MANY_SEP({
      SEP: T.Comma,
      DEF: () => {
        const k = this.CONSUME(T.AnyName);
        this.CONSUME(T.Equals);
        const v = this.CONSUME(T.StringLit);
        this.ACTION(() => out.push({ key: k.image, value: unquoteRef(v.image, false), pos: pos(k) }));
      },
    });
    this.CONSUME(T.RBrace);
    return out;
  });

  private func = this.RULE("func", (): FuncAst => {
    const kw = this.CONSUME(T.Func);
    const name = this.CONSUME(T.SymRef);
    const params: FuncAst["params"] = [];
    const weights: FuncAst["weights"] = [];
    const results: FuncAst["results"] = [];
    let attrs: FuncAst["attrs"] = [];
    const ops: OpAst[] = [];
    const ret: FuncAst["ret"] = [];
    this.CONSUME(T.LParen);
    this.MANY_SEP({
      SEP: T.Comma,
      DEF: () => {
        const v = this.CONSUME(T.ValueRef);
        this.CONSUME(T.Colon);
        const type = this.SUBRULE(this.type);
        this.ACTION(() => params.push({ name: unquoteRef(v.image, true), type, pos: pos(v) }));
      },
    });
    this.CONSUME(T.RParen);
    this.OPTION(() => {
      this.CONSUME(T.Weights);
      this.CONSUME2(T.LParen);
      this.MANY_SEP2({
        SEP: T.Comma,
        DEF: () => {
          const w = this.CONSUME2(T.SymRef);
          this.CONSUME2(T.Colon);
          const type = this.SUBRULE2(this.type);
          this.ACTION(() => weights.push({ name: unquoteRef(w.image, true), type, pos: pos(w) }));
        },
      });
      this.CONSUME2(T.RParen);
    });
    this.CONSUME(T.Arrow);
    this.CONSUME3(T.LParen);
    this.MANY_SEP3({
      SEP: T.Comma,
      DEF: () => {
        const r = this.SUBRULE(this.funcResult);
        this.ACTION(() => results.push(r));
      },
    });
    this.CONSUME3(T.RParen);
    this.OPTION2(() => {
      this.CONSUME(T.Attributes);
      attrs = this.SUBRULE(this.stringAttrs);
    });
    this.CONSUME(T.LBrace);
    this.MANY(() => {
      const op = this.SUBRULE(this.op);
      this.ACTION(() => ops.push(op));
    });
    const r = this.CONSUME(T.Return);
    this.MANY_SEP4({
      SEP: T.Comma,
      DEF: () => {
        const ref = this.SUBRULE(this.operand);
        this.ACTION(() => ret.push(ref));
      },
    });
    this.CONSUME(T.RBrace);
    return { name: this.ACTION(() => unquoteRef(name.image, true)), params, weights, results, attrs, ops, ret, retPos: pos(r), pos: pos(kw) };
  });

  private funcResult = this.RULE("funcResult", (): FuncAst["results"][number] => {
    return this.OR([
      {
        GATE: () => this.LA(2).tokenType === T.Colon,
        ALT: () => {
          const n = this.OR2([{ ALT: () => this.CONSUME(T.AnyName) }, { ALT: () => this.CONSUME(T.StringLit) }]);
          this.CONSUME(T.Colon);
          const type = this.SUBRULE(this.type);
          return { name: this.ACTION(() => unquoteRef(n.image, false)), type, pos: pos(n) };
        },
      },
      {
        ALT: () => {
          const type = this.SUBRULE2(this.type);
          return { type, pos: type?.pos };
        },
      },
    ]);
  });

  private operand = this.RULE("operand", (): { ref: string; weight: boolean; pos: Pos } => {
    return this.OR([
      {
        ALT: () => {
          const t = this.CONSUME(T.ValueRef);
          return { ref: this.ACTION(() => unquoteRef(t.image, true)), weight: false, pos: pos(t) };
        },
      },
      {
        ALT: () => {
          const t = this.CONSUME(T.SymRef);
          return { ref: this.ACTION(() => unquoteRef(t.image, true)), weight: true, pos: pos(t) };
        },
      },
    ]);
  });

  private op = this.RULE("op", (): OpAst => {
    const results: OpAst["results"] = [];
    this.AT_LEAST_ONE_SEP({
      SEP: T.Comma,
      DEF: () => {
        const v = this.CONSUME(T.ValueRef);
        this.ACTION(() => results.push({ name: unquoteRef(v.image, true), pos: pos(v) }));
      },
    });
    this.CONSUME(T.Equals);
    let opName = "";
    let callee: string | undefined;
    let namePos: Pos = { line: 0, col: 0 };
    this.OR([
      {
        ALT: () => {
          const c = this.CONSUME(T.Call);
          const s = this.CONSUME(T.SymRef);
          this.ACTION(() => {
            opName = "call";
            callee = unquoteRef(s.image, true);
            namePos = pos(c);
          });
        },
      },
      {
        ALT: () => {
          const n = this.CONSUME(T.Ident);
          this.ACTION(() => {
            opName = n.image;
            namePos = pos(n);
          });
        },
      },
    ]);
    const operands: OpAst["operands"] = [];
    this.CONSUME(T.LParen);
    this.MANY_SEP({
      SEP: T.Comma,
      DEF: () => {
        const o = this.SUBRULE(this.operand);
        this.ACTION(() => operands.push(o));
      },
    });
    this.CONSUME(T.RParen);
    const attrs: OpAst["attrs"] = [];
    this.OPTION(() => {
      this.CONSUME(T.LBrace);
      this.MANY_SEP2({
        SEP: T.Comma,
        DEF: () => {
          const k = this.CONSUME(T.AnyName);
          this.CONSUME2(T.Equals);
          const value = this.SUBRULE(this.attrValue);
          this.ACTION(() => attrs.push({ key: k.image, value, pos: pos(k) }));
        },
      });
      this.CONSUME(T.RBrace);
    });
    this.CONSUME(T.Colon);
    const types: TypeAst[] = [];
    this.AT_LEAST_ONE_SEP2({
      SEP: T.Comma,
      DEF: () => {
        const t = this.SUBRULE(this.type);
        this.ACTION(() => types.push(t));
      },
    });
    let scope: string | undefined;
    this.OPTION2(() => {
      this.CONSUME(T.Scope);
      this.CONSUME2(T.LParen);
      const s = this.CONSUME(T.StringLit);
      this.CONSUME2(T.RParen);
      this.ACTION(() => (scope = unquoteRef(s.image, false)));
    });
    let loc: OpAst["loc"];
    this.OPTION3(() => {
      this.CONSUME(T.Loc);
      this.CONSUME3(T.LParen);
      const f = this.CONSUME2(T.StringLit);
      this.CONSUME2(T.Colon);
      const l = this.CONSUME(T.NumberLit);
      this.CONSUME3(T.Colon);
      const c = this.CONSUME2(T.NumberLit);
      this.CONSUME3(T.RParen);
      this.ACTION(() => (loc = { file: unquoteRef(f.image, false), line: l.image, col: c.image }));
    });
    let dispatch: OpAst["dispatch"];
    this.OPTION4(() => {
      const kw = this.CONSUME(T.DispatchKw);
      this.CONSUME4(T.LParen);
      const d = this.CONSUME3(T.StringLit);
      this.CONSUME4(T.RParen);
      this.ACTION(() => (dispatch = { text: unquoteRef(d.image, false), pos: pos(kw) }));
    });
    return { results, opName, callee, operands, attrs, types, scope, loc, dispatch, pos: this.ACTION(() => results[0]?.pos ?? namePos), namePos };
  });

  private attrValue = this.RULE("attrValue", (): AttrAst => {
    return this.OR([
      {
        ALT: () => {
          const lb = this.CONSUME(T.LBracket);
          const items: AttrAst[] = [];
          this.MANY_SEP({
            SEP: T.Comma,
            DEF: () => {
              const v = this.SUBRULE(this.attrValue);
              this.ACTION(() => items.push(v));
            },
          });
          this.CONSUME(T.RBracket);
          return { kind: "list" as const, items, pos: pos(lb) };
        },
      },
      {
        ALT: () => {
          const s = this.CONSUME(T.StringLit);
          return { kind: "string" as const, value: this.ACTION(() => unquoteRef(s.image, false)), pos: pos(s) };
        },
      },
      {
        ALT: () => {
          const e = this.SUBRULE(this.expr);
          return { kind: "expr" as const, expr: e, pos: e?.pos };
        },
      },
    ]);
  });

  private expr = this.RULE("expr", (): Expr => {
    const items: Expr[] = [];
    this.AT_LEAST_ONE_SEP({
      SEP: T.Plus,
      DEF: () => {
        const t = this.SUBRULE(this.term);
        this.ACTION(() => items.push(t));
      },
    });
    return this.ACTION(() => (items.length === 1 ? items[0]! : { kind: "add", items, pos: items[0]!.pos }));
  });

  private term = this.RULE("term", (): Expr => {
    const items: Expr[] = [];
    this.AT_LEAST_ONE_SEP({
      SEP: T.Star,
      DEF: () => {
        const a = this.SUBRULE(this.atom);
        this.ACTION(() => items.push(a));
      },
    });
    return this.ACTION(() => (items.length === 1 ? items[0]! : { kind: "mul", items, pos: items[0]!.pos }));
  });

  private atom = this.RULE("atom", (): Expr => {
    return this.OR([
      {
        ALT: () => {
          const n = this.CONSUME(T.NumberLit);
          return { kind: "num" as const, text: n.image, pos: pos(n) };
        },
      },
      {
        ALT: () => {
          const n = this.CONSUME(T.Ident);
          return { kind: "ident" as const, name: n.image, pos: pos(n) };
        },
      },
    ]);
  });

  private type = this.RULE("type", (): TypeAst => {
    const dt = this.CONSUME(T.Ident);
    this.CONSUME(T.LBracket);
    const dims: Expr[] = [];
    this.MANY_SEP({
      SEP: T.Comma,
      DEF: () => {
        const d = this.SUBRULE(this.expr);
        this.ACTION(() => dims.push(d));
      },
    });
    this.CONSUME(T.RBracket);
    let scale: TypeAst["scale"];
    this.OPTION(() => {
      const kw = this.CONSUME(T.Scale);
      this.CONSUME(T.LParen);
      const sd = this.CONSUME2(T.Ident);
      this.CONSUME(T.Comma);
      const g = this.CONSUME3(T.Ident);
      let block: [string, string] | undefined;
      this.OPTION2(() => {
        this.CONSUME2(T.LParen);
        const r = this.CONSUME(T.NumberLit);
        this.CONSUME2(T.Comma);
        const c = this.CONSUME2(T.NumberLit);
        this.CONSUME2(T.RParen);
        this.ACTION(() => (block = [r.image, c.image]));
      });
      this.CONSUME(T.RParen);
      this.ACTION(() => (scale = { dtype: sd.image, gran: g.image, block, pos: pos(kw) }));
    });
    return { dtype: dt.image, dims, scale, pos: pos(dt) };
  });
}

let parser: IrParser | undefined;

export function irParser(): IrParser {
  parser ??= new IrParser();
  return parser;
}
