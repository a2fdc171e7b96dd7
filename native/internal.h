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

/* One slab of the send pool: its memory and one msquic descriptor per slot. */
typedef struct stoq_slab {
  uint8_t* mem;
  QUIC_BUFFER qb[STOQ_SLAB_SLOTS];
  _Atomic uint8_t in_flight[STOQ_SLAB_SLOTS];
} stoq_slab;

struct stoq_files; /* file.c */

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
  /* The send pool; slabs are added by JS (stoq_pool_grow) and live as long as the runtime. */
  stoq_slab* slabs[STOQ_MAX_SLABS];
  _Atomic uint32_t nslabs;
  /* A writer waits for a free slot: the next SEND_COMPLETE that returns one wakes JS. */
  _Atomic uint8_t slot_waiter;
  /* The file data plane, started by the first file transfer. */
  pthread_mutex_t files_lock;
  struct stoq_files* files;
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
  uint32_t dgram_queue;      /* datagrams kept per connection until JS takes them */
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
  /* Received datagrams JS has not taken: a ring of dgram_cap copies; when full the oldest is
   * dropped (counted). `dgram_signaled`: a DGRAM_READY record went to JS since JS last found
   * the ring empty. */
  pthread_mutex_t dgram_lock;
  uint8_t** dgram_buf;
  uint32_t* dgram_len;
  uint32_t dgram_cap, dgram_head, dgram_count;
  uint8_t dgram_signaled;
  uint64_t dgram_dropped;
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
  /* A file transfer on this stream (file.c), set by JS's STREAM_SEND_FILE / STREAM_RECV_FILE;
   * msquic's thread reads it in the callback. */
  _Atomic(struct stoq_xfer*) xfer;
  /* PEER_SEND_SHUTDOWN came: every byte up to the FIN was completed (by JS or by a file). */
  _Atomic uint8_t peer_fin;
  /* PEER_SEND_ABORTED came: the peer reset its sending side; nothing more will arrive. */
  _Atomic uint8_t peer_reset;
};

/* A small send copied by the shim: msquic's descriptor followed by the bytes. */
typedef struct stoq_send {
  QUIC_BUFFER qb;
  uint32_t magic;
  uint8_t data[];
} stoq_send;
#define STOQ_SEND_LIVE 0x53544f51u
#define STOQ_SEND_DEAD 0xdeadbeefu

/* msquic send contexts, told apart by their low two bits: 1 = a pool slot (slot << 2 | 1),
 * 2 = a stoq_send copy (pointer | 2), 0 = a file buffer (file.c); NULL for a bare FIN. */
#define CTX_SLOT 1u
#define CTX_COPY 2u
#define CTX_FILE 0u
#define CTX_KIND(ctx) (((uintptr_t)(ctx)) & 3u)
#define SLOT_CONTEXT(slot) ((void*)(uintptr_t)(((uintptr_t)(slot) << 2) | CTX_SLOT))
#define CONTEXT_SLOT(ctx) ((uint32_t)(((uintptr_t)(ctx)) >> 2))
#define COPY_CONTEXT(snd) ((void*)((uintptr_t)(snd) | CTX_COPY))
#define CONTEXT_COPY(ctx) ((stoq_send*)((uintptr_t)(ctx) & ~(uintptr_t)3u))

#define STOQ_INTERNAL __attribute__((visibility("hidden")))

static inline void count_add(stoq_rt* rt, int which, int64_t delta) {
  atomic_fetch_add_explicit(&rt->counts[which], (uint64_t)delta, memory_order_relaxed);
}

/* rt.c: the completion queue. */
STOQ_INTERNAL void push_events_wake(stoq_rt* rt, const stoq_event* evs, uint32_t n, int wake);
STOQ_INTERNAL void push_events(stoq_rt* rt, const stoq_event* evs, uint32_t n);
STOQ_INTERNAL void push(stoq_rt* rt, uint32_t type, uint64_t id, int32_t status, uint64_t a,
                        uint64_t b, uint64_t c);

/* rt.c: the send pool. */
STOQ_INTERNAL QUIC_BUFFER* pool_slot(stoq_rt* rt, uint32_t slot);

/* stream.c */
STOQ_INTERNAL stoq_stream* stream_new(stoq_rt* rt);
STOQ_INTERNAL QUIC_STATUS QUIC_API stream_cb(HQUIC h, void* ctx, QUIC_STREAM_EVENT* ev);
STOQ_INTERNAL int32_t op_stream_send(stoq_rt* rt, stoq_op* op);
STOQ_INTERNAL int32_t op_stream_send_copy(stoq_rt* rt, stoq_op* op);

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
STOQ_INTERNAL void conn_dgram_received(stoq_conn* c, const QUIC_BUFFER* b);
STOQ_INTERNAL void conn_dgram_free(stoq_conn* c);

/* file.c: the io_uring file data plane. */
STOQ_INTERNAL int32_t op_send_file(stoq_rt* rt, stoq_op* op);
STOQ_INTERNAL int32_t op_recv_file(stoq_rt* rt, stoq_op* op);
STOQ_INTERNAL int32_t op_file_write(stoq_rt* rt, stoq_op* op);
/* From stream_cb: a RECEIVE for a stream whose data goes to a file (returns PENDING or SUCCESS),
 * a SEND_COMPLETE of a file buffer, and the peer's FIN after every byte was written. */
STOQ_INTERNAL int file_receiving(const struct stoq_xfer* x);
STOQ_INTERNAL QUIC_STATUS file_on_receive(stoq_stream* s, struct stoq_xfer* x,
                                          const QUIC_STREAM_EVENT* ev);
STOQ_INTERNAL void file_on_send_complete(stoq_stream* s, void* ctx, int canceled);
STOQ_INTERNAL void file_on_peer_fin(stoq_stream* s, struct stoq_xfer* x);
STOQ_INTERNAL void file_on_stream_shutdown(stoq_stream* s, struct stoq_xfer* x);
/* The application stopped receiving: a file receive ends now (its descriptor closed once its
 * writes are done), even while the stream's other direction stays open. */
STOQ_INTERNAL void file_on_abort_receive(stoq_stream* s);
/* Waits until no file operation refers to the stream any more, then frees its transfer. */
STOQ_INTERNAL void file_detach(stoq_stream* s);
STOQ_INTERNAL void files_stop(stoq_rt* rt);

#endif
