//! Checksum selection (ipa-agent §6.4) and the hashers.

use digest::DynDigest;

use crate::error::{ImageError, Result};

/// A hash algorithm by its Python `hashlib` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// md5
    Md5,
    /// sha1
    Sha1,
    /// sha224
    Sha224,
    /// sha256
    Sha256,
    /// sha384
    Sha384,
    /// sha512
    Sha512,
    /// sha3_224
    Sha3_224,
    /// sha3_256
    Sha3_256,
    /// sha3_384
    Sha3_384,
    /// sha3_512
    Sha3_512,
    /// blake2b (512-bit)
    Blake2b,
    /// blake2s (256-bit)
    Blake2s,
}

impl Algo {
    /// From a `hashlib` name (case-insensitive; `-` accepted for `_`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().replace('-', "_").as_str() {
            "md5" => Algo::Md5,
            "sha1" => Algo::Sha1,
            "sha224" => Algo::Sha224,
            "sha256" => Algo::Sha256,
            "sha384" => Algo::Sha384,
            "sha512" => Algo::Sha512,
            "sha3_224" => Algo::Sha3_224,
            "sha3_256" => Algo::Sha3_256,
            "sha3_384" => Algo::Sha3_384,
            "sha3_512" => Algo::Sha3_512,
            "blake2b" => Algo::Blake2b,
            "blake2s" => Algo::Blake2s,
            _ => return None,
        })
    }

    /// The algorithm of a bare hex digest, by length (128 → sha512, 64 → sha256, 32 → md5).
    pub fn from_len(len: usize) -> Option<Self> {
        match len {
            128 => Some(Algo::Sha512),
            64 => Some(Algo::Sha256),
            32 => Some(Algo::Md5),
            _ => None,
        }
    }

    /// A fresh hasher.
    pub fn hasher(self) -> Box<dyn DynDigest + Send> {
        use sha2::Digest as _;
        match self {
            Algo::Md5 => Box::new(md5::Md5::new()),
            Algo::Sha1 => Box::new(sha1::Sha1::new()),
            Algo::Sha224 => Box::new(sha2::Sha224::new()),
            Algo::Sha256 => Box::new(sha2::Sha256::new()),
            Algo::Sha384 => Box::new(sha2::Sha384::new()),
            Algo::Sha512 => Box::new(sha2::Sha512::new()),
            Algo::Sha3_224 => Box::new(sha3::Sha3_224::new()),
            Algo::Sha3_256 => Box::new(sha3::Sha3_256::new()),
            Algo::Sha3_384 => Box::new(sha3::Sha3_384::new()),
            Algo::Sha3_512 => Box::new(sha3::Sha3_512::new()),
            Algo::Blake2b => Box::new(blake2::Blake2b512::new()),
            Algo::Blake2s => Box::new(blake2::Blake2s256::new()),
        }
    }
}

/// What the received bytes must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Algorithm.
    pub algo: Algo,
    /// Lowercase hex digest.
    pub value: String,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Pick the algorithm for a bare legacy checksum by its length.
pub fn legacy_expected(image_id: &str, value: &str, md5_enabled: bool) -> Result<Expected> {
    let v = value.trim();
    match Algo::from_len(v.len()) {
        Some(Algo::Md5) if !md5_enabled => Err(ImageError::NoChecksum {
            details: format!(
                "Unable to verify image {image_id} with available checksums. Please make sure \
             the specified 'os_hash_algo' (currently None) is supported by this ramdisk, or \
             provide a md5 checksum via the 'checksum' field (MD5 checksums are disabled)."
            ),
        }),
        Some(algo) if is_hex(v) => Ok(Expected { algo, value: v.to_ascii_lowercase() }),
        _ => Err(ImageError::NoChecksum {
            details: format!(
                "Unable to proceed with image {image_id} as the checksum {v:?} does not look like \
             an md5, sha256 or sha512 hex digest."
            ),
        }),
    }
}

/// Find the digest for `image_name` in the text of a checksum file (`sha256sum` / BSD style).
pub fn parse_checksum_file(text: &str, image_name: &str) -> std::result::Result<String, String> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return Err("Checksum file is empty".into());
    }
    if lines.len() == 1 && !lines[0].contains(char::is_whitespace) {
        let v = lines[0];
        return if is_hex(v) && Algo::from_len(v.len()).is_some() {
            Ok(v.to_string())
        } else {
            Err(format!("Invalid checksum file (no valid checksum found): {v:?}"))
        };
    }
    for line in lines.iter().filter(|l| !l.starts_with('#')) {
        let gnu = line
            .rsplit_once(char::is_whitespace)
            .map(|(_, last)| last.trim_start_matches('*') == image_name)
            .unwrap_or(false);
        let bsd = line.contains(&format!("({image_name})"));
        if !(gnu || bsd) {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        let last = line.split_whitespace().last().unwrap_or("");
        for cand in [first, last] {
            if is_hex(cand) && Algo::from_len(cand.len()).is_some() {
                return Ok(cand.to_string());
            }
        }
    }
    Err(format!("Checksum file does not contain name {image_name}"))
}

/// The basename of a URL's path (query and fragment dropped).
pub fn url_basename(url: &str) -> &str {
    let no_q = url.split(['?', '#']).next().unwrap_or(url);
    no_q.trim_end_matches('/').rsplit('/').next().unwrap_or(no_q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_file_formats() {
        let h = "a".repeat(64);
        assert_eq!(parse_checksum_file(&format!("{h}\n"), "x.img").unwrap(), h);
        let gnu = format!("# comment\n{} other.img\n{h} *x.img\n", "b".repeat(64));
        assert_eq!(parse_checksum_file(&gnu, "x.img").unwrap(), h);
        let bsd = format!("SHA256 (x.img) = {h}\n");
        assert_eq!(parse_checksum_file(&bsd, "x.img").unwrap(), h);
        assert!(
            parse_checksum_file(&gnu, "y.img").unwrap_err().contains("does not contain name y.img")
        );
        assert!(parse_checksum_file("\n\n", "x").is_err());
        assert_eq!(url_basename("http://h/a/b/x.img?t=1"), "x.img");
    }

    #[test]
    fn legacy_by_length_and_md5_gate() {
        assert_eq!(legacy_expected("i", &"A".repeat(64), false).unwrap().algo, Algo::Sha256);
        assert_eq!(legacy_expected("i", &"a".repeat(128), false).unwrap().algo, Algo::Sha512);
        assert!(legacy_expected("i", &"a".repeat(32), false).is_err());
        assert_eq!(legacy_expected("i", &"a".repeat(32), true).unwrap().algo, Algo::Md5);
        assert!(legacy_expected("i", "xyz", true).is_err());
    }
}
