/* A cube with an entry-safe table: drops packets to the destination ports listed
 * in `blocked`. Each entry means the same on its own, so the controller changes
 * entries in place instead of replacing the instance. Tested in
 * Tests/TailorReconcileTests/TableUpdateTests.swift and measured by `tailor-bench plan`. */
#include <tailor/cube.h>
#include <tailor/parse.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u16);                   /* destination port, host order */
    __type(value, __u8);                  /* 1: drop */
} blocked SEC(".maps") TAILOR_TABLE_ENTRY_SAFE;

TAILOR_CUBE(blocklist) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    if (!(tailor_parse(pkt, meta) & TAILOR_META_L4))
        return tailor_next(pkt);
    __u16 port = bpf_ntohs(meta->dport);
    __u8 *drop = bpf_map_lookup_elem(&blocked, &port);
    if (drop && *drop)
        return TAILOR_DROP;
    return tailor_next(pkt);
}
