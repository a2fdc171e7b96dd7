# STOQ: the one build entry. `make test` and `make serve` work on a fresh Debian machine:
# they install what is missing (Debian packages, Deno from npm, libmsquic) and build the shim.
# Everything built lands in build/ (ignored); a second run reuses it.

SHELL := /bin/bash
DENO_VERSION := $(shell sed -n 's/.*"deno": "\(.*\)".*/\1/p' .tools/package.json)
DENO := .tools/node_modules/.bin/deno
BUILD := build
LIBDIR := $(BUILD)/lib
MSQUIC_CRATE := native/msquic/Cargo.toml
SYSTEM_MSQUIC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libmsquic.so.2 /usr/lib/libmsquic.so.2 /usr/local/lib/libmsquic.so.2))
APT_PACKAGES := liburing-dev libnuma-dev libssl-dev cmake ninja-build gcc make pkg-config openssl
CFLAGS := -O2 -g -fPIC -std=c11 -Wall -Wextra -Werror -fvisibility=default
DENO_RUN := $(DENO) run -A --unstable-net
TEST_FLAGS ?=

.PHONY: all deps native go-tools pg-start pg-stop relay test test-asan serve bench bench-compare bench-file bench-idle bench-loss bench-provision bench-baseline bench-handshake bench-connections bench-pool bench-phoenix bench-node config-reference dashboard-screenshot check clean

all: native

# ---- dependencies -------------------------------------------------------------------------
$(BUILD)/.apt:
	@mkdir -p $(BUILD)
	@if ! [ -f /usr/include/liburing.h ] || ! [ -f /usr/include/openssl/pkcs12.h ] || ! dpkg -s libnuma-dev >/dev/null 2>&1 || ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@touch $@

$(DENO): .tools/package.json
	cd .tools && npm install --no-package-lock --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(BUILD)/.apt $(DENO)

# ---- msquic: the system library when present, else built from the official crate's sources ---
# native/msquic/build.sh copies the sources cargo fetched for the crate into build/, applies the
# build-time edits it documents (each one says why), and builds them with cmake as the crate does.
$(LIBDIR)/libmsquic.so.2: $(BUILD)/.apt $(MSQUIC_CRATE) native/msquic/build.sh
	@mkdir -p $(LIBDIR)
	@if [ -n "$(SYSTEM_MSQUIC)" ]; then \
	  echo "using system $(SYSTEM_MSQUIC)"; ln -sf $(SYSTEM_MSQUIC) $@; \
	else \
	  echo "building libmsquic from the msquic crate's sources (first run only, a few minutes)"; \
	  native/msquic/build.sh $(BUILD) $@; \
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
	  -L$(LIBDIR) -l:libmsquic.so.2 -luring -lcrypto -lpthread -Wl,-rpath,'$$ORIGIN' -Wl,-z,nodelete

# ---- Falcon-512 for TrustChain: PQClean's sources from the pqcrypto-falcon crate -----------
# libstoq_falcon.so is separate from the transport shim: native/falcon/*.c over PQClean's
# falcon-512 "clean" (portable) and "avx2" builds, chosen at run time (see native/falcon/falcon.c).
FALCON_CRATE := native/falcon/Cargo.toml
PQCLEAN := $(BUILD)/pqclean
FALCON_PQ_SRC := codec common fft fpr keygen rng sign vrfy
FALCON_CFLAGS := -O2 -g -fPIC -std=c11 -Wall -Wextra -Werror -fvisibility=hidden

$(PQCLEAN): $(FALCON_CRATE)
	@mkdir -p $(BUILD)
	@cargo fetch --quiet --manifest-path $(FALCON_CRATE)
	@dir=$$(cargo metadata --format-version 1 --manifest-path $(FALCON_CRATE) 2>/dev/null | \
	  python3 -c 'import json,sys; m=json.load(sys.stdin); print([p["manifest_path"] for p in m["packages"] if p["name"]=="pqcrypto-falcon"][0])' | xargs dirname); \
	  ln -sfn $$dir/pqclean $@

