/* Streams: the stream callback, open/close, and the send operation. */
#include "internal.h"

/* ---------- streams ---------- */

/* A slot comes back from msquic exactly once; a second return (or a slot sent while still in
 * flight) would hand one buffer to two owners, so stop there. */
static void slot_flight(stoq_rt* rt, uint32_t slot, uint8_t from, uint8_t to) {
  stoq_slab* slab = rt->slabs[slot / STOQ_SLAB_SLOTS];
  uint8_t expected = from;
  if (!atomic_compare_exchange_strong(&slab->in_flight[slot % STOQ_SLAB_SLOTS], &expected, to))
    abort();
}

QUIC_STATUS QUIC_API stream_cb(HQUIC h, void* ctx, QUIC_STREAM_EVENT* ev) {
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
        stoq_event e = {.type = STOQ_EV_STREAM_RECV, .id = s->id, .c = fin, .d = 1,
                        .f = ev->RECEIVE.AbsoluteOffset};
        push_events(rt, &e, 1);
        return QUIC_STATUS_SUCCESS;
      }
      struct stoq_xfer* x = atomic_load_explicit(&s->xfer, memory_order_acquire);
      if (x && file_receiving(x)) return file_on_receive(s, x, ev);
      /* Hand msquic's own buffers to JS and hold them with PENDING until JS completes them
       * (STOQ_OP_STREAM_RECV_COMPLETE), after copying them once or lending them in place. */
      stoq_event evs[8];
      uint32_t k = 0;
      uint64_t offset = ev->RECEIVE.AbsoluteOffset;
      for (uint32_t i = 0; i < n; i++) {
        uint32_t len = ev->RECEIVE.Buffers[i].Length;
        if (len == 0 && i + 1 < n) continue;
        stoq_event e = {.type = STOQ_EV_STREAM_RECV, .id = s->id,
                        .a = (uint64_t)(uintptr_t)ev->RECEIVE.Buffers[i].Buffer,
                        .b = len, .c = 0, .d = 0, .e = total, .f = offset};
        offset += len;
        if (k == 8) { push_events(rt, evs, k); k = 0; }
        evs[k++] = e;
      }
      evs[k - 1].c = fin; /* FIN and the total ride on the indication's last record */
      evs[k - 1].d = 1;
      push_events(rt, evs, k);
      return QUIC_STATUS_PENDING;
    }
    case QUIC_STREAM_EVENT_SEND_COMPLETE: {
      void* ctx = ev->SEND_COMPLETE.ClientContext;
      if (ctx && CTX_KIND(ctx) == CTX_FILE) {
        file_on_send_complete(s, ctx, ev->SEND_COMPLETE.Canceled);
        break;
      }
      /* slot: 0 = none, else the pool slot + 1 */
      uint64_t len = 0, slot = 0;
      if (ctx && CTX_KIND(ctx) == CTX_SLOT) {
        slot = CONTEXT_SLOT(ctx) + 1;
        len = pool_slot(rt, (uint32_t)slot - 1)->Length;
        slot_flight(rt, (uint32_t)slot - 1, 1, 0);
      } else if (ctx) {
        stoq_send* snd = CONTEXT_COPY(ctx);
        len = snd->qb.Length;
        if (snd->magic != STOQ_SEND_LIVE) abort(); /* a second free would corrupt the heap */
        snd->magic = STOQ_SEND_DEAD;
        free(snd);
      }
      if (ctx) {
        count_add(rt, STOQ_COUNT_SEND_BUFFERS, -1);
        count_add(rt, STOQ_COUNT_SENDS_FREED, 1);
      }
      /* A writer that is not blocked needs no wake-up per completion: JS learns of them in
       * batches. A blocked writer asked to be woken once enough has drained, or once a pool
       * slot comes back. */
      uint64_t left = atomic_fetch_sub(&s->outstanding, len) - len;
      uint64_t below = atomic_load(&s->wake_below);
      int wake = below != 0 && left < below;
      if (wake) atomic_store(&s->wake_below, 0);
      if (slot && atomic_load(&rt->slot_waiter) && atomic_exchange(&rt->slot_waiter, 0)) wake = 1;
      stoq_event e = {.type = STOQ_EV_STREAM_SEND_COMPLETE, .id = s->id, .a = len,
                      .b = ev->SEND_COMPLETE.Canceled, .c = slot};
      push_events_wake(rt, &e, 1, wake);
      break;
    }
    case QUIC_STREAM_EVENT_PEER_SEND_SHUTDOWN: {
      /* Every byte up to the FIN was completed: a file receiving them is whole. (A transfer
       * attached after this store sees the flag: both sides are sequentially consistent.) */
      atomic_store(&s->peer_fin, 1);
      struct stoq_xfer* x = atomic_load(&s->xfer);
      if (x) file_on_peer_fin(s, x);
      push(rt, STOQ_EV_STREAM_PEER_SEND_SHUTDOWN, s->id, 0, 0, 0, 0);
      break;
    }
    case QUIC_STREAM_EVENT_PEER_SEND_ABORTED:
      atomic_store(&s->peer_reset, 1);
      push(rt, STOQ_EV_STREAM_PEER_SEND_ABORTED, s->id, 0, ev->PEER_SEND_ABORTED.ErrorCode, 0, 0);
      /* A file receiving the stream ends now (its FILE_DONE follows the record above), not when
       * the stream does: on a bidirectional stream that waits for this side's sending too. */
      file_on_abort_receive(s);
      break;
    case QUIC_STREAM_EVENT_PEER_RECEIVE_ABORTED:
      push(rt, STOQ_EV_STREAM_PEER_RECV_ABORTED, s->id, 0, ev->PEER_RECEIVE_ABORTED.ErrorCode, 0, 0);
      break;
    case QUIC_STREAM_EVENT_SEND_SHUTDOWN_COMPLETE:
      push(rt, STOQ_EV_STREAM_SEND_SHUTDOWN_COMPLETE, s->id, 0, ev->SEND_SHUTDOWN_COMPLETE.Graceful,
           0, 0);
      break;
    case QUIC_STREAM_EVENT_SHUTDOWN_COMPLETE: {
      struct stoq_xfer* x = atomic_load_explicit(&s->xfer, memory_order_acquire);
      if (x) file_on_stream_shutdown(s, x);
      push(rt, STOQ_EV_STREAM_SHUTDOWN_COMPLETE, s->id, ev->SHUTDOWN_COMPLETE.ConnectionCloseStatus,
           ev->SHUTDOWN_COMPLETE.ConnectionShutdown, ev->SHUTDOWN_COMPLETE.ConnectionErrorCode,
           ev->SHUTDOWN_COMPLETE.ConnectionClosedRemotely);
      break;
    }
    case QUIC_STREAM_EVENT_PEER_ACCEPTED:
      push(rt, STOQ_EV_STREAM_PEER_ACCEPTED, s->id, 0, 0, 0, 0);
      break;
    case QUIC_STREAM_EVENT_IDEAL_SEND_BUFFER_SIZE:
      push(rt, STOQ_EV_STREAM_IDEAL_SEND_BUFFER, s->id, 0, ev->IDEAL_SEND_BUFFER_SIZE.ByteCount, 0, 0);
      break;
    default:
      break;
  }
  return QUIC_STATUS_SUCCESS;
}

