// A hint to the CPU to bring a cache line toward its caches, for data a loop reaches
// soon (Swift has no prefetch of its own). Never faults, whatever the address.
static inline void sluice_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}
