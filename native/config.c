/* Configurations: settings, ALPN and credentials. */
#include "internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <time.h>

/* ---------- configuration ---------- */

stoq_config* stoq_config_open(stoq_rt* rt, const stoq_settings* in, const uint8_t* alpn,
                              uint32_t alpn_len, int32_t* status) {
  stoq_config* c = calloc(1, sizeof *c);
  if (!c) { *status = QUIC_STATUS_OUT_OF_MEMORY; return NULL; }
  c->rt = rt;
  pthread_mutex_init(&c->verdict_lock, NULL);
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
    pthread_mutex_destroy(&c->verdict_lock);
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
  if (in->max_ack_delay_ms != STOQ_UNSET) SET(MaxAckDelayMs, (uint32_t)in->max_ack_delay_ms);
  if (in->disconnect_timeout_ms != STOQ_UNSET)
    SET(DisconnectTimeoutMs, (uint32_t)in->disconnect_timeout_ms);
  c->dgram_queue = in->dgram_queue != STOQ_UNSET && in->dgram_queue > 0
                       ? (uint32_t)in->dgram_queue
                       : 256;
  if (in->server_resumption != STOQ_UNSET && in->server_resumption > 0) {
    SET(ServerResumptionLevel, in->server_resumption == 2 ? QUIC_SERVER_RESUME_AND_ZERORTT
                                                          : QUIC_SERVER_RESUME_ONLY);
    c->server_resumption = 1;
  }
#undef SET
  /* Multi-receive: msquic keeps indicating new data while JS still holds earlier buffers, so
   * the receive path never waits for a JS round trip. JS completes bytes cumulatively. */
  s.IsSet.StreamMultiReceiveEnabled = 1;
  s.StreamMultiReceiveEnabled = 1;
  QUIC_STATUS st = rt->api->ConfigurationOpen(rt->registration, c->alpn, c->alpn_count, &s,
                                              sizeof s, c, &c->h);
  if (QUIC_FAILED(st)) {
    pthread_mutex_destroy(&c->verdict_lock);
    free(c);
    *status = st;
    return NULL;
  }
  count_add(rt, STOQ_COUNT_CONFIGS, 1);
  *status = 0;
  return c;
}

/* ---------- credentials (in memory only) ---------- */

static void put_err(char* err, uint32_t cap, const char* what) {
  if (!err || cap == 0) return;
  unsigned long e = ERR_peek_last_error();
  char detail[256] = "";
  if (e) ERR_error_string_n(e, detail, sizeof detail);
  snprintf(err, cap, "%s%s%s", what, detail[0] ? ": " : "", detail);
  ERR_clear_error();
}

/* PEM chain + key → a PKCS#12 blob in memory (no encryption, no MAC: it never leaves this
 * process), which msquic's OpenSSL parses. Returns the DER length, or 0 with `err` set. */
