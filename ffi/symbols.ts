/**
 * The shim's symbol table: one entry per C function in `native/stoq.h`.
 *
 * Pointer parameters name the C type they carry and who owns the memory.
 *
 * @module
 */

/** Symbols of `libstoq.so`. */
export const symbols = {
  /** uint32_t stoq_abi_version(void) */
  stoq_abi_version: { parameters: [], result: "u32" },

  /**
   * stoq_rt* stoq_rt_open(uint32_t profile, uint32_t flags (RtFlags), int32_t* status_out);
   * the runtime owns msquic.
   */
  stoq_rt_open: { parameters: ["u32", "u32", "buffer"], result: "pointer" },
  /** void stoq_rt_close(stoq_rt*); blocks until every connection is closed. */
  stoq_rt_close: { parameters: ["pointer"], result: "void" },
  /** uint32_t stoq_rt_poll(stoq_rt*, stoq_event* out (JS-owned), uint32_t max) */
  stoq_rt_poll: { parameters: ["pointer", "buffer", "u32"], result: "u32" },
  /** int32_t stoq_rt_wait(stoq_rt*, int32_t timeout_ms): parks in io_uring off the JS thread. */
  stoq_rt_wait: {
    parameters: ["pointer", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /** void stoq_rt_wake(stoq_rt*) */
  stoq_rt_wake: { parameters: ["pointer"], result: "void" },
  /** int32_t stoq_gso(stoq_rt*): 1/0 whether msquic sends with GSO, -1 when unknown */
  stoq_gso: { parameters: ["pointer"], result: "i32" },
  /** void stoq_rt_counts(stoq_rt*, uint64_t* out (JS-owned), uint32_t n) */
  stoq_rt_counts: { parameters: ["pointer", "buffer", "u32"], result: "void" },
  /** uint32_t stoq_submit(stoq_rt*, stoq_op* ops (JS-owned, statuses written back), uint32_t n) */
  stoq_submit: { parameters: ["pointer", "buffer", "u32"], result: "u32" },
  /** void stoq_buf_free(stoq_rt*, void* buf (shim-owned ticket copy)) */
  stoq_buf_free: { parameters: ["pointer", "pointer"], result: "void" },
  /**
   * uint8_t* stoq_pool_grow(stoq_rt*, uint32_t* first_slot_out): a new slab of the send pool
   * (shim-owned, mapped until the runtime closes; JS writes payload into it), or NULL.
   */
  stoq_pool_grow: { parameters: ["pointer", "buffer"], result: "pointer" },
  /** void stoq_pool_wake(stoq_rt*): the next SEND_COMPLETE returning a slot wakes JS */
  stoq_pool_wake: { parameters: ["pointer"], result: "void" },
  /** void stoq_pool_trim(stoq_rt*, uint32_t slab): returns an idle slab's pages to the kernel */
  stoq_pool_trim: { parameters: ["pointer", "u32"], result: "void" },

  /**
   * void stoq_close_batch(stoq_rt*, const uint64_t* items (JS-owned until the promise settles),
   * uint32_t n): closes (kind, handle) pairs off the JS thread.
   */
  stoq_close_batch: {
    parameters: ["pointer", "buffer", "u32"],
    result: "void",
    nonblocking: true,
  },

  /** stoq_config* stoq_config_open(stoq_rt*, const stoq_settings*, const uint8_t* alpn, uint32_t len, int32_t* status_out) */
  stoq_config_open: {
    parameters: ["pointer", "buffer", "buffer", "u32", "buffer"],
    result: "pointer",
  },
  /**
   * int32_t stoq_config_load(stoq_config*, uint32_t flags, const uint8_t* cert_pem, uint32_t len,
   * const uint8_t* key_pem, uint32_t len, const uint8_t* ca_pem, uint32_t len, char* err_out,
   * uint32_t cap); every buffer JS-owned and read during the call only.
   */
  stoq_config_load: {
    parameters: [
      "pointer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
    ],
    result: "i32",
  },
  /** void stoq_config_close(stoq_config*) */
  stoq_config_close: { parameters: ["pointer"], result: "void" },

  /** stoq_listener* stoq_listener_open(stoq_rt*, stoq_config*, const char* addr, uint16_t port, uint32_t ipv6_only, int32_t* status_out) */
  stoq_listener_open: {
    parameters: ["pointer", "pointer", "buffer", "u16", "u32", "buffer"],
    result: "pointer",
  },
  /** void stoq_listener_set_config(stoq_listener*, stoq_config*) */
  stoq_listener_set_config: {
    parameters: ["pointer", "pointer"],
    result: "void",
  },
  /** uint32_t stoq_listener_port(stoq_listener*) */
  stoq_listener_port: { parameters: ["pointer"], result: "u32" },
  /** uint64_t stoq_listener_id(stoq_listener*) */
  stoq_listener_id: { parameters: ["pointer"], result: "u64" },
  /** void stoq_listener_close(stoq_listener*); blocks until msquic stops it. */
  stoq_listener_close: { parameters: ["pointer"], result: "void" },

  /**
   * stoq_conn* stoq_conn_connect(stoq_rt*, stoq_config*, const char* server_name,
   * const char* addr, uint16_t port, const uint8_t* ticket (nullable, JS-owned, copied),
   * uint32_t ticket_len, uint32_t flags (ConnectFlags), const char* local_addr (nullable),
   * uint16_t local_port, int32_t* status_out)
   */
  stoq_conn_connect: {
    parameters: [
      "pointer",
      "pointer",
      "buffer",
      "buffer",
      "u16",
      "buffer",
      "u32",
      "u32",
      "buffer",
      "u16",
      "buffer",
    ],
    result: "pointer",
  },
  /** uint64_t stoq_conn_id(stoq_conn*) */
  stoq_conn_id: { parameters: ["pointer"], result: "u64" },
  /** int32_t stoq_conn_stats(stoq_conn*, uint64_t* out (JS-owned), uint32_t n) */
  stoq_conn_stats: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  /** int32_t stoq_conn_address(stoq_conn*, uint32_t remote, uint8_t out16[16], uint32_t* port) */
  stoq_conn_address: {
    parameters: ["pointer", "u32", "buffer", "buffer"],
    result: "i32",
  },
  /** uint32_t stoq_conn_alpn(stoq_conn*, uint8_t* out (JS-owned), uint32_t cap) */
  stoq_conn_alpn: { parameters: ["pointer", "buffer", "u32"], result: "u32" },
  /** int32_t stoq_conn_cert_complete(stoq_conn*, uint32_t accept, uint32_t tls_alert) */
  stoq_conn_cert_complete: {
    parameters: ["pointer", "u32", "u32"],
    result: "i32",
  },
  /**
   * int32_t stoq_conn_dgram_take(stoq_conn*, uint8_t* out (JS-owned), uint32_t cap): moves the
   * oldest queued datagram into out; its length, -1 when none, -2 when larger than cap.
   */
  stoq_conn_dgram_take: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
  },
  /** void stoq_conn_close(stoq_conn*); frees the context, after SHUTDOWN_COMPLETE. */
  stoq_conn_close: { parameters: ["pointer"], result: "void" },

  /** stoq_stream* stoq_stream_open(stoq_conn*, uint32_t flags (OpenFlags), int32_t* status_out) */
  stoq_stream_open: {
    parameters: ["pointer", "u32", "buffer"],
    result: "pointer",
  },
  /** uint64_t stoq_stream_id(stoq_stream*) */
  stoq_stream_id: { parameters: ["pointer"], result: "u64" },
  /** void stoq_stream_wake_below(stoq_stream*, uint64_t bytes): wake JS on completions once fewer bytes are outstanding */
  stoq_stream_wake_below: { parameters: ["pointer", "u64"], result: "void" },
  /** uint64_t stoq_stream_quic_id(stoq_stream*): the QUIC stream ID, UINT64_MAX before start */
  stoq_stream_quic_id: { parameters: ["pointer"], result: "u64" },
  /** int32_t stoq_stream_stats(stoq_stream*, uint64_t* out (JS-owned), uint32_t n) */
  stoq_stream_stats: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
  },
  /** void stoq_stream_close(stoq_stream*); frees the context, after SHUTDOWN_COMPLETE. */
  stoq_stream_close: { parameters: ["pointer"], result: "void" },

  /**
   * int32_t stoq_file_open(const char* path, uint32_t write, int32_t* fd_out, uint64_t* size_out):
   * 0 or an errno; the fd goes to a file operation (the shim closes it) or to stoq_file_close.
   */
  stoq_file_open: {
    parameters: ["buffer", "u32", "buffer", "buffer"],
    result: "i32",
  },
  /** void stoq_file_close(int32_t fd) */
  stoq_file_close: { parameters: ["i32"], result: "void" },
  /** uint32_t stoq_strerror(int32_t errno, char* out (JS-owned), uint32_t cap) */
  stoq_strerror: { parameters: ["i32", "buffer", "u32"], result: "u32" },
  /** int32_t stoq_resolve6(const char* name, uint8_t out16[16]): getaddrinfo, off the JS thread. */
  stoq_resolve6: {
    parameters: ["buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** uint32_t stoq_x509_error(int32_t code, char* out (JS-owned), uint32_t cap) */
  stoq_x509_error: { parameters: ["i32", "buffer", "u32"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened library's functions. */
export type StoqSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];
