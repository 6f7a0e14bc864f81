//! Erase benchmark: one erase method of the agent's native code on one device or file, timed
//! from the first request to the final flush, so `scripts/bench-erase.sh` can put it next to
//! `blkdiscard`, `blkdiscard -z` and `shred -n1` on the same device.
//!
//! ```text
//! ipa-erase-bench METHOD PATH [workers]
//!   zeroout           BLKZEROOUT over the whole device (the agent's zero pass)
//!   discard           BLKDISCARD
//!   secdiscard        BLKSECDISCARD (most devices refuse it)
//!   overwrite-zero    O_DIRECT zero writes (the zero pass where BLKZEROOUT is unavailable)
//!   overwrite-random  one pseudo-random pass (the agent's random pass)
//!   verify-zero       read back the head, tail and 32 random regions; they must be zero
//! ```
//! Prints `METHOD BYTES SECONDS MB/s`; exit status 1 with the error otherwise.
//! **It erases PATH.** Point it only at a disk made for the benchmark.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};
use ipa_hw_generic::erase::native::{self, Discard, OverwriteOptions, Pattern, Target};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(method), Some(path)) = (args.get(1), args.get(2)) else {
        bail!("usage: ipa-erase-bench METHOD PATH [workers] (see the crate docs)");
    };
    let workers: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let opts = OverwriteOptions { workers };
    let cancel = AtomicBool::new(false);
    let write = method != "verify-zero";
    let t = Target::open(path.as_ref(), write).with_context(|| format!("opening {path}"))?;
    let size = t.size;
    let started = Instant::now();
    match method.as_str() {
        "zeroout" => {
            let (_, kernel) = native::zero_fill(&t, &opts, &cancel, &mut |_| {})?;
            if !kernel {
                bail!("{path} is not a block device: BLKZEROOUT does not apply");
            }
        }
        "discard" => t.discard(0, size, Discard::Plain)?,
        "secdiscard" => t.discard(0, size, Discard::Secure)?,
        "overwrite-zero" => {
            native::overwrite(&t, Pattern::Zero, &opts, &cancel, &mut |_| {})?;
        }
        "overwrite-random" => {
            native::overwrite(&t, Pattern::Random(0x5eed), &opts, &cancel, &mut |_| {})?;
        }
        "verify-zero" => {
            let regions = native::sample_regions(size, 32, 7);
            native::verify(&t, &regions, &native::Expect::Pattern(Pattern::Zero))?;
        }
        other => bail!("unknown method {other}"),
    }
    if write {
        t.sync()?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{method} {size} {secs:.3} {:.0}", size as f64 / 1e6 / secs.max(1e-9));
    Ok(())
}
