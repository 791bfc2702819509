//! A minimal ustar writer for build contexts (a Dockerfile and a binary or two): no
//! dependency, and the bytes are deterministic (fixed mtime) so rebuilt contexts match.

/// A tar archive built in memory.
#[derive(Debug, Default)]
pub struct TarBuilder {
    out: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a regular file. `path` must be shorter than 100 bytes.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        if path.len() >= 100 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("tar path too long: {path}"),
            ));
        }
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        Ok(())
    }

    /// Ends the archive (two zero blocks) and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

/// The contents of the first regular file in a ustar archive (what the Docker API returns
/// when one file is copied out of a container).
pub fn first_file(archive: &[u8]) -> Option<Vec<u8>> {
    let mut at = 0;
    while at + 512 <= archive.len() {
        let h = &archive[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            return None;
        }
        let size_text = std::str::from_utf8(&h[124..136]).ok()?;
        let size = u64::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .ok()? as usize;
        let body = at + 512;
        if matches!(h[156], b'0' | 0) {
            return archive.get(body..body + size).map(<[u8]>::to_vec);
        }
        at = body + size.div_ceil(512) * 512;
    }
    None
}

fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_system_tar_reads_it() {
        let mut t = TarBuilder::new();
        t.file("Dockerfile", 0o644, b"FROM scratch\n").unwrap();
        t.file("bin/x", 0o755, &[7u8; 1000]).unwrap();
        let bytes = t.finish();
        assert_eq!(bytes.len() % 512, 0);
        let dir = std::env::temp_dir().join(format!("lab-tar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.tar");
        std::fs::write(&file, &bytes).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&file)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(listing.contains("Dockerfile"), "{listing}");
        assert!(
            listing.contains("bin/x") && listing.contains("1000"),
            "{listing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_first_regular_file_comes_out_past_other_entries() {
        let mut t = TarBuilder::new();
        t.file("result.json", 0o644, &[b'x'; 700]).unwrap();
        t.file("other", 0o644, b"no").unwrap();
        let mut bytes = t.finish();
        assert_eq!(first_file(&bytes).unwrap(), vec![b'x'; 700]);
        // A pax header (type `x`) before the file is skipped.
        bytes[156] = b'x';
        assert_eq!(first_file(&bytes).unwrap(), b"no".to_vec());
        assert_eq!(first_file(&[0u8; 1024]), None);
    }
}
