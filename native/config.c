/* Configurations: settings, ALPN and credentials. */
#include "internal.h"

/* ---------- configuration ---------- */

stoq_config* stoq_config_open(stoq_rt* rt, const stoq_settings* in, const uint8_t* alpn,
                              uint32_t alpn_len, int32_t* status) {
  stoq_config* c = calloc(1, sizeof *c);
  if (!c) { *status = QUIC_STATUS_OUT_OF_MEMORY; return NULL; }
  c->rt = rt;
  /* alpn is a list of length-prefixed names, as on the wire. */
  uint32_t off = 0;
  while (off < alpn_len && c->alpn_count < STOQ_MAX_ALPN) {
    uint8_t n = alpn[off++];
    if (n == 0 || off + n > alpn_len) break;
    uint8_t* dst = c->alpn_bytes + 256 * c->alpn_count;
    memcpy(dst, alpn + off, n);
    c->alpn[c->alpn_count].Buffer = dst;
    c->alpn[c->alpn_count].Length = n;
    c->alpn_count++;
    off += n;
  }
  if (c->alpn_count == 0 || off != alpn_len) {
    free(c);
    *status = QUIC_STATUS_INVALID_PARAMETER;
    return NULL;
  }
  QUIC_SETTINGS s;
  memset(&s, 0, sizeof s);
#define SET(field, value)       \
  do {                          \
    s.IsSet.field = 1;          \
    s.field = (value);          \
  } while (0)
  if (in->idle_timeout_ms != STOQ_UNSET) SET(IdleTimeoutMs, in->idle_timeout_ms);
  if (in->handshake_idle_timeout_ms != STOQ_UNSET)
    SET(HandshakeIdleTimeoutMs, in->handshake_idle_timeout_ms);
  if (in->keep_alive_ms != STOQ_UNSET) SET(KeepAliveIntervalMs, (uint32_t)in->keep_alive_ms);
  if (in->peer_bidi_streams != STOQ_UNSET) SET(PeerBidiStreamCount, (uint16_t)in->peer_bidi_streams);
  if (in->peer_unidi_streams != STOQ_UNSET)
    SET(PeerUnidiStreamCount, (uint16_t)in->peer_unidi_streams);
  if (in->stream_recv_window != STOQ_UNSET)
    SET(StreamRecvWindowDefault, (uint32_t)in->stream_recv_window);
  if (in->conn_flow_window != STOQ_UNSET) SET(ConnFlowControlWindow, (uint32_t)in->conn_flow_window);
  if (in->congestion_control != STOQ_UNSET)
    SET(CongestionControlAlgorithm, in->congestion_control == 1
                                        ? QUIC_CONGESTION_CONTROL_ALGORITHM_BBR
                                        : QUIC_CONGESTION_CONTROL_ALGORITHM_CUBIC);
  if (in->datagrams != STOQ_UNSET) SET(DatagramReceiveEnabled, in->datagrams ? 1 : 0);
  if (in->send_buffering != STOQ_UNSET) SET(SendBufferingEnabled, in->send_buffering ? 1 : 0);
  if (in->pacing != STOQ_UNSET) SET(PacingEnabled, in->pacing ? 1 : 0);
  if (in->disconnect_timeout_ms != STOQ_UNSET)
    SET(DisconnectTimeoutMs, (uint32_t)in->disconnect_timeout_ms);
#undef SET
  /* Multi-receive: msquic keeps indicating new data while JS still holds earlier buffers, so
   * the receive path never waits for a JS round trip. JS completes bytes cumulatively. */
  s.IsSet.StreamMultiReceiveEnabled = 1;
  s.StreamMultiReceiveEnabled = 1;
  QUIC_STATUS st = rt->api->ConfigurationOpen(rt->registration, c->alpn, c->alpn_count, &s,
                                              sizeof s, c, &c->h);
  if (QUIC_FAILED(st)) {
    free(c);
    *status = st;
    return NULL;
  }
  count_add(rt, STOQ_COUNT_CONFIGS, 1);
  *status = 0;
  return c;
}

int32_t stoq_config_load(stoq_config* c, uint32_t flags, const char* cert_file,
                         const char* key_file, const char* ca_file) {
  QUIC_CREDENTIAL_CONFIG cred;
  memset(&cred, 0, sizeof cred);
  QUIC_CERTIFICATE_FILE files = {.PrivateKeyFile = key_file, .CertificateFile = cert_file};
  cred.Type = cert_file ? QUIC_CREDENTIAL_TYPE_CERTIFICATE_FILE : QUIC_CREDENTIAL_TYPE_NONE;
  if (cert_file) cred.CertificateFile = &files;
  cred.Flags = QUIC_CREDENTIAL_FLAG_NONE;
  if (flags & STOQ_CRED_CLIENT) cred.Flags |= QUIC_CREDENTIAL_FLAG_CLIENT;
  if (flags & STOQ_CRED_NO_VALIDATION) cred.Flags |= QUIC_CREDENTIAL_FLAG_NO_CERTIFICATE_VALIDATION;
  /* Deferred: OpenSSL still checks the chain (unless NO_VALIDATION) and reports its verdict with
   * the certificate; JS decides. */
  if (flags & STOQ_CRED_DEFER_VALIDATION)
    cred.Flags |= QUIC_CREDENTIAL_FLAG_DEFER_CERTIFICATE_VALIDATION |
                  QUIC_CREDENTIAL_FLAG_INDICATE_CERTIFICATE_RECEIVED |
                  QUIC_CREDENTIAL_FLAG_USE_PORTABLE_CERTIFICATES;
  if (flags & STOQ_CRED_REQUIRE_CLIENT_AUTH)
    cred.Flags |= QUIC_CREDENTIAL_FLAG_REQUIRE_CLIENT_AUTHENTICATION;
  if (ca_file) {
    cred.Flags |= QUIC_CREDENTIAL_FLAG_SET_CA_CERTIFICATE_FILE;
    cred.CaCertificateFile = ca_file;
  }
  return c->rt->api->ConfigurationLoadCredential(c->h, &cred);
}

void stoq_config_close(stoq_config* c) {
  if (!c) return;
  c->rt->api->ConfigurationClose(c->h);
  count_add(c->rt, STOQ_COUNT_CONFIGS, -1);
  free(c);
}
