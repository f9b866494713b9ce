/* State-migration fixture, version 1 (see migrate.h). */
typedef unsigned short flow_key_t;
#define FLOW_KEY(port, proto) (port)
#define FLOWS_MAX 64
#define FLOWS_TAGS
#define FLOW_INIT , .tos = 7
#include "migrate_v1_types.h"
#include "migrate.h"
