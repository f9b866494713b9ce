/* The chain root: attached to the chain's hook, it starts each packet's
 * metadata afresh and tail-calls slot 0, the entry cube. The controller sets
 * tailor_next_slot[0] = 0; an empty slot 0 gets the chain's fail-open/closed
 * verdict and is counted as missed in the root's counters. */
#include <tailor/cube.h>

/* Who this root is: the controller writes the chain's identity here before
 * load (JSON: tailor's marker, a random chain id, the pin root, the chain's
 * settings), zero-padded. Rodata is frozen at load, so the identity cannot be
 * changed or removed while the program lives: it is how tailor proves that a
 * program on a hook is its chain's root after someone removed the pins. */
const volatile char tailor_chain_identity[1024] = {};

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
