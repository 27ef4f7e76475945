/**
 * Cutting a sequence of units into pipeline stages (issue 12).
 *
 * minMaxPartition: the exact min-max contiguous partition by dynamic programming (O(stages x units^2)):
 * best[k][j] = the least bottleneck of the first j units in k stages, each stage non-empty and within
 * the memory it may hold (`fits`, which may depend on the stage's index: a training stage early in
 * a 1F1B pipeline keeps more micro-batches in flight). A stage's time is its units' times plus
 * sending the values that cross its last cut (`sendSeconds`).
 *
 * interleavedPartition (V virtual stages per device, Megatron's interleaved schedule: chunk c runs
 * on device c mod p): the min-max partition into p*V chunks, then a local search moving chunk
 * boundaries while the largest device load falls. It guarantees no more than the best p*V-chunk
 * min-max partition's device load; lowerBound() (the larger of the mean load per device and the
 * largest unit) bounds every plan from below, and the plan's gap to it is reported.
 */

export interface Partition {
  /** Stage s holds units bounds[s] .. bounds[s+1]-1. */
  bounds: number[];
  /** Predicted seconds of each stage (units plus its send). */
  stageSeconds: number[];
  /** The bottleneck: the largest stage time (for V > 1: the largest device load). */
  max: number;
}

export interface PartitionInput {
  seconds: readonly number[];
  /** Seconds to send what crosses the cut after each unit (0 after the last). */
  sendSeconds: readonly number[];
  /** Whether stage `stage` may hold units from..to-1 (memory); default: always. */
  fits?: (stage: number, from: number, to: number) => boolean;
}

function prefix(xs: readonly number[]): number[] {
  const p = [0];
  for (const x of xs) p.push(p[p.length - 1]! + x);
  return p;
}

/** Seconds of a stage holding units from..to-1. */
export function stageTime(input: PartitionInput, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i++) s += input.seconds[i]!;
  return to > from && to < input.seconds.length ? s + input.sendSeconds[to - 1]! : s;
}

export function minMaxPartition(input: PartitionInput, stages: number): Partition | undefined {
  const n = input.seconds.length;
  if (stages < 1 || stages > n) return undefined;
  const pre = prefix(input.seconds);
  const time = (i: number, j: number) => pre[j]! - pre[i]! + (j < n ? input.sendSeconds[j - 1]! : 0);
  const fits = input.fits ?? (() => true);
  // best[k][j]: k stages over the first j units; from[k][j]: where the last stage starts.
  const best = Array.from({ length: stages + 1 }, () => new Array<number>(n + 1).fill(Infinity));
  const from = Array.from({ length: stages + 1 }, () => new Array<number>(n + 1).fill(-1));
  best[0]![0] = 0;
  for (let k = 1; k <= stages; k++) {
    for (let j = k; j <= n - (stages - k); j++) {
      for (let i = k - 1; i < j; i++) {
        const prev = best[k - 1]![i]!;
        if (prev === Infinity || !fits(k - 1, i, j)) continue;
        const v = Math.max(prev, time(i, j));
        if (v < best[k]![j]!) {
          best[k]![j] = v;
          from[k]![j] = i;
        }
      }
    }
  }
  if (best[stages]![n] === Infinity) return undefined;
  const bounds = [n];
  for (let k = stages, j = n; k > 0; k--) {
    j = from[k]![j]!;
    bounds.unshift(j);
  }
  const stageSeconds = bounds.slice(0, -1).map((b, s) => time(b, bounds[s + 1]!));
  return { bounds, stageSeconds, max: best[stages]![n]! };
}

/** Device loads of a partition into p*V chunks, chunk c on device c mod p. */
export function deviceLoads(input: PartitionInput, bounds: readonly number[], devices: number): number[] {
  const loads = new Array<number>(devices).fill(0);
  for (let c = 0; c + 1 < bounds.length; c++) loads[c % devices]! += stageTime(input, bounds[c]!, bounds[c + 1]!);
  return loads;
}

/** The least any plan's largest device load can be: the mean load, or the largest unit. */
export function lowerBound(input: PartitionInput, devices: number): number {
  const total = input.seconds.reduce((a, b) => a + b, 0);
  return Math.max(total / devices, ...input.seconds);
}

export function interleavedPartition(input: PartitionInput, devices: number, virtual: number): Partition | undefined {
  const chunks = devices * virtual;
  const start = minMaxPartition({ ...input, fits: input.fits && ((c, i, j) => input.fits!(c % devices, i, j)) }, chunks);
  if (!start) return undefined;
  const bounds = [...start.bounds];
  const n = input.seconds.length;
  const ok = (b: readonly number[], c: number) => !input.fits || input.fits(c % devices, b[c]!, b[c + 1]!);
  // Lexicographic: the largest device load, then the sum of squared loads (so that moves which
  // unload the second-largest device count as progress on a plateau).
  const score = (b: readonly number[]) => {
    const loads = deviceLoads(input, b, devices);
    return [Math.max(...loads), loads.reduce((a, x) => a + x * x, 0)] as const;
  };
  const less = (a: readonly [number, number], b: readonly [number, number]) => a[0] < b[0] - 1e-15 || (a[0] <= b[0] + 1e-15 && a[1] < b[1] * (1 - 1e-12));
  let cur = score(bounds);
  for (let round = 0; round < 8 * n; round++) {
    let improved = false;
    for (let c = 1; c < chunks; c++) {
      for (const d of [-3, -2, -1, 1, 2, 3]) {
        const next = [...bounds];
        next[c]! += d;
        if (next[c]! <= next[c - 1]! || next[c]! >= next[c + 1]!) continue;
        if (!ok(next, c - 1) || !ok(next, c)) continue;
        const sc = score(next);
        if (less(sc, cur)) {
          bounds[c] = next[c]!;
          cur = sc;
          improved = true;
        }
      }
    }
    if (!improved) break;
  }
  return { bounds, stageSeconds: bounds.slice(0, -1).map((b, c) => stageTime(input, b, bounds[c + 1]!)), max: cur[0] };
}
