//! Blocking file operations of the snapshot tier: bounded reads, atomic writes, the writers'
//! lock. Run on tokio's blocking pool by [`FileCache`](crate::FileCache).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The user that owns this process's snapshot files (found by creating one).
#[cfg(unix)]
pub(crate) type Owner = u32;
/// File ownership is not checked on this platform.
#[cfg(not(unix))]
pub(crate) type Owner = ();

/// The writers' lock file, in the snapshot directory.
const LOCK_FILE: &str = ".jwkstash.lock";

/// What reading an entry's file found.
#[derive(Debug)]
pub(crate) enum Found {
    /// No file.
    Missing,
    /// A directory, a symbolic link, a FIFO, ... where the entry should be.
    NotAFile,
    /// Longer than the limit (not read).
    TooLarge,
    /// Owned by another user, or writable by others.
    NotPrivate,
    /// The file's bytes.
    Bytes(Vec<u8>),
}

/// Opens a file for writing that only its owner may read and write.
fn private_file(path: &Path, create_new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).read(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A name for a temporary file beside `name`, unique across processes and threads.
fn temporary(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(
        ".{name}.{}-{:016x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ))
}

/// Creates and removes a file in `dir`; returns its owner.
pub(crate) fn probe(dir: &Path) -> io::Result<Owner> {
    let path = temporary(dir, "probe");
    let file = private_file(&path, true)?;
    let metadata = file.metadata();
    let removed = std::fs::remove_file(&path);
    let metadata = metadata?;
    removed?;
    Ok(owner_of(&metadata))
}

#[cfg(unix)]
fn owner_of(metadata: &std::fs::Metadata) -> Owner {
    std::os::unix::fs::MetadataExt::uid(metadata)
}

#[cfg(not(unix))]
fn owner_of(_: &std::fs::Metadata) -> Owner {}

/// Whether a file belongs to `owner` and no one else may write it.
#[cfg(unix)]
fn is_private(metadata: &std::fs::Metadata, owner: Owner) -> bool {
    use std::os::unix::fs::MetadataExt;
    metadata.uid() == owner && metadata.mode() & 0o022 == 0
}

#[cfg(not(unix))]
fn is_private(_: &std::fs::Metadata, _: Owner) -> bool {
    true
}

/// Opens an entry for reading in one step, so that nothing can be swapped in between a check
/// and the open: a symbolic link is not followed (the open fails), and a FIFO planted in
/// place of the entry opens at once instead of blocking until a writer comes.
fn open_entry(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    options.open(path)
}

/// Whether the open failed because the entry is a symbolic link (`O_NOFOLLOW`).
fn is_symbolic_link(error: &io::Error) -> bool {
    #[cfg(unix)]
    return error.raw_os_error() == Some(libc::ELOOP);
    #[cfg(not(unix))]
    return false;
}

/// Reads `path`, at most `max` bytes; checks ownership when `owner` is given.
pub(crate) fn read(path: &Path, max: usize, owner: Option<Owner>) -> io::Result<Found> {
    let file = match open_entry(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(error) if is_symbolic_link(&error) => return Ok(Found::NotAFile),
        Err(error) => return Err(error),
    };
    // The opened file's own metadata: what is read is what was checked.
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Ok(Found::NotAFile);
    }
    if owner.is_some_and(|owner| !is_private(&metadata, owner)) {
        return Ok(Found::NotPrivate);
    }
    let limit = u64::try_from(max).unwrap_or(u64::MAX);
    if metadata.len() > limit {
        return Ok(Found::TooLarge);
    }
    // The file may grow after the check: never read more than the limit and one byte.
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(max));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Ok(Found::TooLarge);
    }
    Ok(Found::Bytes(bytes))
}

/// Replaces `dir/name` with `bytes` atomically: a reader sees the old file or the new one,
/// never a part, and after a crash the entry is one or the other.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary(dir, name);
    let written = private_file(&temporary, true).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temporary, dir.join(name)));
    if let Err(error) = renamed {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    sync_directory(dir)
}

/// Removes `dir/name` (a missing file is not an error).
pub(crate) fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => sync_directory(dir),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_directory(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The writers' exclusive lock on `dir`, held until the returned file is dropped: writers of
/// one directory, in this process or another, take turns (readers never wait).
pub(crate) fn lock(dir: &Path) -> io::Result<File> {
    let file = private_file(&dir.join(LOCK_FILE), false)?;
    file.lock()?;
    Ok(file)
}
