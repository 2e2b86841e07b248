/*
 * Code with no unwind information, the way a JIT makes it: main -> jit_caller -> (machine code written at run
 * time into anonymous executable memory) -> jit_burn, where the time goes. The generated code keeps the frame
 * pointer convention (push rbp; mov rbp, rsp), as JITs that want to be profiled do; everything else is built
 * with -O2 -fomit-frame-pointer and unwinds by its call frame information. pybpfprof's unwinder finds no rule
 * for the generated code, falls back to the frame pointer there, and marks the frame it found that way.
 *
 * Usage: jit_frames SECONDS. Prints nothing; exits 0.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__GNUC__) && !defined(__clang__)
#define FIXTURE_KEEP __attribute__((noinline, noipa))
#else
#define FIXTURE_KEEP __attribute__((noinline))
#endif

typedef unsigned long (*generated_function)(unsigned long);

volatile unsigned long jit_sink;

FIXTURE_KEEP unsigned long jit_burn(unsigned long seed)
{
    unsigned long accumulator = seed | 1;
    for (unsigned long index = 0; index < 1000000UL; index++) {
        accumulator = accumulator * 6364136223846793005UL + index;
        accumulator ^= accumulator >> 29;
        __asm__ volatile("" : "+r"(accumulator));
    }
    return accumulator;
}

/* push rbp; mov rbp, rsp; movabs rax, jit_burn; call rax; pop rbp; ret. The argument passes through in rdi. */
static generated_function generate(void)
{
    unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) {
        perror("jit_frames: mmap");
        exit(1);
    }
    unsigned long target = (unsigned long)&jit_burn;
    unsigned char prologue[] = { 0x55, 0x48, 0x89, 0xe5, 0x48, 0xb8 };
    unsigned char epilogue[] = { 0xff, 0xd0, 0x5d, 0xc3 };
    memcpy(code, prologue, sizeof prologue);
    memcpy(code + sizeof prologue, &target, sizeof target);
    memcpy(code + sizeof prologue + sizeof target, epilogue, sizeof epilogue);
    if (mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0) {
        perror("jit_frames: mprotect");
        exit(1);
    }
    return (generated_function)(void *)code;
}

FIXTURE_KEEP unsigned long jit_caller(generated_function function, unsigned long seed)
{
    return function(seed + 1) ^ 0x5a5a;
}

int main(int argc, char **argv)
{
    double seconds = argc == 2 ? atof(argv[1]) : -1;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: jit_frames SECONDS\n");
        return 2;
    }
    generated_function function = generate();
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned long seed = 1;
    do {
        seed = jit_caller(function, seed);
        jit_sink = seed;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
    return 0;
}
