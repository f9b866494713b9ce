/* The firewall cube as a later release would ship it: another object (its digest
 * and BTF differ) with the same maps, so replacing a running firewall by it keeps
 * the connection table. Used by the firewall connection tests. */
#include "../cubes/firewall.c"

const volatile __u32 fixture_release = 2;