static int pem_to_pkcs12(const uint8_t* cert, uint32_t cert_len, const uint8_t* key,
                         uint32_t key_len, uint8_t** out, char* err, uint32_t cap) {
  int len = 0;
  X509* leaf = NULL;
  EVP_PKEY* pkey = NULL;
  PKCS12* p12 = NULL;
  STACK_OF(X509)* extra = sk_X509_new_null();
  BIO* cb = BIO_new_mem_buf(cert, (int)cert_len);
  BIO* kb = BIO_new_mem_buf(key, (int)key_len);
  if (!extra || !cb || !kb) { put_err(err, cap, "out of memory"); goto done; }
  leaf = PEM_read_bio_X509(cb, NULL, NULL, NULL);
  if (!leaf) { put_err(err, cap, "the certificate is not a PEM certificate"); goto done; }
  for (X509* x; (x = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL;) sk_X509_push(extra, x);
  ERR_clear_error(); /* the read that ends the chain fails with "no start line" */
  pkey = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
  if (!pkey) { put_err(err, cap, "the key is not an unencrypted PEM private key"); goto done; }
  if (X509_check_private_key(leaf, pkey) != 1) {
    put_err(err, cap, "the key does not belong to the certificate");
    goto done;
  }
  p12 = PKCS12_create(NULL, NULL, pkey, leaf, extra, -1, -1, 0, -1, 0);
  if (!p12) { put_err(err, cap, "cannot build the PKCS#12 blob"); goto done; }
  *out = NULL;
  len = i2d_PKCS12(p12, out);
  if (len <= 0) { put_err(err, cap, "cannot encode the PKCS#12 blob"); len = 0; }
done:
  PKCS12_free(p12);
  EVP_PKEY_free(pkey);
  X509_free(leaf);
  sk_X509_pop_free(extra, X509_free);
  BIO_free(cb);
  BIO_free(kb);
  return len;
}

/* Trust anchors from PEM in memory, or the system's when there are none. */
static X509_STORE* make_store(const uint8_t* ca, uint32_t ca_len, char* err, uint32_t cap) {
  X509_STORE* store = X509_STORE_new();
  if (!store) { put_err(err, cap, "out of memory"); return NULL; }
  if (ca_len == 0) {
    if (X509_STORE_set_default_paths(store) != 1) {
      put_err(err, cap, "cannot load the system's trust anchors");
      X509_STORE_free(store);
      return NULL;
    }
    return store;
  }
  BIO* b = BIO_new_mem_buf(ca, (int)ca_len);
  STACK_OF(X509_INFO)* infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
  int added = 0;
  for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
    X509_INFO* info = sk_X509_INFO_value(infos, i);
    if (info->x509 && X509_STORE_add_cert(store, info->x509) == 1) added++;
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  BIO_free(b);
  if (added == 0) {
    put_err(err, cap, "the CA certificates contain no PEM certificate");
    X509_STORE_free(store);
    return NULL;
  }
  ERR_clear_error();
  return store;
}

int32_t stoq_config_load(stoq_config* c, uint32_t flags, const uint8_t* cert, uint32_t cert_len,
                         const uint8_t* key, uint32_t key_len, const uint8_t* ca, uint32_t ca_len,
                         char* err, uint32_t err_cap) {
  if (err && err_cap) err[0] = 0;
  if (c->loaded) return QUIC_STATUS_INVALID_STATE; /* credentials are loaded once */
  QUIC_CREDENTIAL_CONFIG cred;
  memset(&cred, 0, sizeof cred);
  cred.Type = QUIC_CREDENTIAL_TYPE_NONE;
  cred.Flags = QUIC_CREDENTIAL_FLAG_NONE;
  if (flags & STOQ_CRED_CLIENT) cred.Flags |= QUIC_CREDENTIAL_FLAG_CLIENT;
  if (flags & STOQ_CRED_REQUIRE_CLIENT_AUTH)
    cred.Flags |= QUIC_CREDENTIAL_FLAG_REQUIRE_CLIENT_AUTHENTICATION;
  /* msquic's OpenSSL never checks names and reads trust anchors only from files: the shim
   * verifies peers itself (config_verify_peer) or hands them to JS, from DER copies. msquic's
   * own validation is never used. */
  cred.Flags |= QUIC_CREDENTIAL_FLAG_NO_CERTIFICATE_VALIDATION;
  if (flags & (STOQ_CRED_VERIFY_CHAIN | STOQ_CRED_DEFER))
    cred.Flags |= QUIC_CREDENTIAL_FLAG_INDICATE_CERTIFICATE_RECEIVED |
                  QUIC_CREDENTIAL_FLAG_USE_PORTABLE_CERTIFICATES;
  X509_STORE* store = NULL;
  if (flags & STOQ_CRED_VERIFY_CHAIN) {
    store = make_store(ca, ca_len, err, err_cap);
    if (!store) return QUIC_STATUS_TLS_ERROR;
  }
  uint8_t* blob = NULL;
  int blob_len = 0;
  QUIC_CERTIFICATE_PKCS12 p12;
  if (cert_len > 0 || key_len > 0) {
    blob_len = pem_to_pkcs12(cert, cert_len, key, key_len, &blob, err, err_cap);
    if (blob_len == 0) {
      X509_STORE_free(store);
      return QUIC_STATUS_TLS_ERROR;
    }
    p12.Asn1Blob = blob;
    p12.Asn1BlobLength = (uint32_t)blob_len;
    p12.PrivateKeyPassword = NULL;
    cred.Type = QUIC_CREDENTIAL_TYPE_CERTIFICATE_PKCS12;
    cred.CertificatePkcs12 = &p12;
  }
  QUIC_STATUS st = c->rt->api->ConfigurationLoadCredential(c->h, &cred);
  if (blob) {
    OPENSSL_cleanse(blob, (size_t)blob_len); /* it holds the private key in the clear */
    OPENSSL_free(blob);
  }
  if (QUIC_FAILED(st)) {
    X509_STORE_free(store);
    if (err && err_cap && !err[0]) snprintf(err, err_cap, "msquic refused the credentials");
    return st;
  }
  c->store = store;
  c->cred_flags = flags;
  c->loaded = 1;
  return 0;
}

/* ---------- peer verification (msquic's certificate callback, on its thread) ---------- */

/* The bytes a verdict depends on (besides the store and the clock): name, leaf, chain. */
static uint8_t* verdict_key(const char* name, const QUIC_BUFFER* leaf, const QUIC_BUFFER* chain,
                            uint32_t* len) {
  uint32_t name_len = name ? (uint32_t)strlen(name) + 1 : 0;
  uint32_t chain_len = chain ? chain->Length : 0;
  *len = name_len + leaf->Length + chain_len;
  uint8_t* key = malloc(*len);
  if (!key) return NULL;
  if (name_len) memcpy(key, name, name_len);
  memcpy(key + name_len, leaf->Buffer, leaf->Length);
  if (chain_len) memcpy(key + name_len + leaf->Length, chain->Buffer, chain_len);
  return key;
}

static int64_t asn1_seconds(const ASN1_TIME* t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return (int64_t)timegm(&tm);
}

/* 1 when these exact bytes were accepted before and the leaf is still within its dates. */
static int verdict_cached(stoq_config* cfg, const uint8_t* key, uint32_t len) {
  int64_t now = (int64_t)time(NULL);
  int hit = 0;
  pthread_mutex_lock(&cfg->verdict_lock);
  for (uint32_t i = 0; i < STOQ_VERDICT_CACHE && !hit; i++) {
    const stoq_verdict* v = &cfg->verdicts[i];
    hit = v->key && v->len == len && memcmp(v->key, key, len) == 0 && now >= v->not_before &&
          now <= v->not_after;
  }
  pthread_mutex_unlock(&cfg->verdict_lock);
  return hit;
}

static void verdict_store(stoq_config* cfg, uint8_t* key, uint32_t len, X509* leaf) {
  pthread_mutex_lock(&cfg->verdict_lock);
  stoq_verdict* v = &cfg->verdicts[cfg->verdict_next++ % STOQ_VERDICT_CACHE];
  free(v->key);
  v->key = key;
  v->len = len;
  v->not_before = asn1_seconds(X509_get0_notBefore(leaf));
  v->not_after = asn1_seconds(X509_get0_notAfter(leaf));
  pthread_mutex_unlock(&cfg->verdict_lock);
}

int config_verify_peer(stoq_config* cfg, const char* server_name, const QUIC_BUFFER* leaf,
                       const QUIC_BUFFER* chain, uint32_t* reason) {
  uint32_t key_len = 0;
  uint8_t* key = leaf && leaf->Length ? verdict_key(server_name, leaf, chain, &key_len) : NULL;
  if (key && verdict_cached(cfg, key, key_len)) {
    free(key);
    return X509_V_OK;
  }
  const unsigned char* p = leaf ? leaf->Buffer : NULL;
  X509* cert = p ? d2i_X509(NULL, &p, leaf->Length) : NULL;
  if (!cert) {
    free(key);
    *reason = STOQ_REJECT_MALFORMED;
    ERR_clear_error();
    return X509_V_ERR_UNSPECIFIED;
  }
  /* msquic hands over the chain it built from what the peer sent (leaf first) as PKCS#7. */
  PKCS7* p7 = NULL;
  STACK_OF(X509)* untrusted = NULL;
  if (chain && chain->Length > 0) {
    p = chain->Buffer;
    p7 = d2i_PKCS7(NULL, &p, chain->Length);
    if (p7 && PKCS7_type_is_signed(p7)) untrusted = p7->d.sign->cert;
  }
  int result = X509_V_ERR_UNSPECIFIED;
  *reason = STOQ_REJECT_CHAIN;
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  if (ctx && X509_STORE_CTX_init(ctx, cfg->store, cert, untrusted) == 1) {
    int client = (cfg->cred_flags & STOQ_CRED_CLIENT) != 0;
    X509_STORE_CTX_set_purpose(ctx, client ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT);
    if (server_name) {
      X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
      X509_VERIFY_PARAM_set_hostflags(
          param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (strchr(server_name, ':'))
        X509_VERIFY_PARAM_set1_ip_asc(param, server_name);
      else
        X509_VERIFY_PARAM_set1_host(param, server_name, 0);
    }
    result = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    if (result == X509_V_ERR_HOSTNAME_MISMATCH || result == X509_V_ERR_IP_ADDRESS_MISMATCH)
      *reason = STOQ_REJECT_NAME;
  }
  X509_STORE_CTX_free(ctx);
  PKCS7_free(p7);
  if (result == X509_V_OK && key) {
    verdict_store(cfg, key, key_len, cert);
    key = NULL;
  }
  free(key);
  X509_free(cert);
  ERR_clear_error();
  return result;
}

uint32_t stoq_x509_error(int32_t code, char* out, uint32_t cap) {
  if (cap == 0) return 0;
  const char* text = X509_verify_cert_error_string(code);
  snprintf(out, cap, "%s", text ? text : "unknown error");
  return (uint32_t)strlen(out);
}

void stoq_config_close(stoq_config* c) {
  if (!c) return;
  c->rt->api->ConfigurationClose(c->h);
  X509_STORE_free(c->store);
  for (uint32_t i = 0; i < STOQ_VERDICT_CACHE; i++) free(c->verdicts[i].key);
  pthread_mutex_destroy(&c->verdict_lock);
  count_add(c->rt, STOQ_COUNT_CONFIGS, -1);
  free(c);
}
