/*
 * C baseline over msquic: the work the STOQ side of each `bench:compare` and `bench:file`
 * scenario does, written in C over the same libmsquic, so that a STOQ/C ratio measures STOQ's
 * layers only. Both sides hash every payload byte (SHA-256) where the STOQ side does, and
 * neither hashes file transfers (the bench hashes both files afterwards).
 *
 * Protocol (the same as bench/_throughput.ts speaks): the client opens a bidirectional stream
 * and sends one header line, then
 *   "up\n" + payload + FIN            the server hashes every byte and answers "<bytes> <hex>"
 *   "down <bytes> <write>\n" + FIN    the server sends <bytes> of payload in <write>-byte sends
 *                                     and FIN; the client hashes every byte and checks it
 *   "file <path>\n" + bytes + FIN     the server writes the bytes to <path> (pwrite, inline) and
 *                                     answers "<bytes>"
 * The payload is the 1 MiB pattern of pattern() repeated (bench/_throughput.ts makes the same).
 * Sends are held until SEND_COMPLETE with msquic's send buffering off and 16 MiB in flight per
 * stream, received data is consumed inline in the callback; other settings are STOQ's defaults.
 *
 *   c_baseline server <cert.pem> <key.pem> <port>     prints "listening"
 *   c_baseline client <port> up <MiB> <write bytes>   prints "<Gbit/s> Gbit/s"
 *   c_baseline client <port> down <MiB> <write bytes>
 *   c_baseline client <port> streams <MiB> <count>    <count> concurrent uploads, 64 KiB writes
 *   c_baseline client <port> file <src> <dst>         <src> in 1 MiB reads to <dst> on the server
 *
 * Run by `deno task bench:compare` and `deno task bench:file`.
 */
#define _GNU_SOURCE
#define QUIC_API_ENABLE_PREVIEW_FEATURES 1
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <msquic.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 65536u
#define PATTERN (16u * BLOCK)
#define WINDOW (16u << 20)
#define FILE_READ (1u << 20)

static const QUIC_API_TABLE* api;
static HQUIC registration, configuration;
static QUIC_BUFFER alpn = {5, (uint8_t*)"bench"};
static uint8_t pattern[PATTERN];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

/* 16 blocks of 64 KiB, block k from xorshift32 seeded with (k + 1) * 2654435761. */
static void make_pattern(void) {
  for (uint32_t k = 0; k < 16; k++) {
    uint32_t x = (k + 1) * 2654435761u;
    for (uint32_t i = 0; i < BLOCK / 4; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      memcpy(pattern + k * BLOCK + i * 4, &x, 4);
    }
  }
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void hex(const uint8_t* d, unsigned n, char* out) {
  for (unsigned i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void digest_hex(EVP_MD_CTX* md, char out[65]) {
  uint8_t d[32];
  unsigned n = 0;
  EVP_DigestFinal_ex(md, d, &n);
  hex(d, 32, out);
}

/* The SHA-256 of `total` bytes of repeated pattern. */
static void expected_hex(uint64_t total, char out[65]) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  for (uint64_t off = 0; off < total; off += BLOCK) {
    uint64_t n = total - off < BLOCK ? total - off : BLOCK;
    EVP_DigestUpdate(md, pattern + off % PATTERN, n);
  }
  digest_hex(md, out);
  EVP_MD_CTX_free(md);
}

/* A send descriptor: msquic holds it until SEND_COMPLETE (its context). */
typedef struct send_req {
  QUIC_BUFFER qb;
  int slot; /* file sends: the read buffer it came from; -1 otherwise */
} send_req;

static send_req* send_bytes(HQUIC h, const uint8_t* p, uint32_t n, int fin, int slot) {
  send_req* r = malloc(sizeof *r);
  if (!r) abort();
  r->qb.Buffer = (uint8_t*)p;
  r->qb.Length = n;
  r->slot = slot;
  QUIC_STATUS st =
      api->StreamSend(h, &r->qb, 1, fin ? QUIC_SEND_FLAG_FIN : QUIC_SEND_FLAG_NONE, r);
  if (QUIC_FAILED(st)) {
    fprintf(stderr, "StreamSend failed: 0x%x\n", (unsigned)st);
    exit(1);
  }
  return r;
}

/* ---------------------------------------------------------------- the hashing thread */

/* With C_BASELINE_HASH=thread, received data is hashed on an application thread, as STOQ's JS
 * thread does: RECEIVE returns PENDING (multi-receive mode), the thread hashes and calls
 * StreamReceiveComplete. Otherwise (inline) the callback hashes before it returns. */
static int hash_thread;
typedef struct work {
  void (*fn)(void* stream, const uint8_t* p, uint64_t n);
  void* stream;
  HQUIC h; /* complete n bytes on it after fn (NULL: nothing to complete) */
  const uint8_t* p;
  uint64_t n;
} work;
#define WORK_CAP 65536u
static work queue[WORK_CAP];
static uint32_t q_head, q_count;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;

static void enqueue(work w) {
  pthread_mutex_lock(&q_lock);
  if (q_count == WORK_CAP) abort();
  queue[(q_head + q_count++) % WORK_CAP] = w;
  pthread_cond_signal(&q_cond);
  pthread_mutex_unlock(&q_lock);
}

static void* worker_main(void* arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&q_lock);
    while (q_count == 0) pthread_cond_wait(&q_cond, &q_lock);
    work w = queue[q_head];
    q_head = (q_head + 1) % WORK_CAP;
    q_count--;
    pthread_mutex_unlock(&q_lock);
    w.fn(w.stream, w.p, w.n);
    if (w.h) api->StreamReceiveComplete(w.h, w.n);
  }
  return NULL;
}

