/* State-migration fixture: flows keyed by (port, proto) instead of the port alone;
 * version 1's keys cannot be mapped onto it: the plan must refuse (see migrate.h). */
struct flow_key {
    unsigned short port;
    unsigned char proto;
    unsigned char pad;
};
typedef struct flow_key flow_key_t;
#define FLOW_KEY(p, pr) ((struct flow_key){ .port = (p), .proto = (pr) })
#define FLOWS_MAX 64
#define FLOWS_TAGS
#define FLOW_INIT , .tos = 7
#include "migrate_v1_types.h"
#include "migrate.h"
