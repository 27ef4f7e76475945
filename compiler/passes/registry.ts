/**
 * The passes a pipeline can name. Each pass module declares one Pass; this list is where they are
 * made available (in the order `--help` shows them).
 */
import { LingcError } from "../../ir/errors";
import { autodiff } from "./autodiff";
import { recompute } from "./recompute";
import { adamw } from "./adamw";
import { pipeline } from "./stages";
import { castlinear } from "./castlinear";
import { cse } from "./cse";
import { dce } from "./dce";
import { decompose } from "./decompose";
import { fp8 } from "./fp8";
import { fusion } from "./fusion";
import { select } from "./select";
import type { Pass } from "./pass";

export const PASSES: readonly Pass[] = [cse, dce, castlinear, decompose, fusion, select, fp8, autodiff, recompute, adamw, pipeline];

export function getPass(name: string): Pass {
  const p = PASSES.find((x) => x.name === name);
  if (!p) throw new LingcError(`unknown pass '${name}' (available: ${PASSES.map((x) => x.name).join(", ")})`);
  return p;
}
