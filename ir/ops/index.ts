/** Loads every op declaration into the table; import this before using getOp(). */
import "./elementwise";
import "./reduce";
import "./shape";
import "./nn";
import "./moe";

export { getOp, allOps, attrsProblem, type OpDef, type AttrKind, type AttrSpec, type Cost, type ShapedType } from "./registry";
