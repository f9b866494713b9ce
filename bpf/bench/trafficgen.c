/* A packet generator and sink for the benchmarks. The generator, run by BPF_PROG_TEST_RUN in live-frames
 * mode (BPF_F_TEST_XDP_LIVE_FRAMES), each repetition sends the test frame out of
 * `target_ifindex`, so the kernel generates the traffic at a small cost per frame
 * instead of a socket's system call per frame (Program.sendLive).
 *
 * The kernel recycles each frame's page without copying the frame into it again,
 * and whatever forwarded the frame before (a TTL decrement, new MAC addresses, a
 * NAT's rewrite) wrote into that page: so the program first puts the frame's
 * headers back from `headers`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define HEADER_WORDS 8   /* the first 64 bytes: Ethernet, IPv4 and UDP or TCP headers */

const volatile __u32 target_ifindex = 0;
const volatile __u64 headers[HEADER_WORDS] = {};

SEC("xdp")
int trafficgen(struct xdp_md *ctx) {
    __u64 *data = (void *)(long)ctx->data;
    if ((void *)(data + HEADER_WORDS) > (void *)(long)ctx->data_end)
        return XDP_ABORTED;
#pragma unroll
    for (int i = 0; i < HEADER_WORDS; i++)
        data[i] = headers[i];
    return bpf_redirect(target_ifindex, 0);
}

char _license[] SEC("license") = "GPL";

/* The far side's end of the benchmark: attached to the receiving veth, it drops
 * every frame before the receiver's stack spends anything on it. */
SEC("xdp")
int sink(struct xdp_md *ctx) {
    return XDP_DROP;
}
