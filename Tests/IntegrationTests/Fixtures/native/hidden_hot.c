/* A library whose hot function is static: once stripped, only its exported entry keeps a name (.dynsym), and the
 * samples in the loop are named from the debug file alone. */
static __attribute__((noinline)) unsigned long hidden_hot_loop(unsigned long rounds) {
    volatile unsigned long total = 0;
    for (unsigned long round = 0; round < rounds; round++) total += round * round;
    return total;
}

unsigned long hidden_spin(unsigned long rounds) {
    /* Not a tail call: hidden_spin stays on the stack under the loop. */
    return hidden_hot_loop(rounds) + 1;
}
