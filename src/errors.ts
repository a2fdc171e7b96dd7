/**
 * The one error type STOQ throws, with a stable `code` to branch on.
 *
 * @module
 */

/**
 * Stable error codes. Code strings never change meaning between versions.
 *
 * @example Branching on a code
 * ```ts
 * import { StoqError, type StoqErrorCode } from "../mod.ts";
 * const code: StoqErrorCode = "PEER_RESET";
 * console.log(new StoqError(code, "reset").code); // "PEER_RESET"
 * ```
 */
export type StoqErrorCode =
  // transport
  | "IPV4_REJECTED"
  | "INVALID_ARGUMENT"
  | "ADDRESS_IN_USE"
  | "HOST_NOT_FOUND"
  | "HANDSHAKE_FAILED"
  | "HANDSHAKE_TIMEOUT"
  | "CERTIFICATE_REJECTED"
  | "ALPN_MISMATCH"
  | "PEER_RESET"
  | "PEER_STOPPED"
  | "IDLE_TIMEOUT"
  | "CONNECTION_REFUSED"
  | "CONNECTION_CLOSED"
  | "TRANSPORT_ERROR"
  | "CLOSED"
  | "DATAGRAM_TOO_LARGE"
  | "DATAGRAM_DISABLED"
  | "STREAM_LIMIT"
  | "ABORTED"
  // phoenix and configuration
  | "MESSAGE_TOO_LARGE"
  | "REFUSED"
  | "PROTOCOL_ERROR"
  | "CONFIG_INVALID"
  | "LIBRARY_NOT_FOUND"
  | "LIBRARY_VERSION"
  | "NATIVE_ERROR"
  | "FILE_ERROR"
  | "PERMISSION_DENIED"
  // trustchain
  | "CSR_MALFORMED"
  | "CSR_BAD_SIGNATURE"
  | "KEY_UNSUPPORTED"
  | "SAN_IPV4"
  | "NAME_NOT_ALLOWED"
  | "LIFETIME_TOO_LONG"
  | "MALFORMED"
  | "CSR_TOO_LARGE"
  | "TOO_MANY_SANS"
  | "LOG_TAMPERED"
  | "CA_TAMPERED"
  | "CA_LOCKED"
  | "PROOF_INVALID"
  | "CERT_REVOKED"
  | "CERT_UNTRUSTED"
  | "BUNDLE_INVALID"
  | "STORE_ERROR"
  // trustchain service
  | "REQUEST_INVALID"
  | "UNAUTHORIZED"
  | "INTERNAL_ERROR";

/**
 * Options for {@linkcode StoqError}.
 *
 * @example Keeping the cause
 * ```ts
 * import { StoqError } from "../mod.ts";
 * const err = new StoqError("NATIVE_ERROR", "msquic failed", { status: 5, cause: new Error("EIO") });
 * console.log(err.status); // 5
 * ```
 */
export interface StoqErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
  /** The msquic status code (a negative errno on Linux) when the error came from native code. */
  status?: number;
  /** The QUIC application error code a peer sent, when one did. */
  appCode?: bigint;
}

/**
 * An error raised by STOQ. Branch on `code`, never on `message`.
 *
 * @example Telling an IPv4 address apart
 * ```ts
 * import { StoqError } from "../mod.ts";
 * const err = new StoqError("IPV4_REJECTED", "STOQ is IPv6-only: use an IPv6 address such as ::1");
 * console.log(err.code === "IPV4_REJECTED"); // true
 * ```
 */
export class StoqError extends Error {
  /** The stable code. */
  readonly code: StoqErrorCode;
  /** The msquic status code, when the error came from native code. */
  readonly status?: number;
  /** The peer's application error code (RESET_STREAM, STOP_SENDING or CONNECTION_CLOSE). */
  readonly appCode?: bigint;

  /**
   * Creates an error.
   *
   * @param code A stable code.
   * @param message What happened and what to do about it.
   * @param options Cause, native status and application code.
   */
  constructor(
    code: StoqErrorCode,
    message: string,
    options: StoqErrorOptions = {},
  ) {
    super(
      message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "StoqError";
    this.code = code;
    if (options.status !== undefined) this.status = options.status;
    if (options.appCode !== undefined) this.appCode = options.appCode;
  }
}