stoq_stream* stream_new(stoq_rt* rt) {
  stoq_stream* s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->rt = rt;
  s->id = atomic_fetch_add(&rt->next_id, 1);
  count_add(rt, STOQ_COUNT_STREAMS, 1);
  return s;
}

stoq_stream* stoq_stream_open(stoq_conn* c, uint32_t flags, int32_t* status) {
  stoq_rt* rt = c->rt;
  stoq_stream* s = stream_new(rt);
  if (!s) { *status = QUIC_STATUS_OUT_OF_MEMORY; return NULL; }
  QUIC_STATUS st = rt->api->StreamOpen(
      c->h,
      (flags & STOQ_OPEN_UNIDIRECTIONAL) ? QUIC_STREAM_OPEN_FLAG_UNIDIRECTIONAL
                                          : QUIC_STREAM_OPEN_FLAG_NONE,
      stream_cb, s, &s->h);
  if (QUIC_SUCCEEDED(st)) {
    /* Without FAIL_BLOCKED a stream beyond the peer's credit starts anyway (START_COMPLETE says
     * PeerAccepted = 0) and PEER_ACCEPTED follows once credit arrives: JS waits for that. */
    QUIC_STREAM_START_FLAGS start = QUIC_STREAM_START_FLAG_SHUTDOWN_ON_FAIL |
                                    QUIC_STREAM_START_FLAG_INDICATE_PEER_ACCEPT;
    if (flags & STOQ_OPEN_FAIL_BLOCKED) start |= QUIC_STREAM_START_FLAG_FAIL_BLOCKED;
    st = rt->api->StreamStart(s->h, start);
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

int32_t stoq_stream_stats(stoq_stream* s, uint64_t* out, uint32_t n) {
  QUIC_STREAM_STATISTICS st;
  uint32_t len = sizeof st;
  QUIC_STATUS status = s->rt->api->GetParam(s->h, QUIC_PARAM_STREAM_STATISTICS, &len, &st);
  if (QUIC_FAILED(status)) return status;
  uint64_t v[8] = {st.ConnBlockedBySchedulingUs, st.ConnBlockedByPacingUs,
                   st.ConnBlockedByAmplificationProtUs, st.ConnBlockedByCongestionControlUs,
                   st.ConnBlockedByFlowControlUs, st.StreamBlockedByIdFlowControlUs,
                   st.StreamBlockedByFlowControlUs, st.StreamBlockedByAppUs};
  for (uint32_t i = 0; i < n && i < 8; i++) out[i] = v[i];
  return 0;
}

void stoq_stream_close(stoq_stream* s) {
  if (!s) return;
  file_detach(s);
  s->rt->api->StreamClose(s->h);
  count_add(s->rt, STOQ_COUNT_STREAMS, -1);
  free(s);
}

int32_t op_stream_send(stoq_rt* rt, stoq_op* op) {
  stoq_stream* s = (stoq_stream*)(uintptr_t)op->handle;
  uint64_t len = op->b;
  QUIC_SEND_FLAGS flags = QUIC_SEND_FLAG_NONE;
  if (op->c & STOQ_SEND_FIN) flags |= QUIC_SEND_FLAG_FIN;
  if (op->c & STOQ_SEND_0RTT) flags |= QUIC_SEND_FLAG_ALLOW_0_RTT;
  if (len == 0) {
    /* A bare FIN needs no buffer, so no SEND_COMPLETE bookkeeping. */
    return rt->api->StreamSend(s->h, NULL, 0, flags, NULL);
  }
  uint32_t slot = (uint32_t)op->a;
  QUIC_BUFFER* qb = op->a <= UINT32_MAX ? pool_slot(rt, slot) : NULL;
  if (!qb || op->d > STOQ_SLOT_SIZE || len > STOQ_SLOT_SIZE - op->d)
    return QUIC_STATUS_INVALID_PARAMETER;
  slot_flight(rt, slot, 0, 1);
  stoq_slab* slab = rt->slabs[slot / STOQ_SLAB_SLOTS];
  qb->Buffer = slab->mem + (size_t)(slot % STOQ_SLAB_SLOTS) * STOQ_SLOT_SIZE + op->d;
  qb->Length = (uint32_t)len;
  count_add(rt, STOQ_COUNT_SEND_BUFFERS, 1);
  count_add(rt, STOQ_COUNT_SENDS_ALLOCATED, 1);
  atomic_fetch_add(&s->outstanding, len);
  QUIC_STATUS st = rt->api->StreamSend(s->h, qb, 1, flags, SLOT_CONTEXT(slot));
  if (QUIC_FAILED(st)) {
    /* msquic did not take the slot: SEND_COMPLETE will never come, so it is JS's again. */
    atomic_fetch_sub(&s->outstanding, len);
    slot_flight(rt, slot, 1, 0);
    count_add(rt, STOQ_COUNT_SEND_BUFFERS, -1);
    count_add(rt, STOQ_COUNT_SENDS_FREED, 1);
  }
  return st;
}

int32_t op_stream_send_copy(stoq_rt* rt, stoq_op* op) {
  stoq_stream* s = (stoq_stream*)(uintptr_t)op->handle;
  uint64_t len = op->b;
  if (len == 0 || len > UINT32_MAX) return QUIC_STATUS_INVALID_PARAMETER;
  QUIC_SEND_FLAGS flags = QUIC_SEND_FLAG_NONE;
  if (op->c & STOQ_SEND_FIN) flags |= QUIC_SEND_FLAG_FIN;
  if (op->c & STOQ_SEND_0RTT) flags |= QUIC_SEND_FLAG_ALLOW_0_RTT;
  stoq_send* snd = malloc(sizeof *snd + len);
  if (!snd) return QUIC_STATUS_OUT_OF_MEMORY;
  memcpy(snd->data, (const void*)(uintptr_t)op->a, len);
  snd->qb.Buffer = snd->data;
  snd->qb.Length = (uint32_t)len;
  snd->magic = STOQ_SEND_LIVE;
  count_add(rt, STOQ_COUNT_SEND_BUFFERS, 1);
  count_add(rt, STOQ_COUNT_SENDS_ALLOCATED, 1);
  atomic_fetch_add(&s->outstanding, len);
  QUIC_STATUS st = rt->api->StreamSend(s->h, &snd->qb, 1, flags, COPY_CONTEXT(snd));
  if (QUIC_FAILED(st)) {
    /* msquic did not take the buffer: SEND_COMPLETE will never come, so free it now. */
    atomic_fetch_sub(&s->outstanding, len);
    count_add(rt, STOQ_COUNT_SEND_BUFFERS, -1);
    count_add(rt, STOQ_COUNT_SENDS_FREED, 1);
    free(snd);
  }
  return st;
}
