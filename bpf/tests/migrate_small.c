/* State-migration fixture: version 1's layout with room for 4 flows only; the
 * plan must refuse while more flows are live (see migrate.h). */
typedef unsigned short flow_key_t;
#define FLOW_KEY(port, proto) (port)
#define FLOWS_MAX 4
#define FLOWS_TAGS
#define FLOW_INIT , .tos = 7
#include "migrate_v1_types.h"
#include "migrate.h"
