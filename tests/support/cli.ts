/** Runs the CLI in-process with captured output, or the built executable as a user would. */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { runCli } from "../../compiler/cli/main";
import { ROOT } from "./paths";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(...argv: string[]): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, { out: (t) => (stdout += t), err: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

/** The bundled `bin/lingc.mjs` in a child process (built by the test global setup). */
export function lingcBin(...argv: string[]): CliResult {
  const r = spawnSync(process.execPath, [join(ROOT, "bin/lingc.mjs"), ...argv], { cwd: ROOT, encoding: "utf8" });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