/* ---------------------------------------------------------------- server */

enum mode { MODE_NONE, MODE_UP, MODE_DOWN, MODE_FILE };

typedef struct sstream {
  HQUIC h;
  char line[512];
  uint32_t line_len;
  int mode;
  EVP_MD_CTX* md;
  uint64_t bytes;
  int fd;
  uint64_t total, sent, acked;
  uint32_t write;
  char reply[128];
} sstream;

static void server_fill(sstream* s) {
  while (s->sent < s->total && s->sent - s->acked < WINDOW) {
    uint64_t n = s->total - s->sent < s->write ? s->total - s->sent : s->write;
    uint64_t at = s->sent % PATTERN;
    if (at + n > PATTERN) n = PATTERN - at;
    s->sent += n;
    send_bytes(s->h, pattern + at, (uint32_t)n, s->sent == s->total, -1);
  }
}

static void server_reply(sstream* s) {
  send_bytes(s->h, (const uint8_t*)s->reply, (uint32_t)strlen(s->reply), 1, -1);
}

static int server_header(sstream* s) {
  s->line[s->line_len] = 0;
  unsigned long long bytes = 0;
  unsigned write = 0;
  if (strcmp(s->line, "up") == 0) {
    s->mode = MODE_UP;
    s->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
  } else if (sscanf(s->line, "down %llu %u", &bytes, &write) == 2 && write > 0 &&
             PATTERN % write == 0) {
    s->mode = MODE_DOWN;
    s->total = bytes;
    s->write = write;
  } else if (strncmp(s->line, "file ", 5) == 0) {
    s->mode = MODE_FILE;
    s->fd = open(s->line + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->fd < 0) return -1;
  } else {
    return -1;
  }
  return 0;
}

static void server_consume(sstream* s, const uint8_t* p, uint64_t n) {
  while (n > 0 && s->mode == MODE_NONE) {
    uint8_t c = *p++;
    n--;
    if (c == '\n') {
      if (server_header(s) != 0) {
        api->StreamShutdown(s->h, QUIC_STREAM_SHUTDOWN_FLAG_ABORT, 1);
        return;
      }
    } else if (s->line_len + 1 < sizeof s->line) {
      s->line[s->line_len++] = (char)c;
    }
  }
  if (n == 0) return;
  if (s->mode == MODE_UP) EVP_DigestUpdate(s->md, p, n);
  if (s->mode == MODE_FILE) {
    for (uint64_t done = 0; done < n;) {
      ssize_t w = pwrite(s->fd, p + done, n - done, (off_t)(s->bytes + done));
      if (w <= 0) {
        api->StreamShutdown(s->h, QUIC_STREAM_SHUTDOWN_FLAG_ABORT, 2);
        return;
      }
      done += (uint64_t)w;
    }
  }
  s->bytes += n;
}

