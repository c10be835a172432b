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

/// `items.map(f)`, on every core when there are at least `min` items; the results in the items'
/// order.
pub(crate) fn map<T: Send, U: Send>(items: Vec<T>, min: usize, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    let workers = workers(items.len(), min);
    if workers == 1 {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(workers);
    let mut rest = items;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        parts.push(rest);
        rest = tail;
    }
    parts.push(rest);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| s.spawn(move || part.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        joined(handles)
    })
}

/// `items.iter().map(f)`, on every core when there are at least `min` items; in order.
pub(crate) fn map_ref<T: Sync, U: Send>(items: &[T], min: usize, f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let workers = workers(items.len(), min);
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<U>>()))
            .collect();
        joined(handles)
    })
}

/// The workers' results in order; a worker's panic raised again here.
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
            assert_eq!(super::map(items, usize::MAX, |i| i * 2), doubled, "{n}");
        }
    }

    #[test]
    fn a_worker_panic_reaches_the_caller() {
        let items: Vec<usize> = (0..64).collect();
        let caught = std::panic::catch_unwind(|| super::map_ref(&items, 2, |i| assert_ne!(*i, 63)));
        assert!(caught.is_err());
    }
}
