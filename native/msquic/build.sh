#!/usr/bin/env bash
# Builds libmsquic from the official sources that the `msquic` crate ships (cargo fetches them
# into its registry), the way the crate's own build script does it (cmake, quictls, logging off),
# after the build-time edits below. Nothing of msquic is kept in this repository: the sources are
# copied into the build folder and edited there.
#
#   native/msquic/build.sh <build-dir> <installed libmsquic.so.2>
set -euo pipefail
build=$(realpath -m "$1")
out=$(realpath -m "$2")
manifest=native/msquic/Cargo.toml

cargo fetch --quiet --manifest-path "$manifest"
crate=$(cargo metadata --format-version 1 --manifest-path "$manifest" |
  python3 -c 'import json,sys; m=json.load(sys.stdin); print([p["manifest_path"] for p in m["packages"] if p["name"]=="msquic"][0])' |
  xargs dirname)
src=$build/msquic-src
rm -rf "$src" "$build/msquic-cmake"
cp -r "$crate" "$src"
chmod -R u+w "$src"

# edit FILE OLD NEW: replaces the one occurrence of OLD, or fails when msquic changed.
edit() {
  python3 - "$@" <<'PY'
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"msquic build edit no longer applies to {path}: {old!r}")
open(path, "w").write(text.replace(old, new))
PY
}

