/* Benchmark baseline: one program doing the work of `cubes` counter cubes
 * (a per-CPU counter each: packets and bytes) with no chain around it. The
 * datapath benchmark compares a chain of N counter cubes against it. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define MAX_CUBES 8

const volatile __u32 cubes = 1;

struct counter_value {
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MAX_CUBES);
    __type(key, __u32);
    __type(value, struct counter_value);
} counters SEC(".maps");

static __always_inline void count(__u32 len) {
    /* Unrolled with a constant key per copy, as N separate cubes would be. */
#pragma unroll
    for (__u32 i = 0; i < MAX_CUBES; i++) {
        if (i >= cubes)
            break;
        __u32 key = i;
        struct counter_value *value = bpf_map_lookup_elem(&counters, &key);
        if (value) {
            value->packets += 1;
            value->bytes += len;
        }
    }
}

SEC("xdp") int monolithic_xdp(struct xdp_md *ctx) {
    count((__u32)(ctx->data_end - ctx->data));
    return XDP_PASS;
}

SEC("tc") int monolithic_tc(struct __sk_buff *ctx) {
    count(ctx->len);
    return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
