/* STOQ shim. See stoq.h for the threading and ownership contract. */
#define _GNU_SOURCE
#include "stoq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
/* BBR is declared under the preview flag in msquic 2.5; the library implements it. */
#define QUIC_API_ENABLE_PREVIEW_FEATURES 1
#include <msquic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define STOQ_MAX_ALPN 8

struct stoq_rt {
  const QUIC_API_TABLE* api;
  HQUIC registration;
  pthread_mutex_t lock;
  stoq_event* ring; /* grows instead of blocking a msquic thread */
  uint32_t cap, head, count;
  int sleeping;      /* JS is parked in stoq_rt_wait: the next producer writes the eventfd */
  int wake_pending;  /* an eventfd write is already on its way */
  int efd;
  struct io_uring uring;
  int read_armed;    /* an io_uring read of the eventfd is in flight */
  uint64_t efd_value;
  _Atomic uint64_t next_id;
  _Atomic uint64_t counts[STOQ_COUNT_MAX];
};

struct stoq_config {
  stoq_rt* rt;
  HQUIC h;
  QUIC_BUFFER alpn[STOQ_MAX_ALPN];
  uint32_t alpn_count;
  uint8_t alpn_bytes[256 * STOQ_MAX_ALPN];
};

struct stoq_listener {
  uint64_t id;
  stoq_rt* rt;
  HQUIC h;
  _Atomic(stoq_config*) config; /* swapped by stoq_listener_set_config for rotation */
  uint32_t ipv6_only;
};

struct stoq_conn {
  uint64_t id;
  stoq_rt* rt;
  HQUIC h;
  uint8_t* peer_cert;  /* copies held for deferred validation, freed on close */
  uint8_t* peer_chain;
  /* Copied from CONNECTED: a server discards its TLS state after the handshake, so the
   * negotiated ALPN cannot be read back with GetParam later. */
  uint8_t alpn_len;
  uint8_t alpn[255];
  uint8_t dgram_state_seen; /* a DATAGRAM_STATE_CHANGED reached us (only on msquic's thread) */
};

struct stoq_stream {
  uint64_t id;
  stoq_rt* rt;
  HQUIC h;
  /* Bytes handed to msquic and not yet completed, and the level below which a completion
   * should wake JS (0: completions never wake it; JS reads them at its next wake-up). */
  _Atomic uint64_t outstanding;
  _Atomic uint64_t wake_below;
};

/* A send buffer: msquic's QUIC_BUFFER descriptor followed by the copied bytes. */
typedef struct stoq_send {
  QUIC_BUFFER qb;
  stoq_rt* rt;
  uint32_t magic;
  uint8_t data[];
} stoq_send;
#define STOQ_SEND_LIVE 0x53544f51u
#define STOQ_SEND_DEAD 0xdeadbeefu

static void count_add(stoq_rt* rt, int which, int64_t delta) {
  atomic_fetch_add_explicit(&rt->counts[which], (uint64_t)delta, memory_order_relaxed);
}

/* ---------- completion queue ---------- */

static void push_locked(stoq_rt* rt, const stoq_event* ev) {
  if (rt->count == rt->cap) {
    uint32_t ncap = rt->cap * 2;
    stoq_event* n = malloc(sizeof(stoq_event) * ncap);
    if (!n) abort(); /* losing an event would corrupt ownership; there is no safe fallback */
    for (uint32_t i = 0; i < rt->count; i++) n[i] = rt->ring[(rt->head + i) % rt->cap];
    free(rt->ring);
    rt->ring = n;
    rt->head = 0;
    rt->cap = ncap;
  }
  rt->ring[(rt->head + rt->count) % rt->cap] = *ev;
  rt->count++;
}

static void wake_locked(stoq_rt* rt) {
  if (rt->sleeping && !rt->wake_pending) {
    rt->wake_pending = 1;
    uint64_t one = 1;
    ssize_t w = write(rt->efd, &one, sizeof one);
    (void)w;
    count_add(rt, STOQ_COUNT_WAKEUPS, 1);
  }
}

/* Queues records; `wake` = 0 leaves a sleeping JS asleep (it drains them at its next wake-up,
 * and never goes to sleep with records queued). */
static void push_events_wake(stoq_rt* rt, const stoq_event* evs, uint32_t n, int wake) {
  pthread_mutex_lock(&rt->lock);
  for (uint32_t i = 0; i < n; i++) push_locked(rt, &evs[i]);
  if (wake) wake_locked(rt);
  pthread_mutex_unlock(&rt->lock);
  count_add(rt, STOQ_COUNT_EVENTS, n);
}

static void push_events(stoq_rt* rt, const stoq_event* evs, uint32_t n) {
  push_events_wake(rt, evs, n, 1);
}

static void push(stoq_rt* rt, uint32_t type, uint64_t id, int32_t status, uint64_t a, uint64_t b,
                 uint64_t c) {
  stoq_event ev = {.type = type, .status = status, .id = id, .a = a, .b = b, .c = c};
  push_events(rt, &ev, 1);
}