static void server_consume_work(void* s, const uint8_t* p, uint64_t n) { server_consume(s, p, n); }

static void server_free(void* ctx, const uint8_t* p, uint64_t n) {
  (void)p;
  (void)n;
  sstream* s = ctx;
  api->StreamClose(s->h);
  if (s->md) EVP_MD_CTX_free(s->md);
  if (s->fd >= 0) close(s->fd);
  free(s);
}

static QUIC_STATUS QUIC_API server_stream(HQUIC h, void* ctx, QUIC_STREAM_EVENT* e) {
  (void)h;
  sstream* s = ctx;
  switch (e->Type) {
    case QUIC_STREAM_EVENT_RECEIVE:
      if (hash_thread && e->RECEIVE.TotalBufferLength > 0) {
        for (uint32_t i = 0; i < e->RECEIVE.BufferCount; i++)
          enqueue((work){server_consume_work, s, s->h, e->RECEIVE.Buffers[i].Buffer,
                         e->RECEIVE.Buffers[i].Length});
        return QUIC_STATUS_PENDING;
      }
      for (uint32_t i = 0; i < e->RECEIVE.BufferCount; i++)
        server_consume(s, e->RECEIVE.Buffers[i].Buffer, e->RECEIVE.Buffers[i].Length);
      break;
    case QUIC_STREAM_EVENT_PEER_SEND_SHUTDOWN:
      if (s->mode == MODE_UP) {
        char h64[65];
        digest_hex(s->md, h64);
        snprintf(s->reply, sizeof s->reply, "%" PRIu64 " %s", s->bytes, h64);
        server_reply(s);
      } else if (s->mode == MODE_FILE) {
        close(s->fd);
        s->fd = -1;
        snprintf(s->reply, sizeof s->reply, "%" PRIu64, s->bytes);
        server_reply(s);
      } else if (s->mode == MODE_DOWN) {
        server_fill(s);
      }
      break;
    case QUIC_STREAM_EVENT_SEND_COMPLETE: {
      send_req* r = e->SEND_COMPLETE.ClientContext;
      if (s->mode == MODE_DOWN && r->qb.Buffer != (uint8_t*)s->reply) s->acked += r->qb.Length;
      free(r);
      if (s->mode == MODE_DOWN && !e->SEND_COMPLETE.Canceled) server_fill(s);
      break;
    }
    case QUIC_STREAM_EVENT_SHUTDOWN_COMPLETE:
      /* After any bytes still queued for the hashing thread. */
      if (hash_thread) enqueue((work){server_free, s, NULL, NULL, 0});
      else server_free(s, NULL, 0);
      break;
    default:
      break;
  }
  return QUIC_STATUS_SUCCESS;
}

static QUIC_STATUS QUIC_API server_conn(HQUIC c, void* ctx, QUIC_CONNECTION_EVENT* e) {
  (void)ctx;
  if (e->Type == QUIC_CONNECTION_EVENT_PEER_STREAM_STARTED) {
    sstream* s = calloc(1, sizeof *s);
    if (!s) abort();
    s->h = e->PEER_STREAM_STARTED.Stream;
    s->fd = -1;
    api->SetCallbackHandler(s->h, (void*)server_stream, s);
  }
  if (e->Type == QUIC_CONNECTION_EVENT_SHUTDOWN_COMPLETE) api->ConnectionClose(c);
  return QUIC_STATUS_SUCCESS;
}

static QUIC_STATUS QUIC_API listener_cb(HQUIC l, void* ctx, QUIC_LISTENER_EVENT* e) {
  (void)l;
  (void)ctx;
  if (e->Type != QUIC_LISTENER_EVENT_NEW_CONNECTION) return QUIC_STATUS_SUCCESS;
  api->SetCallbackHandler(e->NEW_CONNECTION.Connection, (void*)server_conn, NULL);
  return api->ConnectionSetConfiguration(e->NEW_CONNECTION.Connection, configuration);
}

/* ---------------------------------------------------------------- client */

typedef struct cstream {
  HQUIC h;
  uint64_t total, sent, acked, received;
  EVP_MD_CTX* md;
  char header[600];
  char reply[256];
  uint32_t reply_len;
  int fd;                 /* file: the source */
  uint8_t* slots[WINDOW / FILE_READ];
  int free_slots[WINDOW / FILE_READ], nfree;
} cstream;

