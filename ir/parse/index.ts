/** Parsing IR text: lex, parse to a syntax tree, build the Module. Errors are LingcErrors at file:line:col. */
import { LingcError } from "../errors";
import type { Module } from "../module";
import { buildModule } from "./build";
import { irParser } from "./grammar";
import { irLexer } from "./lexer";

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

/** Parses a module; does not verify it (call verifyModule for that). */
export function parseModule(text: string, file = "<input>"): Module {
  const lexed = irLexer().tokenize(text);
  if (lexed.errors.length) {
    const e = lexed.errors[0]!;
    const ch = text.slice(e.offset, e.offset + 1);
    throw new LingcError(`syntax error: unexpected character ${JSON.stringify(ch)}`, { file, line: e.line ?? 0, col: e.column ?? 0 });
  }
  const parser = irParser();
  parser.input = lexed.tokens;
  const ast = parser.module();
  if (parser.errors.length) {
    const e = parser.errors[0]!;
    let line = e.token.startLine;
    let col = e.token.startColumn;
    if (line === undefined || Number.isNaN(line)) {
      const lines = text.split("\n");
      line = lines.length;
      col = (lines[lines.length - 1]?.length ?? 0) + 1;
    }
    throw new LingcError(`syntax error: ${oneLine(e.message)}`, { file, line, col: col ?? 0 });
  }
  return buildModule(ast, file);
}