uint32_t stoq_abi_version(void) { return STOQ_ABI_VERSION; }

stoq_rt* stoq_rt_open(uint32_t profile, int32_t* status) {
  stoq_rt* rt = calloc(1, sizeof *rt);
  if (!rt) { *status = QUIC_STATUS_OUT_OF_MEMORY; return NULL; }
  rt->cap = 1024;
  rt->ring = malloc(sizeof(stoq_event) * rt->cap);
  rt->efd = eventfd(0, EFD_CLOEXEC);
  atomic_init(&rt->next_id, 1);
  if (!rt->ring || rt->efd < 0) { *status = QUIC_STATUS_OUT_OF_MEMORY; goto fail; }
  int r = io_uring_queue_init(4, &rt->uring, 0);
  if (r < 0) { *status = r; goto fail; }
  pthread_mutex_init(&rt->lock, NULL);
  QUIC_STATUS s = MsQuicOpen2(&rt->api);
  if (QUIC_FAILED(s)) { *status = s; io_uring_queue_exit(&rt->uring); goto fail; }
  QUIC_REGISTRATION_CONFIG rc = {
      .AppName = "stoq",
      .ExecutionProfile = profile == 1 ? QUIC_EXECUTION_PROFILE_TYPE_MAX_THROUGHPUT
                                       : QUIC_EXECUTION_PROFILE_LOW_LATENCY};
  s = rt->api->RegistrationOpen(&rc, &rt->registration);
  if (QUIC_FAILED(s)) {
    *status = s;
    MsQuicClose(rt->api);
    io_uring_queue_exit(&rt->uring);
    goto fail;
  }
  *status = 0;
  return rt;
fail:
  if (rt->efd >= 0) close(rt->efd);
  free(rt->ring);
  free(rt);
  return NULL;
}

void stoq_rt_close(stoq_rt* rt) {
  if (!rt) return;
  /* Blocks until every connection of the registration is closed: JS closes them first. */
  rt->api->RegistrationClose(rt->registration);
  MsQuicClose(rt->api);
  io_uring_queue_exit(&rt->uring);
  close(rt->efd);
  /* Records still queued may own datagram copies: free them so nothing leaks. */
  for (uint32_t i = 0; i < rt->count; i++) {
    stoq_event* ev = &rt->ring[(rt->head + i) % rt->cap];
    if (ev->type == STOQ_EV_CONN_DGRAM_RECV) free((void*)(uintptr_t)ev->a);
  }
  pthread_mutex_destroy(&rt->lock);
  free(rt->ring);
  free(rt);
}

uint32_t stoq_rt_poll(stoq_rt* rt, stoq_event* out, uint32_t max) {
  pthread_mutex_lock(&rt->lock);
  uint32_t n = rt->count < max ? rt->count : max;
  for (uint32_t i = 0; i < n; i++) out[i] = rt->ring[(rt->head + i) % rt->cap];
  rt->head = (rt->head + n) % rt->cap;
  rt->count -= n;
  pthread_mutex_unlock(&rt->lock);
  return n;
}

/* Called from one Deno blocking-pool thread at a time (JS keeps a single waiter). Returns the
 * number of queued events, 0 on timeout, or a negative errno. */
int32_t stoq_rt_wait(stoq_rt* rt, int32_t timeout_ms) {
  pthread_mutex_lock(&rt->lock);
  if (rt->count > 0) { uint32_t n = rt->count; pthread_mutex_unlock(&rt->lock); return (int32_t)n; }
  rt->sleeping = 1;
  pthread_mutex_unlock(&rt->lock);

  if (!rt->read_armed) {
    struct io_uring_sqe* sqe = io_uring_get_sqe(&rt->uring);
    io_uring_prep_read(sqe, rt->efd, &rt->efd_value, sizeof rt->efd_value, 0);
    io_uring_submit(&rt->uring);
    rt->read_armed = 1;
  }
  struct io_uring_cqe* cqe = NULL;
  int r;
  if (timeout_ms < 0) {
    r = io_uring_wait_cqe(&rt->uring, &cqe);
  } else {
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    r = io_uring_wait_cqe_timeout(&rt->uring, &cqe, &ts);
  }
  if (r == 0 && cqe) {
    io_uring_cqe_seen(&rt->uring, cqe);
    rt->read_armed = 0;
  }
  pthread_mutex_lock(&rt->lock);
  rt->sleeping = 0;
  if (!rt->read_armed) rt->wake_pending = 0;
  uint32_t n = rt->count;
  pthread_mutex_unlock(&rt->lock);
  if (r < 0 && r != -ETIME && r != -EINTR) return r;
  return (int32_t)n;
}

void stoq_rt_wake(stoq_rt* rt) {
  pthread_mutex_lock(&rt->lock);
  if (!rt->wake_pending) {
    rt->wake_pending = 1;
    uint64_t one = 1;
    ssize_t w = write(rt->efd, &one, sizeof one);
    (void)w;
  }
  pthread_mutex_unlock(&rt->lock);
}

