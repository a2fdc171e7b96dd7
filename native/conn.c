/* Connections: the connection callback, connect, stats, addresses, datagram sends. */
#include "internal.h"

#include <netdb.h>

#include <openssl/sha.h>

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

QUIC_STATUS QUIC_API conn_cb(HQUIC h, void* ctx, QUIC_CONNECTION_EVENT* ev) {
  (void)h;
  stoq_conn* c = ctx;
  stoq_rt* rt = c->rt;
  switch (ev->Type) {
    case QUIC_CONNECTION_EVENT_CONNECTED:
      c->alpn_len = ev->CONNECTED.NegotiatedAlpnLength;
      memcpy(c->alpn, ev->CONNECTED.NegotiatedAlpn, c->alpn_len);
      if (!c->dgram_state_seen) conn_report_dgram_state(c);
      {
        uint32_t ll = sizeof c->local, rl = sizeof c->remote;
        if (QUIC_SUCCEEDED(rt->api->GetParam(c->h, QUIC_PARAM_CONN_LOCAL_ADDRESS, &ll, &c->local)) &&
            QUIC_SUCCEEDED(rt->api->GetParam(c->h, QUIC_PARAM_CONN_REMOTE_ADDRESS, &rl, &c->remote)))
          atomic_store_explicit(&c->addrs_known, 1, memory_order_release);
      }
      /* A server's ticket carries the hash of the client certificate it verified, so that a
       * resumed connection knows who the client is (RESUMED hands it back). */
      if (c->cfg->server_resumption)
        rt->api->ConnectionSendResumptionTicket(c->h, QUIC_SEND_RESUMPTION_FLAG_FINAL,
                                                c->peer_hashed ? 32 : 0,
                                                c->peer_hashed ? c->peer_hash : NULL);
      push(rt, STOQ_EV_CONN_CONNECTED, c->id, 0, ev->CONNECTED.SessionResumed, 0, 0);
      break;
    case QUIC_CONNECTION_EVENT_LOCAL_ADDRESS_CHANGED:
    case QUIC_CONNECTION_EVENT_PEER_ADDRESS_CHANGED:
      /* Migration: the copies are stale, reads go to msquic again. */
      atomic_store_explicit(&c->addrs_known, 0, memory_order_release);
      break;
    case QUIC_CONNECTION_EVENT_RESUMED: {
      c->resumed = 1;
      stoq_event e = {.type = STOQ_EV_CONN_RESUMED, .id = c->id};
      if (ev->RESUMED.ResumptionStateLength == 32) {
        memcpy(&e.a, ev->RESUMED.ResumptionState, 32);
        /* The ticket this connection issues at CONNECTED names the same client: a session
         * resumed from it must know who the client is as well. */
        memcpy(c->peer_hash, ev->RESUMED.ResumptionState, 32);
        c->peer_hashed = 1;
      }
      push_events(rt, &e, 1);
      break;
    }
    case QUIC_CONNECTION_EVENT_RESUMPTION_TICKET_RECEIVED: {
      /* Valid only in this callback: JS keeps a copy per server for later connects. */
      uint32_t n = ev->RESUMPTION_TICKET_RECEIVED.ResumptionTicketLength;
      uint8_t* p = n ? malloc(n) : NULL;
      if (!p) break;
      memcpy(p, ev->RESUMPTION_TICKET_RECEIVED.ResumptionTicket, n);
      count_add(rt, STOQ_COUNT_RECV_BUFFERS, 1);
      push(rt, STOQ_EV_CONN_TICKET, c->id, 0, (uint64_t)(uintptr_t)p, n, 0);
      break;
    }
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
      QUIC_STREAM_OPEN_FLAGS f = ev->PEER_STREAM_STARTED.Flags;
      /* The peer gets this stream's credit back only when JS closes the handle, which it does
       * once the application accepted the stream and it ended: streams nobody accepted keep
       * their credit, so the peer's stream limit bounds how many (and how much data) it can
       * make us hold. */
      ev->PEER_STREAM_STARTED.Flags |= QUIC_STREAM_OPEN_FLAG_DELAY_ID_FC_UPDATES;
      stoq_event e = {.type = STOQ_EV_CONN_PEER_STREAM, .id = c->id, .a = s->id,
                      .b = (f & QUIC_STREAM_OPEN_FLAG_UNIDIRECTIONAL) ? 1 : 0,
                      .c = (uint64_t)(uintptr_t)s, .d = (f & QUIC_STREAM_OPEN_FLAG_0_RTT) ? 1 : 0};
      push_events(rt, &e, 1);
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
    case QUIC_CONNECTION_EVENT_DATAGRAM_RECEIVED:
      conn_dgram_received(c, ev->DATAGRAM_RECEIVED.Buffer);
      break;
    case QUIC_CONNECTION_EVENT_DATAGRAM_SEND_STATE_CHANGED:
      if (QUIC_DATAGRAM_SEND_STATE_IS_FINAL(ev->DATAGRAM_SEND_STATE_CHANGED.State) &&
          ev->DATAGRAM_SEND_STATE_CHANGED.ClientContext) {
        free(ev->DATAGRAM_SEND_STATE_CHANGED.ClientContext);
        count_add(rt, STOQ_COUNT_DGRAM_BUFFERS, -1);
        ev->DATAGRAM_SEND_STATE_CHANGED.ClientContext = NULL;
      }
      break;
    case QUIC_CONNECTION_EVENT_PEER_CERTIFICATE_RECEIVED: {
      /* Portable certificates: a DER leaf and a PKCS#7 chain, valid only in this callback. */
      const QUIC_BUFFER* leaf = (const QUIC_BUFFER*)ev->PEER_CERTIFICATE_RECEIVED.Certificate;
      const QUIC_BUFFER* chain = (const QUIC_BUFFER*)ev->PEER_CERTIFICATE_RECEIVED.Chain;
      if (!leaf || leaf->Length == 0) {
        /* msquic asks again at the end of a handshake that carried no certificate: fine for a
         * resumed session (its first handshake checked one), a refusal otherwise. */
        if (c->resumed) {
          c->peer_ok = 1;
          return QUIC_STATUS_SUCCESS;
        }
        push(rt, STOQ_EV_CONN_PEER_REJECTED, c->id, 0, STOQ_REJECT_MISSING, 0, 0);
        return QUIC_STATUS_CERT_NO_CERT;
      }
      if (!(c->cfg->cred_flags & STOQ_CRED_CLIENT)) {
        SHA256(leaf->Buffer, leaf->Length, c->peer_hash);
        c->peer_hashed = 1;
      }
      if (c->cfg->cred_flags & STOQ_CRED_VERIFY_CHAIN) {
        uint32_t reason = 0;
        int err = config_verify_peer(c->cfg, c->server_name, leaf, chain, &reason);
        if (err != 0) {
          push(rt, STOQ_EV_CONN_PEER_REJECTED, c->id, err, reason, 0, 0);
          return QUIC_STATUS_BAD_CERTIFICATE;
        }
      }
      if (!(c->cfg->cred_flags & STOQ_CRED_DEFER)) {
        c->peer_ok = 1;
        return QUIC_STATUS_SUCCESS;
      }
      /* JS decides: copy the certificates and finish with stoq_conn_cert_complete. */
      conn_drop_cert(c);
      c->peer_cert = dup_buffer(leaf);
      c->peer_chain = dup_buffer(chain);
      c->peer_ok = 1; /* a refusal from JS fails the handshake itself */
      stoq_event e = {.type = STOQ_EV_CONN_PEER_CERT, .id = c->id,
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

/* ---------- received datagrams: a bounded queue JS takes from ---------- */

void conn_dgram_received(stoq_conn* c, const QUIC_BUFFER* b) {
  stoq_rt* rt = c->rt;
  /* Datagram buffers live only for this callback: copy. */
  uint8_t* p = malloc(b->Length ? b->Length : 1);
  if (!p) {
    pthread_mutex_lock(&c->dgram_lock);
    c->dgram_dropped++;
    pthread_mutex_unlock(&c->dgram_lock);
    return;
  }
  memcpy(p, b->Buffer, b->Length);
  uint8_t* dropped = NULL;
  int signal = 0;
  pthread_mutex_lock(&c->dgram_lock);
  if (!c->dgram_buf) {
    uint32_t cap = c->cfg->dgram_queue ? c->cfg->dgram_queue : 1;
    c->dgram_buf = calloc(cap, sizeof *c->dgram_buf);
    c->dgram_len = calloc(cap, sizeof *c->dgram_len);
    if (!c->dgram_buf || !c->dgram_len) {
      free(c->dgram_buf);
      free(c->dgram_len);
      c->dgram_buf = NULL;
      c->dgram_len = NULL;
      c->dgram_dropped++;
      pthread_mutex_unlock(&c->dgram_lock);
      free(p);
      return;
    }
    c->dgram_cap = cap;
  }
  if (c->dgram_count == c->dgram_cap) {
    /* Full: the oldest goes (counted), as quinn does; the newest is what a reader wants. */
    dropped = c->dgram_buf[c->dgram_head];
    c->dgram_head = (c->dgram_head + 1) % c->dgram_cap;
    c->dgram_count--;
    c->dgram_dropped++;
  }
  uint32_t at = (c->dgram_head + c->dgram_count) % c->dgram_cap;
  c->dgram_buf[at] = p;
  c->dgram_len[at] = b->Length;
  c->dgram_count++;
  if (!c->dgram_signaled) c->dgram_signaled = signal = 1;
  pthread_mutex_unlock(&c->dgram_lock);
  if (dropped) free(dropped);
  else count_add(rt, STOQ_COUNT_DGRAM_QUEUED, 1);
  if (signal) push(rt, STOQ_EV_CONN_DGRAM_READY, c->id, 0, 0, 0, 0);
}

int32_t stoq_conn_dgram_take(stoq_conn* c, uint8_t* out, uint32_t cap) {
  pthread_mutex_lock(&c->dgram_lock);
  if (c->dgram_count == 0) {
    c->dgram_signaled = 0; /* JS saw it empty: the next arrival tells it again */
    pthread_mutex_unlock(&c->dgram_lock);
    return -1;
  }
  uint32_t len = c->dgram_len[c->dgram_head];
  if (len > cap) {
    pthread_mutex_unlock(&c->dgram_lock);
    return -2;
  }
  uint8_t* p = c->dgram_buf[c->dgram_head];
  c->dgram_head = (c->dgram_head + 1) % c->dgram_cap;
  c->dgram_count--;
  pthread_mutex_unlock(&c->dgram_lock);
  memcpy(out, p, len);
  free(p);
  count_add(c->rt, STOQ_COUNT_DGRAM_QUEUED, -1);
  return (int32_t)len;
}

void conn_dgram_free(stoq_conn* c) {
  for (uint32_t i = 0; i < c->dgram_count; i++)
    free(c->dgram_buf[(c->dgram_head + i) % c->dgram_cap]);
  count_add(c->rt, STOQ_COUNT_DGRAM_QUEUED, -(int64_t)c->dgram_count);
  free(c->dgram_buf);
  free(c->dgram_len);
  pthread_mutex_destroy(&c->dgram_lock);
}

stoq_conn* conn_new(stoq_rt* rt) {
  stoq_conn* c = calloc(1, sizeof *c);
  if (!c) return NULL;
  pthread_mutex_init(&c->dgram_lock, NULL);
  c->rt = rt;
  c->id = atomic_fetch_add(&rt->next_id, 1);
  count_add(rt, STOQ_COUNT_CONNECTIONS, 1);
  return c;
}

int parse_addr6(const char* addr, uint16_t port, QUIC_ADDR* out) {
  memset(out, 0, sizeof *out);
  out->Ipv6.sin6_family = AF_INET6;
  out->Ipv6.sin6_port = htons(port);
  return inet_pton(AF_INET6, addr, &out->Ipv6.sin6_addr) == 1;
}

stoq_conn* stoq_conn_connect(stoq_rt* rt, stoq_config* cfg, const char* server_name,
                             const char* addr, uint16_t port, const uint8_t* ticket,
                             uint32_t ticket_len, uint32_t flags, const char* local_addr,
                             uint16_t local_port, int32_t* status) {
  stoq_conn* c = conn_new(rt);
  if (!c) { *status = QUIC_STATUS_OUT_OF_MEMORY; return NULL; }
  c->cfg = cfg;
  QUIC_STATUS st = QUIC_STATUS_OUT_OF_MEMORY;
  if ((cfg->cred_flags & STOQ_CRED_VERIFY_CHAIN) && !(c->server_name = strdup(server_name)))
    goto fail;
  st = rt->api->ConnectionOpen(rt->registration, conn_cb, c, &c->h);
  if (QUIC_FAILED(st)) goto fail;
  if (flags & STOQ_CONNECT_SHARE_BINDING) {
    BOOLEAN share = TRUE;
    st = rt->api->SetParam(c->h, QUIC_PARAM_CONN_SHARE_UDP_BINDING, sizeof share, &share);
    if (QUIC_SUCCEEDED(st) && local_addr) {
      QUIC_ADDR local;
      st = parse_addr6(local_addr, local_port, &local)
               ? rt->api->SetParam(c->h, QUIC_PARAM_CONN_LOCAL_ADDRESS, sizeof local, &local)
               : QUIC_STATUS_INVALID_ADDRESS;
    }
    if (QUIC_FAILED(st)) { rt->api->ConnectionClose(c->h); goto fail; }
  }
  if (ticket && ticket_len > 0) {
    /* A ticket msquic cannot use (other ALPN, expired) is refused here: connect cold. */
    (void)rt->api->SetParam(c->h, QUIC_PARAM_CONN_RESUMPTION_TICKET, ticket_len, ticket);
  }
  /* msquic takes an IP literal as server name without resolving it; only a name that differs
   * from the address needs the address set apart. (Before ConnectionStart, STOQ's msquic build
   * runs these SetParam calls inline: native/msquic/build.sh, edit 8.) */
  if (addr && strcmp(addr, server_name) != 0) {
    QUIC_ADDR remote;
    if (!parse_addr6(addr, port, &remote)) {
      st = QUIC_STATUS_INVALID_ADDRESS;
    } else {
      st = rt->api->SetParam(c->h, QUIC_PARAM_CONN_REMOTE_ADDRESS, sizeof remote, &remote);
    }
    if (QUIC_FAILED(st)) { rt->api->ConnectionClose(c->h); goto fail; }
  }
  if (flags & STOQ_CONNECT_DEFER_START) {
    c->start_port = port;
    if (!(c->start_name = strdup(server_name))) {
      st = QUIC_STATUS_OUT_OF_MEMORY;
      rt->api->ConnectionClose(c->h);
      goto fail;
    }
  } else {
    st = rt->api->ConnectionStart(c->h, cfg->h, QUIC_ADDRESS_FAMILY_INET6, server_name, port);
    if (QUIC_FAILED(st)) { rt->api->ConnectionClose(c->h); goto fail; }
  }
  *status = 0;
  return c;
fail:
  count_add(rt, STOQ_COUNT_CONNECTIONS, -1);
  free(c->server_name);
  free(c->start_name);
  conn_dgram_free(c);
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
  pthread_mutex_lock(&c->dgram_lock);
  v[STOQ_STAT_DGRAM_DROPPED] = c->dgram_dropped;
  pthread_mutex_unlock(&c->dgram_lock);
  for (uint32_t i = 0; i < n && i < STOQ_STAT_MAX; i++) out[i] = v[i];
  return 0;
}

int32_t stoq_conn_address(stoq_conn* c, uint32_t remote, uint8_t* out16, uint32_t* port) {
  QUIC_ADDR a;
  if (atomic_load_explicit(&c->addrs_known, memory_order_acquire)) {
    a = remote ? c->remote : c->local; /* as of CONNECTED: no round trip to msquic's thread */
  } else {
    uint32_t len = sizeof a;
    QUIC_STATUS s = c->rt->api->GetParam(
        c->h, remote ? QUIC_PARAM_CONN_REMOTE_ADDRESS : QUIC_PARAM_CONN_LOCAL_ADDRESS, &len, &a);
    if (QUIC_FAILED(s)) return s;
  }
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
  free(c->server_name);
  free(c->start_name);
  conn_dgram_free(c);
  count_add(c->rt, STOQ_COUNT_CONNECTIONS, -1);
  free(c);
}

int32_t op_conn_start(stoq_rt* rt, stoq_op* op) {
  stoq_conn* c = (stoq_conn*)(uintptr_t)op->handle;
  if (!c->start_name) return QUIC_STATUS_INVALID_STATE;
  QUIC_STATUS st = rt->api->ConnectionStart(c->h, c->cfg->h, QUIC_ADDRESS_FAMILY_INET6,
                                            c->start_name, c->start_port);
  free(c->start_name);
  c->start_name = NULL;
  /* A failed start never reaches SHUTDOWN_COMPLETE by itself: shut the connection down so it
   * does, and JS frees it as usual. */
  if (QUIC_FAILED(st)) rt->api->ConnectionShutdown(c->h, QUIC_CONNECTION_SHUTDOWN_FLAG_SILENT, 0);
  return st;
}

int32_t op_dgram_send(stoq_rt* rt, stoq_op* op) {
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

int32_t stoq_resolve6(const char* name, uint8_t* out16) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET6;
  hints.ai_socktype = SOCK_DGRAM;
  int r = getaddrinfo(name, NULL, &hints, &res);
  if (r != 0) return r < 0 ? r : -r;
  int32_t out = EAI_NONAME;
  for (struct addrinfo* ai = res; ai; ai = ai->ai_next) {
    const struct sockaddr_in6* a = (const struct sockaddr_in6*)ai->ai_addr;
    if (ai->ai_family != AF_INET6 || IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) continue;
    memcpy(out16, &a->sin6_addr, 16);
    out = 0;
    break;
  }
  freeaddrinfo(res);
  return out;
}
