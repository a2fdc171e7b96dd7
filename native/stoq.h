/*
 * STOQ shim (the C files in native/): a small, policy-free C layer between Deno FFI and msquic.
 *
 * Threading contract: msquic calls our callbacks on its own worker threads. Those callbacks
 * never call into JS and never wait for JS; they append fixed-size records to a completion
 * queue and return. JS drains the queue in batches with stoq_rt_poll (sync FFI) and sleeps in
 * stoq_rt_wait (one nonblocking FFI call, parked in io_uring on an eventfd) only when the queue
 * is empty. Producers write the eventfd only when JS is asleep, so a burst costs one wakeup.
 *
 * Ownership: every context struct (runtime, config, listener, connection, stream) is created
 * here and freed exactly once by its stoq_*_close function, which JS calls only after it has
 * processed the handle's SHUTDOWN_COMPLETE event. A configuration outlives every connection
 * that uses it (JS counts its users).
 *
 * Send buffers are slots of a pool the shim owns (stoq_pool_grow): JS writes payload into a slot
 * through a view of the pool's memory, a STOQ_OP_STREAM_SEND hands it to msquic, and the slot
 * belongs to msquic until its SEND_COMPLETE (which carries the slot back to JS). Slabs are never
 * unmapped while the runtime lives (stoq_pool_trim only returns their pages to the kernel), so
 * a view JS keeps can never reach unmapped memory. Received stream data stays in msquic's
 * buffers (PENDING) until JS completes it: JS copies it out once, or lends it in place.
 * Datagrams wait in a bounded per-connection queue in the shim until JS takes them
 * (stoq_conn_dgram_take). The TICKET record hands JS a buffer it frees with stoq_buf_free.
 *
 * File transfers (file.c) run inside the shim: io_uring reads into registered buffers that
 * msquic sends from, and io_uring writes straight from msquic's receive buffers; a thread of
 * the shim reaps their completions. JS sees progress and completion records only.
 *
 * Credentials never touch the disk: PEM arrives in memory, becomes an in-memory PKCS#12 blob for
 * msquic, and trust anchors become an OpenSSL X509_STORE that the shim verifies peers against
 * (chain, purpose and, for clients, the server name) inside msquic's certificate callback.
 *
 * Layouts below are shared with ffi/abi.ts; bump STOQ_ABI_VERSION when one changes.
 */
#ifndef STOQ_H
#define STOQ_H

#include <stdint.h>

#define STOQ_ABI_VERSION 5u

/* One completion record: 64 bytes. `id` names the object the event is about. */
typedef struct stoq_event {
  uint32_t type;
  int32_t status;
  uint64_t id;
  uint64_t a, b, c, d, e, f;
} stoq_event;

/* One submitted operation: 64 bytes. `status` is written back by stoq_submit. */
typedef struct stoq_op {
  uint32_t op;
  int32_t status;
  uint64_t handle;
  uint64_t a, b, c, d, e, f;
} stoq_op;

