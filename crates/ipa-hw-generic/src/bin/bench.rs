//! Benchmark: time to collect the full inventory of this machine (read-only).
//!
//! `ipa-inventory-bench [--dump] [iterations] [root]` prints min/median/max milliseconds.

use std::time::Instant;

use ipa_core::hardware::HardwareManagers;
use ipa_hw_generic::{GenericHardwareManager, GenericOptions, Machine};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let dump = args.peek().is_some_and(|a| a == "--dump");
    if dump {
        args.next();
    }
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(50);
    let root = args.next().unwrap_or_else(|| "/".into());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mgr = HardwareManagers::single(std::sync::Arc::new(GenericHardwareManager::new(
        GenericOptions { machine: Machine::at(root), ..Default::default() },
        std::sync::Arc::new(ipa_core::os::SystemRunner),
    )));
    let mut times = Vec::with_capacity(n);
    let mut keys = 0;
    rt.block_on(async {
        for _ in 0..n.max(1) {
            let t = Instant::now();
            let inv = mgr.list_hardware_info().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            keys = serde_json::to_value(&inv)?.as_object().map(|o| o.len()).unwrap_or(0);
        }
        anyhow::Ok(())
    })?;
    if dump {
        let inv = rt.block_on(mgr.list_hardware_info())?;
        println!("{}", serde_json::to_string_pretty(&inv)?);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "inventory collection over {} runs: min {:.2} ms, median {:.2} ms, max {:.2} ms ({keys} top-level keys)",
        times.len(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}
