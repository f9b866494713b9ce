/* Test fixture: a cube built against the ABI whose program the verifier rejects
 * (it reads the packet without a bounds check): the plan must fail with the
 * verifier's log before anything changes (Tests/TailorCLITests/TransactionTests). */
#include <tailor/cube.h>

TAILOR_CUBE(unverifiable) {
    unsigned char *data = (void *)(long)pkt->data;
    if (data[20] == 1)
        return TAILOR_DROP;
    return tailor_next(pkt);
}
