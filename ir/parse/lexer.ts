/**
 * Tokens of the IR text. chevrotain 11.2.0 is used because it runs on Node 20 unchanged
 * (chevrotain 12+ calls Object.groupBy, which Node 20 lacks).
 */
import { createToken, Lexer, type TokenType } from "chevrotain";

export const AnyName = createToken({ name: "AnyName", pattern: Lexer.NA });
export const Ident = createToken({ name: "Ident", pattern: /[A-Za-z_][A-Za-z0-9_.]*/, categories: [AnyName] });

function keyword(word: string): TokenType {
  return createToken({ name: word[0]!.toUpperCase() + word.slice(1), pattern: new RegExp(`${word}(?![A-Za-z0-9_.])`), longer_alt: Ident, categories: [AnyName] });
}

export const Module = keyword("module");
export const Func = keyword("func");
export const Weights = keyword("weights");
export const Attributes = keyword("attributes");
export const Return = keyword("return");
export const Call = keyword("call");
export const Scope = keyword("scope");
export const Loc = keyword("loc");
export const Scale = keyword("scale");
export const DispatchKw = keyword("dispatch");

export const WhiteSpace = createToken({ name: "WhiteSpace", pattern: /\s+/, group: Lexer.SKIPPED });
export const Comment = createToken({ name: "Comment", pattern: /\/\/[^\n]*/, group: Lexer.SKIPPED });
export const ValueRef = createToken({ name: "ValueRef", pattern: /%(?:[A-Za-z0-9_.]+|"(?:[^"\\\n]|\\.)*")/ });
export const SymRef = createToken({ name: "SymRef", pattern: /@(?:[A-Za-z_][A-Za-z0-9_.*]*|"(?:[^"\\\n]|\\.)*")/ });
export const StringLit = createToken({ name: "StringLit", pattern: /"(?:[^"\\\n]|\\.)*"/ });
export const Arrow = createToken({ name: "Arrow", pattern: /->/ });
export const NumberLit = createToken({
  name: "NumberLit",
  pattern: /-?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|inf(?![A-Za-z0-9_.])|nan(?![A-Za-z0-9_.]))/,
});
export const LParen = createToken({ name: "LParen", pattern: /\(/ });
export const RParen = createToken({ name: "RParen", pattern: /\)/ });
export const LBracket = createToken({ name: "LBracket", pattern: /\[/ });
export const RBracket = createToken({ name: "RBracket", pattern: /\]/ });
export const LBrace = createToken({ name: "LBrace", pattern: /\{/ });
export const RBrace = createToken({ name: "RBrace", pattern: /\}/ });
export const Comma = createToken({ name: "Comma", pattern: /,/ });
export const Colon = createToken({ name: "Colon", pattern: /:/ });
export const Equals = createToken({ name: "Equals", pattern: /=/ });
export const Star = createToken({ name: "Star", pattern: /\*/ });
export const Plus = createToken({ name: "Plus", pattern: /\+/ });

export const ALL_TOKENS: TokenType[] = [
  WhiteSpace,
  Comment,
  ValueRef,
  SymRef,
  StringLit,
  Arrow,
  NumberLit,
  Module,
  Func,
  Weights,
  Attributes,
  Return,
  Call,
  Scope,
  Loc,
  Scale,
  DispatchKw,
  Ident,
  AnyName,
  LParen,
  RParen,
  LBracket,
  RBracket,
  LBrace,
  RBrace,
  Comma,
  Colon,
  Equals,
  Star,
  Plus,
];

let lexer: Lexer | undefined;

export function irLexer(): Lexer {
  lexer ??= new Lexer(ALL_TOKENS, { positionTracking: "full", ensureOptimizations: false });
  return lexer;
}