static int mode;
static uint32_t write_size;
static int connected, streams_done, conn_failed;

static void client_fill(cstream* s) {
  if (mode == MODE_FILE) {
    while (s->sent < s->total && s->nfree > 0) {
      int slot = s->free_slots[--s->nfree];
      uint64_t n = s->total - s->sent < FILE_READ ? s->total - s->sent : FILE_READ;
      ssize_t r = pread(s->fd, s->slots[slot], n, (off_t)s->sent);
      if (r != (ssize_t)n) {
        fprintf(stderr, "read failed\n");
        exit(1);
      }
      s->sent += n;
      send_bytes(s->h, s->slots[slot], (uint32_t)n, s->sent == s->total, slot);
    }
    return;
  }
  while (s->sent < s->total && s->sent - s->acked < WINDOW) {
    uint64_t n = s->total - s->sent < write_size ? s->total - s->sent : write_size;
    uint64_t at = s->sent % PATTERN;
    if (at + n > PATTERN) n = PATTERN - at;
    s->sent += n;
    send_bytes(s->h, pattern + at, (uint32_t)n, s->sent == s->total, -1);
  }
}

static void client_hash(void* ctx, const uint8_t* p, uint64_t n) {
  cstream* s = ctx;
  EVP_DigestUpdate(s->md, p, n);
  s->received += n;
}

static QUIC_STATUS QUIC_API client_stream(HQUIC h, void* ctx, QUIC_STREAM_EVENT* e) {
  (void)h;
  cstream* s = ctx;
  switch (e->Type) {
    case QUIC_STREAM_EVENT_START_COMPLETE:
      send_bytes(s->h, (const uint8_t*)s->header, (uint32_t)strlen(s->header), mode == MODE_DOWN,
                 -1);
      if (mode != MODE_DOWN) client_fill(s);
      break;
    case QUIC_STREAM_EVENT_SEND_COMPLETE: {
      send_req* r = e->SEND_COMPLETE.ClientContext;
      if (r->qb.Buffer != (uint8_t*)s->header) s->acked += r->qb.Length;
      if (r->slot >= 0) s->free_slots[s->nfree++] = r->slot;
      free(r);
      if (mode != MODE_DOWN && !e->SEND_COMPLETE.Canceled) client_fill(s);
      break;
    }
    case QUIC_STREAM_EVENT_RECEIVE:
      if (mode == MODE_DOWN && hash_thread && e->RECEIVE.TotalBufferLength > 0) {
        for (uint32_t i = 0; i < e->RECEIVE.BufferCount; i++)
          enqueue((work){client_hash, s, s->h, e->RECEIVE.Buffers[i].Buffer,
                         e->RECEIVE.Buffers[i].Length});
        return QUIC_STATUS_PENDING;
      }
      for (uint32_t i = 0; i < e->RECEIVE.BufferCount; i++) {
        const QUIC_BUFFER* b = &e->RECEIVE.Buffers[i];
        if (mode == MODE_DOWN) {
          client_hash(s, b->Buffer, b->Length);
        } else {
          uint32_t n = b->Length;
          if (n > sizeof s->reply - 1 - s->reply_len) n = sizeof s->reply - 1 - s->reply_len;
          memcpy(s->reply + s->reply_len, b->Buffer, n);
          s->reply_len += n;
        }
      }
      break;
    case QUIC_STREAM_EVENT_SHUTDOWN_COMPLETE:
      pthread_mutex_lock(&lock);
      streams_done++;
      pthread_cond_broadcast(&cond);
      pthread_mutex_unlock(&lock);
      break;
    default:
      break;
  }
  return QUIC_STATUS_SUCCESS;
}

static QUIC_STATUS QUIC_API client_conn(HQUIC c, void* ctx, QUIC_CONNECTION_EVENT* e) {
  (void)c;
  (void)ctx;
  if (e->Type == QUIC_CONNECTION_EVENT_CONNECTED || e->Type == QUIC_CONNECTION_EVENT_SHUTDOWN_COMPLETE) {
    pthread_mutex_lock(&lock);
    if (e->Type == QUIC_CONNECTION_EVENT_CONNECTED) connected = 1;
    else conn_failed = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
  }
  return QUIC_STATUS_SUCCESS;
}

