/*
 * pe-detector: an example Cordon scanner in C, built for WASI with Debian's clang, lld and
 * wasi-libc (no Rust, no SDK) to show that the plugin contract serves any language that
 * targets WASI:
 *
 *     clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -o pe-detector.wasm pe-detector.c
 *
 * It needs nothing of the result JSON on stdin and leaves it unread (the host never waits for a
 * plugin to read its stdin, and reading it would only cost time). It opens the file named by
 * its last argument, and reports a Windows PE executable as Suspicious (2): a file that
 * starts with the DOS header magic "MZ" and either carries the DOS stub's message "This program
 * cannot be run in DOS mode" in its first 1024 bytes or has the "PE\0\0" signature where the
 * DOS header's e_lfanew field (little-endian 32 bits at offset 0x3c) points. Anything else is
 * No Threat Detected (0). The verdict goes to stdout as one JSON object; on any error it writes
 * a message to stderr and exits 1, which the host reports as Failed (3).
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* When this scanner's rules were written (ms since the epoch): 2026-01-01T00:00:00Z. */
#define DEF_TIME_MS 1767225600000LL

/* How much of the file's head is searched for the DOS stub message. */
#define HEAD_BYTES 1024

static const char STUB_MESSAGE[] = "This program cannot be run in DOS mode";

/* Whether `needle` (of `needle_len` bytes) occurs in `hay` (of `hay_len` bytes). The data may
 * hold NUL bytes, so no str* function is used on it. */
static int contains(const unsigned char *hay, size_t hay_len, const char *needle,
                    size_t needle_len) {
    if (needle_len == 0 || hay_len < needle_len) {
        return 0;
    }
    for (size_t i = 0; i + needle_len <= hay_len; i++) {
        if (memcmp(hay + i, needle, needle_len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Whether the 4 bytes at `offset` of `file` are "PE\0\0". */
static int pe_signature_at(FILE *file, uint32_t offset) {
    unsigned char sig[4];
    if (fseek(file, (long)offset, SEEK_SET) != 0) {
        return 0;
    }
    return fread(sig, 1, sizeof sig, file) == sizeof sig && memcmp(sig, "PE\0\0", 4) == 0;
}

static void print_verdict(int code, const char *threat) {
    printf("{\"def_time\": %lld, \"scan_result_i\": %d, \"threat_found\": \"%s\"}\n",
           DEF_TIME_MS, code, threat);
}

int main(int argc, char **argv) {
    const char *name = argc > 0 && argv[0][0] != '\0' ? argv[0] : "pe-detector";
    if (argc < 2) {
        fprintf(stderr, "%s: no file to scan: its path must be the last argument\n", name);
        return 1;
    }
    const char *path = argv[argc - 1];
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "%s: cannot open %s: %s\n", name, path, strerror(errno));
        return 1;
    }
    unsigned char head[HEAD_BYTES];
    size_t len = fread(head, 1, sizeof head, file);
    if (ferror(file)) {
        fprintf(stderr, "%s: cannot read %s: %s\n", name, path, strerror(errno));
        fclose(file);
        return 1;
    }

    const char *threat = NULL;
    if (len >= 2 && head[0] == 'M' && head[1] == 'Z') {
        if (contains(head, len, STUB_MESSAGE, sizeof STUB_MESSAGE - 1)) {
            threat = "Windows PE executable (DOS stub)";
        } else if (len >= 0x40) {
            uint32_t e_lfanew = (uint32_t)head[0x3c] | (uint32_t)head[0x3d] << 8 |
                                (uint32_t)head[0x3e] << 16 | (uint32_t)head[0x3f] << 24;
            if (e_lfanew >= 0x40 && e_lfanew <= 0x10000000 && pe_signature_at(file, e_lfanew)) {
                threat = "Windows PE executable";
            }
        }
    }
    fclose(file);

    if (threat != NULL) {
        print_verdict(2, threat);
    } else {
        print_verdict(0, "");
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: cannot write the verdict: %s\n", name, strerror(errno));
        return 1;
    }
    return 0;
}