enum stoq_event_type {
  STOQ_EV_CONN_CONNECTED = 1,          /* a=session resumed */
  STOQ_EV_CONN_SHUTDOWN_TRANSPORT = 2, /* status, a=wire error code */
  STOQ_EV_CONN_SHUTDOWN_PEER = 3,      /* a=application error code */
  STOQ_EV_CONN_SHUTDOWN_COMPLETE = 4,  /* a=handshake completed, b=peer acked */
  STOQ_EV_CONN_PEER_STREAM = 5,        /* a=stream object id, b=unidirectional, c=stream handle,
                                          d=opened by 0-RTT data */
  STOQ_EV_CONN_DGRAM_STATE = 6,        /* a=send enabled, b=max send length */
  STOQ_EV_CONN_DGRAM_READY = 7,        /* datagrams wait in the shim: stoq_conn_dgram_take */
  STOQ_EV_CONN_PEER_CERT = 8,          /* JS decides: a=leaf DER, b=len, c=chain PKCS#7 DER, d=len */
  STOQ_EV_CONN_STREAMS_AVAILABLE = 9,  /* a=bidi, b=unidi */
  STOQ_EV_LISTENER_NEW_CONN = 10,      /* a=connection object id, b=connection handle */
  STOQ_EV_LISTENER_STOPPED = 11,
  STOQ_EV_CONN_PEER_REJECTED = 12,     /* status=X509 verify error, a=enum stoq_reject */
  STOQ_EV_CONN_TICKET = 13,            /* a=resumption ticket (free with stoq_buf_free), b=len */
  STOQ_EV_CONN_RESUMED = 14,           /* server: a..d = SHA-256 of the client leaf the resumed
                                          session verified (all 0 when none was) */
  STOQ_EV_STREAM_START_COMPLETE = 20,  /* status, a=QUIC stream id, b=peer accepted */
  STOQ_EV_STREAM_RECV = 21,            /* a=ptr, b=len, c=fin, d=last record of this indication,
                                          e=total, f=stream offset of this buffer */
  STOQ_EV_STREAM_SEND_COMPLETE = 22,   /* a=bytes, b=canceled, c=pool slot */
  STOQ_EV_STREAM_PEER_SEND_SHUTDOWN = 23,
  STOQ_EV_STREAM_PEER_SEND_ABORTED = 24,  /* a=code */
  STOQ_EV_STREAM_PEER_RECV_ABORTED = 25,  /* a=code */
  STOQ_EV_STREAM_SEND_SHUTDOWN_COMPLETE = 26, /* a=graceful */
  STOQ_EV_STREAM_SHUTDOWN_COMPLETE = 27,  /* a=connection shutdown, b=conn error code, status=conn close status */
  STOQ_EV_STREAM_IDEAL_SEND_BUFFER = 28,  /* a=bytes */
  STOQ_EV_STREAM_PEER_ACCEPTED = 29,      /* the peer's stream credit now covers this stream */
  STOQ_EV_FILE_PROGRESS = 30,             /* a=bytes moved so far */
  STOQ_EV_FILE_DONE = 31,                 /* status (0, an errno, or a msquic status), a=bytes,
                                             b=1 when status is the file I/O's errno */
};

enum stoq_op_type {
  STOQ_OP_STREAM_SEND = 1,          /* a=pool slot, b=len, c=enum stoq_send_flags, d=offset in
                                       the slot; len 0 (a bare FIN) uses no slot */
  STOQ_OP_STREAM_RECV_COMPLETE = 2, /* a=bytes consumed */
  STOQ_OP_STREAM_SHUTDOWN = 3,      /* a=QUIC_STREAM_SHUTDOWN_FLAGS, b=code */
  STOQ_OP_CONN_SHUTDOWN = 4,        /* a=QUIC_CONNECTION_SHUTDOWN_FLAGS, b=code */
  STOQ_OP_DGRAM_SEND = 5,           /* a=data ptr, b=len; the bytes are copied */
  STOQ_OP_CONN_START = 6,           /* starts a connection opened with STOQ_CONNECT_DEFER_START */
  STOQ_OP_STREAM_SEND_FILE = 7,     /* a=fd (stoq_file_open; the shim closes it), b=bytes,
                                       c=progress step in bytes; FIN after the last byte */
  STOQ_OP_STREAM_RECV_FILE = 8,     /* a=fd (closed by the shim), b=stream offset of the file's
                                       first byte, c=progress step; from now on the shim writes
                                       what arrives and completes it */
  STOQ_OP_STREAM_FILE_WRITE = 9,    /* a=ptr, b=len, c=stream offset: a STREAM_RECV record JS held
                                       when the stream turned to a file */
  STOQ_OP_STREAM_SEND_COPY = 10,    /* a=data ptr, b=len, c=enum stoq_send_flags: the shim copies
                                       the bytes (small writes, which would waste a slot) */
};

/* The send pool: slabs of STOQ_SLAB_SLOTS slots of STOQ_SLOT_SIZE bytes; slot n lives in slab
 * n / STOQ_SLAB_SLOTS. At most STOQ_MAX_SLABS slabs. */
