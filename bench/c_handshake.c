/*
 * C baseline for handshakes over msquic: what msquic itself does on this machine, for measuring
 * STOQ's connect path against it. The client validates the server's chain against a CA file
 * (msquic's own OpenSSL check), completes the handshake, then closes the connection; the server
 * accepts every connection and lets the client close it.
 *
 *   c_handshake server <cert.pem> <key.pem> <port>       prints "listening"
 *   c_handshake client <ca.pem> <port> <count> <in-flight> [resume]
 *       prints "<connects/s> <p50 ms> <p99 ms> <resumed>" over <count> handshakes, <in-flight> at
 *       a time; with `resume`, every connect presents the session ticket of a first connection
 *
 * The server sends one session ticket per connection (as STOQ's listener does).
 *
 * Run by `deno task bench:handshake` (bench/handshake.ts).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <msquic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const QUIC_API_TABLE* api;
static HQUIC registration, configuration;
static QUIC_BUFFER alpn = {2, (uint8_t*)"hs"};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned in_flight, handshakes, closed, failed, resumed;
static double* latencies;
static uint8_t* ticket;
static uint32_t ticket_len;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static QUIC_STATUS QUIC_API server_conn(HQUIC c, void* ctx, QUIC_CONNECTION_EVENT* e) {
  (void)ctx;
  if (e->Type == QUIC_CONNECTION_EVENT_CONNECTED)
    api->ConnectionSendResumptionTicket(c, QUIC_SEND_RESUMPTION_FLAG_FINAL, 0, NULL);
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

typedef struct attempt {
  double start;
  unsigned index;
} attempt;

/* A connect ends at CONNECTED (then the connection is closed without waiting, as the JS
 * clients do) or, failed, at SHUTDOWN_COMPLETE without CONNECTED. */
static void handshake_over(int ok, int was_resumed) {
  pthread_mutex_lock(&lock);
  if (!ok) failed++;
  if (was_resumed) resumed++;
  in_flight--;
  handshakes++;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
}

static QUIC_STATUS QUIC_API client_conn(HQUIC c, void* ctx, QUIC_CONNECTION_EVENT* e) {
  attempt* a = ctx;
  if (e->Type == QUIC_CONNECTION_EVENT_CONNECTED) {
    latencies[a->index] = now_ms() - a->start;
    handshake_over(1, e->CONNECTED.SessionResumed);
    api->ConnectionShutdown(c, QUIC_CONNECTION_SHUTDOWN_FLAG_NONE, 0);
  } else if (e->Type == QUIC_CONNECTION_EVENT_SHUTDOWN_COMPLETE) {
    if (latencies[a->index] < 0) handshake_over(0, 0);
    api->ConnectionClose(c);
    free(a);
    pthread_mutex_lock(&lock);
    closed++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
  }
  return QUIC_STATUS_SUCCESS;
}

/* The first connection of a `resume` run: keeps the server's ticket, then closes. */
static QUIC_STATUS QUIC_API prime_conn(HQUIC c, void* ctx, QUIC_CONNECTION_EVENT* e) {
  (void)ctx;
  if (e->Type == QUIC_CONNECTION_EVENT_RESUMPTION_TICKET_RECEIVED) {
    ticket_len = e->RESUMPTION_TICKET_RECEIVED.ResumptionTicketLength;
    ticket = malloc(ticket_len);
    memcpy(ticket, e->RESUMPTION_TICKET_RECEIVED.ResumptionTicket, ticket_len);
    api->ConnectionShutdown(c, QUIC_CONNECTION_SHUTDOWN_FLAG_NONE, 0);
  } else if (e->Type == QUIC_CONNECTION_EVENT_SHUTDOWN_COMPLETE) {
    api->ConnectionClose(c);
    pthread_mutex_lock(&lock);
    closed++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
  }
  return QUIC_STATUS_SUCCESS;
}

static int cmp(const void* x, const void* y) {
  double a = *(const double*)x, b = *(const double*)y;
  return (a > b) - (a < b);
}

