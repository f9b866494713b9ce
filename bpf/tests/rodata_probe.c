/* Test fixture: returns the rodata value `verdict`, so a test can see that a
 * value set before load reached the program. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 verdict = 2; /* XDP_PASS */
const volatile __u8 unused_flag = 0;

SEC("xdp") int rodata_probe(struct xdp_md *ctx) {
    return unused_flag ? 0 : verdict;
}

char _license[] SEC("license") = "GPL";