#define STOQ_SLOT_SIZE 65536u
#define STOQ_SLAB_SLOTS 64u
#define STOQ_MAX_SLABS 256u

enum stoq_send_flags { STOQ_SEND_FIN = 1, STOQ_SEND_0RTT = 2 };

/* Why the shim refused a peer certificate (STOQ_EV_CONN_PEER_REJECTED). */
enum stoq_reject {
  STOQ_REJECT_CHAIN = 1,     /* no path to a trust anchor, expired, wrong purpose, bad signature */
  STOQ_REJECT_NAME = 2,      /* the chain is fine but does not name the server */
  STOQ_REJECT_MALFORMED = 3, /* the certificate could not be parsed */
  STOQ_REJECT_MISSING = 4,   /* a client certificate was required and none was sent */
};

/* Flags of stoq_stream_open. */
enum stoq_open_flags { STOQ_OPEN_UNIDIRECTIONAL = 1, STOQ_OPEN_FAIL_BLOCKED = 2 };

/* Settings handed to stoq_config_open. Any field left at STOQ_UNSET keeps msquic's default. */
#define STOQ_UNSET UINT64_MAX
typedef struct stoq_settings {
  uint64_t idle_timeout_ms;
  uint64_t handshake_idle_timeout_ms;
  uint64_t keep_alive_ms;
  uint64_t peer_bidi_streams;
  uint64_t peer_unidi_streams;
  uint64_t stream_recv_window;
  uint64_t conn_flow_window;
  uint64_t congestion_control; /* 0 = Cubic, 1 = BBR */
  uint64_t datagrams;          /* 0/1: receive enabled */
  uint64_t send_buffering;     /* 0/1 */
  uint64_t pacing;             /* 0/1 */
  uint64_t disconnect_timeout_ms;
  uint64_t server_resumption;  /* 0 = none, 1 = resumption, 2 = resumption and 0-RTT */
  uint64_t dgram_queue;        /* datagrams kept for JS per connection (the oldest is dropped) */
  uint64_t max_ack_delay_ms;   /* how long this side may delay an acknowledgement */
} stoq_settings;

/* Credential flags for stoq_config_load. */
enum stoq_cred_flags {
  STOQ_CRED_CLIENT = 1,
  STOQ_CRED_VERIFY_CHAIN = 2, /* the shim checks the peer against the trust store (and the name) */
  STOQ_CRED_DEFER = 4,        /* then JS decides: PEER_CERT record, stoq_conn_cert_complete */
  STOQ_CRED_REQUIRE_CLIENT_AUTH = 8,
};

/* Indices into the array filled by stoq_rt_counts. */
enum stoq_count {
  STOQ_COUNT_CONFIGS, STOQ_COUNT_LISTENERS, STOQ_COUNT_CONNECTIONS, STOQ_COUNT_STREAMS,
  STOQ_COUNT_SEND_BUFFERS, STOQ_COUNT_DGRAM_BUFFERS, STOQ_COUNT_RECV_BUFFERS,
  STOQ_COUNT_SENDS_ALLOCATED, STOQ_COUNT_SENDS_FREED, STOQ_COUNT_WAKEUPS, STOQ_COUNT_EVENTS,
  STOQ_COUNT_POOL_SLABS, STOQ_COUNT_FILE_TRANSFERS, STOQ_COUNT_DGRAM_QUEUED,
  STOQ_COUNT_MAX
};

/* Indices into the array filled by stoq_conn_stats. */
enum stoq_stat {
  STOQ_STAT_RTT_US, STOQ_STAT_MIN_RTT_US, STOQ_STAT_CWND, STOQ_STAT_SEND_BYTES,
  STOQ_STAT_RECV_BYTES, STOQ_STAT_SEND_STREAM_BYTES, STOQ_STAT_RECV_STREAM_BYTES,
  STOQ_STAT_SEND_PACKETS, STOQ_STAT_RECV_PACKETS, STOQ_STAT_LOST_PACKETS,
  STOQ_STAT_HANDSHAKE_US, STOQ_STAT_PATH_MTU, STOQ_STAT_DGRAM_DROPPED, STOQ_STAT_MAX
};