void stoq_rt_counts(stoq_rt* rt, uint64_t* out, uint32_t n) {
  for (uint32_t i = 0; i < n && i < STOQ_COUNT_MAX; i++)
    out[i] = atomic_load_explicit(&rt->counts[i], memory_order_relaxed);
}

void stoq_buf_free(stoq_rt* rt, void* buf) {
  if (!buf) return;
  free(buf);
  count_add(rt, STOQ_COUNT_RECV_BUFFERS, -1);
}

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

/* ---------- streams ---------- */

static void free_send(stoq_send* snd) {
  if (snd->magic != STOQ_SEND_LIVE) abort(); /* a second free would corrupt the heap: stop here */
  snd->magic = STOQ_SEND_DEAD;
  count_add(snd->rt, STOQ_COUNT_SEND_BUFFERS, -1);
  count_add(snd->rt, STOQ_COUNT_SENDS_FREED, 1);
  free(snd);
}

static QUIC_STATUS QUIC_API stream_cb(HQUIC h, void* ctx, QUIC_STREAM_EVENT* ev) {
  (void)h;
  stoq_stream* s = ctx;
  stoq_rt* rt = s->rt;
  switch (ev->Type) {
    case QUIC_STREAM_EVENT_START_COMPLETE:
      push(rt, STOQ_EV_STREAM_START_COMPLETE, s->id, ev->START_COMPLETE.Status,
           ev->START_COMPLETE.ID, ev->START_COMPLETE.PeerAccepted, 0);
      break;
    case QUIC_STREAM_EVENT_RECEIVE: {
      uint32_t n = ev->RECEIVE.BufferCount;
      uint64_t total = ev->RECEIVE.TotalBufferLength;
      uint64_t fin = (ev->RECEIVE.Flags & QUIC_RECEIVE_FLAG_FIN) ? 1 : 0;
      if (total == 0) {
        stoq_event e = {.type = STOQ_EV_STREAM_RECV, .id = s->id, .c = fin, .d = 1};
        push_events(rt, &e, 1);
        return QUIC_STATUS_SUCCESS;
      }
      /* Hand msquic's own buffers to JS (one copy, into JS memory) and hold them with PENDING
       * until JS calls STOQ_OP_STREAM_RECV_COMPLETE. */
      stoq_event evs[8];
      uint32_t k = 0;
      for (uint32_t i = 0; i < n; i++) {
        if (ev->RECEIVE.Buffers[i].Length == 0 && i + 1 < n) continue;
        stoq_event e = {.type = STOQ_EV_STREAM_RECV, .id = s->id,
                        .a = (uint64_t)(uintptr_t)ev->RECEIVE.Buffers[i].Buffer,
                        .b = ev->RECEIVE.Buffers[i].Length, .c = 0, .d = 0, .e = total};
        if (k == 8) { push_events(rt, evs, k); k = 0; }
        evs[k++] = e;
      }
      evs[k - 1].c = fin; /* FIN and the total ride on the indication's last record */
      evs[k - 1].d = 1;
      push_events(rt, evs, k);
      return QUIC_STATUS_PENDING;
    }
    case QUIC_STREAM_EVENT_SEND_COMPLETE: {
      stoq_send* snd = ev->SEND_COMPLETE.ClientContext;
      uint64_t len = snd ? snd->qb.Length : 0;
      if (snd) free_send(snd);
      /* A writer that is not blocked needs no wake-up per completion: JS learns of them in
       * batches. A blocked writer asked to be woken once enough has drained. */
      uint64_t left = atomic_fetch_sub(&s->outstanding, len) - len;
      uint64_t below = atomic_load(&s->wake_below);
      int wake = below != 0 && left < below;
      if (wake) atomic_store(&s->wake_below, 0);
      stoq_event e = {.type = STOQ_EV_STREAM_SEND_COMPLETE, .id = s->id, .a = len,
                      .b = ev->SEND_COMPLETE.Canceled};
      push_events_wake(rt, &e, 1, wake);
      break;
    }
    case QUIC_STREAM_EVENT_PEER_SEND_SHUTDOWN:
      push(rt, STOQ_EV_STREAM_PEER_SEND_SHUTDOWN, s->id, 0, 0, 0, 0);
      break;
    case QUIC_STREAM_EVENT_PEER_SEND_ABORTED:
      push(rt, STOQ_EV_STREAM_PEER_SEND_ABORTED, s->id, 0, ev->PEER_SEND_ABORTED.ErrorCode, 0, 0);
      break;
    case QUIC_STREAM_EVENT_PEER_RECEIVE_ABORTED:
      push(rt, STOQ_EV_STREAM_PEER_RECV_ABORTED, s->id, 0, ev->PEER_RECEIVE_ABORTED.ErrorCode, 0, 0);
      break;
    case QUIC_STREAM_EVENT_SEND_SHUTDOWN_COMPLETE:
      push(rt, STOQ_EV_STREAM_SEND_SHUTDOWN_COMPLETE, s->id, 0, ev->SEND_SHUTDOWN_COMPLETE.Graceful,
           0, 0);
      break;
    case QUIC_STREAM_EVENT_SHUTDOWN_COMPLETE:
      push(rt, STOQ_EV_STREAM_SHUTDOWN_COMPLETE, s->id, ev->SHUTDOWN_COMPLETE.ConnectionCloseStatus,
           ev->SHUTDOWN_COMPLETE.ConnectionShutdown, ev->SHUTDOWN_COMPLETE.ConnectionErrorCode,
           ev->SHUTDOWN_COMPLETE.ConnectionClosedRemotely);
      break;
    case QUIC_STREAM_EVENT_IDEAL_SEND_BUFFER_SIZE:
      push(rt, STOQ_EV_STREAM_IDEAL_SEND_BUFFER, s->id, 0, ev->IDEAL_SEND_BUFFER_SIZE.ByteCount, 0, 0);
      break;
    default:
      break;
  }
  return QUIC_STATUS_SUCCESS;
}

