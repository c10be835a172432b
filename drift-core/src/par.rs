//! Work split across the cores, in order: the one place the library starts threads (scoped, joined
//! before returning; a worker's panic is raised again in the caller, never swallowed).

/// Worker threads for `n` items: one below `min` items (a thread costs more than it saves), else
/// the cores available (at most eight).
fn workers(n: usize, min: usize) -> usize {
    if n < min.max(2) {
        return 1;
    }
    cores()
}

/// The cores available (at most eight).
pub(crate) fn cores() -> usize {
    // Asked once: on Linux the answer reads the cgroup's CPU quota from /sys each time.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, 8)
    })
}

/// Items a worker claims at a time: an eighth of a worker's share, so that a core the machine slows
/// down (a busy neighbour, a stolen vCPU) hands its remaining work to the others.
fn claim(n: usize, workers: usize) -> usize {
    (n / (workers * 8)).clamp(1, 512)
}

/// Runs `work(i)` for every claim `i < claims` on `workers` threads (the caller is one of them), each
/// thread claiming the next one as it finishes the last; the results in claim order.
fn claimed<U: Send>(claims: usize, workers: usize, work: impl Fn(usize) -> Vec<U> + Sync) -> Vec<U> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    in_claim_order(workers, || {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (i < claims).then(|| (i, work(i)))
    })
}

/// Runs `next_claim` on `workers` threads (the caller is one of them), each calling it again as it
/// returns, until it gives `None`; the results, each numbered by its claim, in claim order.
fn in_claim_order<U: Send>(
    workers: usize,
    next_claim: impl Fn() -> Option<(usize, Vec<U>)> + Sync,
) -> Vec<U> {
    concatenated(claims_in_order(workers, next_claim))
}

/// [`in_claim_order`]'s results claim by claim, not copied into one vector.
fn claims_in_order<U: Send>(
    workers: usize,
    next_claim: impl Fn() -> Option<(usize, Vec<U>)> + Sync,
) -> Vec<Vec<U>> {
    let run = || std::iter::from_fn(&next_claim).collect::<Vec<_>>();
    let mut parts = std::thread::scope(|s| {
        let handles: Vec<_> = (1..workers).map(|_| s.spawn(run)).collect();
        let mut parts = run();
        parts.extend(joined(handles));
        parts
    });
    parts.sort_unstable_by_key(|(i, _)| *i);
    parts.into_iter().map(|(_, u)| u).collect()
}

/// The claims' results as one vector.
fn concatenated<U>(parts: Vec<Vec<U>>) -> Vec<U> {
    // Sized once: growing by doubling would copy the results (and touch fresh pages) again and again.
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for u in parts {
        out.extend(u);
    }
    out
}

/// `items.map(f)`, on every core when there are at least `min` items; the results in the items'
/// order.
pub(crate) fn map<T: Send, U: Send>(items: Vec<T>, min: usize, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    concatenated(map_claims(items, min, |claim| {
        claim.into_iter().map(&f).collect()
    }))
}

/// `f` over runs of consecutive items (what one worker claims at a time: a run can share work
/// between its items), on every core when there are at least `min` items; the runs' results in
/// the items' order, run by run (not copied into one vector: a caller that only iterates them
/// writes each result once).
pub(crate) fn map_claims<T: Send, U: Send>(
    items: Vec<T>,
    min: usize,
    f: impl Fn(Vec<T>) -> Vec<U> + Sync,
) -> Vec<Vec<U>> {
    let workers = workers(items.len(), min);
    if workers == 1 {
        return vec![f(items)];
    }
    let size = claim(items.len(), workers);
    // The items are handed out a claim at a time, in order, as the workers ask: the `i`-th claim is
    // the `i`-th run of `size` items, numbered and taken out under the lock (so each item is moved
    // once, into memory its worker has just used, rather than all split into fresh chunks up front).
    let rest = std::sync::Mutex::new((0usize, items.into_iter()));
    let f = &f;
    claims_in_order(workers, || {
        let (i, chunk) = {
            let mut rest = rest.lock().unwrap_or_else(|p| p.into_inner());
            let (claimed, items) = &mut *rest;
            let chunk: Vec<T> = items.by_ref().take(size).collect();
            *claimed += 1;
            (*claimed - 1, chunk)
        };
        (!chunk.is_empty()).then(|| (i, f(chunk)))
    })
}

/// `items.iter().map(f)`, on every core when there are at least `min` items; in order.
pub(crate) fn map_ref<T: Sync, U: Send>(items: &[T], min: usize, f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let workers = workers(items.len(), min);
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let size = claim(items.len(), workers);
    let chunks: Vec<&[T]> = items.chunks(size).collect();
    let f = &f;
    claimed(chunks.len(), workers, |i| {
        chunks.get(i).map_or_else(Vec::new, |c| c.iter().map(f).collect())
    })
}

/// The workers' results; a worker's panic raised again here.
fn joined<U>(handles: Vec<std::thread::ScopedJoinHandle<'_, Vec<U>>>) -> Vec<U> {
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_items_order_whatever_the_split() {
        for n in [0, 1, 2, 3, 7, 100, 1001] {
            let items: Vec<usize> = (0..n).collect();
            let doubled: Vec<usize> = items.iter().map(|i| i * 2).collect();
            assert_eq!(super::map(items.clone(), 2, |i| i * 2), doubled, "{n}");
            assert_eq!(super::map_ref(&items, 2, |i| i * 2), doubled, "{n}");
            assert_eq!(super::map(items.clone(), usize::MAX, |i| i * 2), doubled, "{n}");
            // Runs in order, each whole: their concatenation is the items' order.
            let runs = super::map_claims(items, 2, |run| {
                assert!(run.windows(2).all(|w| w[1] == w[0] + 1), "{run:?}");
                run.into_iter().map(|i| i * 2).collect()
            });
            assert_eq!(runs.concat(), doubled, "{n}");
        }
    }

    /// Claims of very uneven cost finish out of order on the workers; the results still come in
    /// the items' order. (A claim numbered apart from taking its items out, not under the same
    /// lock, is caught by `results_keep_the_items_order_whatever_the_split`.)
    #[test]
    fn uneven_work_keeps_the_items_order() {
        let items: Vec<u64> = (0..20_000).collect();
        let work = |i: u64| {
            // Every 97th item costs thousands of steps, the rest one.
            let steps = if i.is_multiple_of(97) { 20_000 } else { 1 };
            (0..steps).fold(i, |acc, s| std::hint::black_box(acc ^ s) ^ s)
        };
        let expected: Vec<u64> = items.clone();
        assert_eq!(super::map(items.clone(), 2, work), expected);
        assert_eq!(super::map_ref(&items, 2, |i| work(*i)), expected);
    }

    #[test]
    fn a_worker_panic_reaches_the_caller() {
        let items: Vec<usize> = (0..64).collect();
        let caught = std::panic::catch_unwind(|| super::map_ref(&items, 2, |i| assert_ne!(*i, 63)));
        assert!(caught.is_err());
    }
}
