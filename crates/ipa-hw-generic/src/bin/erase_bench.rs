//! Erase benchmark: native zero overwrite of a file (as a sandbox disk) vs
//! `dd if=/dev/zero of=<file> bs=4M oflag=direct`.
//!
//! `ipa-erase-bench <file> [size_mib=2048] [workers=4]`; the file is created (and removed).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use ipa_hw_generic::erase::native::{self, OverwriteOptions, Pattern, Target};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path =
        std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("erase-bench.img"));
    let mib: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2048);
    let workers: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let size = mib << 20;
    // Materialise the file first so both runs overwrite allocated blocks.
    let status = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", path.display()),
            "bs=4M",
            &format!("count={}", mib / 4),
            "oflag=direct",
            "status=none",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "dd prefill failed");
    for pattern in [Pattern::Zero, Pattern::Random(1)] {
        let t = Target::open(&path, true)?;
        let started = Instant::now();
        native::overwrite(
            &t,
            pattern,
            &OverwriteOptions { workers },
            &AtomicBool::new(false),
            &mut |_| {},
        )?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "native overwrite {pattern:?}: {mib} MiB in {secs:.2}s = {:.0} MB/s (direct={}, workers={workers})",
            size as f64 / 1e6 / secs,
            t.is_direct()
        );
    }
    let t = Target::open(&path, false)?;
    let started = Instant::now();
    let regions = native::sample_regions(t.size, 32, 7);
    native::verify(&t, &regions, &native::Expect::Pattern(Pattern::Random(1)))?;
    println!("verify ({} regions): {:.3}s", regions.len(), started.elapsed().as_secs_f64());
    let started = Instant::now();
    let status = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", path.display()),
            "bs=4M",
            &format!("count={}", mib / 4),
            "oflag=direct",
            "conv=notrunc,fdatasync",
            "status=none",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "dd failed");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "dd bs=4M oflag=direct: {mib} MiB in {secs:.2}s = {:.0} MB/s",
        size as f64 / 1e6 / secs
    );
    std::fs::remove_file(&path)?;
    Ok(())
}
