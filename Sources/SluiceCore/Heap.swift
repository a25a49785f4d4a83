#if canImport(Glibc)
import Glibc

/// glibc's `malloc_trim(size_t pad)` (in <malloc.h>, which the Glibc module leaves out).
@_silgen_name("malloc_trim")
private func mallocTrim(_ pad: Int) -> Int32
#endif

/// The process's heap between runs.
public enum Heap {
    /// Gives the pages of freed heap memory back to the system (glibc's `malloc_trim`).
    /// Called after each partition's run: a run's threads allocate from several malloc
    /// arenas, and what a run freed stays resident in them; a process that runs partition
    /// after partition (a backfill, the scheduler) otherwise peaked higher with every
    /// run (docs/benchmarks.md).
    public static func returnFreedPages() {
        #if canImport(Glibc)
        _ = mallocTrim(0)
        #endif
    }
}