static stoq_stream* stream_new(stoq_rt* rt) {
  stoq_stream* s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->rt = rt;
  s->id = atomic_fetch_add(&rt->next_id, 1);
  count_add(rt, STOQ_COUNT_STREAMS, 1);
  return s;
}

stoq_stream* stoq_stream_open(stoq_conn* c, uint32_t unidirectional, int32_t* status) {
  stoq_rt* rt = c->rt;
  stoq_stream* s = stream_new(rt);
  if (!s) { *status = QUIC_STATUS_OUT_OF_MEMORY; return NULL; }
  QUIC_STATUS st = rt->api->StreamOpen(
      c->h, unidirectional ? QUIC_STREAM_OPEN_FLAG_UNIDIRECTIONAL : QUIC_STREAM_OPEN_FLAG_NONE,
      stream_cb, s, &s->h);
  if (QUIC_SUCCEEDED(st)) {
    /* Without FAIL_BLOCKED the start waits for stream credit instead of failing. */
    st = rt->api->StreamStart(s->h, QUIC_STREAM_START_FLAG_SHUTDOWN_ON_FAIL);
    if (QUIC_FAILED(st)) rt->api->StreamClose(s->h);
  }
  if (QUIC_FAILED(st)) {
    count_add(rt, STOQ_COUNT_STREAMS, -1);
    free(s);
    *status = st;
    return NULL;
  }
  *status = 0;
  return s;
}

uint64_t stoq_stream_id(stoq_stream* s) { return s->id; }

void stoq_stream_wake_below(stoq_stream* s, uint64_t bytes) {
  atomic_store(&s->wake_below, bytes);
  /* Completions that raced past the level before it was set are already queued, and JS never
   * sleeps with records queued, so no wake-up is lost. */
}

uint64_t stoq_stream_quic_id(stoq_stream* s) {
  QUIC_UINT62 id = 0;
  uint32_t len = sizeof id;
  if (QUIC_FAILED(s->rt->api->GetParam(s->h, QUIC_PARAM_STREAM_ID, &len, &id))) return UINT64_MAX;
  return id;
}

void stoq_stream_close(stoq_stream* s) {
  if (!s) return;
  s->rt->api->StreamClose(s->h);
  count_add(s->rt, STOQ_COUNT_STREAMS, -1);
  free(s);
}

/* ---------- connections ---------- */

static void conn_drop_cert(stoq_conn* c) {
  free(c->peer_cert);
  free(c->peer_chain);
  c->peer_cert = c->peer_chain = NULL;
}

static uint8_t* dup_buffer(const QUIC_BUFFER* b) {
  if (!b || b->Length == 0) return NULL;
  uint8_t* p = malloc(b->Length);
  if (p) memcpy(p, b->Buffer, b->Length);
  return p;
}

/* A server learns the client's datagram transport parameter while msquic still owns the new
 * connection, so msquic never indicates DATAGRAM_STATE_CHANGED for it (until a later MTU change).
 * Report the state at CONNECTED instead, with a length that fits any connection ID (msquic's own
 * limit, computed with the real CID length, is at least this). */
static void conn_report_dgram_state(stoq_conn* c) {
  stoq_rt* rt = c->rt;
  uint8_t enabled = 0;
  uint32_t len = sizeof enabled;
  if (QUIC_FAILED(rt->api->GetParam(c->h, QUIC_PARAM_CONN_DATAGRAM_SEND_ENABLED, &len, &enabled)))
    return;
  QUIC_STATISTICS_V2 st;
  memset(&st, 0, sizeof st);
  len = sizeof st;
  uint64_t max = 0;
  if (enabled && QUIC_SUCCEEDED(rt->api->GetParam(c->h, QUIC_PARAM_CONN_STATISTICS_V2, &len, &st))) {
    /* IPv6 + UDP headers, short header with a 20-byte CID and 4-byte packet number, DATAGRAM
     * frame type and length, AEAD tag. */
    uint32_t overhead = 40 + 8 + (1 + 20 + 4) + 3 + 16;
    if (st.SendPathMtu > overhead) max = st.SendPathMtu - overhead;
  }
  push(rt, STOQ_EV_CONN_DGRAM_STATE, c->id, 0, max > 0, max, 0);
}

