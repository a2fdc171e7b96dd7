// Private byte helpers shared by the trustchain modules: base64, comparisons, big-endian integers,
// length-prefixed vectors (TLS presentation language, RFC 8446 §3) and a bounds-checked reader.

import { concatBytes } from "npm:@noble/hashes@2.4.0/utils.js";

export {
  bytesToHex,
  concatBytes,
  hexToBytes,
  utf8ToBytes,
} from "npm:@noble/hashes@2.4.0/utils.js";

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Constant-time comparison of two byte strings (time depends on the length only). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Big-endian unsigned integer of `width` bytes (up to 8) from a safe integer. */
export function uint(n: number, width: number): Uint8Array {
  if (
    !Number.isSafeInteger(n) || n < 0 || (width < 7 && n >= 2 ** (8 * width))
  ) {
    throw new RangeError(
      `Cannot encode ${n} as a ${width}-byte unsigned integer`,
    );
  }
  const out = new Uint8Array(width);
  let v = n;
  for (let i = width - 1; i >= 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return out;
}

/** Big-endian unsigned 64-bit encoding of a safe integer. */
export function u64(n: number): Uint8Array {
  return uint(n, 8);
}

/** A TLS vector: `bytes` prefixed with its length in `lengthBytes` bytes. */
export function vector(
  lengthBytes: number,
  ...parts: Uint8Array[]
): Uint8Array {
  const body = parts.length === 1 ? parts[0] : concatBytes(...parts);
  return concatBytes(uint(body.length, lengthBytes), body);
}

/** Length-prefixed concatenation, so field boundaries cannot be shifted between fields. */
export function framed(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(...parts.map((p) => vector(4, p)));
}

/** Copies into a fresh ArrayBuffer-backed array, which WebCrypto's BufferSource type wants. */
export function buf(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

/** Reads TLS-encoded structures front to back; throws `RangeError` on truncated input. */
export class Reader {
  #bytes: Uint8Array;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /** Bytes not read yet. */
  get remaining(): number {
    return this.#bytes.length - this.#at;
  }

  /** The next `n` bytes. */
  bytes(n: number): Uint8Array {
    if (n > this.remaining) {
      throw new RangeError(
        `Truncated input: need ${n} bytes, ${this.remaining} left`,
      );
    }
    const out = this.#bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  /** A big-endian unsigned integer of `width` bytes. */
  uint(width: number): number {
    let v = 0;
    for (const b of this.bytes(width)) v = v * 256 + b;
    if (!Number.isSafeInteger(v)) throw new RangeError("Integer too large");
    return v;
  }

  /** A vector with a `lengthBytes`-byte length prefix. */
  vector(lengthBytes: number): Uint8Array {
    return this.bytes(this.uint(lengthBytes));
  }

  /** Throws unless everything was read. */
  end(): void {
    if (this.remaining !== 0) {
      throw new RangeError(`${this.remaining} trailing bytes`);
    }
  }
}