int main(int argc, char** argv) {
  int server = argc == 5 && strcmp(argv[1], "server") == 0;
  int client = (argc == 6 || (argc == 7 && strcmp(argv[6], "resume") == 0)) &&
               strcmp(argv[1], "client") == 0;
  if (!server && !client) {
    fprintf(stderr, "usage: %s server <cert> <key> <port> | client <ca> <port> <count> <in-flight> [resume]\n",
            argv[0]);
    return 2;
  }
  QUIC_REGISTRATION_CONFIG rc = {"stoq-c-handshake", QUIC_EXECUTION_PROFILE_LOW_LATENCY};
  QUIC_SETTINGS s;
  memset(&s, 0, sizeof s);
  s.IsSet.PeerBidiStreamCount = 1;
  s.PeerBidiStreamCount = 100;
  if (server) {
    s.IsSet.ServerResumptionLevel = 1;
    s.ServerResumptionLevel = QUIC_SERVER_RESUME_ONLY;
  }
  if (QUIC_FAILED(MsQuicOpen2(&api)) || QUIC_FAILED(api->RegistrationOpen(&rc, &registration)) ||
      QUIC_FAILED(api->ConfigurationOpen(registration, &alpn, 1, &s, sizeof s, NULL, &configuration)))
    return 1;
  QUIC_CREDENTIAL_CONFIG cred;
  memset(&cred, 0, sizeof cred);
  if (server) {
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
  cred.Type = QUIC_CREDENTIAL_TYPE_NONE;
  cred.Flags = QUIC_CREDENTIAL_FLAG_CLIENT | QUIC_CREDENTIAL_FLAG_SET_CA_CERTIFICATE_FILE;
  cred.CaCertificateFile = argv[2];
  if (QUIC_FAILED(api->ConfigurationLoadCredential(configuration, &cred))) return 1;
  uint16_t port = (uint16_t)atoi(argv[3]);
  unsigned count = (unsigned)atoi(argv[4]), window = (unsigned)atoi(argv[5]);
  latencies = malloc(sizeof(double) * count);
  for (unsigned i = 0; i < count; i++) latencies[i] = -1;
  if (argc == 7) {
    HQUIC conn;
    if (QUIC_FAILED(api->ConnectionOpen(registration, prime_conn, NULL, &conn)) ||
        QUIC_FAILED(api->ConnectionStart(conn, configuration, QUIC_ADDRESS_FAMILY_INET6, "::1",
                                         port)))
      return 1;
    pthread_mutex_lock(&lock);
    while (closed < 1) pthread_cond_wait(&cond, &lock);
    closed = 0;
    pthread_mutex_unlock(&lock);
    if (!ticket) {
      fprintf(stderr, "the server sent no session ticket\n");
      return 1;
    }
  }
  double t0 = now_ms();
  for (unsigned i = 0; i < count; i++) {
    pthread_mutex_lock(&lock);
    while (in_flight >= window) pthread_cond_wait(&cond, &lock);
    in_flight++;
    pthread_mutex_unlock(&lock);
    attempt* a = malloc(sizeof *a);
    a->index = i;
    a->start = now_ms();
    HQUIC conn;
    if (QUIC_FAILED(api->ConnectionOpen(registration, client_conn, a, &conn)) ||
        (ticket && QUIC_FAILED(api->SetParam(conn, QUIC_PARAM_CONN_RESUMPTION_TICKET, ticket_len,
                                             ticket))) ||
        QUIC_FAILED(api->ConnectionStart(conn, configuration, QUIC_ADDRESS_FAMILY_INET6, "::1",
                                         port)))
      return 1;
  }
  pthread_mutex_lock(&lock);
  while (handshakes < count) pthread_cond_wait(&cond, &lock);
  double seconds = (now_ms() - t0) / 1e3;
  while (closed < count) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  if (failed) {
    fprintf(stderr, "%u of %u handshakes failed\n", failed, count);
    return 1;
  }
  qsort(latencies, count, sizeof(double), cmp);
  printf("%.1f %.3f %.3f %u\n", count / seconds, latencies[count / 2], latencies[count * 99 / 100],
         resumed);
  return 0;
}
