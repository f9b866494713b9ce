/* The flow-counting cube the state-migration tests replace by versions whose map
 * layouts differ (Tests/TailorDatapathTests/MigrationTests.swift). A version
 * defines flow_key_t, struct flow_value, FLOW_INIT (extra initialisers), FLOWS_MAX
 * and struct last_value, then includes this file.
 *
 * flows: per destination port, packets and bytes per CPU (additive: counters).
 * last:  per destination port, the last packet's length and protocol. */
#include <tailor/cube.h>
#include <tailor/parse.h>

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, FLOWS_MAX);
    __type(key, flow_key_t);
    __type(value, struct flow_value);
} flows SEC(".maps") TAILOR_STATE_ADDITIVE FLOWS_TAGS;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u16);
    __type(value, struct last_value);
} last SEC(".maps") TAILOR_STATE;

TAILOR_CUBE(migrate) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    if (!(tailor_parse(pkt, meta) & TAILOR_META_L4))
        return tailor_next(pkt);
    __u16 port = bpf_ntohs(meta->dport);
    flow_key_t key = FLOW_KEY(port, meta->ip_proto);
    struct flow_value *value = bpf_map_lookup_elem(&flows, &key);
    if (value) {
        value->packets += 1;
        value->bytes += pkt->len;
    } else {
        struct flow_value first = { .packets = 1, .bytes = pkt->len FLOW_INIT };
        bpf_map_update_elem(&flows, &key, &first, BPF_NOEXIST);
    }
    struct last_value seen = { .len = pkt->len, .proto = meta->ip_proto };
    bpf_map_update_elem(&last, &port, &seen, BPF_ANY);
    return tailor_next(pkt);
}