typedef struct stoq_rt stoq_rt;
typedef struct stoq_config stoq_config;
typedef struct stoq_listener stoq_listener;
typedef struct stoq_conn stoq_conn;
typedef struct stoq_stream stoq_stream;

uint32_t stoq_abi_version(void);

/* Flags of stoq_rt_open. STOQ_RT_NO_GSO keeps UDP send segmentation off for the whole process;
 * it takes effect only for the first runtime (msquic starts its datapath once), and needs
 * STOQ's libmsquic build (QUIC_STATUS_NOT_SUPPORTED otherwise). */
enum stoq_rt_flags { STOQ_RT_NO_GSO = 1 };
stoq_rt* stoq_rt_open(uint32_t profile, uint32_t flags, int32_t* status);
void stoq_rt_close(stoq_rt* rt);
uint32_t stoq_rt_poll(stoq_rt* rt, stoq_event* out, uint32_t max);
int32_t stoq_rt_wait(stoq_rt* rt, int32_t timeout_ms);
void stoq_rt_wake(stoq_rt* rt);
void stoq_rt_counts(stoq_rt* rt, uint64_t* out, uint32_t n);
/* Whether msquic's datapath uses UDP send segmentation (GSO): 1, 0, or -1 when unknown. */
int32_t stoq_gso(stoq_rt* rt);
uint32_t stoq_submit(stoq_rt* rt, stoq_op* ops, uint32_t n);
void stoq_buf_free(stoq_rt* rt, void* buf);
/* Adds a slab to the send pool: returns its memory (STOQ_SLAB_SLOTS * STOQ_SLOT_SIZE bytes) and
 * its first slot number, or NULL when the pool has STOQ_MAX_SLABS slabs or memory ran out. */
uint8_t* stoq_pool_grow(stoq_rt* rt, uint32_t* first_slot);
/* JS waits for a pool slot: the next SEND_COMPLETE that returns one wakes it (SEND_COMPLETE
 * records wake JS only when asked, see also stoq_stream_wake_below). */
void stoq_pool_wake(stoq_rt* rt);
/* Gives a slab's pages back to the kernel (it stays mapped and reads as zeros). JS calls it
 * only for a slab none of whose slots is in flight. */
void stoq_pool_trim(stoq_rt* rt, uint32_t slab);
/* Closes and frees handles JS is done with: `items` holds n (kind, handle) pairs, kind
 * 1 = stoq_stream*, 2 = stoq_conn*, in order. msquic's Close calls wait for the worker thread,
 * so JS makes this call off its own thread. */
enum stoq_close_kind { STOQ_CLOSE_STREAM = 1, STOQ_CLOSE_CONN = 2 };
void stoq_close_batch(stoq_rt* rt, const uint64_t* items, uint32_t n);

stoq_config* stoq_config_open(stoq_rt* rt, const stoq_settings* s, const uint8_t* alpn,
                              uint32_t alpn_len, int32_t* status);
/* PEM in memory: `cert` (chain, leaf first) with `key`, or neither; `ca` the trust anchors for
 * STOQ_CRED_VERIFY_CHAIN (none: the system's). On failure OpenSSL's reason goes to `err`. */
int32_t stoq_config_load(stoq_config* c, uint32_t flags, const uint8_t* cert, uint32_t cert_len,
                         const uint8_t* key, uint32_t key_len, const uint8_t* ca, uint32_t ca_len,
                         char* err, uint32_t err_cap);
void stoq_config_close(stoq_config* c);

stoq_listener* stoq_listener_open(stoq_rt* rt, stoq_config* c, const char* addr, uint16_t port,
                                  uint32_t ipv6_only, int32_t* status);