/* STOQ's defaults: 100 peer streams each way, 1 MiB initial stream window, no send buffering. */
static int open_configuration(void) {
  QUIC_SETTINGS s;
  memset(&s, 0, sizeof s);
  s.IsSet.PeerBidiStreamCount = 1;
  s.PeerBidiStreamCount = 100;
  s.IsSet.PeerUnidiStreamCount = 1;
  s.PeerUnidiStreamCount = 100;
  s.IsSet.SendBufferingEnabled = 1;
  s.SendBufferingEnabled = 0;
  s.IsSet.StreamRecvWindowDefault = 1;
  s.StreamRecvWindowDefault = 1u << 20;
  if (hash_thread) {
    s.IsSet.StreamMultiReceiveEnabled = 1;
    s.StreamMultiReceiveEnabled = 1;
  }
  return QUIC_FAILED(api->ConfigurationOpen(registration, &alpn, 1, &s, sizeof s, NULL,
                                            &configuration));
}

static int usage(const char* argv0) {
  fprintf(stderr,
          "usage: %s server <cert> <key> <port>\n"
          "       %s client <port> up|down <MiB> <write bytes>\n"
          "       %s client <port> streams <MiB> <count>\n"
          "       %s client <port> file <src> <dst>\n",
          argv0, argv0, argv0, argv0);
  return 2;
}

static int run_server(char** argv) {
  QUIC_CREDENTIAL_CONFIG cred;
  memset(&cred, 0, sizeof cred);
  QUIC_CERTIFICATE_FILE files = {argv[3], argv[2]};
  cred.Type = QUIC_CREDENTIAL_TYPE_CERTIFICATE_FILE;
  cred.CertificateFile = &files;
  if (QUIC_FAILED(api->ConfigurationLoadCredential(configuration, &cred))) return 1;
  HQUIC listener;
  QUIC_ADDR addr;
  memset(&addr, 0, sizeof addr);
  addr.Ipv6.sin6_family = AF_INET6;
  addr.Ipv6.sin6_port = htons((uint16_t)atoi(argv[4]));
  inet_pton(AF_INET6, "::1", &addr.Ipv6.sin6_addr);
  if (QUIC_FAILED(api->ListenerOpen(registration, listener_cb, NULL, &listener)) ||
      QUIC_FAILED(api->ListenerStart(listener, &alpn, 1, &addr)))
    return 1;
  printf("listening\n");
  fflush(stdout);
  pause();
  return 0;
}

