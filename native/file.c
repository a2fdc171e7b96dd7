/* The io_uring file data plane: file bytes move between disk and a QUIC stream inside the shim
 * and never reach JS, which sees only FILE_PROGRESS and FILE_DONE records.
 *
 * Sending: io_uring reads the file into registered buffers (READ_FIXED), msquic sends from
 * them in file order (reads complete in any order), and each SEND_COMPLETE frees its buffer
 * for the next read. Receiving: msquic indicates data (held with PENDING), io_uring writes it
 * at its offset straight from msquic's buffer, and the bytes written contiguously from the
 * start are completed (StreamReceiveComplete), which returns flow-control credit to the peer.
 *
 * One io_uring and one reaper thread per runtime, started by the first transfer. Anyone may
 * submit (JS's thread, msquic's threads, the reaper) under `lock`, which also guards every
 * transfer's state; only the reaper waits for completions. The lock is never held while
 * waiting for anything but itself, so msquic's threads never wait for JS or for I/O. */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define FILE_BUF (256u * 1024u)
#define FILE_BUFS 64u /* 16 MiB of registered buffers per runtime */
#define RING_ENTRIES 256u

/* io_uring user_data tags (low bits of 8-aligned pointers). */
#define UD_READ 1u
#define UD_WRITE 2u
#define UD_STOP 3u

typedef struct stoq_xfer stoq_xfer;

/* A registered buffer; as a send context it must keep its low two bits clear (CTX_FILE). */
typedef struct stoq_fbuf {
  QUIC_BUFFER qb;
  stoq_xfer* x;
  uint64_t off;  /* file offset of its bytes */
  uint32_t want; /* bytes read into it */
  uint32_t index;
  struct stoq_fbuf* next; /* free list, or the transfer's reads waiting for their turn */
} __attribute__((aligned(8))) stoq_fbuf;

/* One io_uring write of bytes msquic indicated (held until completed). */
typedef struct stoq_fwrite {
  stoq_xfer* x;
  const uint8_t* p;
  uint64_t off;   /* file offset of p */
  uint32_t len;   /* bytes still to write */
  uint64_t start; /* the whole range: completed as one */
  uint32_t whole;
} __attribute__((aligned(8))) stoq_fwrite;

typedef struct stoq_range {
  uint64_t off, len;
} stoq_range;

struct stoq_xfer {
  struct stoq_files* f;
  stoq_stream* s;
  int fd;
  uint8_t sending;
  uint8_t fin;         /* receiving: the peer's FIN came, so every byte was written */
  uint8_t stream_gone; /* SHUTDOWN_COMPLETE came: no more calls on the stream */
  uint8_t reported;    /* FILE_DONE went to JS */
  int32_t error;       /* the first failure: an errno, or a msquic status */
  uint8_t io_error;    /* error is the file I/O's errno */
  uint64_t total;      /* sending: the file's length */
  uint64_t read_next;  /* sending: next offset to read */
  uint64_t send_next;  /* sending: next offset msquic gets */
  stoq_fbuf* ready;    /* sending: reads done, sorted by offset, waiting for their turn */
  uint64_t base;       /* receiving: stream offset of the file's first byte */
  uint64_t frontier;   /* receiving: bytes written (and completed) contiguously from 0 */
  stoq_range* ranges;  /* receiving: written ranges beyond the frontier, unsorted */
  uint32_t nranges, cap_ranges;
  uint64_t done; /* bytes moved: sent and acknowledged, or written and completed */
  uint64_t step, next_progress;
  uint32_t inflight; /* reads, sends and writes that refer to this transfer */
  uint8_t waiting;   /* on the files' waiting list */
  stoq_xfer* next_waiting;
};

typedef struct stoq_files {
  stoq_rt* rt;
  struct io_uring ring;
  pthread_mutex_t lock;
  pthread_cond_t idle; /* some transfer's inflight reached 0 */
  pthread_t thread;
  int fixed; /* the buffers are registered: READ_FIXED */
  uint8_t* mem;
  stoq_fbuf bufs[FILE_BUFS];
  stoq_fbuf* free_bufs;
  stoq_xfer *waiting, *waiting_tail; /* sending transfers that want buffers, in order */
} stoq_files;

