/**
 * `npm run fuzz -- [--ir N] [--checkpoints N] [--seed S] [--from I] [--list-accepted] [--show-cases]`: the IR text fuzzer and the
 * checkpoint fuzzer, in-process, seeded (case i of seed s is the same everywhere). Prints counts by
 * outcome, the slowest case, and every finding with what reproduces it (seed, case number, the
 * mutations); exits 1 if there is any finding. Defaults: 100000 IR texts and 10000 checkpoints.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import "../ir/ops";
import { printModule } from "../ir/print";
import { buildLing2 } from "../models/ling2";
import { resolveModel } from "../models/resolve";
import { Tensor } from "../ir/tensor";
import { writeSafetensors } from "../backends/weights/safetensors";
import { applyIrMutation, checkIrText, randomIrMutation } from "./ir";
import { readBase, runCheckpointCase, sharded } from "./checkpoint";
import { Rng } from "./rng";

const HANG_MS = 10_000;

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) {
    process.stderr.write(`fuzz: --${name} takes a non-negative integer\n`);
    process.exit(2);
  }
  return v;
}

const seed = option("seed", 1);
const irCount = option("ir", 100_000);
const ckCount = option("checkpoints", 10_000);
const from = option("from", 0);
const findings: string[] = [];
const listAccepted = process.argv.includes("--list-accepted");
const showCases = process.argv.includes("--show-cases");

function irFuzz(): void {
  const tiny = resolveModel("ling-tiny").config;
  const sources = [printModule(buildLing2(tiny, "forward")), printModule(buildLing2(tiny, "decode"))];
  // Mostly single functions cut out of the dumps (cheap, varied), sometimes whole modules.
  const funcs = sources.flatMap((s) => s.split(/\n\n/)).map((f) => (f.startsWith("module") ? `${f}\n}\n` : `module @x {\n${f.replace(/\n}\n$/, "")}\n}\n`));
  const counts = { accepted: 0, rejected: 0, findings: 0 };
  let slowest = { ms: 0, index: -1 };
  const t0 = performance.now();
  for (let i = from; i < from + irCount; i++) {
    const rng = Rng.forCase(seed, i);
    const whole = rng.int(10) === 0;
    let text = whole ? rng.pick(sources) : rng.pick(funcs);
    const n = 1 + rng.int(whole ? 4 : 3);
    for (let k = 0; k < n; k++) text = applyIrMutation(text, randomIrMutation(rng));
    const c0 = performance.now();
    const r = checkIrText(text);
    const ms = performance.now() - c0;
    if (ms > slowest.ms) slowest = { ms, index: i };
    if (ms > HANG_MS) findings.push(`ir case ${i} (seed ${seed}): took ${ms.toFixed(0)} ms`);
    if (r.kind === "finding") {
      counts.findings++;
      findings.push(`ir case ${i} (seed ${seed}): ${r.what}: ${r.message.split("\n")[0]}`);
    } else counts[r.kind]++;
  }
  const s = (performance.now() - t0) / 1000;
  console.log(`IR texts: ${irCount} (cases ${from}..${from + irCount - 1}, seed ${seed}) in ${s.toFixed(1)} s: ${counts.accepted} accepted, ${counts.rejected} rejected with a line:column, ${counts.findings} findings; slowest ${slowest.ms.toFixed(1)} ms (case ${slowest.index})`);
}

async function checkpointFuzz(): Promise<void> {
  const golden = resolve(fuzzDir(), "../tests/data/golden/ling-tiny");
  const base = readBase(golden);
  const shardedBase = sharded(base);
  const work = mkdtempSync(join(tmpdir(), "lingc-fuzz-"));
  const input = join(work, "input.safetensors");
  writeSafetensors(input, { input_ids: Tensor.from("i64", [1, 4], [3, 14, 15, 92]) });
  const counts = { accepted: 0, rejected: 0, findings: 0 };
  const byKind = new Map<string, number>();
  let slowest = { ms: 0, index: -1 };
  const t0 = performance.now();
  try {
    for (let i = from; i < from + ckCount; i++) {
      // Progress, so that a case that kills the process (which no in-process check can catch) is found by --from.
      if ((i - from) % 250 === 0) process.stderr.write(`checkpoints: case ${i} (${i - from} of ${ckCount} done, ${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
      const r = await runCheckpointCase(base, shardedBase, input, join(work, "ckpt"), Rng.forCase(seed, i), showCases ? (ms) => process.stderr.write(`case ${i}: ${ms.join("; ")}\n`) : undefined);
      if (r.ms > slowest.ms) slowest = { ms: r.ms, index: i };
      if (r.ms > HANG_MS) findings.push(`checkpoint case ${i} (seed ${seed}): took ${r.ms.toFixed(0)} ms; ${r.mutations.join("; ")}`);
      if (r.finding) {
        counts.findings++;
        findings.push(`checkpoint case ${i} (seed ${seed}): ${r.finding}: "${r.message}"; mutations: ${r.mutations.join("; ")}`);
      } else if (r.code === 0) {
        counts.accepted++;
        if (listAccepted) console.log(`accepted case ${i}: ${r.mutations.join("; ")}`);
      }
      else {
        counts.rejected++;
        const first = r.message.replace(/^lingc: error: /, "").replace(work, "<dir>").replace(/\d+/g, "N").slice(0, 60);
        byKind.set(first, (byKind.get(first) ?? 0) + 1);
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const s = (performance.now() - t0) / 1000;
  console.log(
    `checkpoints: ${ckCount} (cases ${from}..${from + ckCount - 1}, seed ${seed}) in ${s.toFixed(1)} s: ${counts.accepted} ran with finite outputs, ${counts.rejected} refused with exit 1 naming the file, ${counts.findings} findings; slowest ${slowest.ms.toFixed(0)} ms (case ${slowest.index}); ${byKind.size} distinct refusal messages`,
  );
}

/** This file's folder, in the bundle (dist/) or run from source. */
function fuzzDir(): string {
  const here = new URL(".", import.meta.url).pathname;
  return here.endsWith("/dist/") ? join(here, "../fuzz") : here;
}

if (irCount) irFuzz();
if (ckCount) await checkpointFuzz();
if (findings.length) {
  console.log(`\n${findings.length} finding(s):`);
  for (const f of findings.slice(0, 50)) console.log(`  ${f}`);
  if (findings.length > 50) console.log(`  ... and ${findings.length - 50} more`);
  process.exit(1);
}
console.log("0 findings: no crash, no hang, no internal error, every refusal located");