static QUIC_STATUS QUIC_API conn_cb(HQUIC h, void* ctx, QUIC_CONNECTION_EVENT* ev) {
  (void)h;
  stoq_conn* c = ctx;
  stoq_rt* rt = c->rt;
  switch (ev->Type) {
    case QUIC_CONNECTION_EVENT_CONNECTED:
      c->alpn_len = ev->CONNECTED.NegotiatedAlpnLength;
      memcpy(c->alpn, ev->CONNECTED.NegotiatedAlpn, c->alpn_len);
      if (!c->dgram_state_seen) conn_report_dgram_state(c);
      push(rt, STOQ_EV_CONN_CONNECTED, c->id, 0, ev->CONNECTED.SessionResumed, 0, 0);
      break;
    case QUIC_CONNECTION_EVENT_SHUTDOWN_INITIATED_BY_TRANSPORT:
      push(rt, STOQ_EV_CONN_SHUTDOWN_TRANSPORT, c->id, ev->SHUTDOWN_INITIATED_BY_TRANSPORT.Status,
           ev->SHUTDOWN_INITIATED_BY_TRANSPORT.ErrorCode, 0, 0);
      break;
    case QUIC_CONNECTION_EVENT_SHUTDOWN_INITIATED_BY_PEER:
      push(rt, STOQ_EV_CONN_SHUTDOWN_PEER, c->id, 0, ev->SHUTDOWN_INITIATED_BY_PEER.ErrorCode, 0, 0);
      break;
    case QUIC_CONNECTION_EVENT_SHUTDOWN_COMPLETE:
      push(rt, STOQ_EV_CONN_SHUTDOWN_COMPLETE, c->id, 0, ev->SHUTDOWN_COMPLETE.HandshakeCompleted,
           ev->SHUTDOWN_COMPLETE.PeerAcknowledgedShutdown, 0);
      break;
    case QUIC_CONNECTION_EVENT_PEER_STREAM_STARTED: {
      stoq_stream* s = stream_new(rt);
      if (!s) return QUIC_STATUS_OUT_OF_MEMORY;
      s->h = ev->PEER_STREAM_STARTED.Stream;
      rt->api->SetCallbackHandler(s->h, (void*)stream_cb, s);
      push(rt, STOQ_EV_CONN_PEER_STREAM, c->id, 0, s->id,
           (ev->PEER_STREAM_STARTED.Flags & QUIC_STREAM_OPEN_FLAG_UNIDIRECTIONAL) ? 1 : 0,
           (uint64_t)(uintptr_t)s);
      break;
    }
    case QUIC_CONNECTION_EVENT_STREAMS_AVAILABLE:
      push(rt, STOQ_EV_CONN_STREAMS_AVAILABLE, c->id, 0, ev->STREAMS_AVAILABLE.BidirectionalCount,
           ev->STREAMS_AVAILABLE.UnidirectionalCount, 0);
      break;
    case QUIC_CONNECTION_EVENT_DATAGRAM_STATE_CHANGED:
      c->dgram_state_seen = 1;
      push(rt, STOQ_EV_CONN_DGRAM_STATE, c->id, 0, ev->DATAGRAM_STATE_CHANGED.SendEnabled,
           ev->DATAGRAM_STATE_CHANGED.MaxSendLength, 0);
      break;
    case QUIC_CONNECTION_EVENT_DATAGRAM_RECEIVED: {
      /* Datagram buffers live only for this callback: copy. */
      const QUIC_BUFFER* b = ev->DATAGRAM_RECEIVED.Buffer;
      uint8_t* p = malloc(b->Length ? b->Length : 1);
      if (!p) break;
      memcpy(p, b->Buffer, b->Length);
      count_add(rt, STOQ_COUNT_RECV_BUFFERS, 1);
      push(rt, STOQ_EV_CONN_DGRAM_RECV, c->id, 0, (uint64_t)(uintptr_t)p, b->Length, 0);
      break;
    }
    case QUIC_CONNECTION_EVENT_DATAGRAM_SEND_STATE_CHANGED:
      if (QUIC_DATAGRAM_SEND_STATE_IS_FINAL(ev->DATAGRAM_SEND_STATE_CHANGED.State) &&
          ev->DATAGRAM_SEND_STATE_CHANGED.ClientContext) {
        free(ev->DATAGRAM_SEND_STATE_CHANGED.ClientContext);
        count_add(rt, STOQ_COUNT_DGRAM_BUFFERS, -1);
        ev->DATAGRAM_SEND_STATE_CHANGED.ClientContext = NULL;
      }
      break;
    case QUIC_CONNECTION_EVENT_PEER_CERTIFICATE_RECEIVED: {
      /* Portable certificates: a DER leaf and a PKCS#7 chain, valid only in this callback.
       * Copy them, hand them to JS, and finish later with stoq_conn_cert_complete. */
      conn_drop_cert(c);
      const QUIC_BUFFER* leaf = (const QUIC_BUFFER*)ev->PEER_CERTIFICATE_RECEIVED.Certificate;
      const QUIC_BUFFER* chain = (const QUIC_BUFFER*)ev->PEER_CERTIFICATE_RECEIVED.Chain;
      c->peer_cert = dup_buffer(leaf);
      c->peer_chain = dup_buffer(chain);
      stoq_event e = {.type = STOQ_EV_CONN_PEER_CERT, .id = c->id,
                      .status = ev->PEER_CERTIFICATE_RECEIVED.DeferredStatus,
                      .a = (uint64_t)(uintptr_t)c->peer_cert, .b = c->peer_cert ? leaf->Length : 0,
                      .c = (uint64_t)(uintptr_t)c->peer_chain,
                      .d = c->peer_chain ? chain->Length : 0};
      push_events(rt, &e, 1);
      return QUIC_STATUS_PENDING;
    }
    default:
      break;
  }
  return QUIC_STATUS_SUCCESS;
}