static void* reaper(void* arg);

/* ---------- setup ---------- */

static stoq_files* files_get(stoq_rt* rt) {
  pthread_mutex_lock(&rt->files_lock);
  stoq_files* f = rt->files;
  if (f) {
    pthread_mutex_unlock(&rt->files_lock);
    return f;
  }
  f = calloc(1, sizeof *f);
  if (!f) goto fail;
  f->rt = rt;
  f->mem = mmap(NULL, (size_t)FILE_BUFS * FILE_BUF, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (f->mem == MAP_FAILED) goto fail_mem;
  if (io_uring_queue_init(RING_ENTRIES, &f->ring, 0) < 0) goto fail_ring;
  /* Registered buffers pin their pages; without the privilege or memlock allowance for that,
   * the plane reads with plain READ instead (one lookup of the pages per read). */
  struct iovec iov = {.iov_base = f->mem, .iov_len = (size_t)FILE_BUFS * FILE_BUF};
  f->fixed = io_uring_register_buffers(&f->ring, &iov, 1) == 0;
  for (uint32_t i = 0; i < FILE_BUFS; i++) {
    f->bufs[i].index = i;
    f->bufs[i].qb.Buffer = f->mem + (size_t)i * FILE_BUF;
    f->bufs[i].next = i + 1 < FILE_BUFS ? &f->bufs[i + 1] : NULL;
  }
  f->free_bufs = &f->bufs[0];
  pthread_mutex_init(&f->lock, NULL);
  pthread_cond_init(&f->idle, NULL);
  if (pthread_create(&f->thread, NULL, reaper, f) != 0) {
    pthread_cond_destroy(&f->idle);
    pthread_mutex_destroy(&f->lock);
    io_uring_queue_exit(&f->ring);
    goto fail_ring;
  }
  rt->files = f;
  pthread_mutex_unlock(&rt->files_lock);
  return f;
fail_ring:
  munmap(f->mem, (size_t)FILE_BUFS * FILE_BUF);
fail_mem:
  free(f);
fail:
  pthread_mutex_unlock(&rt->files_lock);
  return NULL;
}

/* Called once every connection is gone (no transfer is left). */
void files_stop(stoq_rt* rt) {
  stoq_files* f = rt->files;
  if (!f) return;
  pthread_mutex_lock(&f->lock);
  struct io_uring_sqe* sqe = io_uring_get_sqe(&f->ring);
  while (!sqe) {
    io_uring_submit(&f->ring);
    sqe = io_uring_get_sqe(&f->ring);
  }
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, UD_STOP);
  io_uring_submit(&f->ring);
  pthread_mutex_unlock(&f->lock);
  pthread_join(f->thread, NULL);
  io_uring_queue_exit(&f->ring);
  munmap(f->mem, (size_t)FILE_BUFS * FILE_BUF);
  pthread_cond_destroy(&f->idle);
  pthread_mutex_destroy(&f->lock);
  free(f);
  rt->files = NULL;
}

static struct io_uring_sqe* sqe_get(stoq_files* f) {
  struct io_uring_sqe* sqe = io_uring_get_sqe(&f->ring);
  while (!sqe) {
    io_uring_submit(&f->ring);
    sqe = io_uring_get_sqe(&f->ring);
  }
  return sqe;
}

/* ---------- reporting (all under f->lock) ---------- */

static void fail(stoq_xfer* x, int32_t error) {
  if (x->error == 0) x->error = error;
}

/* A failure of the file itself (read, write, close): the errno goes to JS as such. */
static void fail_io(stoq_xfer* x, int32_t err) {
  if (x->error != 0) return;
  x->error = err;
  x->io_error = 1;
}

static void progress(stoq_xfer* x) {
  if (x->step == 0 || x->done < x->next_progress) return;
  while (x->next_progress <= x->done) x->next_progress += x->step;
  push(x->f->rt, STOQ_EV_FILE_PROGRESS, x->s->id, 0, x->done, 0, 0);
}

