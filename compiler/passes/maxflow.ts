/**
 * Maximum flow / minimum s-t cut (Dinic's algorithm) on a small graph with real capacities; the
 * recompute planner's Lagrangian step is one such cut. Infinity is a valid capacity (an edge that
 * can never be cut).
 */
export class FlowGraph {
  private readonly to: number[] = [];
  private readonly cap: number[] = [];
  private readonly adj: number[][];

  constructor(readonly size: number) {
    this.adj = Array.from({ length: size }, () => []);
  }

  /** A directed edge a -> b of capacity c (its reverse edge starts at 0). */
  edge(a: number, b: number, c: number): void {
    if (c <= 0) return;
    this.adj[a]!.push(this.to.length);
    this.to.push(b);
    this.cap.push(c);
    this.adj[b]!.push(this.to.length);
    this.to.push(a);
    this.cap.push(0);
  }

  /**
   * Pushes the maximum flow from s to t; returns the side of the minimum cut each node is on (true:
   * reachable from s in the residual graph) and the flow's value. Residual capacities below `eps`
   * times the largest finite capacity count as saturated (real-valued capacities).
   */
  minCut(s: number, t: number): { sourceSide: boolean[]; value: number } {
    const finite = this.cap.filter((c) => Number.isFinite(c));
    const eps = 1e-12 * Math.max(1, ...finite);
    const level = new Array<number>(this.size);
    const bfs = (): boolean => {
      level.fill(-1);
      level[s] = 0;
      const queue = [s];
      for (let qi = 0; qi < queue.length; qi++) {
        const u = queue[qi]!;
        for (const e of this.adj[u]!) {
          const v = this.to[e]!;
          if (level[v]! < 0 && this.cap[e]! > eps) {
            level[v] = level[u]! + 1;
            queue.push(v);
          }
        }
      }
      return level[t]! >= 0;
    };
    const next = new Array<number>(this.size);
    const dfs = (u: number, pushed: number): number => {
      if (u === t) return pushed;
      for (; next[u]! < this.adj[u]!.length; next[u]!++) {
        const e = this.adj[u]![next[u]!]!;
        const v = this.to[e]!;
        if (level[v] !== level[u]! + 1 || this.cap[e]! <= eps) continue;
        const got = dfs(v, Math.min(pushed, this.cap[e]!));
        if (got > 0) {
          this.cap[e]! -= got;
          this.cap[e ^ 1]! += got;
          return got;
        }
      }
      return 0;
    };
    let value = 0;
    while (bfs()) {
      next.fill(0);
      for (let f = dfs(s, Infinity); f > 0; f = dfs(s, Infinity)) {
        if (!Number.isFinite(f)) throw new Error("minCut: an uncuttable path from source to sink (infinite flow)");
        value += f;
      }
    }
    bfs();
    return { sourceSide: level.map((l) => l >= 0), value };
  }
}
