/**
 * Reading and writing safetensors files on disk. The header is validated completely before any
 * tensor is read (safetensors-format.ts); tensors are then read one at a time at their offsets, so a
 * large checkpoint is never loaded whole. Writes go through a temporary file and a rename.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { writeOutputFile } from "../output-file";
import { LingcError } from "../../ir/errors";
import { byteSize, type DType } from "../../ir/dtype";
import { Tensor, numelOf } from "../../ir/tensor";
import { TO_ST, decodeTensor, parseSafetensors, tensorBytes, type StEntry } from "./safetensors-format";

export { tensorBytes, type StEntry } from "./safetensors-format";

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private fd: number,
    readonly entries: Map<string, StEntry>,
    readonly metadata: Record<string, string>,
    readonly dataStart: number,
  ) {}

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new LingcError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new LingcError(`${path} is not a file (a safetensors file was expected)`);
      const size = st.size;
      const read = (offset: number, length: number) => {
        const b = new Uint8Array(length);
        readSync(fd, b, 0, length, offset);
        return b;
      };
      const { entries, metadata, dataStart } = parseSafetensors(path, size, read);
      return new SafetensorsFile(path, fd, entries, metadata, dataStart);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Reads a tensor, converting it to lingc's in-memory form. */
  read(name: string): Tensor {
    const en = this.entries.get(name);
    if (!en) throw new LingcError(`${this.path}: no tensor "${name}"`);
    if (!en.dtype) throw new LingcError(`${this.path}: tensor "${name}" has dtype ${en.stDtype}, which lingc does not compute with`);
    return new Tensor(en.dtype, en.shape, decodeTensor(this.readBytes(name), en.dtype, numelOf(en.shape), `${this.path}: tensor "${name}"`));
  }

  /** A tensor's bytes as the file stores them (little-endian), in a buffer of their own. */
  readBytes(name: string): ArrayBuffer {
    const en = this.entries.get(name);
    if (!en) throw new LingcError(`${this.path}: no tensor "${name}"`);
    const nbytes = en.end - en.begin;
    const buf = new ArrayBuffer(nbytes);
    const u8 = new Uint8Array(buf);
    let done = 0;
    while (done < nbytes) {
      const got = readSync(this.fd, u8, done, nbytes - done, en.begin + done);
      if (got <= 0) throw new LingcError(`${this.path}: tensor "${name}" could not be read completely`);
      done += got;
    }
    return buf;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** A tensor made when its turn to be written comes (its dtype and shape known before). */
export interface LazyTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  make(): Tensor;
}

/**
 * Writes tensors (sorted by name, so the bytes depend only on the contents) through
 * writeOutputFile: a failure never leaves a partial file at `path`, and a device is never replaced.
 * A LazyTensor is made and encoded only as it is written, so a file of random weights for a large
 * model (`lingc init`) never holds more than one tensor in memory.
 */
export function writeSafetensors(path: string, tensors: Readonly<Record<string, Tensor | LazyTensor>>, metadata?: Record<string, string>): void {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header["__metadata__"] = metadata;
  let off = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const bytes = byteSize(t.dtype) * numelOf(t.shape);
    header[name] = { dtype: TO_ST[t.dtype], shape: [...t.shape], data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((json.length + 8) % 8)) % 8);
  const hbytes = Buffer.from(json, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hbytes.length));
  function* chunks(): Generator<Uint8Array> {
    yield len;
    yield hbytes;
    for (const name of names) {
      const t = tensors[name]!;
      const made = t instanceof Tensor ? t : t.make();
      const bytes = tensorBytes(made);
      const want = byteSize(t.dtype) * numelOf(t.shape);
      if (made.dtype !== t.dtype || bytes.length !== want) throw new Error(`tensor "${name}": made ${made.dtype} [${made.shape}] (${bytes.length} bytes), declared ${t.dtype} [${t.shape}] (${want})`);
      yield bytes;
    }
  }
  writeOutputFile(path, chunks());
}

/** Reads every tensor of a small file (inputs, golden values) into a record. */
export function readAllSafetensors(path: string): Record<string, Tensor> {
  return readSafetensorsWhere(path, () => true).tensors;
}

/**
 * The tensors of a file that `wanted` names (the others are not read: a file of golden values may
 * hold tensors of dtypes lingc does not compute with), and the names of all of them.
 */
export function readSafetensorsWhere(path: string, wanted: (name: string) => boolean): { tensors: Record<string, Tensor>; names: string[] } {
  const f = SafetensorsFile.open(path);
  try {
    const names = [...f.entries.keys()].sort();
    const tensors: Record<string, Tensor> = {};
    for (const name of names) if (wanted(name)) tensors[name] = f.read(name);
    return { tensors, names };
  } finally {
    f.close();
  }
}