/* FILE_DONE once the transfer is over and nothing refers to it any more. */
static void maybe_finish(stoq_xfer* x) {
  if (x->inflight == 0) pthread_cond_broadcast(&x->f->idle);
  if (x->reported || x->inflight > 0) return;
  int over = x->error != 0 || (x->sending ? x->done == x->total : x->fin);
  if (!over) return;
  x->reported = 1;
  if (x->fd >= 0) {
    /* A receiving file's bytes are all written: a close that fails (NFS, quota) fails it. */
    if (close(x->fd) != 0 && !x->sending) fail_io(x, errno);
    x->fd = -1;
  }
  push(x->f->rt, STOQ_EV_FILE_DONE, x->s->id, x->error, x->done, x->io_error, 0);
}

/* ---------- sending ---------- */

static void want_buffers(stoq_files* f, stoq_xfer* x) {
  if (x->waiting) return;
  x->waiting = 1;
  x->next_waiting = NULL;
  if (f->waiting_tail) f->waiting_tail->next_waiting = x;
  else f->waiting = x;
  f->waiting_tail = x;
}

static void unwait(stoq_files* f, stoq_xfer* x) {
  if (!x->waiting) return;
  stoq_xfer** p = &f->waiting;
  stoq_xfer* prev = NULL;
  while (*p && *p != x) {
    prev = *p;
    p = &(*p)->next_waiting;
  }
  if (*p) *p = x->next_waiting;
  if (f->waiting_tail == x) f->waiting_tail = prev;
  x->waiting = 0;
}

/* Starts reads while the file has bytes left and buffers are free. */
static void pump_send(stoq_files* f, stoq_xfer* x) {
  int queued = 0;
  while (!x->error && !x->stream_gone && x->read_next < x->total && f->free_bufs) {
    stoq_fbuf* b = f->free_bufs;
    f->free_bufs = b->next;
    b->x = x;
    b->off = x->read_next;
    uint64_t left = x->total - x->read_next;
    b->want = left < FILE_BUF ? (uint32_t)left : FILE_BUF;
    x->read_next += b->want;
    x->inflight++;
    struct io_uring_sqe* sqe = sqe_get(f);
    if (f->fixed)
      io_uring_prep_read_fixed(sqe, x->fd, (void*)b->qb.Buffer, b->want, b->off, 0);
    else
      io_uring_prep_read(sqe, x->fd, (void*)b->qb.Buffer, b->want, b->off);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)b | UD_READ);
    queued = 1;
  }
  if (!x->error && !x->stream_gone && x->read_next < x->total) want_buffers(f, x);
  else unwait(f, x);
  if (queued) io_uring_submit(&f->ring);
}

static void free_buffer(stoq_files* f, stoq_fbuf* b) {
  b->x = NULL;
  b->next = f->free_bufs;
  f->free_bufs = b;
}

/* Hands msquic the reads whose turn it is (msquic sends in the order it is given). */
static void send_ready(stoq_files* f, stoq_xfer* x) {
  stoq_rt* rt = f->rt;
  while (x->ready && x->ready->off == x->send_next) {
    stoq_fbuf* b = x->ready;
    x->ready = b->next;
    x->send_next += b->want;
    b->qb.Length = b->want;
    QUIC_STATUS st = x->error || x->stream_gone
                         ? QUIC_STATUS_ABORTED
                         : rt->api->StreamSend(x->s->h, &b->qb, 1,
                                               x->send_next == x->total ? QUIC_SEND_FLAG_FIN
                                                                        : QUIC_SEND_FLAG_NONE,
                                               b);
    if (QUIC_FAILED(st)) {
      /* msquic did not take it: no SEND_COMPLETE will come. */
      fail(x, st);
      free_buffer(f, b);
      x->inflight--;
    }
  }
}

static void on_read(stoq_files* f, stoq_fbuf* b, int res) {
  stoq_xfer* x = b->x;
  if (res != (int)b->want) {
    /* A read error, or a file that shrank since it was opened. */
    fail_io(x, res < 0 ? -res : EIO);
    if (!x->stream_gone)
      f->rt->api->StreamShutdown(x->s->h, QUIC_STREAM_SHUTDOWN_FLAG_ABORT_SEND, 0);
  }
  if (x->error) {
    free_buffer(f, b);
    x->inflight--;
  } else {
    stoq_fbuf** p = &x->ready;
    while (*p && (*p)->off < b->off) p = &(*p)->next;
    b->next = *p;
    *p = b;
    send_ready(f, x);
  }
  /* Waiting ready buffers of a failed transfer go back too. */
  if (x->error) {
    while (x->ready) {
      stoq_fbuf* r = x->ready;
      x->ready = r->next;
      free_buffer(f, r);
      x->inflight--;
    }
  }
  maybe_finish(x);
}

