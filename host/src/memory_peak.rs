//! How much linear memory components use: with [`HostBuilder::memory_peak`], every
//! store of a [`TokenHost`](crate::TokenHost) reports each memory growth (instantiation
//! included) to one shared [`MemoryPeak`], which keeps the largest single linear memory
//! and the largest total of one store (an instance of a composition has one memory per
//! core module that has one). For tests that stream large bodies and must show that
//! nothing is buffered. Off (no limiter at all) unless asked for.
//!
//! [`HostBuilder::memory_peak`]: crate::HostBuilder::memory_peak

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The peaks seen over every store of a host, in bytes.
#[derive(Clone, Debug, Default)]
pub struct MemoryPeak(Arc<Peaks>);

#[derive(Debug, Default)]
struct Peaks {
    largest_memory: AtomicUsize,
    largest_store_total: AtomicUsize,
}

impl MemoryPeak {
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest size any one linear memory reached.
    pub fn largest_memory(&self) -> usize {
        self.0.largest_memory.load(Ordering::Relaxed)
    }

    /// The most linear memory one store (one instance of a component, every module in
    /// it) held at once.
    pub fn largest_store_total(&self) -> usize {
        self.0.largest_store_total.load(Ordering::Relaxed)
    }

    /// Start again from zero.
    pub fn reset(&self) {
        self.0.largest_memory.store(0, Ordering::Relaxed);
        self.0.largest_store_total.store(0, Ordering::Relaxed);
    }
}

/// One store's limiter: it allows every growth and records it.
pub(crate) struct Recorder {
    peak: MemoryPeak,
    total: usize,
}

impl Recorder {
    pub(crate) fn new(peak: MemoryPeak) -> Self {
        Recorder { peak, total: 0 }
    }
}

impl wasmtime::ResourceLimiter for Recorder {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.total += desired.saturating_sub(current);
        let peaks = &self.peak.0;
        peaks.largest_memory.fetch_max(desired, Ordering::Relaxed);
        peaks
            .largest_store_total
            .fetch_max(self.total, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}
