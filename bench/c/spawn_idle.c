/* spawn_idle N: N sleeping child processes (pause()), for the scan benchmark.
 * Prints "ready N" once they all exist; on EOF or a line on stdin kills them. */
#include "common.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    pid_t *kids = malloc(n * sizeof(pid_t));
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            for (;;)
                pause();
        }
        if (p < 0) {
            perror("fork");
            n = i;
            break;
        }
        kids[i] = p;
    }
    printf("ready %d\n", n);
    fflush(stdout);
    char line[16];
    if (fgets(line, sizeof line, stdin)) {
    }
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    return 0;
}
