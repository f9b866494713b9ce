/* Versioned tables: a cube whose tables only make sense together (the firewall's
 * bit vectors: every field's vector numbers the same rules) keeps two generations
 * of each, and a packet reads the generation `tailor_generation` names when it
 * enters the cube, for every lookup. The controller writes the changed entries
 * into the generation no packet reads, switches with one write of
 * `tailor_generation`, and after a grace period writes the same entries into the
 * other generation, so at rest both hold the same (docs/cube-abi.md). A packet is
 * classified entirely by the old or entirely by the new tables.
 *
 * Where the generation sits in a key, by map type (TAILOR_TABLE_VERSIONED):
 *   array     index + generation * (max_entries / 2)
 *   LPM trie  the first byte of the data, counted in the prefix length
 *   hash      the first 4 bytes of the key, a __u32
 * Sources/TailorDatapath/TableGenerations.swift writes them the same way. */
#pragma once

#include <tailor/cube.h>

/* The generation packets read (0 or 1), and whether the other one holds the
 * same entries again (set by the controller; packets ignore it). */
struct tailor_generation {
    __u32 active;
    __u32 settled;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tailor_generation);
} tailor_generation SEC(".maps");

/* The generation this packet reads: call once per packet and pass it on. */
static __always_inline __u32 tailor_generation_get(void) {
    __u32 zero = 0;
    struct tailor_generation *g = bpf_map_lookup_elem(&tailor_generation, &zero);
    return g ? (*(volatile __u32 *)&g->active & 1) : 0;
}

/* An array's index for `key` in generation `gen`, where each generation holds `n`. */
#define TAILOR_VERSIONED_INDEX(gen, key, n) ((__u32)(key) + (gen) * (__u32)(n))
