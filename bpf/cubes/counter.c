/* counter: counts packets and bytes per CPU and hands every packet on. */
#include <tailor/cube.h>

struct counter_value {
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct counter_value);
} counters SEC(".maps") TAILOR_STATE;

TAILOR_CUBE(counter) {
    __u32 key = 0;
    struct counter_value *value = bpf_map_lookup_elem(&counters, &key);
    if (value) {
        value->packets += 1;
        value->bytes += pkt->len;
    }
    return tailor_next(pkt);
}
