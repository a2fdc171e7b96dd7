/*
 * C baseline over msquic, for measuring STOQ against what msquic itself does on this machine:
 * one connection, one stream, 64 KiB sends with msquic's send buffering off (the buffers are
 * held until SEND_COMPLETE, as STOQ does) and a 16 MiB window of sends in flight; the server
 * consumes data inline in its callback. Same settings as STOQ's defaults otherwise.
 *
 *   c_baseline server <cert.pem> <key.pem> <port>
 *   c_baseline client <port> [MiB]          prints "C baseline: <Gbit/s> Gbit/s"
 *
 * Run by `make bench-baseline`.
 */
#define _GNU_SOURCE
#define QUIC_API_ENABLE_PREVIEW_FEATURES 1
#include <arpa/inet.h>
#include <msquic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536u
#define WINDOW (16u << 20)

static const QUIC_API_TABLE* api;
static HQUIC registration, configuration;
static QUIC_BUFFER alpn = {5, (uint8_t*)"bench"};
static uint8_t payload[CHUNK];
static uint64_t acked;
static int done;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static QUIC_STATUS QUIC_API server_stream(HQUIC s, void* ctx, QUIC_STREAM_EVENT* e) {
  (void)ctx;
  if (e->Type == QUIC_STREAM_EVENT_PEER_SEND_SHUTDOWN)
    api->StreamShutdown(s, QUIC_STREAM_SHUTDOWN_FLAG_GRACEFUL, 0);
  if (e->Type == QUIC_STREAM_EVENT_SHUTDOWN_COMPLETE) api->StreamClose(s);
  return QUIC_STATUS_SUCCESS; /* RECEIVE: consumed inline */
}

static QUIC_STATUS QUIC_API server_conn(HQUIC c, void* ctx, QUIC_CONNECTION_EVENT* e) {
  (void)ctx;
  if (e->Type == QUIC_CONNECTION_EVENT_PEER_STREAM_STARTED)
    api->SetCallbackHandler(e->PEER_STREAM_STARTED.Stream, (void*)server_stream, NULL);
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

static QUIC_STATUS QUIC_API client_stream(HQUIC s, void* ctx, QUIC_STREAM_EVENT* e) {
  (void)s;
  (void)ctx;
  pthread_mutex_lock(&lock);
  if (e->Type == QUIC_STREAM_EVENT_SEND_COMPLETE) acked += CHUNK;
  if (e->Type == QUIC_STREAM_EVENT_SHUTDOWN_COMPLETE) done = 1;
  pthread_cond_signal(&cond);
  pthread_mutex_unlock(&lock);
  return QUIC_STATUS_SUCCESS;
}

static QUIC_STATUS QUIC_API client_conn(HQUIC c, void* ctx, QUIC_CONNECTION_EVENT* e) {
  (void)c;
  (void)ctx;
  (void)e;
  return QUIC_STATUS_SUCCESS;
}

static int open_configuration(void) {
  QUIC_SETTINGS s;
  memset(&s, 0, sizeof s);
  s.IsSet.PeerBidiStreamCount = 1;
  s.PeerBidiStreamCount = 16;
  s.IsSet.SendBufferingEnabled = 1;
  s.SendBufferingEnabled = 0;
  s.IsSet.StreamRecvWindowDefault = 1;
  s.StreamRecvWindowDefault = 1u << 20;
  return QUIC_FAILED(api->ConfigurationOpen(registration, &alpn, 1, &s, sizeof s, NULL,
                                            &configuration));
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s server <cert> <key> <port> | client <port> [MiB]\n", argv[0]);
    return 2;
  }
  QUIC_REGISTRATION_CONFIG rc = {"stoq-c-baseline", QUIC_EXECUTION_PROFILE_LOW_LATENCY};
  if (QUIC_FAILED(MsQuicOpen2(&api)) || QUIC_FAILED(api->RegistrationOpen(&rc, &registration)) ||
      open_configuration())
    return 1;
  QUIC_CREDENTIAL_CONFIG cred;
  memset(&cred, 0, sizeof cred);
  if (strcmp(argv[1], "server") == 0 && argc == 5) {
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
  uint64_t total = (uint64_t)(argc > 3 ? atoi(argv[3]) : 2048) << 20;
  cred.Type = QUIC_CREDENTIAL_TYPE_NONE;
  /* The baseline measures transfer, not validation; the handshake is outside the timing. */
  cred.Flags = QUIC_CREDENTIAL_FLAG_CLIENT | QUIC_CREDENTIAL_FLAG_NO_CERTIFICATE_VALIDATION;
  if (QUIC_FAILED(api->ConfigurationLoadCredential(configuration, &cred))) return 1;
  HQUIC conn, stream;
  if (QUIC_FAILED(api->ConnectionOpen(registration, client_conn, NULL, &conn)) ||
      QUIC_FAILED(api->ConnectionStart(conn, configuration, QUIC_ADDRESS_FAMILY_INET6, "::1",
                                       (uint16_t)atoi(argv[2]))) ||
      QUIC_FAILED(api->StreamOpen(conn, QUIC_STREAM_OPEN_FLAG_NONE, client_stream, NULL, &stream)) ||
      QUIC_FAILED(api->StreamStart(stream, QUIC_STREAM_START_FLAG_NONE)))
    return 1;
  /* One descriptor per send in flight; WINDOW / CHUNK of them are enough. */
  static QUIC_BUFFER bufs[WINDOW / CHUNK + 1];
  double t0 = now();
  uint64_t sent = 0;
  for (unsigned i = 0; sent < total; i++, sent += CHUNK) {
    pthread_mutex_lock(&lock);
    while (sent - acked >= WINDOW) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    QUIC_BUFFER* b = &bufs[i % (WINDOW / CHUNK + 1)];
    b->Buffer = payload;
    b->Length = CHUNK;
    QUIC_SEND_FLAGS flags = sent + CHUNK >= total ? QUIC_SEND_FLAG_FIN : QUIC_SEND_FLAG_NONE;
    if (QUIC_FAILED(api->StreamSend(stream, b, 1, flags, NULL))) return 1;
  }
  pthread_mutex_lock(&lock);
  while (!done) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  printf("C baseline: %.2f Gbit/s\n", (double)total * 8 / (now() - t0) / 1e9);
  api->ConnectionShutdown(conn, QUIC_CONNECTION_SHUTDOWN_FLAG_NONE, 0);
  return 0;
}
