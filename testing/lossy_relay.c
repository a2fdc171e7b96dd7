/*
 * lossy_relay: a UDP relay on ::1 that impairs the path between a QUIC client and server.
 *
 *   lossy_relay <server-port> [seed]
 *
 * Clients send to the relay's port; each client address gets its own upstream socket to
 * [::1]:<server-port>, so the server sees one peer per client (as quic-go's integration-test
 * proxy does). "up" is client -> server, "down" is server -> client.
 *
 * Per direction, every datagram goes through, in order:
 *   black hole  dropped while the direction is black-holed (also when it leaves the queue);
 *   loss        dropped with probability `loss`;
 *   duplicate   a second copy is made with probability `dup`;
 *   link        when `rate` (Mbit/s) is set, serialised at that rate behind earlier datagrams,
 *               dropped when more than `queue` bytes are waiting (a drop-tail bottleneck);
 *   delay       held for `delay` ms, plus `reorder_delay` ms with probability `reorder`, so
 *               that later datagrams overtake it.
 *
 * Control: one command per line on stdin, one reply line per command on stdout. The reply is
 * sent once the command is in force, so a caller that waits for it needs no sleeps.
 *
 *   set <up|down|both> key=value...   keys: loss dup reorder (0..1), delay reorder_delay (ms),
 *                                     rate (Mbit/s, 0 = unlimited), queue (bytes)
 *   blackhole <up|down|both|off>      cut one or both directions, or restore them
 *   stats                             "stats {json}": counters per direction
 *   quit                              (end of stdin does the same)
 *
 * Replies: "ok", "stats {...}" or "error <what is wrong>". On start it prints "port <n>".
 * Single-threaded: one ppoll loop over stdin, the client-facing socket and the upstream
 * sockets, with delayed datagrams in a min-heap keyed by release time.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FLOWS 64
#define BATCH 32
#define MAX_DGRAM 65536
#define MAX_QUEUED 200000 /* datagrams held at once; beyond it they are dropped and counted */
#define SOCKET_BUFFER (16 << 20)

enum { UP, DOWN };

typedef struct {
  double loss, dup, reorder;
  uint64_t delay_ns, reorder_delay_ns;
  double rate_bps;      /* 0: unlimited */
  uint64_t queue_bytes; /* drop-tail limit of the rate-limited link */
  int blackhole;
} dir_config;

typedef struct {
  uint64_t received, forwarded, bytes_forwarded, lost, blackholed, duplicated, reordered,
      queue_drops, send_errors;
} dir_stats;

typedef struct {
  struct sockaddr_in6 client;
  int fd; /* connected to the server */
  uint32_t overflow; /* the kernel's count of datagrams dropped on a full receive buffer */
} flow;

typedef struct {
  uint64_t due_ns, seq;
  int dir, flow;
  uint32_t len;
  uint8_t data[];
} packet;