/* Buffers came back: the transfers waiting for them read on, in order. */
static void feed_waiting(stoq_files* f) {
  while (f->waiting && f->free_bufs) {
    stoq_xfer* x = f->waiting;
    unwait(f, x);
    pump_send(f, x);
    if (x->waiting) break; /* it took every free buffer and wants more */
  }
}

void file_on_send_complete(stoq_stream* s, void* ctx, int canceled) {
  stoq_files* f = s->rt->files;
  stoq_fbuf* b = ctx;
  pthread_mutex_lock(&f->lock);
  stoq_xfer* x = b->x;
  if (canceled) fail(x, QUIC_STATUS_ABORTED);
  else x->done += b->qb.Length;
  free_buffer(f, b);
  x->inflight--;
  progress(x);
  pump_send(f, x);
  feed_waiting(f);
  maybe_finish(x);
  pthread_mutex_unlock(&f->lock);
}

/* A transfer for the file operation `op` (a: the file descriptor, c: the progress step); NULL
 * with *status set, and the descriptor closed, when the stream has one already or memory ran
 * out. */
static stoq_xfer* xfer_new(stoq_rt* rt, stoq_op* op, int32_t* status) {
  stoq_stream* s = (stoq_stream*)(uintptr_t)op->handle;
  int fd = (int)op->a;
  stoq_files* f = atomic_load(&s->xfer) ? NULL : files_get(rt);
  stoq_xfer* x = f ? calloc(1, sizeof *x) : NULL;
  if (!x) {
    close(fd);
    *status = f ? QUIC_STATUS_OUT_OF_MEMORY : QUIC_STATUS_INVALID_STATE;
    return NULL;
  }
  x->f = f;
  x->s = s;
  x->fd = fd;
  x->step = op->c;
  x->next_progress = op->c;
  count_add(rt, STOQ_COUNT_FILE_TRANSFERS, 1);
  return x;
}

int32_t op_send_file(stoq_rt* rt, stoq_op* op) {
  int32_t status;
  stoq_xfer* x = xfer_new(rt, op, &status);
  if (!x) return status;
  stoq_files* f = x->f;
  stoq_stream* s = x->s;
  x->sending = 1;
  x->total = op->b;
  pthread_mutex_lock(&f->lock);
  atomic_store_explicit(&s->xfer, x, memory_order_release);
  if (x->total == 0) {
    QUIC_STATUS st = rt->api->StreamSend(s->h, NULL, 0, QUIC_SEND_FLAG_FIN, NULL);
    if (QUIC_FAILED(st)) fail(x, st);
    maybe_finish(x);
  } else {
    pump_send(f, x);
  }
  pthread_mutex_unlock(&f->lock);
  return 0;
}

/* ---------- receiving ---------- */

static void submit_write(stoq_files* f, stoq_fwrite* w) {
  struct io_uring_sqe* sqe = sqe_get(f);
  io_uring_prep_write(sqe, w->x->fd, w->p, w->len, w->off);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)w | UD_WRITE);
}

/* Queues a write of `len` bytes at stream offset `at`; 0 or an errno. */
static int queue_write(stoq_files* f, stoq_xfer* x, const uint8_t* p, uint32_t len, uint64_t at) {
  if (at < x->base) return EINVAL;
  stoq_fwrite* w = malloc(sizeof *w);
  if (!w) return ENOMEM;
  w->x = x;
  w->p = p;
  w->off = w->start = at - x->base;
  w->len = w->whole = len;
  x->inflight++;
  submit_write(f, w);
  return 0;
}

