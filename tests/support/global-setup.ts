/** Builds the CLI bundle once before the tests that spawn it. */
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";

export default function setup(): void {
  execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: resolve(__dirname, "../.."), stdio: "inherit" });
}
