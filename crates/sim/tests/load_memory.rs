//! Loading a scenario costs memory proportional to its file, a small
//! multiple of it (issue 27: a 51 MB scenario with 780,000 inputs took
//! 2.9 GB, about 60 times its size, in the TOML parser's token and event
//! vectors for the whole file). Its own binary: the counting allocator
//! sees only this test.

use agora_sim::scenario::Scenario;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_scenario_with_many_inputs_loads_in_a_small_multiple_of_its_size() {
    let mut src = String::from("protocol = \"broadcast\"\nnodes = 64\n[params]\ncount = 0\n");
    for i in 0..50_000 {
        src +=
            &format!("[[input]]\nat = \"{}ms\"\nnode = {}\nvalue = {{ broadcast = {i} }}\n\n", 1000 + i % 500, i % 64);
    }
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let sc = Scenario::<toml::Value>::from_str("big.toml", &src).unwrap();
    let peak = PEAK.load(Relaxed) - before;
    assert_eq!(sc.input.len(), 50_000);
    let ratio = peak as f64 / src.len() as f64;
    // The file's text kept for traces, the text without the entries while
    // the other keys are parsed, and about 100 bytes an input (2.4 times
    // when written).
    assert!(ratio < 4.0, "loading {} bytes peaked at {peak} bytes ({ratio:.1} times)", src.len());
}