/* Written [off, off + len): advance the frontier and complete what became contiguous. */
static void written(stoq_files* f, stoq_xfer* x, uint64_t off, uint64_t len) {
  if (off != x->frontier) {
    if (x->nranges == x->cap_ranges) {
      uint32_t cap = x->cap_ranges ? x->cap_ranges * 2 : 16;
      stoq_range* r = realloc(x->ranges, cap * sizeof *r);
      if (!r) abort(); /* losing a range would hold msquic's buffers forever */
      x->ranges = r;
      x->cap_ranges = cap;
    }
    x->ranges[x->nranges++] = (stoq_range){off, len};
    return;
  }
  uint64_t before = x->frontier;
  x->frontier += len;
  for (int moved = 1; moved;) {
    moved = 0;
    for (uint32_t i = 0; i < x->nranges; i++) {
      if (x->ranges[i].off != x->frontier) continue;
      x->frontier += x->ranges[i].len;
      x->ranges[i] = x->ranges[--x->nranges];
      moved = 1;
      break;
    }
  }
  uint64_t n = x->frontier - before;
  if (!x->error && !x->stream_gone) f->rt->api->StreamReceiveComplete(x->s->h, n);
  x->done += n;
  progress(x);
}

static void on_write(stoq_files* f, stoq_fwrite* w, int res) {
  stoq_xfer* x = w->x;
  if (res > 0 && (uint32_t)res < w->len && !x->error) {
    w->p += res;
    w->off += (uint64_t)res;
    w->len -= (uint32_t)res;
    submit_write(f, w);
    io_uring_submit(&f->ring);
    return;
  }
  if (res <= 0) {
    fail_io(x, res < 0 ? -res : EIO);
    if (!x->stream_gone)
      f->rt->api->StreamShutdown(x->s->h, QUIC_STREAM_SHUTDOWN_FLAG_ABORT_RECEIVE, 0);
  } else {
    written(f, x, w->start, w->whole);
  }
  free(w);
  x->inflight--;
  maybe_finish(x);
}

int file_receiving(const stoq_xfer* x) { return !x->sending; }

QUIC_STATUS file_on_receive(stoq_stream* s, stoq_xfer* x, const QUIC_STREAM_EVENT* ev) {
  stoq_files* f = x->f;
  pthread_mutex_lock(&f->lock);
  if (x->error) {
    pthread_mutex_unlock(&f->lock);
    return QUIC_STATUS_SUCCESS; /* the receive was aborted: nothing more is kept */
  }
  uint64_t at = ev->RECEIVE.AbsoluteOffset;
  for (uint32_t i = 0; i < ev->RECEIVE.BufferCount; i++) {
    const QUIC_BUFFER* b = &ev->RECEIVE.Buffers[i];
    if (b->Length == 0) continue;
    int err = queue_write(f, x, b->Buffer, b->Length, at);
    if (err) {
      fail_io(x, err);
      s->rt->api->StreamShutdown(s->h, QUIC_STREAM_SHUTDOWN_FLAG_ABORT_RECEIVE, 0);
      break;
    }
    at += b->Length;
  }
  io_uring_submit(&f->ring);
  pthread_mutex_unlock(&f->lock);
  return QUIC_STATUS_PENDING;
}

void file_on_peer_fin(stoq_stream* s, stoq_xfer* x) {
  (void)s;
  if (x->sending) return;
  pthread_mutex_lock(&x->f->lock);
  x->fin = 1;
  maybe_finish(x);
  pthread_mutex_unlock(&x->f->lock);
}

void file_on_stream_shutdown(stoq_stream* s, stoq_xfer* x) {
  (void)s;
  pthread_mutex_lock(&x->f->lock);
  x->stream_gone = 1;
  if (!x->reported && !(x->sending ? x->done == x->total : x->fin)) fail(x, ECONNABORTED);
  unwait(x->f, x);
  maybe_finish(x);
  pthread_mutex_unlock(&x->f->lock);
}

void file_on_abort_receive(stoq_stream* s) {
  stoq_xfer* x = atomic_load(&s->xfer);
  if (!x || x->sending) return;
  pthread_mutex_lock(&x->f->lock);
  if (!x->reported && !x->fin) fail(x, QUIC_STATUS_ABORTED);
  maybe_finish(x);
  pthread_mutex_unlock(&x->f->lock);
}

