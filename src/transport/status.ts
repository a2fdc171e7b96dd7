/**
 * Maps msquic status codes to {@linkcode StoqError} codes with messages that say what to do.
 *
 * @module
 */

import { Status } from "../../ffi/mod.ts";
import { StoqError, type StoqErrorCode } from "../errors.ts";

const TLS_ALERT_NO_APPLICATION_PROTOCOL = 120;

function isCertificateStatus(status: number): boolean {
  if (status >= Status.CERT_BASE && status < Status.CERT_BASE + 0x100) {
    return true;
  }
  const alert = status - Status.TLS_BASE;
  // bad_certificate .. unknown_ca, access_denied, certificate_required
  return (alert >= 42 && alert <= 49) || alert === 116;
}

/** The stable code for a connection that msquic shut down with `status`. */
function statusCode(
  status: number,
  handshakeDone: boolean,
): StoqErrorCode {
  if (status === Status.ALPN_NEG_FAILURE) return "ALPN_MISMATCH";
  if (status === Status.TLS_BASE + TLS_ALERT_NO_APPLICATION_PROTOCOL) {
    return "ALPN_MISMATCH";
  }
  if (isCertificateStatus(status)) return "CERTIFICATE_REJECTED";
  if (handshakeDone && status === Status.CONNECTION_IDLE) return "IDLE_TIMEOUT";
  if (status === Status.CONNECTION_REFUSED || status === Status.UNREACHABLE) {
    return "CONNECTION_REFUSED";
  }
  if (!handshakeDone && status === Status.CONNECTION_IDLE) {
    return "HANDSHAKE_TIMEOUT";
  }
  if (status === Status.CONNECTION_TIMEOUT) {
    return handshakeDone ? "IDLE_TIMEOUT" : "HANDSHAKE_TIMEOUT";
  }
  // Anything else the transport decided (a protocol violation, an internal error) is a failure,
  // not the orderly close an application asks for.
  return handshakeDone ? "TRANSPORT_ERROR" : "HANDSHAKE_FAILED";
}

const ADVICE: Partial<Record<StoqErrorCode, string>> = {
  ALPN_MISMATCH:
    "the peer offers none of our ALPN protocols: make alpnProtocols match on both sides",
  CERTIFICATE_REJECTED:
    "the peer's certificate was not accepted: pass the issuing CA in caCerts (client) or check the certificate's names and dates",
  IDLE_TIMEOUT:
    "the peer stopped answering: it may have died or the network dropped; reconnect",
  CONNECTION_REFUSED:
    "nothing answers at that address: check the host, the port and that the server is listening",
  HANDSHAKE_FAILED:
    "the QUIC/TLS handshake did not complete: check address, port, ALPN and certificates",
  HANDSHAKE_TIMEOUT:
    "the server did not complete the handshake in time (handshakeTimeout): check that it runs and is reachable, or raise handshakeTimeout",
  TRANSPORT_ERROR:
    "the transport closed the connection after an error (protocol violation, internal error or resource limit); reconnect",
};

/** A {@linkcode StoqError} for a connection-level failure. */
export function connectionError(
  status: number,
  handshakeDone: boolean,
): StoqError {
  const code = statusCode(status, handshakeDone);
  return new StoqError(
    code,
    `${ADVICE[code] ?? code} (msquic status ${status})`,
    { status },
  );
}

/** A {@linkcode StoqError} for a failed native call. */
export function statusError(status: number, what: string): StoqError {
  let code: StoqErrorCode = "NATIVE_ERROR";
  let advice = "this is a bug or resource exhaustion; see the status code";
  if (status === Status.ADDRESS_IN_USE) {
    code = "ADDRESS_IN_USE";
    advice =
      "the port is already taken by another listener (in this process or another): pick another port or stop the other listener";
  } else if (status === Status.INVALID_ADDRESS) {
    code = "INVALID_ARGUMENT";
    advice = "the address is not a valid IPv6 address";
  } else if (status === Status.INVALID_STATE || status === Status.ABORTED) {
    code = "CLOSED";
    advice = "the object is already closed or shutting down";
  } else if (status === Status.NOT_FOUND) {
    code = "INVALID_ARGUMENT";
    advice = "a certificate, key or CA file could not be read";
  } else if (status === Status.TLS_ERROR) {
    code = "INVALID_ARGUMENT";
    advice =
      "the certificate or key could not be loaded: check they are PEM and belong together";
  } else if (status === Status.STREAM_LIMIT_REACHED) {
    code = "STREAM_LIMIT";
    advice = "the peer allows no more streams right now";
  }
  return new StoqError(
    code,
    `Cannot ${what}: ${advice} (msquic status ${status})`,
    { status },
  );
}
