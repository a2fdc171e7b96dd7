# STOQ: the one build entry. `make test` and `make serve` work on a fresh Debian machine:
# they install what is missing (Debian packages, Deno from npm, libmsquic) and build the shim.
# Everything built lands in build/ (ignored); a second run reuses it.

SHELL := /bin/bash
DENO_VERSION := $(shell sed -n 's/.*"deno": "\(.*\)".*/\1/p' .tools/package.json)
DENO := .tools/node_modules/.bin/deno
BUILD := build
LIBDIR := $(BUILD)/lib
CARGO_TARGET := $(BUILD)/cargo
MSQUIC_CRATE := native/msquic/Cargo.toml
SYSTEM_MSQUIC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libmsquic.so.2 /usr/lib/libmsquic.so.2 /usr/local/lib/libmsquic.so.2))
APT_PACKAGES := liburing-dev libnuma-dev cmake gcc make pkg-config openssl
CFLAGS := -O2 -g -fPIC -std=c11 -Wall -Wextra -Werror -fvisibility=default
DENO_RUN := $(DENO) run -A --unstable-net
TEST_FLAGS ?=

.PHONY: all deps native relay test test-asan serve bench bench-compare bench-loss bench-provision bench-baseline check clean

all: native

# ---- dependencies -------------------------------------------------------------------------
$(BUILD)/.apt:
	@mkdir -p $(BUILD)
	@if ! [ -f /usr/include/liburing.h ] || ! dpkg -s libnuma-dev >/dev/null 2>&1 || ! command -v cmake >/dev/null; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@touch $@

$(DENO): .tools/package.json
	cd .tools && npm install --no-package-lock --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(BUILD)/.apt $(DENO)

# ---- msquic: the system library when present, else built from the official crate --------
$(LIBDIR)/libmsquic.so.2: $(BUILD)/.apt $(MSQUIC_CRATE)
	@mkdir -p $(LIBDIR)
	@if [ -n "$(SYSTEM_MSQUIC)" ]; then \
	  echo "using system $(SYSTEM_MSQUIC)"; ln -sf $(SYSTEM_MSQUIC) $@; \
	else \
	  echo "building libmsquic from the msquic crate (first run only, a few minutes)"; \
	  CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET)) cargo build --release --quiet --manifest-path $(MSQUIC_CRATE) && \
	  cp -L $$(ls -t $(CARGO_TARGET)/release/build/msquic-*/out/lib/libmsquic.so.2 | head -1) $@; \
	fi

# msquic.h comes from the crate's sources (cargo fetch puts them in the cargo registry).
$(BUILD)/msquic-include: $(MSQUIC_CRATE)
	@mkdir -p $(BUILD)
	@cargo fetch --quiet --manifest-path $(MSQUIC_CRATE)
	@dir=$$(cargo metadata --format-version 1 --manifest-path $(MSQUIC_CRATE) 2>/dev/null | \
	  python3 -c 'import json,sys; m=json.load(sys.stdin); print([p["manifest_path"] for p in m["packages"] if p["name"]=="msquic"][0])' | xargs dirname); \
	  ln -sfn $$dir/src/inc $@

