/** The executable entry point (bundled to dist/lingc.mjs). */
import { runCli } from "./main";

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`lingc: internal error: ${String(e)}\n`);
    process.exitCode = 70;
  },
);
