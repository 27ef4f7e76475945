/** The shape of a CLI command: its declaration (for parsing and --help) and its action. */
import type { CommandSpec, ParsedArgs } from "../args";
import type { CliIO } from "../io";

export interface Command {
  spec: CommandSpec;
  run(args: ParsedArgs, io: CliIO): Promise<number>;
}
