//! The tokio runtime the module owns: one per process, started on first use, and started again
//! in a forked child.
//!
//! A `fork()` copies memory but only the thread that forked: the child holds the parent's
//! runtime (and its verifiers' connections) without the threads that drove them. Everything
//! made in a process is tagged with its pid; a child that finds a parent's runtime or verifier
//! makes its own and never drops the parent's copy (dropping it would wait for threads that do
//! not exist in the child), it forgets it: that memory is the parent's, copied on write.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

/// Worker threads of the runtime: they run background refreshes, Redis connections and
/// invalidation listeners, never a verification (the caller's thread runs that).
const WORKER_THREADS: usize = 2;

/// A tokio runtime that belongs to one process.
pub(crate) struct ProcessRuntime {
    pid: u32,
    runtime: Option<tokio::runtime::Runtime>,
}

static RUNTIME: ArcSwapOption<ProcessRuntime> = ArcSwapOption::const_empty();

/// The pid of this process. `getpid` is a system call; see BENCHMARKS.md for what it costs a
/// verification (nothing measurable beside the signature check).
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// The pid of the process the held runtime was started in, if one was.
pub(crate) fn held_pid() -> Option<u32> {
    RUNTIME.load().as_ref().map(|runtime| runtime.pid)
}

impl ProcessRuntime {
    /// This process's runtime, started on the first call in each process.
    pub(crate) fn current() -> std::io::Result<Arc<Self>> {
        let pid = pid();
        let held = RUNTIME.load_full();
        if let Some(runtime) = &held
            && runtime.pid == pid
        {
            return Ok(Arc::clone(runtime));
        }
        let fresh = Arc::new(Self {
            pid,
            runtime: Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKER_THREADS)
                    .thread_name("jwkstash")
                    .enable_all()
                    .build()?,
            ),
        });
        let previous = RUNTIME.compare_and_swap(&held, Some(Arc::clone(&fresh)));
        match &*previous {
            // Another thread of this process started one first: use it (ours shuts down).
            Some(other) if other.pid == pid && !Arc::ptr_eq(other, &fresh) => Ok(Arc::clone(other)),
            _ => Ok(fresh),
        }
    }

    /// The pid of the process this runtime belongs to.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Runs `future` to completion on the calling thread, inside this runtime (spawned tasks
    /// and I/O run on its workers).
    pub(crate) fn block_on<F: Future>(&self, future: F) -> Option<F::Output> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.block_on(future))
    }

    /// Enters this runtime's context, for code that spawns or drops tasks.
    pub(crate) fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.runtime.as_ref().map(tokio::runtime::Runtime::enter)
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            if self.pid == pid() {
                // Never waits: a runtime is only dropped when a thread lost the race to start
                // one, before any task ran on it.
                runtime.shutdown_background();
            } else {
                // A parent's runtime in a forked child: its threads are not here to join.
                std::mem::forget(runtime);
            }
        }
    }
}

/// A value made in one process (a verifier with its connections), dropped normally there and
/// forgotten in a forked child, like the runtime it runs on.
pub(crate) struct ProcessBound<T> {
    pid: u32,
    runtime: Arc<ProcessRuntime>,
    value: Option<T>,
}

impl<T> ProcessBound<T> {
    pub(crate) fn new(runtime: Arc<ProcessRuntime>, value: T) -> Self {
        Self {
            pid: runtime.pid(),
            runtime,
            value: Some(value),
        }
    }

    /// Whether this value was made in the calling process.
    pub(crate) fn is_current(&self) -> bool {
        self.pid == pid()
    }

    pub(crate) fn runtime(&self) -> &ProcessRuntime {
        &self.runtime
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }
}

impl<T> Drop for ProcessBound<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            if self.is_current() {
                let _context = self.runtime.enter();
                drop(value);
            } else {
                std::mem::forget(value);
            }
        }
    }
}
