/* Listeners. */
#include "internal.h"

#include <netinet/in.h>
#include <sys/socket.h>

/* ---------- listeners ---------- */

static int is_ipv4(const QUIC_ADDR* a) {
  if (a->Ip.sa_family == AF_INET) return 1;
  return a->Ip.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->Ipv6.sin6_addr);
}

/* msquic binds listener sockets with SO_REUSEPORT, so a second listener on a taken port
 * (in this process or another) would start fine and silently share or miss the traffic. A plain
 * bind of the same address tells whether anyone holds the port; it is released at once, so a
 * listener owns its port exclusively except for that instant. */
static QUIC_STATUS port_free(const QUIC_ADDR* local) {
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return (QUIC_STATUS)errno;
  int off = 0; /* dual-stack, as msquic's own sockets */
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  QUIC_STATUS st = bind(fd, (const struct sockaddr*)&local->Ipv6, sizeof local->Ipv6) == 0
                       ? QUIC_STATUS_SUCCESS
                       : (QUIC_STATUS)errno;
  close(fd);
  return st == EADDRINUSE ? QUIC_STATUS_ADDRESS_IN_USE : st;
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
    c->cfg = cfg;
    QUIC_STATUS st = rt->api->ConnectionSetConfiguration(c->h, cfg->h);
    if (QUIC_FAILED(st)) {
      /* Returning failure makes msquic close the handle itself. */
      count_add(rt, STOQ_COUNT_CONNECTIONS, -1);
      conn_dgram_free(c);
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
  QUIC_STATUS st = port != 0 ? port_free(&local) : QUIC_STATUS_SUCCESS;
  if (QUIC_SUCCEEDED(st)) st = rt->api->ListenerOpen(rt->registration, listener_cb, l, &l->h);
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
