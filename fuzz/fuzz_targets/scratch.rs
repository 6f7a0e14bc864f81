//! A per-process scratch file holding the current input, for targets whose parser reads a
//! path or a `File` (shared with `#[path = "scratch.rs"] mod scratch;`).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Write `data` to this process's scratch file for `tag` (truncated first) and return its path
/// and an open read/write handle.
pub fn file(tag: &str, data: &[u8]) -> (PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("ipa-fuzz-{tag}-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all_at(data, 0).unwrap();
    (path, f)
}
