/**
 * How every output file is written (issue 17's output discipline): to a temporary file beside the
 * target, every write checked, then renamed over it, so a failure leaves the target as it was and
 * no partial file behind. A target that is not a regular file is never replaced: a character device
 * (/dev/null, /dev/full) is written through, with the same checks; a FIFO, socket, block device or
 * folder is refused. Errors name the path and the OS's reason.
 */
import { closeSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { LingcError } from "../ir/errors";

const reason = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/** Writes every byte of `chunks` to fd (a short write is retried; no progress is an error). */
function writeAll(fd: number, chunks: Iterable<Uint8Array>): void {
  for (const c of chunks) {
    for (let off = 0; off < c.length; ) {
      const n = writeSync(fd, c, off, c.length - off);
      if (n <= 0) throw Object.assign(new Error("short write"), { code: "EIO" });
      off += n;
    }
  }
}

/** `data` may be a generator: chunks are made as they are written (a large file never sits in memory whole). */
export function writeOutputFile(path: string, data: string | Uint8Array | Iterable<Uint8Array>): void {
  const chunks = typeof data === "string" ? [Buffer.from(data, "utf8")] : data instanceof Uint8Array ? [data] : data;
  let st;
  try {
    st = statSync(path, { throwIfNoEntry: false });
  } catch (e) {
    throw new LingcError(`cannot write ${path}: ${reason(e)}`);
  }
  if (st && st.isDirectory()) throw new LingcError(`cannot write ${path}: it is a folder`);
  if (st && !st.isFile()) {
    if (!st.isCharacterDevice()) throw new LingcError(`cannot write ${path}: it is not a regular file (a FIFO, socket or block device is never written or replaced)`);
    let fd = -1;
    try {
      fd = openSync(path, "w");
      writeAll(fd, chunks);
    } catch (e) {
      throw new LingcError(`cannot write ${path}: ${reason(e)}`);
    } finally {
      if (fd >= 0) closeSync(fd);
    }
    return;
  }
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  let fd = -1;
  try {
    fd = openSync(tmp, "w");
    writeAll(fd, chunks);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing was created */
    }
    throw new LingcError(`cannot write ${path}: ${reason(e)}`);
  }
}