static stoq_conn* conn_new(stoq_rt* rt) {
  stoq_conn* c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->rt = rt;
  c->id = atomic_fetch_add(&rt->next_id, 1);
  count_add(rt, STOQ_COUNT_CONNECTIONS, 1);
  return c;
}

static int parse_addr6(const char* addr, uint16_t port, QUIC_ADDR* out) {
  memset(out, 0, sizeof *out);
  out->Ipv6.sin6_family = AF_INET6;
  out->Ipv6.sin6_port = htons(port);
  return inet_pton(AF_INET6, addr, &out->Ipv6.sin6_addr) == 1;
}

stoq_conn* stoq_conn_connect(stoq_rt* rt, stoq_config* cfg, const char* server_name,
                             const char* addr, uint16_t port, int32_t* status) {
  stoq_conn* c = conn_new(rt);
  if (!c) { *status = QUIC_STATUS_OUT_OF_MEMORY; return NULL; }
  QUIC_STATUS st = rt->api->ConnectionOpen(rt->registration, conn_cb, c, &c->h);
  if (QUIC_FAILED(st)) goto fail;
  if (addr) {
    QUIC_ADDR remote;
    if (!parse_addr6(addr, port, &remote)) {
      st = QUIC_STATUS_INVALID_ADDRESS;
    } else {
      st = rt->api->SetParam(c->h, QUIC_PARAM_CONN_REMOTE_ADDRESS, sizeof remote, &remote);
    }
    if (QUIC_FAILED(st)) { rt->api->ConnectionClose(c->h); goto fail; }
  }
  st = rt->api->ConnectionStart(c->h, cfg->h, QUIC_ADDRESS_FAMILY_INET6, server_name, port);
  if (QUIC_FAILED(st)) { rt->api->ConnectionClose(c->h); goto fail; }
  *status = 0;
  return c;
fail:
  count_add(rt, STOQ_COUNT_CONNECTIONS, -1);
  free(c);
  *status = st;
  return NULL;
}

uint64_t stoq_conn_id(stoq_conn* c) { return c->id; }

int32_t stoq_conn_stats(stoq_conn* c, uint64_t* out, uint32_t n) {
  QUIC_STATISTICS_V2 st;
  uint32_t len = sizeof st;
  memset(&st, 0, sizeof st);
  QUIC_STATUS s = c->rt->api->GetParam(c->h, QUIC_PARAM_CONN_STATISTICS_V2, &len, &st);
  if (QUIC_FAILED(s)) return s;
  uint64_t v[STOQ_STAT_MAX] = {
      [STOQ_STAT_RTT_US] = st.Rtt,
      [STOQ_STAT_MIN_RTT_US] = st.MinRtt,
      [STOQ_STAT_CWND] = st.SendCongestionWindow,
      [STOQ_STAT_SEND_BYTES] = st.SendTotalBytes,
      [STOQ_STAT_RECV_BYTES] = st.RecvTotalBytes,
      [STOQ_STAT_SEND_STREAM_BYTES] = st.SendTotalStreamBytes,
      [STOQ_STAT_RECV_STREAM_BYTES] = st.RecvTotalStreamBytes,
      [STOQ_STAT_SEND_PACKETS] = st.SendTotalPackets,
      [STOQ_STAT_RECV_PACKETS] = st.RecvTotalPackets,
      [STOQ_STAT_LOST_PACKETS] = st.SendSuspectedLostPackets - st.SendSpuriousLostPackets,
      [STOQ_STAT_HANDSHAKE_US] = st.TimingHandshakeFlightEnd > st.TimingStart
                                     ? st.TimingHandshakeFlightEnd - st.TimingStart
                                     : 0,
      [STOQ_STAT_PATH_MTU] = st.SendPathMtu,
  };
  for (uint32_t i = 0; i < n && i < STOQ_STAT_MAX; i++) out[i] = v[i];
  return 0;
}

