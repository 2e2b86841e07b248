/*
 * chain10: a native program with a known call chain ten deep, for pybpfprof's native unwinding tests.
 * Usage: chain10 SECONDS. Runs SECONDS seconds, then exits 0; prints nothing but errors.
 *
 * Two threads burn CPU at the bottom of the same chain:
 *
 *     main thread:   _start -> __libc_start_main -> main -> chain_01 -> chain_02 -> ... -> chain_10
 *     second thread: clone3 -> start_thread -> thread_entry -> chain_01 -> ... -> chain_10
 *
 * (glibc's own names above main and thread_entry: __libc_start_call_main under __libc_start_main in
 * glibc 2.34 and later; clone on older glibc.) NativeFixtures.buildProgram compiles it with
 * -O2 -fomit-frame-pointer, so no frame has a frame pointer and the stack unwinds only through .eh_frame.
 * Every function of the chain is kept as written: noinline (and, under GCC, noipa: no clone with another
 * name, no identical-code folding), and each uses its callee's result after the call returns, so no call is a
 * tail call and every caller's frame and return address stay on the stack.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__GNUC__) && !defined(__clang__)
#define FIXTURE_KEEP __attribute__((noinline, noipa))
#else
#define FIXTURE_KEEP __attribute__((noinline))
#endif

/* Rounds of chain_10's loop in one call: about a millisecond, so the deadline is checked often. */
#define BURN_ROUNDS 1000000UL

/* Results go here so that no call's work is dead. */
volatile unsigned long chain_sink;

static struct timespec deadline;

unsigned long chain_01(unsigned long seed);
unsigned long chain_02(unsigned long seed);
unsigned long chain_03(unsigned long seed);
unsigned long chain_04(unsigned long seed);
unsigned long chain_05(unsigned long seed);
unsigned long chain_06(unsigned long seed);
unsigned long chain_07(unsigned long seed);
unsigned long chain_08(unsigned long seed);
unsigned long chain_09(unsigned long seed);
unsigned long chain_10(unsigned long seed);
void *thread_entry(void *argument);

/* The bottom: burns CPU in pure arithmetic. */
FIXTURE_KEEP unsigned long chain_10(unsigned long seed)
{
    unsigned long accumulator = seed | 1;
    for (unsigned long index = 0; index < BURN_ROUNDS; index++) {
        accumulator = accumulator * 6364136223846793005UL + index;
        accumulator ^= accumulator >> 29;
        /* An empty asm that may read and change the accumulator: the loop stays, one round at a time. */
        __asm__ volatile("" : "+r"(accumulator));
    }
    return accumulator;
}

/* Each level calls the next, then works on its result: a different step per level. */
FIXTURE_KEEP unsigned long chain_09(unsigned long seed) { return chain_10(seed + 9) ^ 0x09; }
FIXTURE_KEEP unsigned long chain_08(unsigned long seed) { return chain_09(seed + 8) * 3 + 8; }
FIXTURE_KEEP unsigned long chain_07(unsigned long seed) { return chain_08(seed + 7) ^ 0x0707; }
FIXTURE_KEEP unsigned long chain_06(unsigned long seed) { return chain_07(seed + 6) * 5 + 6; }
FIXTURE_KEEP unsigned long chain_05(unsigned long seed) { return chain_06(seed + 5) ^ 0x050505; }
FIXTURE_KEEP unsigned long chain_04(unsigned long seed) { return chain_05(seed + 4) * 7 + 4; }
FIXTURE_KEEP unsigned long chain_03(unsigned long seed) { return chain_04(seed + 3) ^ 0x03030303; }
FIXTURE_KEEP unsigned long chain_02(unsigned long seed) { return chain_03(seed + 2) * 9 + 2; }
FIXTURE_KEEP unsigned long chain_01(unsigned long seed) { return chain_02(seed + 1) ^ 0x0101010101UL; }

static int past_deadline(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
        perror("chain10: clock_gettime");
        exit(1);
    }
    return now.tv_sec > deadline.tv_sec || (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec);
}

FIXTURE_KEEP void *thread_entry(void *argument)
{
    unsigned long seed = (unsigned long)argument;
    while (!past_deadline()) {
        seed = chain_01(seed);
        chain_sink = seed;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    char *end = NULL;
    double seconds = argc == 2 ? strtod(argv[1], &end) : -1;
    if (argc != 2 || end == argv[1] || *end != '\0' || !(seconds >= 0) || seconds > 86400) {
        fprintf(stderr, "usage: chain10 SECONDS\n");
        return 2;
    }
    if (clock_gettime(CLOCK_MONOTONIC, &deadline) != 0) {
        perror("chain10: clock_gettime");
        return 1;
    }
    long whole = (long)seconds;
    deadline.tv_sec += whole;
    deadline.tv_nsec += (long)((seconds - (double)whole) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_t thread;
    int error = pthread_create(&thread, NULL, thread_entry, (void *)2UL);
    if (error != 0) {
        fprintf(stderr, "chain10: pthread_create: %s\n", strerror(error));
        return 1;
    }
    unsigned long seed = 1;
    while (!past_deadline()) {
        seed = chain_01(seed);
        chain_sink = seed;
    }
    error = pthread_join(thread, NULL);
    if (error != 0) {
        fprintf(stderr, "chain10: pthread_join: %s\n", strerror(error));
        return 1;
    }
    return 0;
}
