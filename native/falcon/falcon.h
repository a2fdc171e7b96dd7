/*
 * Internal interface between native/falcon/falcon.c (the exported API) and variant.c, which is
 * compiled twice: against PQClean's portable falcon-512 "clean" sources (emulated floating point)
 * and against its "avx2" sources (native floating point, AVX2).
 */
#ifndef STOQ_FALCON_H
#define STOQ_FALCON_H

#include <stddef.h>
#include <stdint.h>

#define STOQ_FALCON_NONCE_LEN 40
#define STOQ_FALCON_SEED_LEN 48
#define STOQ_FALCON_PK_LEN 897
#define STOQ_FALCON_SK_LEN 1281
#define STOQ_FALCON_SIG_MAX 752
/* The expanded key: (8 * logn + 40) * 2^logn bytes for logn = 9. */
#define STOQ_FALCON_EXPANDED_LEN (((8 * 9) + 40) << 9)

/* Variant numbers, as TS passes them. */
#define STOQ_FALCON_AUTO 0
#define STOQ_FALCON_PORTABLE 1
#define STOQ_FALCON_AVX2 2

/* One variant's implementation; see falcon.c for the contracts. */
int stoq_falcon_clean_keygen(const uint8_t *seed, uint8_t *pk, uint8_t *sk);
int stoq_falcon_clean_expand(const uint8_t *sk, void *expanded);
int stoq_falcon_clean_sign(const void *expanded, const uint8_t *rnd, const uint8_t *msg,
                           size_t msg_len, uint8_t *sig);
int stoq_falcon_avx2_keygen(const uint8_t *seed, uint8_t *pk, uint8_t *sk);
int stoq_falcon_avx2_expand(const uint8_t *sk, void *expanded);
int stoq_falcon_avx2_sign(const void *expanded, const uint8_t *rnd, const uint8_t *msg,
                          size_t msg_len, uint8_t *sig);

/* Overwrites n bytes in a way the compiler keeps. */
void stoq_falcon_wipe(void *p, size_t n);

#endif