static int run_client(int argc, char** argv) {
  const char* what = argv[3];
  uint64_t per_stream = 0;
  unsigned count = 1;
  const char* src = NULL;
  const char* dst = NULL;
  if (strcmp(what, "up") == 0 || strcmp(what, "down") == 0) {
    mode = what[0] == 'u' ? MODE_UP : MODE_DOWN;
    per_stream = (uint64_t)atoi(argv[4]) << 20;
    write_size = (uint32_t)atoi(argv[5]);
    if (write_size == 0 || PATTERN % write_size != 0) return usage(argv[0]);
  } else if (strcmp(what, "streams") == 0) {
    mode = MODE_UP;
    count = (unsigned)atoi(argv[5]);
    if (count == 0) return usage(argv[0]);
    per_stream = (((uint64_t)atoi(argv[4]) << 20) / count) / BLOCK * BLOCK;
    write_size = BLOCK;
  } else if (strcmp(what, "file") == 0) {
    mode = MODE_FILE;
    src = argv[4];
    dst = argv[5];
  } else {
    return usage(argv[0]);
  }
  (void)argc;
  QUIC_CREDENTIAL_CONFIG cred;
  memset(&cred, 0, sizeof cred);
  cred.Type = QUIC_CREDENTIAL_TYPE_NONE;
  /* The baseline measures transfers, not validation; the handshake is outside the timing. */
  cred.Flags = QUIC_CREDENTIAL_FLAG_CLIENT | QUIC_CREDENTIAL_FLAG_NO_CERTIFICATE_VALIDATION;
  if (QUIC_FAILED(api->ConfigurationLoadCredential(configuration, &cred))) return 1;

  cstream* streams = calloc(count, sizeof *streams);
  if (!streams) return 1;
  char expected[65] = "";
  if (mode != MODE_FILE) expected_hex(per_stream, expected);
  for (unsigned i = 0; i < count; i++) {
    cstream* s = &streams[i];
    s->total = per_stream;
    s->fd = -1;
    if (mode == MODE_UP) snprintf(s->header, sizeof s->header, "up\n");
    if (mode == MODE_DOWN) {
      snprintf(s->header, sizeof s->header, "down %" PRIu64 " %u\n", per_stream, write_size);
      s->md = EVP_MD_CTX_new();
      EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
    }
    if (mode == MODE_FILE) {
      snprintf(s->header, sizeof s->header, "file %s\n", dst);
      s->fd = open(src, O_RDONLY | O_CLOEXEC);
      struct stat st;
      if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        fprintf(stderr, "cannot open %s\n", src);
        return 1;
      }
      s->total = (uint64_t)st.st_size;
      for (unsigned k = 0; k < WINDOW / FILE_READ; k++) {
        s->slots[k] = malloc(FILE_READ);
        s->free_slots[s->nfree++] = (int)k;
      }
    }
  }

  HQUIC conn;
  if (QUIC_FAILED(api->ConnectionOpen(registration, client_conn, NULL, &conn)) ||
      QUIC_FAILED(api->ConnectionStart(conn, configuration, QUIC_ADDRESS_FAMILY_INET6, "::1",
                                       (uint16_t)atoi(argv[2]))))
    return 1;
  pthread_mutex_lock(&lock);
  while (!connected && !conn_failed) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  if (!connected) {
    fprintf(stderr, "connect failed\n");
    return 1;
  }

  double t0 = now();
  for (unsigned i = 0; i < count; i++) {
    if (QUIC_FAILED(api->StreamOpen(conn, QUIC_STREAM_OPEN_FLAG_NONE, client_stream, &streams[i],
                                    &streams[i].h)) ||
        QUIC_FAILED(api->StreamStart(streams[i].h, QUIC_STREAM_START_FLAG_NONE)))
      return 1;
  }
  pthread_mutex_lock(&lock);
  while (streams_done < (int)count) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  double seconds = now() - t0;

  uint64_t total = 0;
  for (unsigned i = 0; i < count; i++) {
    cstream* s = &streams[i];
    char want[128], got[65];
    total += s->total;
    if (mode == MODE_DOWN) {
      digest_hex(s->md, got);
      if (s->received != s->total || strcmp(got, expected) != 0) {
        fprintf(stderr, "download: got %" PRIu64 " bytes with SHA-256 %s, expected %" PRIu64 " / %s\n",
                s->received, got, s->total, expected);
        return 1;
      }
      continue;
    }
    s->reply[s->reply_len] = 0;
    if (mode == MODE_FILE) snprintf(want, sizeof want, "%" PRIu64, s->total);
    else snprintf(want, sizeof want, "%" PRIu64 " %s", s->total, expected);
    if (strcmp(s->reply, want) != 0) {
      fprintf(stderr, "the server answered '%s', expected '%s'\n", s->reply, want);
      return 1;
    }
  }
  printf("%.3f Gbit/s\n", (double)total * 8 / seconds / 1e9);
  for (unsigned i = 0; i < count; i++) api->StreamClose(streams[i].h);
  api->ConnectionShutdown(conn, QUIC_CONNECTION_SHUTDOWN_FLAG_NONE, 0);
  return 0;
}

int main(int argc, char** argv) {
  int server = argc == 5 && strcmp(argv[1], "server") == 0;
  int client = argc == 6 && strcmp(argv[1], "client") == 0;
  if (!server && !client) return usage(argv[0]);
  make_pattern();
  const char* how = getenv("C_BASELINE_HASH");
  hash_thread = how != NULL && strcmp(how, "thread") == 0;
  pthread_t worker;
  if (hash_thread && pthread_create(&worker, NULL, worker_main, NULL) != 0) return 1;
  QUIC_REGISTRATION_CONFIG rc = {"stoq-c-baseline", QUIC_EXECUTION_PROFILE_LOW_LATENCY};
  if (QUIC_FAILED(MsQuicOpen2(&api)) || QUIC_FAILED(api->RegistrationOpen(&rc, &registration)) ||
      open_configuration())
    return 1;
  return server ? run_server(argv) : run_client(argc, argv);
}