int32_t op_recv_file(stoq_rt* rt, stoq_op* op) {
  int32_t status;
  stoq_xfer* x = xfer_new(rt, op, &status);
  if (!x) return status;
  stoq_stream* s = x->s;
  x->base = op->b;
  /* From here msquic's thread writes new data itself; records already on their way to JS come
   * back as STOQ_OP_STREAM_FILE_WRITE. */
  atomic_store(&s->xfer, x);
  /* The peer's FIN may have been processed before the transfer existed (every byte was then
   * already completed by JS): the file is whole as soon as what JS hands over is written. */
  if (atomic_load(&s->peer_fin)) file_on_peer_fin(s, x);
  /* Likewise a reset: the transfer ends as soon as what it has is written. */
  if (atomic_load(&s->peer_reset)) file_on_abort_receive(s);
  return 0;
}

int32_t op_file_write(stoq_rt* rt, stoq_op* op) {
  (void)rt;
  stoq_stream* s = (stoq_stream*)(uintptr_t)op->handle;
  stoq_xfer* x = atomic_load(&s->xfer);
  if (!x || x->sending || op->b == 0 || op->b > UINT32_MAX) return QUIC_STATUS_INVALID_STATE;
  pthread_mutex_lock(&x->f->lock);
  int err = x->error ? 0 : queue_write(x->f, x, (const uint8_t*)(uintptr_t)op->a, (uint32_t)op->b, op->c);
  if (err) {
    fail_io(x, err);
    rt->api->StreamShutdown(s->h, QUIC_STREAM_SHUTDOWN_FLAG_ABORT_RECEIVE, 0);
  }
  io_uring_submit(&x->f->ring);
  pthread_mutex_unlock(&x->f->lock);
  return 0;
}

/* ---------- the reaper ---------- */

static void* reaper(void* arg) {
  stoq_files* f = arg;
  for (;;) {
    struct io_uring_cqe* cqe;
    int r = io_uring_wait_cqe(&f->ring, &cqe);
    if (r == -EINTR) continue;
    if (r < 0) abort(); /* the ring itself failed: transfers could never finish */
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&f->ring, cqe);
    if (ud == UD_STOP) break;
    pthread_mutex_lock(&f->lock);
    if ((ud & 3u) == UD_READ) on_read(f, (stoq_fbuf*)(uintptr_t)(ud & ~(uint64_t)3u), res);
    else on_write(f, (stoq_fwrite*)(uintptr_t)(ud & ~(uint64_t)3u), res);
    pthread_mutex_unlock(&f->lock);
  }
  return NULL;
}

/* ---------- teardown, opening files ---------- */

void file_detach(stoq_stream* s) {
  stoq_xfer* x = atomic_load(&s->xfer);
  if (!x) return;
  stoq_files* f = x->f;
  pthread_mutex_lock(&f->lock);
  x->stream_gone = 1;
  unwait(f, x);
  /* Reads, writes and sends still in flight name the stream: wait them out. */
  while (x->inflight > 0) pthread_cond_wait(&f->idle, &f->lock);
  if (x->fd >= 0) close(x->fd);
  atomic_store(&s->xfer, NULL);
  pthread_mutex_unlock(&f->lock);
  free(x->ranges);
  free(x);
  count_add(s->rt, STOQ_COUNT_FILE_TRANSFERS, -1);
}

int32_t stoq_file_open(const char* path, uint32_t write, int32_t* fd, uint64_t* size) {
  int d = write ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                : open(path, O_RDONLY | O_CLOEXEC);
  if (d < 0) return errno;
  struct stat st;
  if (fstat(d, &st) != 0) {
    int e = errno;
    close(d);
    return e;
  }
  if (!write && !S_ISREG(st.st_mode)) {
    close(d);
    return S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
  }
  *fd = d;
  *size = (uint64_t)st.st_size;
  return 0;
}

void stoq_file_close(int32_t fd) { close(fd); }

uint32_t stoq_strerror(int32_t code, char* out, uint32_t cap) {
  if (cap == 0) return 0;
  char buf[256];
  const char* text = strerror_r(code, buf, sizeof buf);
  snprintf(out, cap, "%s", text ? text : "unknown error");
  return (uint32_t)strlen(out);
}
