//! Files an operator names by an option: the importance file (`--importance`, when local),
//! the backtest variants (`--variants`) and the cluster hostfile (`-h`/`--hostfile`). Each is
//! read only when it is a regular file, and never past a size cap, so a FIFO, a device such
//! as `/dev/zero` or a runaway file is refused at once with one line, instead of a read that
//! hangs or fills memory.
//!
//! | file | cap | why |
//! |---|---|---|
//! | importance | [`MAX_IMPORTANCE_BYTES`] (1 GiB) | BankSim's is about 30 MB; every process holds it whole |
//! | `--variants` | [`MAX_VARIANTS_BYTES`] (1 MiB) | at most 64 variants of a few lines each |
//! | hostfile | [`MAX_HOSTFILE_BYTES`] (1 MiB) | at most 64 addresses, one a line |

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::FileProblem;

/// The most the importance file may hold.
pub(crate) const MAX_IMPORTANCE_BYTES: u64 = 1 << 30;
/// The most a `--variants` file may hold.
pub(crate) const MAX_VARIANTS_BYTES: u64 = 1 << 20;
/// The most a hostfile may hold.
pub(crate) const MAX_HOSTFILE_BYTES: u64 = 1 << 20;

/// Reads the regular file at `path` whole, refusing anything else (checked before it is
/// opened, and again on the open file) and a file larger than `limit` bytes (also one that
/// grows past it while being read). Returns its bytes and its metadata.
pub(crate) fn read_regular_file(
    path: &Path,
    limit: u64,
) -> Result<(Vec<u8>, Metadata), FileProblem> {
    // Before opening: opening a socket fails with a bare "No such device or address".
    regular(&std::fs::metadata(path).map_err(FileProblem::Io)?, limit)?;
    // Without O_NONBLOCK, opening a FIFO waits for a writer; a regular file ignores it.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(FileProblem::Io)?;
    let metadata = file.metadata().map_err(FileProblem::Io)?;
    regular(&metadata, limit)?;
    let body = read_capped(file, metadata.len(), limit)?;
    Ok((body, metadata))
}

/// The text of the regular file at `path` ([`read_regular_file`]), which must be UTF-8.
pub(crate) fn read_regular_text(path: &Path, limit: u64) -> Result<String, FileProblem> {
    let (body, _) = read_regular_file(path, limit)?;
    String::from_utf8(body).map_err(|_| FileProblem::NotUtf8)
}

/// Refuses what is not a regular file, or is larger than `limit`.
fn regular(metadata: &Metadata, limit: u64) -> Result<(), FileProblem> {
    let kind = metadata.file_type();
    if kind.is_file() {
        if metadata.len() > limit {
            return Err(FileProblem::TooLarge(limit));
        }
        return Ok(());
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(FileProblem::NotAFile(what))
}

/// Reads `file` (of `len` bytes when opened) to its end, but never more than `limit` bytes.
fn read_capped(file: File, len: u64, limit: u64) -> Result<Vec<u8>, FileProblem> {
    let mut body = Vec::with_capacity(len.min(limit) as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(FileProblem::Io)?;
    if body.len() as u64 > limit {
        return Err(FileProblem::TooLarge(limit));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(path: &Path, limit: u64) -> String {
        read_regular_file(path, limit).unwrap_err().to_string()
    }

    #[test]
    fn regular_files_are_read_whole_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_regular_file(&path, 10).unwrap().0, b"0123456789");
        assert_eq!(read_regular_text(&path, 10).unwrap(), "0123456789");
        assert_eq!(
            problem(&path, 9),
            "larger than 9 bytes, the most accepted here"
        );
        // A sparse file of 1 GiB and a byte is refused before a byte of it is read.
        let big = dir.path().join("big.csv");
        File::create(&big)
            .unwrap()
            .set_len(MAX_IMPORTANCE_BYTES + 1)
            .unwrap();
        assert_eq!(
            problem(&big, MAX_IMPORTANCE_BYTES),
            "larger than 1 GiB, the most accepted here"
        );
        std::fs::write(&path, b"\xff").unwrap();
        assert_eq!(
            read_regular_text(&path, 10).unwrap_err().to_string(),
            "not valid UTF-8 text"
        );
    }

    #[test]
    fn anything_but_a_regular_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(
            problem(&fifo, 10),
            "a FIFO (named pipe), not a regular file"
        );
        assert_eq!(
            problem(Path::new("/dev/zero"), MAX_IMPORTANCE_BYTES),
            "a character device, not a regular file"
        );
        assert_eq!(problem(dir.path(), 10), "a directory, not a regular file");
        assert!(problem(&dir.path().join("absent"), 10).contains("os error"));
    }
}
