/*
 * STOQ's Falcon-512 signer (libstoq_falcon.so): PQClean's falcon-512 (the C sources the
 * `pqcrypto-falcon` crate ships; see Cargo.toml here and the Makefile), with two things PQClean's
 * NIST API does not offer:
 * - the private key is expanded once (stoq_falcon_key_open: the B0 matrix and LDL tree in FFT
 *   form) and kept by the caller, so a signature costs one `sign_tree` instead of `sign_dyn`,
 *   which rebuilds the tree for every signature;
 * - all randomness comes from the caller (the 40-byte nonce and 48-byte sampler seed of a
 *   signature, the 48-byte seed of a key pair), so TrustChain can inject its random source.
 *
 * Two builds of PQClean are linked in: "avx2" (native floating point; needs AVX2) and the
 * portable "clean" one (emulated floating point, about 10x slower). STOQ_FALCON_AUTO picks AVX2
 * when the CPU has it.
 *
 * Formats are PQClean's and NIST round 3's: public key 897 bytes (0x09 || h), secret key
 * 1281 bytes (0x59 || f || g || F), detached signature 0x39 || nonce || compressed s2, at most
 * 752 bytes. Verification is left to other implementations (TrustChain verifies in TS).
 *
 * Ownership: a key handle belongs to the caller from stoq_falcon_key_open until
 * stoq_falcon_key_close, which wipes and frees it, once. Buffers passed in are only used during
 * the call. No I/O, no global state; a key handle may sign from several threads at once.
 */
#include <stdlib.h>

#include "falcon.h"

#define EXPORT __attribute__((visibility("default")))
#define KEY_MAGIC 0x46414c43u /* "FALC" */
#define ABI_VERSION 1

typedef struct stoq_falcon_key {
    uint32_t magic;
    uint32_t variant;
    /* Aligned for fpr (double or uint64_t). */
    uint64_t expanded[STOQ_FALCON_EXPANDED_LEN / sizeof(uint64_t)];
} stoq_falcon_key;

void stoq_falcon_wipe(void *p, size_t n) {
    volatile uint8_t *v = p;
    while (n--) *v++ = 0;
}

static int has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

/* The variant to use for a request, or 0 when it cannot run here. */
static uint32_t resolve(uint32_t variant) {
    switch (variant) {
    case STOQ_FALCON_AUTO: return has_avx2() ? STOQ_FALCON_AVX2 : STOQ_FALCON_PORTABLE;
    case STOQ_FALCON_PORTABLE: return STOQ_FALCON_PORTABLE;
    case STOQ_FALCON_AVX2: return has_avx2() ? STOQ_FALCON_AVX2 : 0;
    default: return 0;
    }
}

/* The ABI of this library; TS checks it on load. */
EXPORT uint32_t stoq_falcon_abi_version(void) { return ABI_VERSION; }

/* The variant STOQ_FALCON_AUTO resolves to on this CPU: 1 portable, 2 AVX2. */
EXPORT uint32_t stoq_falcon_variant(void) { return resolve(STOQ_FALCON_AUTO); }

/*
 * Makes a key pair from a 48-byte seed. pk: 897 bytes out; sk: 1281 bytes out.
 * Returns 0; -1 when the variant cannot run here; -2 when encoding failed.
 */
EXPORT int32_t stoq_falcon_keygen(uint32_t variant, const uint8_t *seed, uint8_t *pk, uint8_t *sk) {
    switch (resolve(variant)) {
    case STOQ_FALCON_PORTABLE: return stoq_falcon_clean_keygen(seed, pk, sk) == 0 ? 0 : -2;
    case STOQ_FALCON_AVX2: return stoq_falcon_avx2_keygen(seed, pk, sk) == 0 ? 0 : -2;
    default: return -1;
    }
}

/*
 * Expands a secret key (sk_len must be 1281). Returns the key handle, owned by the caller until
 * stoq_falcon_key_close; NULL when the key is malformed, the variant cannot run here, or memory
 * is short.
 */
EXPORT stoq_falcon_key *stoq_falcon_key_open(uint32_t variant, const uint8_t *sk, size_t sk_len) {
    uint32_t v = resolve(variant);
    stoq_falcon_key *key;
    int rc;

    if (v == 0 || sk == NULL || sk_len != STOQ_FALCON_SK_LEN) return NULL;
    key = malloc(sizeof *key);
    if (key == NULL) return NULL;
    rc = v == STOQ_FALCON_AVX2 ? stoq_falcon_avx2_expand(sk, key->expanded)
                               : stoq_falcon_clean_expand(sk, key->expanded);
    if (rc != 0) {
        stoq_falcon_wipe(key, sizeof *key);
        free(key);
        return NULL;
    }
    key->magic = KEY_MAGIC;
    key->variant = v;
    return key;
}

/* Wipes and frees a key handle. NULL is ignored; a handle that is not live aborts. */
EXPORT void stoq_falcon_key_close(stoq_falcon_key *key) {
    if (key == NULL) return;
    if (key->magic != KEY_MAGIC) abort();
    stoq_falcon_wipe(key, sizeof *key);
    free(key);
}

/* The variant a key handle signs with: 1 portable, 2 AVX2. */
EXPORT uint32_t stoq_falcon_key_variant(const stoq_falcon_key *key) {
    return key != NULL && key->magic == KEY_MAGIC ? key->variant : 0;
}

/*
 * Signs msg with a key handle. rnd: 88 random bytes (the 40-byte nonce, then the 48-byte sampler
 * seed). sig: 752 bytes out. Returns the signature length; -1 for a bad handle; -2 when the
 * signature does not fit its encoding (vanishingly rare: sign again with fresh randomness).
 */
EXPORT int32_t stoq_falcon_sign(const stoq_falcon_key *key, const uint8_t *rnd, const uint8_t *msg,
                                size_t msg_len, uint8_t *sig) {
    if (key == NULL || key->magic != KEY_MAGIC) return -1;
    return key->variant == STOQ_FALCON_AVX2
               ? stoq_falcon_avx2_sign(key->expanded, rnd, msg, msg_len, sig)
               : stoq_falcon_clean_sign(key->expanded, rnd, msg, msg_len, sig);
}
