/* State-migration fixture, version 2: flows' counters widened to 64 bits, tos
 * removed, version added (starting at 2), room for more flows; last's length
 * widened and a field added. Every change migrates (see migrate.h). */
typedef unsigned short flow_key_t;
#define FLOW_KEY(port, proto) (port)
#define FLOWS_MAX 128
#define FLOWS_TAGS TAILOR_STATE_DEFAULT(version, 2)
#define FLOW_INIT , .version = 2
struct flow_value {
    unsigned long long packets;
    unsigned long long bytes;
    unsigned int version;
};
struct last_value {
    unsigned int len;
    unsigned char proto;
    unsigned char seen;
};
#include "migrate.h"
