/*
 * One Falcon-512 variant over PQClean's internal API (inner.h of the variant's directory):
 * key generation from a seed, key expansion, and signing with an expanded key. Compiled once with
 * STOQ_FALCON_VARIANT_AVX2 (and -mavx2) and once without.
 */
#include <string.h>

#include "falcon.h"
#include "inner.h"

#ifdef STOQ_FALCON_VARIANT_AVX2
#define PQ(name) PQCLEAN_FALCON512_AVX2_##name
#define OURS(name) stoq_falcon_avx2_##name
#else
#define PQ(name) PQCLEAN_FALCON512_CLEAN_##name
#define OURS(name) stoq_falcon_clean_##name
#endif

#define LOGN 9
#define N 512

/* Temporary space: the largest need is key generation (FALCON_KEYGEN_TEMP_9), then 72 * N. */
typedef union {
    uint8_t b[FALCON_KEYGEN_TEMP_9 > 72 * N ? FALCON_KEYGEN_TEMP_9 : 72 * N];
    uint64_t align_u64;
    fpr align_fpr;
} tmp_buf;

_Static_assert(STOQ_FALCON_EXPANDED_LEN % sizeof(fpr) == 0, "expanded key is whole fprs");

int OURS(keygen)(const uint8_t *seed, uint8_t *pk, uint8_t *sk) {
    tmp_buf tmp;
    int8_t f[N], g[N], F[N];
    uint16_t h[N];
    inner_shake256_context rng;
    size_t u, v;
    int rc = -1;

    inner_shake256_init(&rng);
    inner_shake256_inject(&rng, seed, STOQ_FALCON_SEED_LEN);
    inner_shake256_flip(&rng);
    PQ(keygen)(&rng, f, g, F, NULL, h, LOGN, tmp.b);
    inner_shake256_ctx_release(&rng);

    sk[0] = 0x50 + LOGN;
    u = 1;
    v = PQ(trim_i8_encode)(sk + u, STOQ_FALCON_SK_LEN - u, f, LOGN, PQ(max_fg_bits)[LOGN]);
    if (v == 0) goto out;
    u += v;
    v = PQ(trim_i8_encode)(sk + u, STOQ_FALCON_SK_LEN - u, g, LOGN, PQ(max_fg_bits)[LOGN]);
    if (v == 0) goto out;
    u += v;
    v = PQ(trim_i8_encode)(sk + u, STOQ_FALCON_SK_LEN - u, F, LOGN, PQ(max_FG_bits)[LOGN]);
    if (v == 0) goto out;
    u += v;
    if (u != STOQ_FALCON_SK_LEN) goto out;
    pk[0] = 0x00 + LOGN;
    if (PQ(modq_encode)(pk + 1, STOQ_FALCON_PK_LEN - 1, h, LOGN) != STOQ_FALCON_PK_LEN - 1) goto out;
    rc = 0;
out:
    stoq_falcon_wipe(f, sizeof f);
    stoq_falcon_wipe(g, sizeof g);
    stoq_falcon_wipe(F, sizeof F);
    stoq_falcon_wipe(&tmp, sizeof tmp);
    stoq_falcon_wipe(&rng, sizeof rng);
    if (rc != 0) stoq_falcon_wipe(sk, STOQ_FALCON_SK_LEN);
    return rc;
}

int OURS(expand)(const uint8_t *sk, void *expanded) {
    tmp_buf tmp;
    int8_t f[N], g[N], F[N], G[N];
    size_t u = 1, v;
    int rc = -1;

    if (sk[0] != 0x50 + LOGN) return -1;
    v = PQ(trim_i8_decode)(f, LOGN, PQ(max_fg_bits)[LOGN], sk + u, STOQ_FALCON_SK_LEN - u);
    if (v == 0) goto out;
    u += v;
    v = PQ(trim_i8_decode)(g, LOGN, PQ(max_fg_bits)[LOGN], sk + u, STOQ_FALCON_SK_LEN - u);
    if (v == 0) goto out;
    u += v;
    v = PQ(trim_i8_decode)(F, LOGN, PQ(max_FG_bits)[LOGN], sk + u, STOQ_FALCON_SK_LEN - u);
    if (v == 0) goto out;
    u += v;
    if (u != STOQ_FALCON_SK_LEN) goto out;
    if (!PQ(complete_private)(G, f, g, F, LOGN, tmp.b)) goto out;
    PQ(expand_privkey)((fpr *)expanded, f, g, F, G, LOGN, tmp.b);
    rc = 0;
out:
    stoq_falcon_wipe(f, sizeof f);
    stoq_falcon_wipe(g, sizeof g);
    stoq_falcon_wipe(F, sizeof F);
    stoq_falcon_wipe(G, sizeof G);
    stoq_falcon_wipe(&tmp, sizeof tmp);
    return rc;
}

int OURS(sign)(const void *expanded, const uint8_t *rnd, const uint8_t *msg, size_t msg_len,
               uint8_t *sig) {
    tmp_buf tmp;
    int16_t s2[N];
    uint16_t hm[N];
    inner_shake256_context sc;
    size_t v;

    /* The message point: SHAKE256(nonce || message), as PQClean and NIST round 3 hash it. */
    inner_shake256_init(&sc);
    inner_shake256_inject(&sc, rnd, STOQ_FALCON_NONCE_LEN);
    inner_shake256_inject(&sc, msg, msg_len);
    inner_shake256_flip(&sc);
    PQ(hash_to_point_ct)(&sc, hm, LOGN, tmp.b);
    inner_shake256_ctx_release(&sc);

    /* The sampler's randomness: SHAKE256(seed). */
    inner_shake256_init(&sc);
    inner_shake256_inject(&sc, rnd + STOQ_FALCON_NONCE_LEN, STOQ_FALCON_SEED_LEN);
    inner_shake256_flip(&sc);
    PQ(sign_tree)(s2, &sc, (const fpr *)expanded, hm, LOGN, tmp.b);
    inner_shake256_ctx_release(&sc);
    stoq_falcon_wipe(&tmp, sizeof tmp);
    stoq_falcon_wipe(&sc, sizeof sc);

    sig[0] = 0x30 + LOGN;
    memcpy(sig + 1, rnd, STOQ_FALCON_NONCE_LEN);
    v = PQ(comp_encode)(sig + 1 + STOQ_FALCON_NONCE_LEN,
                        STOQ_FALCON_SIG_MAX - 1 - STOQ_FALCON_NONCE_LEN, s2, LOGN);
    return v == 0 ? -2 : (int)(1 + STOQ_FALCON_NONCE_LEN + v);
}