int32_t stoq_conn_address(stoq_conn* c, uint32_t remote, uint8_t* out16, uint32_t* port) {
  QUIC_ADDR a;
  uint32_t len = sizeof a;
  QUIC_STATUS s = c->rt->api->GetParam(
      c->h, remote ? QUIC_PARAM_CONN_REMOTE_ADDRESS : QUIC_PARAM_CONN_LOCAL_ADDRESS, &len, &a);
  if (QUIC_FAILED(s)) return s;
  if (a.Ip.sa_family == AF_INET6) {
    memcpy(out16, &a.Ipv6.sin6_addr, 16);
    *port = ntohs(a.Ipv6.sin6_port);
  } else {
    /* Reported as IPv4-mapped so that JS sees one format (and rejects it). */
    memset(out16, 0, 10);
    out16[10] = out16[11] = 0xff;
    memcpy(out16 + 12, &a.Ipv4.sin_addr, 4);
    *port = ntohs(a.Ipv4.sin_port);
  }
  return 0;
}

uint32_t stoq_conn_alpn(stoq_conn* c, uint8_t* out, uint32_t cap) {
  /* Written before CONNECTED is queued; JS reads it only after handling that record. */
  if (c->alpn_len > cap) return 0;
  memcpy(out, c->alpn, c->alpn_len);
  return c->alpn_len;
}

int32_t stoq_conn_cert_complete(stoq_conn* c, uint32_t accept, uint32_t tls_alert) {
  conn_drop_cert(c);
  return c->rt->api->ConnectionCertificateValidationComplete(
      c->h, accept ? TRUE : FALSE, (QUIC_TLS_ALERT_CODES)(accept ? 0 : tls_alert));
}

void stoq_conn_close(stoq_conn* c) {
  if (!c) return;
  c->rt->api->ConnectionClose(c->h);
  conn_drop_cert(c);
  count_add(c->rt, STOQ_COUNT_CONNECTIONS, -1);
  free(c);
}

/* ---------- listeners ---------- */

static int is_ipv4(const QUIC_ADDR* a) {
  if (a->Ip.sa_family == AF_INET) return 1;
  return a->Ip.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->Ipv6.sin6_addr);
}

static QUIC_STATUS QUIC_API listener_cb(HQUIC h, void* ctx, QUIC_LISTENER_EVENT* ev) {
  (void)h;
  stoq_listener* l = ctx;
  stoq_rt* rt = l->rt;
  if (ev->Type == QUIC_LISTENER_EVENT_NEW_CONNECTION) {
    /* msquic's sockets are dual-stack; an IPv6-only listener refuses IPv4 peers here. */
    if (l->ipv6_only && is_ipv4(ev->NEW_CONNECTION.Info->RemoteAddress))
      return QUIC_STATUS_CONNECTION_REFUSED;
    stoq_conn* c = conn_new(rt);
    if (!c) return QUIC_STATUS_OUT_OF_MEMORY;
    c->h = ev->NEW_CONNECTION.Connection;
    rt->api->SetCallbackHandler(c->h, (void*)conn_cb, c);
    stoq_config* cfg = atomic_load(&l->config);
    QUIC_STATUS st = rt->api->ConnectionSetConfiguration(c->h, cfg->h);
    if (QUIC_FAILED(st)) {
      /* Returning failure makes msquic close the handle itself. */
      count_add(rt, STOQ_COUNT_CONNECTIONS, -1);
      free(c);
      return st;
    }
    push(rt, STOQ_EV_LISTENER_NEW_CONN, l->id, 0, c->id, (uint64_t)(uintptr_t)c, 0);
  } else if (ev->Type == QUIC_LISTENER_EVENT_STOP_COMPLETE) {
    push(rt, STOQ_EV_LISTENER_STOPPED, l->id, 0, 0, 0, 0);
  }
  return QUIC_STATUS_SUCCESS;
}

stoq_listener* stoq_listener_open(stoq_rt* rt, stoq_config* cfg, const char* addr, uint16_t port,
                                  uint32_t ipv6_only, int32_t* status) {
  stoq_listener* l = calloc(1, sizeof *l);
  if (!l) { *status = QUIC_STATUS_OUT_OF_MEMORY; return NULL; }
  l->rt = rt;
  l->id = atomic_fetch_add(&rt->next_id, 1);
  l->ipv6_only = ipv6_only;
  atomic_init(&l->config, cfg);
  QUIC_ADDR local;
  if (!parse_addr6(addr, port, &local)) {
    free(l);
    *status = QUIC_STATUS_INVALID_ADDRESS;
    return NULL;
  }
  QUIC_STATUS st = rt->api->ListenerOpen(rt->registration, listener_cb, l, &l->h);
  if (QUIC_SUCCEEDED(st)) {
    st = rt->api->ListenerStart(l->h, cfg->alpn, cfg->alpn_count, &local);
    if (QUIC_FAILED(st)) rt->api->ListenerClose(l->h);
  }
  if (QUIC_FAILED(st)) {
    free(l);
    *status = st;
    return NULL;
  }
  count_add(rt, STOQ_COUNT_LISTENERS, 1);
  *status = 0;
  return l;
}

void stoq_listener_set_config(stoq_listener* l, stoq_config* c) { atomic_store(&l->config, c); }