static dir_config config[2];
static dir_stats stats[2];
static uint64_t link_free_ns[2]; /* when the rate-limited link finishes its last datagram */
static flow flows[MAX_FLOWS];
static int nflows, listen_fd;
static uint32_t listen_overflow;
static uint64_t flow_refused, truncated, heap_drops;
static struct sockaddr_in6 server;
static packet** heap;
static size_t heap_len;
static uint64_t seq, rng;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* xorshift64*: fast and good enough for drop decisions; seeded for repeatable runs. */
static double uniform(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (double)((rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* ---------- the release queue: a binary min-heap on (due, seq) ---------- */

static int before(const packet* a, const packet* b) {
  return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void heap_push(packet* p) {
  size_t i = heap_len++;
  heap[i] = p;
  while (i > 0 && before(heap[i], heap[(i - 1) / 2])) {
    packet* t = heap[i];
    heap[i] = heap[(i - 1) / 2];
    heap[(i - 1) / 2] = t;
    i = (i - 1) / 2;
  }
}

static packet* heap_pop(void) {
  packet* top = heap[0];
  heap[0] = heap[--heap_len];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap_len && before(heap[l], heap[m])) m = l;
    if (r < heap_len && before(heap[r], heap[m])) m = r;
    if (m == i) break;
    packet* t = heap[i];
    heap[i] = heap[m];
    heap[m] = t;
    i = m;
  }
  return top;
}

/* ---------- forwarding ---------- */

/* Sends `n` due datagrams that all leave through `fd` in one sendmmsg (a run of the queue). */
static void send_run(int fd, packet** run, int n) {
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (int i = 0; i < n; i++) {
    packet* p = run[i];
    iov[i] = (struct iovec){p->data, p->len};
    msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    if (p->dir == DOWN) {
      msgs[i].msg_hdr.msg_name = &flows[p->flow].client;
      msgs[i].msg_hdr.msg_namelen = sizeof flows[p->flow].client;
    }
  }
  int sent = 0;
  while (sent < n) {
    int k = sendmmsg(fd, msgs + sent, (unsigned)(n - sent), 0);
    if (k <= 0) { /* e.g. the server has gone (ECONNREFUSED): count it, skip that datagram */
      stats[run[sent]->dir].send_errors++;
      sent++;
      continue;
    }
    for (int i = sent; i < sent + k; i++) {
      stats[run[i]->dir].forwarded++;
      stats[run[i]->dir].bytes_forwarded += run[i]->len;
    }
    sent += k;
  }
}

static int out_fd(const packet* p) { return p->dir == UP ? flows[p->flow].fd : listen_fd; }

/* Applies the direction's impairments to one datagram and queues what survives. */
static void impair(int dir, int fl, const uint8_t* data, uint32_t len, uint64_t now) {
  const dir_config* c = &config[dir];
  dir_stats* s = &stats[dir];
  s->received++;
  if (c->blackhole) {
    s->blackholed++;
    return;
  }
  if (c->loss > 0 && uniform() < c->loss) {
    s->lost++;
    return;
  }
  int copies = 1;
  if (c->dup > 0 && uniform() < c->dup) {
    copies = 2;
    s->duplicated++;
  }
  for (int i = 0; i < copies; i++) {
    uint64_t due = now;
    if (c->rate_bps > 0) {
      uint64_t start = link_free_ns[dir] > now ? link_free_ns[dir] : now;
      if (c->queue_bytes > 0 &&
          (double)(start - now) * c->rate_bps / 8e9 > (double)c->queue_bytes) {
        s->queue_drops++;
        continue;
      }
      link_free_ns[dir] = start + (uint64_t)((double)len * 8e9 / c->rate_bps);
      due = link_free_ns[dir];
    }
    due += c->delay_ns;
    if (c->reorder > 0 && uniform() < c->reorder) {
      due += c->reorder_delay_ns;
      s->reordered++;
    }
    if (heap_len >= MAX_QUEUED) {
      heap_drops++;
      continue;
    }
    packet* p = malloc(sizeof *p + len);
    if (!p) {
      heap_drops++;
      continue;
    }
    p->due_ns = due;
    p->seq = seq++;
    p->dir = dir;
    p->flow = fl;
    p->len = len;
    memcpy(p->data, data, len);
    heap_push(p);
  }
}

/* Sends every datagram whose time has come, batching runs that leave through one socket. */
static void release_due(uint64_t now) {
  packet* run[BATCH];
  int n = 0;
  while (heap_len > 0 && heap[0]->due_ns <= now) {
    packet* p = heap_pop();
    if (config[p->dir].blackhole) {
      stats[p->dir].blackholed++;
      free(p);
      continue;
    }
    if (n > 0 && (n == BATCH || out_fd(run[0]) != out_fd(p))) {
      send_run(out_fd(run[0]), run, n);
      while (n > 0) free(run[--n]);
    }
    run[n++] = p;
  }
  if (n > 0) send_run(out_fd(run[0]), run, n);
  while (n > 0) free(run[--n]);
}

/* Large buffers absorb the senders' bursts while this process waits for a CPU; beyond
 * net.core.rmem_max only with CAP_NET_ADMIN (the FORCE options), else up to that limit. */
static void tune(int fd) {
  int size = SOCKET_BUFFER, on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on);
}

static int flow_for(const struct sockaddr_in6* from) {
  for (int i = 0; i < nflows; i++)
    if (flows[i].client.sin6_port == from->sin6_port &&
        memcmp(&flows[i].client.sin6_addr, &from->sin6_addr, sizeof from->sin6_addr) == 0)
      return i;
  if (nflows == MAX_FLOWS) return -1;
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  tune(fd);
  struct sockaddr_in6 local = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  if (bind(fd, (struct sockaddr*)&local, sizeof local) < 0 ||
      connect(fd, (struct sockaddr*)&server, sizeof server) < 0) {
    close(fd);
    return -1;
  }
  flows[nflows].client = *from;
  flows[nflows].fd = fd;
  flows[nflows].overflow = 0;
  return nflows++;
}

static uint8_t bufs[BATCH][MAX_DGRAM];
static struct sockaddr_in6 addrs[BATCH];
static char controls[BATCH][CMSG_SPACE(sizeof(uint32_t))];

/* Reads every datagram waiting on `fd` (the client-facing socket when fl < 0). */
static void drain(int fd, int fl, uint64_t now) {
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){bufs[i], MAX_DGRAM};
      msgs[i].msg_hdr = (struct msghdr){.msg_name = &addrs[i],
                                        .msg_namelen = sizeof addrs[i],
                                        .msg_iov = &iov[i],
                                        .msg_iovlen = 1,
                                        .msg_control = controls[i],
                                        .msg_controllen = sizeof controls[i]};
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
      struct msghdr* h = &msgs[i].msg_hdr;
      for (struct cmsghdr* c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
          uint32_t drops;
          memcpy(&drops, CMSG_DATA(c), sizeof drops);
          if (fl < 0) listen_overflow = drops;
          else flows[fl].overflow = drops;
        }
      }
      if (h->msg_flags & MSG_TRUNC) {
        truncated++;
        continue;
      }
      if (fl < 0) {
        int f = flow_for(&addrs[i]);
        if (f < 0) {
          flow_refused++;
          continue;
        }
        impair(UP, f, bufs[i], msgs[i].msg_len, now);
      } else {
        impair(DOWN, fl, bufs[i], msgs[i].msg_len, now);
      }
    }
    if (n < BATCH) return;
  }
}

