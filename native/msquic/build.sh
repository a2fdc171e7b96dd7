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

cmake -S "$src" -B "$build/msquic-cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DQUIC_TLS_LIB=quictls -DQUIC_ENABLE_LOGGING=off -DQUIC_BUILD_SHARED=on \
  -DQUIC_OUTPUT_DIR="$build/msquic-cmake/out" >/dev/null
cmake --build "$build/msquic-cmake" --parallel "$(nproc)" >/dev/null
mkdir -p "$(dirname "$out")"
cp -L "$build/msquic-cmake/out/libmsquic.so.2" "$out"