uint64_t stoq_listener_id(stoq_listener* l) { return l->id; }

uint32_t stoq_listener_port(stoq_listener* l) {
  QUIC_ADDR a;
  uint32_t len = sizeof a;
  if (QUIC_FAILED(l->rt->api->GetParam(l->h, QUIC_PARAM_LISTENER_LOCAL_ADDRESS, &len, &a))) return 0;
  return ntohs(a.Ipv6.sin6_port);
}

void stoq_listener_close(stoq_listener* l) {
  if (!l) return;
  /* Blocks until STOP_COMPLETE; NEW_CONN records already queued still reach JS, which owns them. */
  l->rt->api->ListenerClose(l->h);
  count_add(l->rt, STOQ_COUNT_LISTENERS, -1);
  free(l);
}

/* ---------- submission ---------- */

static int32_t op_stream_send(stoq_rt* rt, stoq_op* op) {
  stoq_stream* s = (stoq_stream*)(uintptr_t)op->handle;
  uint64_t len = op->b;
  if (len > UINT32_MAX) return QUIC_STATUS_INVALID_PARAMETER;
  QUIC_SEND_FLAGS flags = op->c ? QUIC_SEND_FLAG_FIN : QUIC_SEND_FLAG_NONE;
  if (len == 0) {
    /* A bare FIN needs no buffer, so no SEND_COMPLETE bookkeeping. */
    return rt->api->StreamSend(s->h, NULL, 0, flags, NULL);
  }
  stoq_send* snd = malloc(sizeof *snd + len);
  if (!snd) return QUIC_STATUS_OUT_OF_MEMORY;
  memcpy(snd->data, (const void*)(uintptr_t)op->a, len);
  snd->qb.Buffer = snd->data;
  snd->qb.Length = (uint32_t)len;
  snd->rt = rt;
  snd->magic = STOQ_SEND_LIVE;
  count_add(rt, STOQ_COUNT_SEND_BUFFERS, 1);
  count_add(rt, STOQ_COUNT_SENDS_ALLOCATED, 1);
  atomic_fetch_add(&s->outstanding, len);
  QUIC_STATUS st = rt->api->StreamSend(s->h, &snd->qb, 1, flags, snd);
  if (QUIC_FAILED(st)) atomic_fetch_sub(&s->outstanding, len);
  /* msquic did not take the buffer: SEND_COMPLETE will never come, so free it now. */
  if (QUIC_FAILED(st)) free_send(snd);
  return st;
}

static int32_t op_dgram_send(stoq_rt* rt, stoq_op* op) {
  stoq_conn* c = (stoq_conn*)(uintptr_t)op->handle;
  uint64_t len = op->b;
  if (len > UINT16_MAX) return QUIC_STATUS_INVALID_PARAMETER;
  QUIC_BUFFER* qb = malloc(sizeof *qb + len);
  if (!qb) return QUIC_STATUS_OUT_OF_MEMORY;
  qb->Buffer = (uint8_t*)(qb + 1);
  qb->Length = (uint32_t)len;
  memcpy(qb->Buffer, (const void*)(uintptr_t)op->a, len);
  count_add(rt, STOQ_COUNT_DGRAM_BUFFERS, 1);
  QUIC_STATUS st = rt->api->DatagramSend(c->h, qb, 1, QUIC_SEND_FLAG_NONE, qb);
  if (QUIC_FAILED(st)) {
    free(qb);
    count_add(rt, STOQ_COUNT_DGRAM_BUFFERS, -1);
  }
  return st;
}

uint32_t stoq_submit(stoq_rt* rt, stoq_op* ops, uint32_t n) {
  uint32_t failed = 0;
  for (uint32_t i = 0; i < n; i++) {
    stoq_op* op = &ops[i];
    int32_t st;
    switch (op->op) {
      case STOQ_OP_STREAM_SEND:
        st = op_stream_send(rt, op);
        break;
      case STOQ_OP_STREAM_RECV_COMPLETE:
        rt->api->StreamReceiveComplete(((stoq_stream*)(uintptr_t)op->handle)->h, op->a);
        st = 0;
        break;
      case STOQ_OP_STREAM_SHUTDOWN:
        st = rt->api->StreamShutdown(((stoq_stream*)(uintptr_t)op->handle)->h,
                                     (QUIC_STREAM_SHUTDOWN_FLAGS)op->a, op->b);
        break;
      case STOQ_OP_CONN_SHUTDOWN:
        rt->api->ConnectionShutdown(((stoq_conn*)(uintptr_t)op->handle)->h,
                                    (QUIC_CONNECTION_SHUTDOWN_FLAGS)op->a, op->b);
        st = 0;
        break;
      case STOQ_OP_DGRAM_SEND:
        st = op_dgram_send(rt, op);
        break;
      default:
        st = QUIC_STATUS_INVALID_PARAMETER;
    }
    /* msquic reports queued work as PENDING (or CONTINUE): both are success here. */
    if (!QUIC_FAILED(st)) st = 0;
    op->status = st;
    if (st != 0) failed++;
  }
  return failed;
}
