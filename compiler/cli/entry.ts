/** The executable entry point (bundled to dist/lingc.mjs). */
import { runCli } from "./main";

// A reader that stops early (`lingc plan ... | head`) closes the pipe: stop quietly, as Unix tools do,
// instead of an unhandled EPIPE with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`lingc: internal error: ${String(e)}\n`);
    process.exitCode = 70;
  },
);
