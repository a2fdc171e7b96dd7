/* Internal declarations shared by the shim's files. Not part of the ABI (see stoq.h). */
#ifndef STOQ_INTERNAL_H
#define STOQ_INTERNAL_H

#define _GNU_SOURCE
#include "stoq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
/* BBR is declared under the preview flag in msquic 2.5; the library implements it. */
#define QUIC_API_ENABLE_PREVIEW_FEATURES 1
#include <msquic.h>
#include <openssl/x509.h>
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

/* A peer chain the shim accepted: the exact bytes it saw (name, leaf, chain), valid until the
 * leaf's notAfter. A later connection presenting the same bytes skips the parse and the check. */
#define STOQ_VERDICT_CACHE 16
typedef struct stoq_verdict {
  uint8_t* key; /* server name (with its NUL), leaf DER, chain DER */
  uint32_t len, leaf_len;
  int64_t not_before, not_after;
} stoq_verdict;

struct stoq_config {
  stoq_rt* rt;
  HQUIC h;
  QUIC_BUFFER alpn[STOQ_MAX_ALPN];
  uint32_t alpn_count;
  uint8_t alpn_bytes[256 * STOQ_MAX_ALPN];
  uint32_t cred_flags;       /* enum stoq_cred_flags, set by stoq_config_load */
  X509_STORE* store;         /* trust anchors for STOQ_CRED_VERIFY_CHAIN; read-only once loaded */
  pthread_mutex_t verdict_lock;
  stoq_verdict verdicts[STOQ_VERDICT_CACHE]; /* accepted chains, replaced round-robin */
  uint32_t verdict_next;
  uint8_t server_resumption; /* servers send a resumption ticket after the handshake */
  uint8_t loaded;            /* stoq_config_load succeeded */
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
  stoq_config* cfg;   /* the configuration it handshakes with (JS keeps it open meanwhile) */
  char* server_name;  /* clients: the name the server's certificate must carry */
  char* start_name;   /* a deferred start: the name and port to start with */
  uint16_t start_port;
  uint8_t peer_ok;    /* the peer's certificate was accepted by the shim (or handed to JS) */
  uint8_t resumed;    /* server: the client resumed a session (RESUMED came) */
  uint8_t peer_hashed;
  uint8_t peer_hash[32]; /* server: SHA-256 of the client's leaf, carried in the tickets it gets */
  uint8_t* peer_cert;  /* copies held for deferred validation, freed on close */
  uint8_t* peer_chain;
  /* Copied from CONNECTED: a server discards its TLS state after the handshake, so the
   * negotiated ALPN cannot be read back with GetParam later. */
  uint8_t alpn_len;
  uint8_t alpn[255];
  uint8_t dgram_state_seen; /* a DATAGRAM_STATE_CHANGED reached us (only on msquic's thread) */
  /* Both addresses as of CONNECTED, read there on msquic's thread: a GetParam from JS is a
   * blocking round trip to that thread. `addrs_known` is stored (release) after they are. */
  QUIC_ADDR local, remote;
  _Atomic uint8_t addrs_known;
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

#define STOQ_INTERNAL __attribute__((visibility("hidden")))

static inline void count_add(stoq_rt* rt, int which, int64_t delta) {
  atomic_fetch_add_explicit(&rt->counts[which], (uint64_t)delta, memory_order_relaxed);
}

/* rt.c: the completion queue. */
STOQ_INTERNAL void push_events_wake(stoq_rt* rt, const stoq_event* evs, uint32_t n, int wake);
STOQ_INTERNAL void push_events(stoq_rt* rt, const stoq_event* evs, uint32_t n);
STOQ_INTERNAL void push(stoq_rt* rt, uint32_t type, uint64_t id, int32_t status, uint64_t a,
                        uint64_t b, uint64_t c);

/* stream.c */
STOQ_INTERNAL stoq_stream* stream_new(stoq_rt* rt);
STOQ_INTERNAL QUIC_STATUS QUIC_API stream_cb(HQUIC h, void* ctx, QUIC_STREAM_EVENT* ev);
STOQ_INTERNAL int32_t op_stream_send(stoq_rt* rt, stoq_op* op);

/* config.c */
STOQ_INTERNAL int config_verify_peer(stoq_config* cfg, const char* server_name,
                                     const QUIC_BUFFER* leaf, const QUIC_BUFFER* chain,
                                     uint32_t* reason);

/* conn.c */
STOQ_INTERNAL stoq_conn* conn_new(stoq_rt* rt);
STOQ_INTERNAL QUIC_STATUS QUIC_API conn_cb(HQUIC h, void* ctx, QUIC_CONNECTION_EVENT* ev);
STOQ_INTERNAL int parse_addr6(const char* addr, uint16_t port, QUIC_ADDR* out);
STOQ_INTERNAL int32_t op_dgram_send(stoq_rt* rt, stoq_op* op);
STOQ_INTERNAL int32_t op_conn_start(stoq_rt* rt, stoq_op* op);

#endif
