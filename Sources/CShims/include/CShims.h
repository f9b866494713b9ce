#pragma once
#include <stddef.h>
#include <sys/vfs.h> /* statfs(2), which Glibc does not export to Swift */
#include <linux/if_packet.h> /* sockaddr_ll for AF_PACKET sockets */
#include <linux/if_ether.h> /* ETH_P_ALL */
#include <linux/rtnetlink.h> /* RTNLGRP_LINK, RTM_NEWLINK, ifinfomsg: link events (LinkEvents) */

/// setns(2): Glibc does not export it to Swift.
int tailor_setns(int fd, int nstype);

/// unshare(2) is not exported either; CLONE_NEWNET is a macro Swift cannot see.
int tailor_clone_newnet(void);

/// libbpf's print callback takes a va_list; this formats each message and hands
/// the finished line to `sink` (NULL silences libbpf).
typedef void (*tailor_libbpf_sink)(int level, const char *message);
void tailor_libbpf_set_sink(tailor_libbpf_sink sink);
