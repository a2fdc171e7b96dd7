/* The runtime: msquic registration, completion queue, and batched submission. */
#include "internal.h"

#include <sys/mman.h>

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
void push_events_wake(stoq_rt* rt, const stoq_event* evs, uint32_t n, int wake) {
  pthread_mutex_lock(&rt->lock);
  for (uint32_t i = 0; i < n; i++) push_locked(rt, &evs[i]);
  if (wake) wake_locked(rt);
  pthread_mutex_unlock(&rt->lock);
  count_add(rt, STOQ_COUNT_EVENTS, n);
}

void push_events(stoq_rt* rt, const stoq_event* evs, uint32_t n) {
  push_events_wake(rt, evs, n, 1);
}

void push(stoq_rt* rt, uint32_t type, uint64_t id, int32_t status, uint64_t a, uint64_t b,
                 uint64_t c) {
  stoq_event ev = {.type = type, .status = status, .id = id, .a = a, .b = b, .c = c};
  push_events(rt, &ev, 1);
}

/* ---------- UDP send segmentation (GSO) ---------- */

/* Exported by STOQ's msquic build (native/msquic/build.sh, edit 6); absent (NULL) elsewhere. */
extern int StoqSendSegmentationOff __attribute__((weak));
/* msquicp.h (not shipped with the crate's headers): the datapath's features, once it is up. */
#define STOQ_PARAM_GLOBAL_DATAPATH_FEATURES 0x81000005u
#define STOQ_DATAPATH_FEATURE_SEND_SEGMENTATION 0x4u

uint32_t stoq_abi_version(void) { return STOQ_ABI_VERSION; }

stoq_rt* stoq_rt_open(uint32_t profile, uint32_t flags, int32_t* status) {
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
  pthread_mutex_init(&rt->files_lock, NULL);
  if (flags & STOQ_RT_NO_GSO) {
    if (!&StoqSendSegmentationOff) {
      *status = QUIC_STATUS_NOT_SUPPORTED;
      io_uring_queue_exit(&rt->uring);
      goto fail;
    }
    /* Read when msquic starts its datapath: the first registration of the process. */
    StoqSendSegmentationOff = 1;
  }
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
  files_stop(rt);
  MsQuicClose(rt->api);
  io_uring_queue_exit(&rt->uring);
  close(rt->efd);
  /* Records still queued may own ticket copies: free them so nothing leaks. */
  for (uint32_t i = 0; i < rt->count; i++) {
    stoq_event* ev = &rt->ring[(rt->head + i) % rt->cap];
    if (ev->type == STOQ_EV_CONN_TICKET) free((void*)(uintptr_t)ev->a);
  }
  for (uint32_t i = 0; i < atomic_load(&rt->nslabs); i++) {
    munmap(rt->slabs[i]->mem, (size_t)STOQ_SLAB_SLOTS * STOQ_SLOT_SIZE);
    free(rt->slabs[i]);
  }
  pthread_mutex_destroy(&rt->files_lock);
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

int32_t stoq_gso(stoq_rt* rt) {
  uint32_t features = 0, len = sizeof features;
  QUIC_STATUS st =
      rt->api->GetParam(NULL, STOQ_PARAM_GLOBAL_DATAPATH_FEATURES, &len, &features);
  if (QUIC_FAILED(st)) return -1;
  return (features & STOQ_DATAPATH_FEATURE_SEND_SEGMENTATION) != 0;
}

/* ---------- the send pool ---------- */

uint8_t* stoq_pool_grow(stoq_rt* rt, uint32_t* first_slot) {
  /* Only JS's thread adds slabs; msquic's threads read slabs[] for slots JS already sent, which
   * the submission itself orders after this store. */
  uint32_t n = atomic_load(&rt->nslabs);
  if (n == STOQ_MAX_SLABS) return NULL;
  stoq_slab* slab = calloc(1, sizeof *slab);
  if (!slab) return NULL;
  /* Populated now: a slab is added because writers need it at once. */
  slab->mem = mmap(NULL, (size_t)STOQ_SLAB_SLOTS * STOQ_SLOT_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (slab->mem == MAP_FAILED) {
    free(slab);
    return NULL;
  }
  for (uint32_t i = 0; i < STOQ_SLAB_SLOTS; i++)
    slab->qb[i].Buffer = slab->mem + (size_t)i * STOQ_SLOT_SIZE;
  rt->slabs[n] = slab;
  atomic_store(&rt->nslabs, n + 1);
  count_add(rt, STOQ_COUNT_POOL_SLABS, 1);
  *first_slot = n * STOQ_SLAB_SLOTS;
  return slab->mem;
}

void stoq_pool_wake(stoq_rt* rt) {
  /* A slot that came back before this store is already queued, and JS never sleeps with
   * records queued, so no wake-up is lost. */
  atomic_store(&rt->slot_waiter, 1);
}

void stoq_pool_trim(stoq_rt* rt, uint32_t slab) {
  if (slab >= atomic_load(&rt->nslabs)) return;
  madvise(rt->slabs[slab]->mem, (size_t)STOQ_SLAB_SLOTS * STOQ_SLOT_SIZE, MADV_DONTNEED);
}

QUIC_BUFFER* pool_slot(stoq_rt* rt, uint32_t slot) {
  uint32_t slab = slot / STOQ_SLAB_SLOTS;
  if (slab >= atomic_load(&rt->nslabs)) return NULL;
  return &rt->slabs[slab]->qb[slot % STOQ_SLAB_SLOTS];
}

void stoq_buf_free(stoq_rt* rt, void* buf) {
  if (!buf) return;
  free(buf);
  count_add(rt, STOQ_COUNT_RECV_BUFFERS, -1);
}

void stoq_close_batch(stoq_rt* rt, const uint64_t* items, uint32_t n) {
  (void)rt;
  for (uint32_t i = 0; i < n; i++) {
    void* handle = (void*)(uintptr_t)items[2 * i + 1];
    if (items[2 * i] == STOQ_CLOSE_STREAM) stoq_stream_close(handle);
    else if (items[2 * i] == STOQ_CLOSE_CONN) stoq_conn_close(handle);
  }
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
      case STOQ_OP_STREAM_SHUTDOWN: {
        stoq_stream* s = (stoq_stream*)(uintptr_t)op->handle;
        st = rt->api->StreamShutdown(s->h, (QUIC_STREAM_SHUTDOWN_FLAGS)op->a, op->b);
        if (op->a & QUIC_STREAM_SHUTDOWN_FLAG_ABORT_RECEIVE) file_on_abort_receive(s);
        break;
      }
      case STOQ_OP_CONN_SHUTDOWN:
        rt->api->ConnectionShutdown(((stoq_conn*)(uintptr_t)op->handle)->h,
                                    (QUIC_CONNECTION_SHUTDOWN_FLAGS)op->a, op->b);
        st = 0;
        break;
      case STOQ_OP_DGRAM_SEND:
        st = op_dgram_send(rt, op);
        break;
      case STOQ_OP_CONN_START:
        st = op_conn_start(rt, op);
        break;
      case STOQ_OP_STREAM_SEND_COPY:
        st = op_stream_send_copy(rt, op);
        break;
      case STOQ_OP_STREAM_SEND_FILE:
        st = op_send_file(rt, op);
        break;
      case STOQ_OP_STREAM_RECV_FILE:
        st = op_recv_file(rt, op);
        break;
      case STOQ_OP_STREAM_FILE_WRITE:
        st = op_file_write(rt, op);
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
