/** Paths shared by the tests: the golden checkpoint and scratch folders. */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll } from "vitest";

export const ROOT = resolve(__dirname, "../..");
/**
 * The golden checkpoint: $LINGC_GOLDEN_DIR when set, else the copy in the repository
 * (tests/data/golden, the project's golden set, kept in the repository so that a fresh clone passes on its own).
 */
function findGolden(): string {
  const candidates = [process.env["LINGC_GOLDEN_DIR"], resolve(ROOT, "tests/data/golden/ling-tiny")];
  const found = candidates.find((c) => c && existsSync(join(c, "golden.safetensors")));
  if (!found) throw new Error(`golden checkpoint not found (looked in ${candidates.filter(Boolean).join(", ")}); set LINGC_GOLDEN_DIR`);
  return found;
}

export const GOLDEN_DIR = findGolden();
export const GOLDEN_FILE = join(GOLDEN_DIR, "golden.safetensors");

/** The FP8 golden set (tests/data/golden/README.md): a bf16 checkpoint and its FineGrainedFP8 export with the numbers. */
export const SMALL_DIR = resolve(ROOT, "tests/data/golden/ling-small");
export const SMALL_FP8_DIR = resolve(ROOT, "tests/data/golden/ling-small-fp8");
export const SMALL_FP8_GOLDEN = join(SMALL_FP8_DIR, "golden.safetensors");

/** A fresh temporary folder, removed after the test file finishes. */
export function scratchDir(prefix = "lingc-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
