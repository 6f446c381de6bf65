/* pointer_chase MIB STEPS ROUNDS [wait]
 *
 * A memory-latency probe: one random cycle through every 64-byte line of MIB
 * MiB (4 KiB pages, THP off), chased STEPS loads per round, ROUNDS rounds;
 * prints ns per load of each round as JSON.  With "wait": prints the rounds
 * and {"pid","start","end"} first, waits for a line on stdin (time for
 * someone to move the memory), then prints a second set of rounds. */
#include "common.h"

static uint64_t rng = 88172645463325252ULL;
static inline uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void *chase_sink;

static void rounds(char **start, long steps, int n, const char *key)
{
    printf("{\"%s\": [", key);
    char **p = start;
    for (int r = 0; r < n; r++) {
        int64_t t0 = now_ns();
        for (long i = 0; i < steps; i++) {
            p = (char **)*p;
            __asm__ volatile("" : "+r"(p));  /* keep every load */
        }
        double ns = (double)(now_ns() - t0) / steps;
        printf("%s%.3f", r ? ", " : "", ns);
    }
    chase_sink = p;
    printf("]}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: pointer_chase MIB STEPS ROUNDS [wait]\n");
        return 2;
    }
    size_t size = strtoul(argv[1], NULL, 10) * MIB;
    long steps = strtol(argv[2], NULL, 10);
    int n = atoi(argv[3]);
    int wait = argc > 4 && strcmp(argv[4], "wait") == 0;
    char *base = map_aligned(size, 0);
    size_t lines = size / 64;
    uint32_t *order = malloc(lines * sizeof(uint32_t));
    for (size_t i = 0; i < lines; i++)
        order[i] = i;
    for (size_t i = lines - 1; i > 0; i--) {  /* Sattolo: one cycle over all lines */
        size_t j = next_rand() % i;
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < lines; i++)
        *(char **)(base + (size_t)order[i] * 64) = base + (size_t)order[(i + 1) % lines] * 64;
    free(order);
    char **start = (char **)base;
    rounds(start, steps / 4, 1, "warm");
    rounds(start, steps, n, "before");
    if (wait) {
        printf("{\"pid\": %d, \"start\": %lu, \"end\": %lu}\n", getpid(), (unsigned long)base,
               (unsigned long)(base + size));
        fflush(stdout);
        char line[64];
        if (!fgets(line, sizeof line, stdin))
            return 0;
        rounds(start, steps / 4, 1, "warm");
        rounds(start, steps, n, "after");
    }
    return 0;
}
