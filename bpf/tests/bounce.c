/* A cube that sends every packet out of one interface (rodata, set at load
 * time), ending the chain with TAILOR_REDIRECT; 0 hands packets on. Tested in
 * Tests/TailorDatapathTests/RedirectTests.swift. */
#include <tailor/cube.h>

const volatile __u32 target_ifindex = 0;

TAILOR_CUBE(bounce) {
    if (!target_ifindex)
        return tailor_next(pkt);
    return tailor_redirect(pkt, target_ifindex);
}