/* ---------- control ---------- */

static int parse_dirs(const char* word, int* first, int* last) {
  if (!word) return -1;
  if (strcmp(word, "up") == 0) *first = *last = UP;
  else if (strcmp(word, "down") == 0) *first = *last = DOWN;
  else if (strcmp(word, "both") == 0) *first = UP, *last = DOWN;
  else return -1;
  return 0;
}

static int parse_number(const char* text, double min, double max, double* out) {
  char* end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end || !(v >= min && v <= max)) return -1;
  *out = v;
  return 0;
}

static void print_stats(void) {
  uint64_t socket_drops = listen_overflow;
  for (int i = 0; i < nflows; i++) socket_drops += flows[i].overflow;
  printf("stats {\"flows\":%d,\"queued\":%zu,\"socketDrops\":%" PRIu64
         ",\"truncated\":%" PRIu64 ",\"flowsRefused\":%" PRIu64 ",\"queueFull\":%" PRIu64,
         nflows, heap_len, socket_drops, truncated, flow_refused, heap_drops);
  for (int d = 0; d < 2; d++) {
    const dir_stats* s = &stats[d];
    printf(",\"%s\":{\"received\":%" PRIu64 ",\"forwarded\":%" PRIu64
           ",\"bytesForwarded\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"blackholed\":%" PRIu64
           ",\"duplicated\":%" PRIu64 ",\"reordered\":%" PRIu64 ",\"queueDrops\":%" PRIu64
           ",\"sendErrors\":%" PRIu64 "}",
           d == UP ? "up" : "down", s->received, s->forwarded, s->bytes_forwarded, s->lost,
           s->blackholed, s->duplicated, s->reordered, s->queue_drops, s->send_errors);
  }
  printf("}\n");
}

/* Runs one command line; returns 0 to go on, 1 to quit. Prints exactly one reply line. */
static int command(char* line) {
  char* save;
  char* verb = strtok_r(line, " \t", &save);
  if (!verb) {
    printf("error empty command\n");
    return 0;
  }
  if (strcmp(verb, "quit") == 0) return 1;
  if (strcmp(verb, "stats") == 0) {
    print_stats();
    return 0;
  }
  if (strcmp(verb, "blackhole") == 0) {
    char* which = strtok_r(NULL, " \t", &save);
    int first, last;
    if (which && strcmp(which, "off") == 0) {
      config[UP].blackhole = config[DOWN].blackhole = 0;
    } else if (parse_dirs(which, &first, &last) == 0) {
      for (int d = first; d <= last; d++) config[d].blackhole = 1;
    } else {
      printf("error blackhole takes up, down, both or off\n");
      return 0;
    }
    printf("ok\n");
    return 0;
  }
  if (strcmp(verb, "set") == 0) {
    int first, last;
    if (parse_dirs(strtok_r(NULL, " \t", &save), &first, &last) < 0) {
      printf("error set takes up, down or both, then key=value pairs\n");
      return 0;
    }
    dir_config next[2] = {config[UP], config[DOWN]};
    for (char* kv; (kv = strtok_r(NULL, " \t", &save));) {
      char* eq = strchr(kv, '=');
      double v;
      if (!eq) {
        printf("error '%s' is not key=value\n", kv);
        return 0;
      }
      *eq = 0;
      const char* key = kv;
      int bad = 0;
      for (int d = first; d <= last; d++) {
        dir_config* c = &next[d];
        if (strcmp(key, "loss") == 0 || strcmp(key, "dup") == 0 || strcmp(key, "reorder") == 0) {
          bad = parse_number(eq + 1, 0, 1, &v);
          if (!bad) *(key[0] == 'l' ? &c->loss : key[0] == 'd' ? &c->dup : &c->reorder) = v;
        } else if (strcmp(key, "delay") == 0 || strcmp(key, "reorder_delay") == 0) {
          bad = parse_number(eq + 1, 0, 60000, &v);
          if (!bad) *(key[0] == 'd' ? &c->delay_ns : &c->reorder_delay_ns) = (uint64_t)(v * 1e6);
        } else if (strcmp(key, "rate") == 0) {
          bad = parse_number(eq + 1, 0, 1e6, &v);
          if (!bad) c->rate_bps = v * 1e6;
        } else if (strcmp(key, "queue") == 0) {
          bad = parse_number(eq + 1, 0, 1e9, &v);
          if (!bad) c->queue_bytes = (uint64_t)v;
        } else {
          printf("error unknown key '%s'\n", key);
          return 0;
        }
        if (bad) {
          printf("error '%s' is out of range: %s\n", key, eq + 1);
          return 0;
        }
      }
    }
    config[UP] = next[UP];
    config[DOWN] = next[DOWN];
    printf("ok\n");
    return 0;
  }
  printf("error unknown command '%s'\n", verb);
  return 0;
}