# Edit 1 — handshake cost. On Linux msquic loads OpenSSL's default verify paths into every TLS
# context, even when the application validates peers itself (NO_CERTIFICATE_VALIDATION, as STOQ
# always does: the shim checks chains and names from in-memory trust anchors). Those lookups make
# each handshake scan /etc/ssl/certs (the chain built for the certificate callback, the chain a
# server assembles for its own certificate) and each configuration parse the system bundle. Skip
# them when msquic is told not to validate.
edit "$src/src/platform/tls_quictls.c" \
  'if (SecurityConfig->Flags & QUIC_CREDENTIAL_FLAG_USE_TLS_BUILTIN_CERTIFICATE_VALIDATION) {' \
  'if ((SecurityConfig->Flags & QUIC_CREDENTIAL_FLAG_USE_TLS_BUILTIN_CERTIFICATE_VALIDATION) &&
        !(SecurityConfig->Flags & QUIC_CREDENTIAL_FLAG_NO_CERTIFICATE_VALIDATION)) {'

# Edit 2 — resumption with client certificates. OpenSSL refuses to resume a session on a server
# that verifies client certificates unless the context has a session ID context
# (SSL_R_SESSION_ID_CONTEXT_UNINITIALIZED, sent to the client as an internal_error alert), and
# msquic never sets one, so every resumed connection to a mutual-TLS listener failed. Set one.
edit "$src/src/platform/tls_quictls.c" \
  'SSL_CTX_set_alpn_select_cb(SecurityConfig->SSLCtx, CxPlatTlsAlpnSelectCallback, NULL);' \
  'SSL_CTX_set_alpn_select_cb(SecurityConfig->SSLCtx, CxPlatTlsAlpnSelectCallback, NULL);
        SSL_CTX_set_session_id_context(SecurityConfig->SSLCtx, (const unsigned char*)"msquic", 6);'

# Edit 3 — a use-after-free. When the application completes a deferred certificate validation
# (ConnectionCertificateValidationComplete) after the connection began closing — a client that
# already finished its TLS 1.3 handshake and left while the server still checked its certificate —
# msquic resumed the handshake on torn-down TLS state and crashed. Drop such a completion.
edit "$src/src/core/crypto.c" \
  '    if (!Crypto->CertValidationPending) {
        return;
    }

    Crypto->CertValidationPending = FALSE;
    if (Result) {' \
  '    if (!Crypto->CertValidationPending) {
        return;
    }
    if (QuicConnIsClosed(QuicCryptoGetConnection(Crypto))) {
        Crypto->CertValidationPending = FALSE;
        return;
    }

    Crypto->CertValidationPending = FALSE;
    if (Result) {'

# Edit 4 — per-packet cost of disabled tracing. The crate builds msquic with logging stubbed out
# (QUIC_LOGS_STUB), and in that mode quic_trace.h reports every trace event as *enabled*: the
# one caller that asks, QuicConnLogOutFlowStats, then walks the connection's stream table on
# every blocked-state change and flow-control update to compute figures nobody reads
# (CxPlatHashtableEnumerateNext was ~12 % of a sending worker). With the stub logger no event is
# ever recorded, so report them as disabled, as msquic's maintainers proposed for this logger.
# Only the stdout logger (QUIC_EVENTS_STDOUT, a debugging build) keeps them enabled.
edit "$src/src/inc/quic_trace.h" \
  '#if defined(QUIC_EVENTS_STDOUT) || defined(QUIC_LOGS_STUB)
#define QuicTraceEventEnabled(Name) TRUE
' \
  '#if defined(QUIC_EVENTS_STDOUT) || defined(QUIC_LOGS_STUB)
#if defined(QUIC_EVENTS_STDOUT)
#define QuicTraceEventEnabled(Name) TRUE
#else
#define QuicTraceEventEnabled(Name) FALSE
#endif
'

# Edit 5 — a packet storm while a reader stalls. When a STREAM_DATA_BLOCKED frame is
# acknowledged and the stream is still blocked, msquic queues the frame again at once (its
# comment: "if this design of immediate resending after ACK ever gets too chatty, … add
# exponential backoff"). The receiver answers each with an unchanged MAX_STREAM_DATA, so a
# stream whose application stops reading makes both ends exchange tiny packets at line rate:
# ~70,000 packets/s each way and a busy core on each side over ::1, for as long as the reader
# waits (STOQ keeps unread data in msquic's buffers, so this is any slow or absent reader). The
# frame is resent when it is lost (the loss path is unchanged) and the receiver sends
# MAX_STREAM_DATA as its reader drains, so the blocked sender still learns everything it needs:
# do not resend it on acknowledgement.
edit "$src/src/core/loss_detection.c" \
  '        case QUIC_FRAME_STREAM_DATA_BLOCKED:
            if (Packet->Frames[i].STREAM_DATA_BLOCKED.Stream->OutFlowBlockedReasons &
                QUIC_FLOW_BLOCKED_STREAM_FLOW_CONTROL) {
                //
                // Stream is still blocked, so queue the blocked frame up again.
                //
                // N.B. If this design of immediate resending after ACK ever
                // gets too chatty, then we can reuse the existing loss
                // detection timer to add exponential backoff.
                //
                QuicSendSetStreamSendFlag(
                    &Connection->Send,
                    Packet->Frames[i].STREAM_DATA_BLOCKED.Stream,
                    QUIC_STREAM_SEND_FLAG_DATA_BLOCKED,
                    FALSE);
            }
            break;' \
  '        case QUIC_FRAME_STREAM_DATA_BLOCKED:
            // STOQ build edit 5: acknowledged, so the peer knows; resent only when lost.
            break;'

# Edit 6 — a switch for UDP send segmentation (GSO). msquic uses GSO whenever the kernel offers
# it and has no setting to turn it off, so STOQ's `gso` endpoint option could not be honoured
# (or measured). Add one process-wide flag, read once when msquic sets up its datapath, and
# export it beside msquic's two entry points; the shim sets it before the first socket opens.
edit "$src/src/platform/datapath_epoll.c" \
  'CXPLAT_EVENT_COMPLETION CxPlatSocketContextUninitializeEventComplete;
' \
  '// STOQ build edit 6: set (non-zero) before the datapath starts to keep GSO off.
int StoqSendSegmentationOff = 0;

CXPLAT_EVENT_COMPLETION CxPlatSocketContextUninitializeEventComplete;
'
edit "$src/src/platform/datapath_epoll.c" \
  '    Datapath->Features |= CXPLAT_DATAPATH_FEATURE_SEND_SEGMENTATION;
' \
  '    if (!StoqSendSegmentationOff) {
        Datapath->Features |= CXPLAT_DATAPATH_FEATURE_SEND_SEGMENTATION;
    }
'
edit "$src/src/bin/linux/exports.txt" \
  'global: MsQuicOpenVersion; MsQuicClose;' \
  'global: MsQuicOpenVersion; MsQuicClose; StoqSendSegmentationOff;'

# Edit 7 — a lost end of stream in multi-receive mode. StreamReceiveComplete from the
# application's thread queues msquic's one completion operation; when that operation is already
# running and has restored its slot but not yet read the byte count, a second call queues it
# again, and the first run completes both calls' bytes. The second run then completes 0 bytes
# with nothing indicated (RecvPendingLength 0), and that path marked the stream as having no
# data to deliver, even when a frame that arrived meanwhile had queued a receive flush: the
# flush then returned early, and when that frame carried the stream's last bytes and FIN,
# nothing ever indicated them (the sender saw everything acknowledged; the reader waited until
# the idle timeout). Clear the flag there only when nothing is left unread (upstream,
# microsoft/msquic#6180, open, describes the same flag cleared while data remains).
edit "$src/src/core/stream_recv.c" \
  '    if (Stream->RecvPendingLength == 0 ||
        QuicRecvBufferDrain(&Stream->RecvBuffer, BufferLength)) {' \
  '    if (Stream->RecvPendingLength == 0 ?
            !QuicRecvBufferHasUnreadData(&Stream->RecvBuffer) :
            QuicRecvBufferDrain(&Stream->RecvBuffer, BufferLength)) {'

# Edit 8 — blocking parameters before a client connection starts. msquic runs SetParam on a
# connection through the connection's worker thread and blocks the caller until the worker has
# run it (about 50 µs per call here, more when the worker is busy), even before
# ConnectionStart, when no worker has the connection yet: it has no queued work and nothing
# else refers to it. STOQ sets a client connection's session ticket, UDP-socket sharing and
# local address there, so every resumed or socket-sharing connect paid one to three such round
# trips on the JavaScript thread. Run SetParam inline for a client connection that has not
# started and has nothing queued (the caller owns it alone until it calls ConnectionStart).
edit "$src/src/core/api.c" \
  '    if (MsQuicLib.CustomExecutions ||
        Connection->WorkerThreadID == CxPlatCurThreadID()) {
        //
        // Execute this blocking API call inline if called on the worker thread.
        //
        BOOLEAN AlreadyInline = Connection->State.InlineApiExecution;
        if (!AlreadyInline) {
            Connection->State.InlineApiExecution = TRUE;
        }
        Status = QuicLibrarySetParam(' \
  '    if (MsQuicLib.CustomExecutions ||
        Connection->WorkerThreadID == CxPlatCurThreadID() ||
        (Handle->Type == QUIC_HANDLE_TYPE_CONNECTION_CLIENT &&
         !Connection->State.Started && !Connection->WorkerProcessing &&
         !Connection->HasQueuedWork)) {
        //
        // Execute this blocking API call inline if called on the worker thread
        // (STOQ build edit 8: or on a client connection not started yet).
        //
        BOOLEAN AlreadyInline = Connection->State.InlineApiExecution;
        if (!AlreadyInline) {
            Connection->State.InlineApiExecution = TRUE;
        }
        Status = QuicLibrarySetParam('

cmake -S "$src" -B "$build/msquic-cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DQUIC_TLS_LIB=quictls -DQUIC_ENABLE_LOGGING=off -DQUIC_BUILD_SHARED=on \
  -DQUIC_OUTPUT_DIR="$build/msquic-cmake/out" >/dev/null
cmake --build "$build/msquic-cmake" --parallel "$(nproc)" >/dev/null
mkdir -p "$(dirname "$out")"
cp -L "$build/msquic-cmake/out/libmsquic.so.2" "$out"
