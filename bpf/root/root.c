/* The chain root: attached to the chain's hook, it starts each packet's
 * metadata afresh and tail-calls slot 0, the entry cube. The controller sets
 * tailor_next_slot[0] = 0; an empty slot 0 gets the chain's fail-open/closed
 * verdict and is counted as missed in the root's counters. */
#include <tailor/cube.h>

TAILOR_CUBE(root) {
    struct tailor_meta *meta = tailor_meta_get();
    if (meta) {
        meta->flags = 0;
        meta->hops = 0;
        meta->mark = 0;
        meta->ct_state = 0;
    }
    return tailor_next(pkt);
}
