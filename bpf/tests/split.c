/* Test fixture: a two-output cube that sends packets with an even source port
 * to output 0 and odd ones to output 1, so tests can build branching chains. */
#include <tailor/cube.h>
#include <tailor/parse.h>

TAILOR_CUBE(split) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    tailor_parse(pkt, meta);
    return tailor_next_port(pkt, bpf_ntohs(meta->sport) & 1);
}
