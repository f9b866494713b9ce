/* Longest-prefix-match tries keyed by address, one per IP version, as the
 * ratelimit cube's drop lists and the firewall's address fields use them.
 * Keys are written by Sources/TailorCubes/Cube.swift (IPPrefix.lpmKey). */
#pragma once

#include <tailor/cube.h>

struct tailor_lpm_v4 {
    __u32 prefixlen;
    __u8 addr[4];
};

struct tailor_lpm_v6 {
    __u32 prefixlen;
    __u8 addr[16];
};

/* A pair of LPM tries named <name>_v4 and <name>_v6 holding `value_type`. */
#define TAILOR_LPM_PAIR(name, entries, value_type, role)   \
    struct {                                                \
        __uint(type, BPF_MAP_TYPE_LPM_TRIE);                \
        __uint(map_flags, BPF_F_NO_PREALLOC);               \
        __uint(max_entries, entries);                       \
        __type(key, struct tailor_lpm_v4);                  \
        __type(value, value_type);                          \
    } name##_v4 SEC(".maps") role;                          \
    struct {                                                \
        __uint(type, BPF_MAP_TYPE_LPM_TRIE);                \
        __uint(map_flags, BPF_F_NO_PREALLOC);               \
        __uint(max_entries, entries);                       \
        __type(key, struct tailor_lpm_v6);                  \
        __type(value, value_type);                          \
    } name##_v6 SEC(".maps") role

/* The value of the longest prefix holding `addr` (16 bytes; IPv4 in the first 4)
 * in the trie of its IP version, or NULL. */
static __always_inline void *tailor_lpm_lookup(void *trie_v4, void *trie_v6, const __u8 *addr, int v6) {
    if (v6) {
        struct tailor_lpm_v6 key = { .prefixlen = 128 };
        __builtin_memcpy(key.addr, addr, 16);
        return bpf_map_lookup_elem(trie_v6, &key);
    }
    struct tailor_lpm_v4 key = { .prefixlen = 32 };
    __builtin_memcpy(key.addr, addr, 4);
    return bpf_map_lookup_elem(trie_v4, &key);
}

/* Versioned tries (<tailor/versioned.h>): the generation is the first byte of
 * the data, so an entry of prefix length L is stored with L + 8. Packed: the key
 * is the unversioned key with one byte inserted, no padding. */
struct tailor_lpm_v4_versioned {
    __u32 prefixlen;
    __u8 generation;
    __u8 addr[4];
} __attribute__((packed));

struct tailor_lpm_v6_versioned {
    __u32 prefixlen;
    __u8 generation;
    __u8 addr[16];
} __attribute__((packed));

#define TAILOR_LPM_PAIR_VERSIONED(name, entries, value_type)           \
    struct {                                                            \
        __uint(type, BPF_MAP_TYPE_LPM_TRIE);                            \
        __uint(map_flags, BPF_F_NO_PREALLOC);                           \
        __uint(max_entries, 2 * (entries));                             \
        __type(key, struct tailor_lpm_v4_versioned);                    \
        __type(value, value_type);                                      \
    } name##_v4 SEC(".maps") TAILOR_TABLE_VERSIONED;                    \
    struct {                                                            \
        __uint(type, BPF_MAP_TYPE_LPM_TRIE);                            \
        __uint(map_flags, BPF_F_NO_PREALLOC);                           \
        __uint(max_entries, 2 * (entries));                             \
        __type(key, struct tailor_lpm_v6_versioned);                    \
        __type(value, value_type);                                      \
    } name##_v6 SEC(".maps") TAILOR_TABLE_VERSIONED

/* tailor_lpm_lookup in generation `gen` of a versioned pair. */
static __always_inline void *tailor_lpm_lookup_versioned(void *trie_v4, void *trie_v6, const __u8 *addr, int v6,
                                                         __u32 gen) {
    if (v6) {
        struct tailor_lpm_v6_versioned key = { .prefixlen = 8 + 128, .generation = (__u8)gen };
        __builtin_memcpy(key.addr, addr, 16);
        return bpf_map_lookup_elem(trie_v6, &key);
    }
    struct tailor_lpm_v4_versioned key = { .prefixlen = 8 + 32, .generation = (__u8)gen };
    __builtin_memcpy(key.addr, addr, 4);
    return bpf_map_lookup_elem(trie_v4, &key);
}
