/**
 * Compile-time benchmark: tracing + verifying + printing Ling-1T's forward and decode graphs
 * (the whole front end without weights). Reports the median of several runs after one warm-up.
 * Run with `npm run bench:compile` (options: --model NAME, --runs N).
 */
import "../ir/ops";
import { printModule } from "../ir/print";
import { verifyModule } from "../ir/verify";
import { buildLing2, GRAPHS } from "../models/ling2";
import { resolveModel } from "../models/resolve";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const model = arg("model", "ling-1t");
const runs = Number(arg("runs", "9"));
const cfg = resolveModel(model).config;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const once = () => {
  const t0 = performance.now();
  let chars = 0;
  for (const g of GRAPHS) {
    const m = buildLing2(cfg, g); // traces and verifies
    verifyModule(m);
    chars += printModule(m).length;
  }
  return { ms: performance.now() - t0, chars };
};

const first = once();
const times: number[] = [];
for (let i = 0; i < runs; i++) times.push(once().ms);
console.log(`model ${model}: trace + verify + print of ${GRAPHS.join(" and ")} (${first.chars} chars of IR)`);
console.log(`  first run (cold): ${first.ms.toFixed(1)} ms`);
console.log(`  median of ${runs} warm runs: ${median(times).toFixed(1)} ms (min ${Math.min(...times).toFixed(1)}, max ${Math.max(...times).toFixed(1)})`);
