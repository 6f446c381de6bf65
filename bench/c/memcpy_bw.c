/* memcpy_bw MIB REPS: median memcpy bandwidth (GB/s) copying MIB MiB, REPS times. */
#include "common.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t size = (argc > 1 ? strtoul(argv[1], NULL, 10) : 64) * MIB;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    char *a = map_aligned(size, 0), *b = map_aligned(size, 0);
    memset(a, 1, size);
    memset(b, 2, size);
    double *bw = malloc(reps * sizeof(double));
    for (int r = 0; r < reps; r++) {
        int64_t t0 = now_ns();
        memcpy(r % 2 ? a : b, r % 2 ? b : a, size);
        bw[r] = size / ((now_ns() - t0) / 1e9) / 1e9;
    }
    qsort(bw, reps, sizeof(double), cmp);
    printf("{\"gb_per_s\": %.4f, \"mib\": %zu, \"reps\": %d, \"check\": %d}\n", bw[reps / 2], size / MIB,
           reps, a[size / 2] + b[size / 3]);
    return 0;
}
