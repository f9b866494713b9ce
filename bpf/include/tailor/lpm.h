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
