#define _GNU_SOURCE
#include "CShims.h"

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <bpf/libbpf.h>

int tailor_setns(int fd, int nstype) { return setns(fd, nstype); }

int tailor_clone_newnet(void) { return CLONE_NEWNET; }

static tailor_libbpf_sink current_sink;

static int forward_libbpf_print(enum libbpf_print_level level, const char *format, va_list args) {
    char line[1024];
    if (!current_sink) return 0;
    int n = vsnprintf(line, sizeof line, format, args);
    current_sink((int)level, line);
    return n;
}

void tailor_libbpf_set_sink(tailor_libbpf_sink sink) {
    current_sink = sink;
    libbpf_set_print(forward_libbpf_print);
}
