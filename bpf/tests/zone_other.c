/* A cube with a state map named like the firewall's `conntrack` but of another
 * layout: joining a firewall's zone with it must be refused. */
#include <tailor/cube.h>

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, __u64);
} conntrack SEC(".maps") TAILOR_STATE;

TAILOR_CUBE(zone_other) {
    __u32 key = 0;
    __u64 *seen = bpf_map_lookup_elem(&conntrack, &key);
    if (seen)
        *seen += 1;
    return tailor_next(pkt);
}
