/* The example cube of docs/cube-abi.md: counts packets per destination port
 * (state) and drops one port set at load time (rodata). Tested in
 * Tests/TailorDatapathTests/ExampleCubeTests.swift. */
#include <tailor/cube.h>
#include <tailor/parse.h>

const volatile __u16 blocked_port = 0;   /* host order; 0 = block nothing */

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u16);                   /* destination port, host order */
    __type(value, __u64);
} per_port SEC(".maps") TAILOR_STATE;

TAILOR_CUBE(portcount) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    if (!(tailor_parse(pkt, meta) & TAILOR_META_L4))
        return tailor_next(pkt);           /* not TCP/UDP: not ours to judge */
    __u16 port = bpf_ntohs(meta->dport);
    __u64 one = 1, *count = bpf_map_lookup_elem(&per_port, &port);
    if (count)
        *count += 1;
    else
        bpf_map_update_elem(&per_port, &port, &one, BPF_NOEXIST);
    if (blocked_port && port == blocked_port)
        return TAILOR_DROP;
    return tailor_next(pkt);
}
