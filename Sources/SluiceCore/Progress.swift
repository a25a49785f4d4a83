/// Receives a run's counts as it goes (after every batch), for a progress display.
/// Called from the run's task; an implementation must be cheap and thread-safe (several
/// partitions of a backfill report to one display).
public protocol RunProgress: Sendable {
    func update(_ summary: RunSummary, elapsed: Double)
    /// The run of this partition ended (its summary line follows).
    func finished(pipeline: String, partition: String)
}
