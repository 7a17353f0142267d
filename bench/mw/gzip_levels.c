/* Milliseconds and bytes of one gzip of a file at each level, libdeflate (roost's whole bodies)
 * beside zlib (nginx's gzip, roost's streams): what --gzip-level's default is chosen from. One
 * thread, the best of repeated calls over half a second. Not a server benchmark. */
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zlib.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (!f) {
        fprintf(stderr, "usage: gzip_levels FILE\n");
        return 2;
    }
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    rewind(f);
    char *in = malloc(n), *out = malloc(n + n / 2 + 65536);
    if (!in || !out || fread(in, 1, n, f) != n)
        return 1;
    fclose(f);
    size_t cap = n + n / 2 + 65536;
    printf("| level | libdeflate ms | libdeflate bytes | zlib ms | zlib bytes |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    for (int level = 1; level <= 9; level++) {
        struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
        double best_d = 1e9, best_z = 1e9, t0 = now_s();
        size_t bytes_d = 0;
        uLongf bytes_z = 0;
        while (now_s() - t0 < 0.5) {
            double t = now_s();
            bytes_d = libdeflate_gzip_compress(c, in, n, out, cap);
            if (now_s() - t < best_d)
                best_d = now_s() - t;
        }
        libdeflate_free_compressor(c);
        for (t0 = now_s(); now_s() - t0 < 0.5;) {
            double t = now_s();
            bytes_z = cap;
            compress2((Bytef *)out, &bytes_z, (const Bytef *)in, n, level);
            if (now_s() - t < best_z)
                best_z = now_s() - t;
        }
        printf("| %d | %.2f | %zu | %.2f | %lu |\n", level, best_d * 1e3, bytes_d, best_z * 1e3,
               (unsigned long)bytes_z);
    }
    free(in);
    free(out);
    return 0;
}
