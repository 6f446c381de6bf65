/*
 * vfork() for the placement shim.
 *
 * A vfork child borrows the parent's memory AND stack until it execs or
 * _exits, so a C wrapper that calls the real vfork and then returns would
 * let the child pop (and later overwrite) the wrapper's frame, which the
 * parent still needs when it resumes inside it.  Routing vfork to fork
 * would be legal but costs a page-table copy per spawn, which is exactly
 * what subprocess uses vfork to avoid.
 *
 * So on x86-64 the entry point is assembly, built like glibc's own vfork:
 *   1. call numad_vfork_prepare() (normal C, before any child exists):
 *      choose the node, save this thread's policy in TLS, set the child's;
 *      if it returns 0 (shim dormant here, or shadow stack active), tail-
 *      jump to the real vfork with the stack untouched;
 *   2. pop the return address into %rdi (kept in a register: the kernel
 *      preserves it, and registers are per task), raw SYS_vfork;
 *   3. both sides push the return address back;
 *      child:  call numad_vfork_child() (only sched_setaffinity on itself,
 *              writes no memory), return 0 straight to the caller;
 *      parent: runs only after the child exec'ed/exited, so it may use the
 *              stack again: numad_vfork_parent(rc) restores the saved policy
 *              and sets errno on failure.
 * Nothing of ours lives on the stack across the syscall.
 *
 * Shadow stacks (CET, glibc 2.39+ with SHSTK on): the pop/push trick would
 * unbalance it, so the constructor detects an active shadow stack and
 * vfork then passes through unplaced (counted as NC_VFORK_UNPLACED).
 *
 * Other architectures: vfork is implemented as the placing fork (POSIX
 * allows vfork to be fork).
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <unistd.h>

#if defined(__x86_64__)

__asm__(
    ".text\n"
    ".globl vfork\n"
    ".type vfork,@function\n"
    ".p2align 4\n"
    "vfork:\n"
#if defined(__CET__)
    "    endbr64\n"
#endif
    "    subq $8, %rsp\n"
    "    call numad_vfork_prepare@PLT\n"
    "    addq $8, %rsp\n"
    "    testl %eax, %eax\n"
    "    jz 1f\n"
    "    popq %rdi\n"                 /* return address out of the shared stack */
    "    movl $58, %eax\n"            /* __NR_vfork */
    "    syscall\n"
    "    pushq %rdi\n"
    "    testq %rax, %rax\n"
    "    jz 2f\n"
    /* parent (or error): child is gone from our memory, the stack is ours */
    "    pushq %rax\n"                /* keeps %rsp 16-byte aligned for the call */
    "    movq %rax, %rdi\n"
    "    call numad_vfork_parent@PLT\n"
    "    popq %rcx\n"
    "    ret\n"
    "2:\n"                            /* child */
    "    subq $8, %rsp\n"
    "    call numad_vfork_child@PLT\n"
    "    addq $8, %rsp\n"
    "    xorl %eax, %eax\n"
    "    ret\n"
    "1:\n"
    "    movq g_start(%rip), %rax           /* g_start.vfork */\n"
    "    jmp *%rax\n"
    ".size vfork, .-vfork\n");

#else

__attribute__((visibility("default"))) pid_t vfork(void)
{
    return fork();
}

#endif
