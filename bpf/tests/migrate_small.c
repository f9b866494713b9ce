/* State-migration fixture: version 1's layout with room for 4 flows only; the
 * plan must refuse while more flows are live (see migrate.h). */
typedef unsigned short flow_key_t;
#define FLOW_KEY(port, proto) (port)
#define FLOWS_MAX 4
#define FLOWS_TAGS
#define FLOW_INIT , .tos = 7
struct flow_value {
    unsigned int packets;
    unsigned int bytes;
    unsigned char tos;
};
struct last_value {
    unsigned short len;
    unsigned char proto;
};
#include "migrate.h"
