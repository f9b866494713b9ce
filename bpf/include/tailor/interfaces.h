/* Interfaces a cube's config names: the controller resolves each name in the
 * chain's network namespace and sets its ifindex here before the cube is loaded
 * (0 while the interface does not exist). A name that comes to mean another
 * interface (deleted and made again) replaces the cube with the new index.
 * docs/cube-abi.md. */
#pragma once

#include <tailor/cube.h>

#define TAILOR_MAX_INTERFACES 8

/* In the order of the cube type's `interfaces` (CubeBlueprint.interfaces). */
const volatile __u32 tailor_ifindex[TAILOR_MAX_INTERFACES] = {};

/* The ifindex of interface `port` of the cube's config; 0 when it does not exist. */
static __always_inline __u32 tailor_interface(__u32 port) {
    return port < TAILOR_MAX_INTERFACES ? tailor_ifindex[port] : 0;
}