/* Reads what stdin has and runs each complete line; returns 1 on quit or end of input. */
static int control(void) {
  static char line[4096];
  static size_t used;
  ssize_t n = read(STDIN_FILENO, line + used, sizeof line - 1 - used);
  if (n <= 0) return 1;
  used += (size_t)n;
  for (;;) {
    char* nl = memchr(line, '\n', used);
    if (!nl) break;
    *nl = 0;
    int quit = command(line);
    fflush(stdout);
    if (quit) return 1;
    used -= (size_t)(nl + 1 - line);
    memmove(line, nl + 1, used);
  }
  if (used == sizeof line - 1) return 1; /* a line longer than any valid command */
  return 0;
}

int main(int argc, char** argv) {
  double port, seed = 1;
  if (argc < 2 || argc > 3 || parse_number(argv[1], 1, 65535, &port) < 0 ||
      (argc == 3 && parse_number(argv[2], 1, 1e15, &seed) < 0)) {
    fprintf(stderr, "usage: lossy_relay <server-port> [seed]\n");
    return 2;
  }
  rng = (uint64_t)seed;
  server = (struct sockaddr_in6){.sin6_family = AF_INET6,
                                 .sin6_addr = IN6ADDR_LOOPBACK_INIT,
                                 .sin6_port = htons((uint16_t)port)};
  heap = malloc(sizeof *heap * MAX_QUEUED);
  listen_fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in6 local = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  socklen_t len = sizeof local;
  if (!heap || listen_fd < 0 || bind(listen_fd, (struct sockaddr*)&local, sizeof local) < 0 ||
      getsockname(listen_fd, (struct sockaddr*)&local, &len) < 0) {
    perror("lossy_relay");
    return 1;
  }
  tune(listen_fd);
  printf("port %u\n", ntohs(local.sin6_port));
  fflush(stdout);

  struct pollfd fds[2 + MAX_FLOWS];
  for (;;) {
    fds[0] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
    for (int i = 0; i < nflows; i++) fds[2 + i] = (struct pollfd){.fd = flows[i].fd, .events = POLLIN};
    struct timespec wait, *timeout = NULL;
    if (heap_len > 0) {
      uint64_t now = now_ns(), due = heap[0]->due_ns;
      uint64_t ns = due > now ? due - now : 0;
      wait = (struct timespec){.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
      timeout = &wait;
    }
    int nfds = 2 + nflows;
    if (ppoll(fds, (nfds_t)nfds, timeout, NULL) < 0 && errno != EINTR) {
      perror("lossy_relay: ppoll");
      return 1;
    }
    uint64_t now = now_ns();
    if (fds[0].revents && control()) break;
    if (fds[1].revents) drain(listen_fd, -1, now);
    for (int i = 0; i < nfds - 2; i++)
      if (fds[2 + i].revents) drain(flows[i].fd, i, now);
    release_due(now_ns());
  }
  while (heap_len > 0) free(heap_pop());
  free(heap);
  for (int i = 0; i < nflows; i++) close(flows[i].fd);
  close(listen_fd);
  return 0;
}
