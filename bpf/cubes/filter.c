/* filter: passes or drops packets by a small ordered rule table, first match
 * wins (UniBPF's BPFFilter). A passed packet goes on to the next cube. For large
 * rule sets use the firewall cube, which classifies in near-constant time. */
#include <tailor/cube.h>
#include <tailor/rules.h>

enum filter_action {
    FILTER_PASS = 0,
    FILTER_DROP = 1,
};

const volatile __u8 default_action = FILTER_PASS;

TAILOR_CUBE(filter) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    tailor_parse(pkt, meta);
    __u8 action = default_action;
    TAILOR_FIRST_MATCH(meta, action);
    return action == FILTER_DROP ? TAILOR_DROP : tailor_next(pkt);
}