$(LIBDIR)/libstoq_falcon.so: $(wildcard native/falcon/*.c native/falcon/*.h) | $(PQCLEAN)
	@mkdir -p $(LIBDIR) $(BUILD)/falcon
	@set -e; src=$(PQCLEAN)/crypto_sign/falcon-512; objs=; \
	for v in clean avx2; do \
	  flags="-I$$src/$$v -I$(PQCLEAN)/common -Inative/falcon"; \
	  if [ $$v = avx2 ]; then flags="$$flags -mavx2 -DSTOQ_FALCON_VARIANT_AVX2"; fi; \
	  for f in $(FALCON_PQ_SRC); do \
	    $(CC) $(FALCON_CFLAGS) $$flags -c -o $(BUILD)/falcon/$$v-$$f.o $$src/$$v/$$f.c; \
	    objs="$$objs $(BUILD)/falcon/$$v-$$f.o"; \
	  done; \
	  $(CC) $(FALCON_CFLAGS) $$flags -c -o $(BUILD)/falcon/$$v-variant.o native/falcon/variant.c; \
	  objs="$$objs $(BUILD)/falcon/$$v-variant.o"; \
	done; \
	$(CC) $(FALCON_CFLAGS) -I$(PQCLEAN)/common -c -o $(BUILD)/falcon/fips202.o $(PQCLEAN)/common/fips202.c; \
	$(CC) $(FALCON_CFLAGS) -c -o $(BUILD)/falcon/falcon.o native/falcon/falcon.c; \
	$(CC) -shared -o $@ $$objs $(BUILD)/falcon/fips202.o $(BUILD)/falcon/falcon.o
	@echo "built $@"

# `make native` also installs the libraries for this user, where STOQ imported from a URL finds
# them (ffi/library.ts): $XDG_CACHE_HOME/stoq/lib/abi-<N>, else ~/.cache/stoq/lib/abi-<N>. Each file
# is replaced by a rename, so processes that have the old one loaded keep running.
STOQ_ABI := $(shell sed -n 's/^\#define STOQ_ABI_VERSION \([0-9]*\)u/\1/p' native/stoq.h)
USER_LIB_DIR := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/stoq/lib/abi-$(STOQ_ABI)

native: deps $(LIBDIR)/libstoq.so $(LIBDIR)/libstoq_falcon.so
	@mkdir -p $(USER_LIB_DIR) && for f in libstoq.so libstoq_falcon.so libmsquic.so.2; do \
	  cp -L $(LIBDIR)/$$f $(USER_LIB_DIR)/.$$f.tmp && mv -f $(USER_LIB_DIR)/.$$f.tmp $(USER_LIB_DIR)/$$f; \
	done

# ---- Go tools the TrustChain tests check against (modules from the Go module proxy) ----------
# zlint lints issued certificates; tools/ctcheck verifies SCTs, inclusion proofs and the
# static-ct-api endpoints with certificate-transparency-go and transparency-dev's libraries.
GO_BIN := $(BUILD)/bin
ZLINT_VERSION := v3.7.3
GO_NEEDED = @command -v go >/dev/null || { echo "Go is needed for the TrustChain test tools: install it from https://go.dev/dl/ and put it on the PATH" >&2; exit 1; }

$(GO_BIN)/zlint:
	$(GO_NEEDED)
	@mkdir -p $(GO_BIN)
	GOBIN=$(abspath $(GO_BIN)) go install github.com/zmap/zlint/v3/cmd/zlint@$(ZLINT_VERSION)

$(GO_BIN)/ctcheck: $(wildcard tools/ctcheck/*.go) tools/ctcheck/go.mod tools/ctcheck/go.sum
	$(GO_NEEDED)
	@mkdir -p $(GO_BIN)
	cd tools/ctcheck && go build -o $(abspath $@) .

go-tools: $(GO_BIN)/zlint $(GO_BIN)/ctcheck

# ---- PostgreSQL for TrustChain's store tests and benchmarks -------------------------------
# A throw-away cluster: `pg-start` runs initdb into build/pg/data and starts postgres listening on
# a Unix socket only (in build/pg, or a /tmp directory when that path is too long for a socket;
# a random port number names it), trust authentication for the user `stoq`. initdb and postgres
# refuse to run as root, so as root they run as the `postgres` user Debian's package creates.
# build/pg/url is the connection URL tests and benchmarks read. `pg-stop` stops the cluster and
# deletes it; `make test` and `bench-provision --store postgres` stop it when they finish, and
# `pg-start` first stops one a killed run left behind.
PG_DIR := $(BUILD)/pg
PG_BIN = $$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_AS = $$( [ "$$(id -u)" = 0 ] && echo runuser -u postgres -- )

$(BUILD)/.apt-pg:
	@mkdir -p $(BUILD)
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing Debian package: postgresql"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	fi
	@touch $@

pg-start: $(BUILD)/.apt-pg pg-stop
	@set -e; dir=$(abspath $(PG_DIR)); mkdir -p $$dir; sock=$$dir; \
	if [ $${#sock} -gt 80 ]; then sock=$$(mktemp -d /tmp/stoq-pg.XXXXXX); echo $$sock > $$dir/socket-dir; fi; \
	if [ "$$(id -u)" = 0 ]; then chown postgres: $$dir $$sock; fi; \
	$(PG_AS) $(PG_BIN)/initdb -D $$dir/data -U stoq --auth=trust -E UTF8 --no-locale > $$dir/initdb.log; \
	port=$$(shuf -i 20000-60000 -n 1); \
	$(PG_AS) $(PG_BIN)/pg_ctl -D $$dir/data -l $$dir/server.log -w -t 60 \
	  -o "-c listen_addresses='' -k $$sock -p $$port" start > /dev/null \
	  || { echo "PostgreSQL did not start: see $$dir/server.log" >&2; exit 1; }; \
	echo "postgres://stoq@localhost/postgres?host=$$sock&port=$$port" > $$dir/url; \
	echo "PostgreSQL $$($(PG_BIN)/postgres --version | awk '{print $$3}') (throw-away cluster): $$(cat $$dir/url)"

pg-stop:
	@dir=$(abspath $(PG_DIR)); \
	if [ -f $$dir/data/postmaster.pid ]; then \
	  $(PG_AS) $(PG_BIN)/pg_ctl -D $$dir/data -m fast -w -t 30 stop > /dev/null \
	    || $(PG_AS) $(PG_BIN)/pg_ctl -D $$dir/data -m immediate -w stop > /dev/null || true; \
	fi; \
	if [ -f $$dir/socket-dir ]; then rm -rf "$$(cat $$dir/socket-dir)"; fi; \
	rm -rf $$dir

# ---- Chromium for the node's dashboard test (headless, driven by puppeteer-core) -------------
$(BUILD)/.apt-chromium:
	@mkdir -p $(BUILD)
	@if ! command -v chromium >/dev/null; then \
	  echo "installing Debian package: chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@touch $@

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
	  -L$(LIBDIR) -l:libmsquic.so.2 -luring -lcrypto -lpthread -Wl,-rpath,'$$ORIGIN' -Wl,-z,nodelete

$(ASAN_DIR)/canary.so: testing/asan_canary.c $(BUILD)/.apt-asan
	@mkdir -p $(ASAN_DIR)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -shared -o $@ $<

# ---- jobs -----------------------------------------------------------------------------------
# The TrustChain store tests run against the throw-away PostgreSQL cluster (STOQ_TEST_POSTGRES).
test: native go-tools relay $(BUILD)/.apt-chromium pg-start
	@status=0; STOQ_TEST_POSTGRES=$$(cat $(PG_DIR)/url) \
	  $(DENO) test -A --unstable-net --doc $(TEST_FLAGS) || status=$$?; \
	$(MAKE) -s pg-stop; exit $$status

# The transport tests against the sanitized shim, after checking that it is the one loaded and
# that a sanitizer report really fails the run.
test-asan: native relay $(ASAN_DIR)/lib/libstoq.so $(ASAN_DIR)/canary.so
	$(ASAN_ENV) $(DENO_RUN) testing/asan_check.ts $(abspath $(ASAN_DIR)/canary.so)
	$(ASAN_ENV) $(DENO) test -A --unstable-net $(TEST_FLAGS) $(TRANSPORT_TESTS)

# The STOQ node: `make serve ARGS="--config config/node.toml --port 9443"`, or
# `deno task serve --config config/node.toml --port 9443` (the task builds, then runs the node).
serve: native
	$(DENO_RUN) src/node/main.ts $(ARGS)

bench: native
	$(DENO) bench -A --unstable-net

bench-compare: native $(BUILD)/c_baseline $(BUILD)/dev-certs/cert.pem
	$(DENO_RUN) bench/compare.ts

# 1 GiB disk to disk: STOQ's io_uring file plane against the C baseline doing the same.
bench-file: native $(BUILD)/c_baseline $(BUILD)/dev-certs/cert.pem
	$(DENO_RUN) bench/file.ts

# CPU an idle endpoint with 100 open connections uses over 10 s.
bench-idle: native $(BUILD)/dev-certs/cert.pem
	$(DENO_RUN) bench/idle.ts

# Development certificates for the benchmarks' servers (the C baselines need files).
$(BUILD)/dev-certs/cert.pem: | $(DENO)
	$(DENO) eval 'import { loadDevCertificates } from "./src/node/dev_cert.ts"; await loadDevCertificates("$(BUILD)/dev-certs")'

# The C baseline over msquic: its server in the background, its client timed (2 GiB upload, hashed).
$(BUILD)/c_baseline: bench/c_baseline.c $(LIBDIR)/libmsquic.so.2 $(BUILD)/msquic-include
	$(CC) -O2 -std=c11 -Wall -Wextra -Werror -I$(BUILD)/msquic-include -o $@ bench/c_baseline.c \
	  -L$(LIBDIR) -l:libmsquic.so.2 -lcrypto -lpthread -Wl,-rpath,'$$ORIGIN/lib'

bench-baseline: native $(BUILD)/c_baseline $(BUILD)/dev-certs/cert.pem
	@rm -f $(BUILD)/c_baseline.out; \
	  $(BUILD)/c_baseline server $(BUILD)/dev-certs/cert.pem $(BUILD)/dev-certs/key.pem 9555 > $(BUILD)/c_baseline.out & \
	  server=$$!; until grep -q listening $(BUILD)/c_baseline.out 2>/dev/null; do sleep 0.1; done; \
	  $(BUILD)/c_baseline client 9555 up 2048 65536; kill $$server

# Handshakes: STOQ cold and resumed, Deno's QUIC and a C client over msquic (bench/c_handshake.c).
$(BUILD)/c_handshake: bench/c_handshake.c $(LIBDIR)/libmsquic.so.2 $(BUILD)/msquic-include
	$(CC) -O2 -std=c11 -Wall -Wextra -Werror -I$(BUILD)/msquic-include -o $@ bench/c_handshake.c \
	  -L$(LIBDIR) -l:libmsquic.so.2 -lpthread -Wl,-rpath,'$$ORIGIN/lib'

bench-handshake: native $(BUILD)/c_handshake $(BUILD)/dev-certs/cert.pem
	$(DENO_RUN) bench/handshake.ts

bench-connections: native $(BUILD)/dev-certs/cert.pem
	$(DENO_RUN) bench/connections.ts

bench-loss: native relay
	$(DENO_RUN) bench/loss.ts

# `deno task bench:provision --store postgres` adds PostgreSQL (a throw-away cluster) beside SQLite.
bench-provision: native
	@status=0; case " $(ARGS) " in *postgres*) $(MAKE) -s pg-start;; esac; \
	STOQ_BENCH_POSTGRES=$$(cat $(PG_DIR)/url 2>/dev/null) $(DENO_RUN) bench/provision.ts $(ARGS) || status=$$?; \
	case " $(ARGS) " in *postgres*) $(MAKE) -s pg-stop;; esac; exit $$status

# Phoenix: pooled against cold connects, and messages/streams/multiplexed sends to a peer app.
bench-pool: native
	$(DENO_RUN) bench/pool.ts

bench-phoenix: native
	$(DENO_RUN) bench/phoenix.ts

# 10,000 clients from this process against a node in another (`deno task bench:node`).
bench-node: native
	$(DENO_RUN) bench/node.ts

# The README's node configuration reference, rendered from the schema (src/node/config/).
config-reference: $(DENO)
	$(DENO) run --allow-read=README.md --allow-write=README.md tools/config_reference.ts
	$(DENO) fmt --quiet README.md

# docs/dashboard.png: a node under a minute of varying load, in headless Chromium.
dashboard-screenshot: native $(BUILD)/.apt-chromium
	$(DENO_RUN) tools/dashboard_screenshot.ts docs/dashboard.png

check: deps
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) doc --lint mod.ts

clean:
	rm -rf $(BUILD)