void stoq_listener_set_config(stoq_listener* l, stoq_config* c);
uint32_t stoq_listener_port(stoq_listener* l);
uint64_t stoq_listener_id(stoq_listener* l);
void stoq_listener_close(stoq_listener* l);

/* `ticket` (may be NULL) is a resumption ticket from an earlier TICKET record. With
 * STOQ_CONNECT_DEFER_START the connection starts at a later STOQ_OP_CONN_START, so that streams
 * opened and written meanwhile go out as 0-RTT data in the first flight (msquic sends early data
 * only with it). */
/* With STOQ_CONNECT_SHARE_BINDING the connection shares its UDP socket with other connections
 * to the same server: the one bound to `local_addr` and `local_port` (NULL and 0: a new socket,
 * whose address stoq_conn_address then reports for the next connections). */
enum stoq_connect_flags { STOQ_CONNECT_DEFER_START = 1, STOQ_CONNECT_SHARE_BINDING = 2 };
stoq_conn* stoq_conn_connect(stoq_rt* rt, stoq_config* c, const char* server_name,
                             const char* addr, uint16_t port, const uint8_t* ticket,
                             uint32_t ticket_len, uint32_t flags, const char* local_addr,
                             uint16_t local_port, int32_t* status);
uint64_t stoq_conn_id(stoq_conn* c);
int32_t stoq_conn_stats(stoq_conn* c, uint64_t* out, uint32_t n);
int32_t stoq_conn_address(stoq_conn* c, uint32_t remote, uint8_t* out16, uint32_t* port);
uint32_t stoq_conn_alpn(stoq_conn* c, uint8_t* out, uint32_t cap);
int32_t stoq_conn_cert_complete(stoq_conn* c, uint32_t accept, uint32_t tls_alert);
/* Moves the oldest queued datagram into `out` and returns its length; -1 when none is queued
 * (the next arrival then queues a DGRAM_READY record again); -2 when it exceeds `cap` (it stays
 * queued). */
int32_t stoq_conn_dgram_take(stoq_conn* c, uint8_t* out, uint32_t cap);
void stoq_conn_close(stoq_conn* c); /* blocks until msquic's worker processed it */

stoq_stream* stoq_stream_open(stoq_conn* c, uint32_t flags, int32_t* status);
uint64_t stoq_stream_id(stoq_stream* s);
/* Wake JS on a SEND_COMPLETE only once fewer than `bytes` remain outstanding (0: never). */
void stoq_stream_wake_below(stoq_stream* s, uint64_t bytes);
uint64_t stoq_stream_quic_id(stoq_stream* s); /* UINT64_MAX until the stream has started */
/* Microseconds this stream's sending was blocked, by cause (msquic's QUIC_STREAM_STATISTICS, in
 * its order: scheduling, pacing, amplification, congestion, connection flow control, stream
 * IDs, stream flow control, the application). Returns 0 or a msquic status. */
int32_t stoq_stream_stats(stoq_stream* s, uint64_t* out, uint32_t n);
void stoq_stream_close(stoq_stream* s);

/* Opens `path` for a file transfer: for reading (`write` 0; `size` gets its length) or for
 * writing (created or truncated, mode 0644). Returns 0 or an errno. The fd goes to a
 * STOQ_OP_STREAM_SEND_FILE / STOQ_OP_STREAM_RECV_FILE, or back to stoq_file_close. */
int32_t stoq_file_open(const char* path, uint32_t write, int32_t* fd, uint64_t* size);
void stoq_file_close(int32_t fd);
/* strerror for the errno of a FILE_DONE record or stoq_file_open; returns its length. */
uint32_t stoq_strerror(int32_t code, char* out, uint32_t cap);

/* Resolves `name` to its first IPv6 address (blocking: JS calls it off its thread). Returns 0,
 * or getaddrinfo's error code (negative, EAI_*). */
int32_t stoq_resolve6(const char* name, uint8_t* out16);
/* OpenSSL's text for an X509 verify error; returns its length (truncated to cap - 1). */
uint32_t stoq_x509_error(int32_t code, char* out, uint32_t cap);

#endif
