/* Test fixture: an object cube with a struct-keyed table, to test encoding table
 * entries from YAML through BTF (field names, widths, addresses, MACs). Packets
 * whose (daddr, dport, proto) is in the table are counted and dropped when the
 * entry says so. */
#include <tailor/cube.h>
#include <tailor/parse.h>

enum flow_action { FLOW_PASS = 0, FLOW_DROP = 1 };

struct flow_key {
    __u32 addr;        /* network order */
    __u16 port;        /* host order */
    __u8 proto;
    __u8 pad;
};

struct flow_value {
    __u64 limit;
    __u8 next_hop[6];
    __u8 action;       /* enum flow_action */
    __s8 weight;
    __u8 v6[16];
    char label[8];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, struct flow_key);
    __type(value, struct flow_value);
} flows SEC(".maps") TAILOR_TABLE;

const volatile enum flow_action unknown_flow = FLOW_PASS;

TAILOR_CUBE(flowtable) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    if (!(tailor_parse(pkt, meta) & TAILOR_META_L4))
        return tailor_next(pkt);
    struct flow_key key = {.port = bpf_ntohs(meta->dport), .proto = meta->ip_proto};
    __builtin_memcpy(&key.addr, meta->daddr, 4);
    struct flow_value *value = bpf_map_lookup_elem(&flows, &key);
    __u8 action = value ? value->action : unknown_flow;
    return action == FLOW_DROP ? TAILOR_DROP : tailor_next(pkt);
}
