/** Paths shared by the tests: the golden checkpoint and scratch folders. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll } from "vitest";

export const ROOT = resolve(__dirname, "../..");
export const GOLDEN_DIR = resolve(ROOT, "../shared/golden/ling-tiny");
export const GOLDEN_FILE = join(GOLDEN_DIR, "golden.safetensors");

/** A fresh temporary folder, removed after the test file finishes. */
export function scratchDir(prefix = "lingc-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