NATIVE_SRC := $(wildcard native/*.c)
NATIVE_HDR := $(wildcard native/*.h)

$(LIBDIR)/libstoq.so: $(NATIVE_SRC) $(NATIVE_HDR) $(LIBDIR)/libmsquic.so.2 $(BUILD)/msquic-include
	$(CC) $(CFLAGS) -I$(BUILD)/msquic-include -shared -o $@ $(NATIVE_SRC) \
	  -L$(LIBDIR) -l:libmsquic.so.2 -luring -lpthread -Wl,-rpath,'$$ORIGIN' -Wl,-z,nodelete

native: deps $(LIBDIR)/libstoq.so

# The lossy-network relay the loss tests and `bench-loss` put between client and server.
$(BUILD)/lossy_relay: testing/lossy_relay.c | $(BUILD)/.apt
	$(CC) -O2 -g -std=c11 -Wall -Wextra -Werror -o $@ $<

relay: $(BUILD)/lossy_relay

# ---- sanitizers: the shim with ASan + UBSan in its own build dir ------------------------------
# Deno is not instrumented, so the ASan runtime is preloaded; leak detection is off because the
# leaks it would find are Deno's and V8's (the tests count native handles instead). Any report
# ends the process with an error (halt_on_error, -fno-sanitize-recover), which fails the target.
ASAN_DIR := $(BUILD)/asan
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_ENV = STOQ_LIB=$(abspath $(ASAN_DIR)/lib/libstoq.so) \
  LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
TRANSPORT_TESTS := $(wildcard tests/transport_*_test.ts)

# gcc's sanitizer runtimes (Debian: libasan8, libubsan1, which gcc normally brings along).
$(BUILD)/.apt-asan: | $(BUILD)/.apt
	@if ! [ -e "$$($(CC) -print-file-name=libasan.so)" ] || ! [ -e "$$($(CC) -print-file-name=libubsan.so)" ]; then \
	  echo "installing the sanitizer runtimes: libasan8 libubsan1"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libasan8 libubsan1 >/dev/null; \
	fi
	@touch $@

$(ASAN_DIR)/lib/libstoq.so: $(NATIVE_SRC) $(NATIVE_HDR) $(LIBDIR)/libmsquic.so.2 $(BUILD)/msquic-include $(BUILD)/.apt-asan
	@mkdir -p $(ASAN_DIR)/lib
	ln -sf ../../lib/libmsquic.so.2 $(ASAN_DIR)/lib/libmsquic.so.2
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -I$(BUILD)/msquic-include -shared -o $@ $(NATIVE_SRC) \
	  -L$(LIBDIR) -l:libmsquic.so.2 -luring -lpthread -Wl,-rpath,'$$ORIGIN' -Wl,-z,nodelete

$(ASAN_DIR)/canary.so: testing/asan_canary.c $(BUILD)/.apt-asan
	@mkdir -p $(ASAN_DIR)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -shared -o $@ $<

# ---- jobs -----------------------------------------------------------------------------------
test: native relay
	$(DENO) test -A --unstable-net --doc $(TEST_FLAGS)

# The transport tests against the sanitized shim, after checking that it is the one loaded and
# that a sanitizer report really fails the run.
test-asan: native relay $(ASAN_DIR)/lib/libstoq.so $(ASAN_DIR)/canary.so
	$(ASAN_ENV) $(DENO_RUN) testing/asan_check.ts $(abspath $(ASAN_DIR)/canary.so)
	$(ASAN_ENV) $(DENO) test -A --unstable-net $(TEST_FLAGS) $(TRANSPORT_TESTS)

serve: native
	$(DENO_RUN) src/node/serve.ts $(ARGS)

bench: native
	$(DENO) bench -A --unstable-net

bench-compare: native $(BUILD)/c_baseline $(BUILD)/dev-certs/cert.pem
	$(DENO_RUN) bench/compare.ts

# Development certificates, as `serve` makes them on first run (the C baseline needs files).
$(BUILD)/dev-certs/cert.pem: | $(DENO)
	$(DENO) eval 'import { loadDevCertificates } from "./src/node/serve.ts"; await loadDevCertificates("$(BUILD)/dev-certs")'

# The C baseline over msquic: its server in the background, its client timed (2 GiB upload).
$(BUILD)/c_baseline: bench/c_baseline.c $(LIBDIR)/libmsquic.so.2 $(BUILD)/msquic-include
	$(CC) -O2 -std=c11 -Wall -Wextra -Werror -I$(BUILD)/msquic-include -o $@ bench/c_baseline.c \
	  -L$(LIBDIR) -l:libmsquic.so.2 -lpthread -Wl,-rpath,'$$ORIGIN/lib'

bench-baseline: native $(BUILD)/c_baseline $(BUILD)/dev-certs/cert.pem
	@rm -f $(BUILD)/c_baseline.out; \
	  $(BUILD)/c_baseline server $(BUILD)/dev-certs/cert.pem $(BUILD)/dev-certs/key.pem 9555 > $(BUILD)/c_baseline.out & \
	  server=$$!; until grep -q listening $(BUILD)/c_baseline.out 2>/dev/null; do sleep 0.1; done; \
	  $(BUILD)/c_baseline client 9555 2048; kill $$server

bench-loss: native relay
	$(DENO_RUN) bench/loss.ts

bench-provision: deps
	$(DENO_RUN) bench/provision.ts

check: deps
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) doc --lint mod.ts

clean:
	rm -rf $(BUILD)
