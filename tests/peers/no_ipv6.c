/* An LD_PRELOAD shim that makes the process look like a system with IPv6 switched off
 * (ipv6.disable=1): socket(AF_INET6, ...) fails with EAFNOSUPPORT, every other socket() call
 * goes to libc. Built and used by tests/ipv4_fallback.rs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
    static int (*real)(int, int, int);
    if (domain == AF_INET6) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (!real) {
        real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
        if (!real) {
            errno = ENOSYS;
            return -1;
        }
    }
    return real(domain, type, protocol);
}
