/* tag: appends its id to the packet's path in the chain metadata, so a test or
 * an operator can tell which path a packet took. With `record` set it also
 * counts every distinct path it has seen (the path up to and including itself)
 * in its `paths` state map. */
#include <tailor/cube.h>

const volatile __u16 tag_id = 0;
const volatile __u8 record = 0;

struct tag_path {
    __u16 hops;
    __u16 path[TAILOR_PATH_MAX];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct tag_path);
    __type(value, __u64);
} paths SEC(".maps") TAILOR_STATE;

TAILOR_CUBE(tag) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    __u8 hops = meta->hops;
    if (hops < TAILOR_PATH_MAX) {
        meta->path[hops] = tag_id;
        meta->hops = hops + 1;
    }
    if (record) {
        struct tag_path key = {.hops = meta->hops};
        __builtin_memcpy(key.path, meta->path, sizeof(key.path));
        /* Entries past hops are stale from earlier packets: zero them. */
        for (int i = 0; i < TAILOR_PATH_MAX; i++)
            if (i >= key.hops)
                key.path[i] = 0;
        __u64 *count = bpf_map_lookup_elem(&paths, &key);
        if (!count) {
            /* Another CPU may insert the same path first: then add to its entry. */
            __u64 zero = 0;
            bpf_map_update_elem(&paths, &key, &zero, BPF_NOEXIST);
            count = bpf_map_lookup_elem(&paths, &key);
        }
        if (count)
            __sync_fetch_and_add(count, 1);
    }
    return tailor_next(pkt);
}
