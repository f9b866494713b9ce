/* classifier: sends each packet to one of its outputs by ordered match rules,
 * first match wins, else to the default output (UniBPF's BPFClassifier, Click's
 * IPClassifier). Each output continues to its own next cube, so chains branch.
 * The rules' verdict byte is the output. */
#include <tailor/cube.h>
#include <tailor/rules.h>

const volatile __u8 default_output = 0;

TAILOR_CUBE(classifier) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    tailor_parse(pkt, meta);
    __u32 output = default_output;
    TAILOR_FIRST_MATCH(meta, output);
    return tailor_next_port(pkt, output);
}
