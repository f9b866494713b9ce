/* State-migration fixture: flows' packet counter narrowed to 16 bits, which
 * cannot carry the values version 1 holds: the plan must refuse (see migrate.h). */
typedef unsigned short flow_key_t;
#define FLOW_KEY(port, proto) (port)
#define FLOWS_MAX 64
#define FLOWS_TAGS
#define FLOW_INIT
struct flow_value {
    unsigned short packets;
    unsigned int bytes;
    unsigned char tos;
};
struct last_value {
    unsigned short len;
    unsigned char proto;
};
#include "migrate.h"
