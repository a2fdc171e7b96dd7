/*
 * Deliberate bugs for `make test-asan` to prove that a sanitizer report fails the run: built
 * with the same flags as the sanitized shim, loaded by testing/asan_check.ts in a child process
 * that must die with the report. Never linked into anything else.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* 1: heap-buffer-overflow (ASan); 2: signed integer overflow (UBSan). Returns what it computed. */
int stoq_canary(int kind, int n) {
  if (kind == 1) {
    char* p = malloc((size_t)n);
    memset(p, 1, (size_t)n + 1);
    int last = p[n];
    free(p);
    return last;
  }
  if (kind == 2) return n + INT_MAX;
  return 0;
}
