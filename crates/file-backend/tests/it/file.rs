//! The snapshot tier over real directories: the conformance suite, every kind of bad file
//! refused (with one warning per kind, never a panic), files private to their owner, clear
//! errors for a missing or read-only directory, and two processes writing one entry at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwkstash_core::testkit::{self, entry_now};
use jwkstash_core::{Cache, Clock, Entry, ManualClock};
use jwkstash_file::{BuildError, FileCache};

const SECRET: &[u8] = b"a snapshot secret of 32 bytes...";
const KEY: &str = "jwks:0123456789abcdef";

fn cache(dir: &Path, clock: &ManualClock) -> FileCache {
    FileCache::builder(dir)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn signed(dir: &Path, clock: &ManualClock) -> FileCache {
    FileCache::builder(dir)
        .clock(Arc::new(clock.clone()))
        .hmac_secret(SECRET)
        .build()
        .unwrap()
}

/// The one entry file in `dir` (the writers' lock file aside).
fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.ends_with(".jwkstash.lock"))
        .collect();
    files.sort();
    files
}

fn only_file(dir: &Path) -> PathBuf {
    let files = entry_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

async fn get(cache: &FileCache, key: &str) -> Option<Entry<Vec<u8>>> {
    cache.get(key).await.unwrap()
}

#[tokio::test]
async fn passes_the_conformance_suite_with_and_without_a_secret() {
    let clock = ManualClock::default();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    testkit::run_all(
        Arc::new(cache(a.path(), &clock)),
        Arc::new(cache(b.path(), &clock)),
        &clock,
    )
    .await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    testkit::run_all(
        Arc::new(signed(a.path(), &clock)),
        Arc::new(signed(b.path(), &clock)),
        &clock,
    )
    .await;
}

#[tokio::test]
async fn entries_are_private_files_and_no_temporary_file_is_left() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock);
    for round in 0..5u8 {
        clock.advance(Duration::from_secs(1));
        cache.put(KEY, entry_now(&clock, &[round])).await.unwrap();
    }
    let file = only_file(dir.path());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{file:?}");
    assert_eq!(get(&cache, KEY).await.unwrap().value, [4]);
    // The stored bytes are the envelope around the raw value, not a format of its own.
    assert!(std::fs::read(&file).unwrap().starts_with(b"JWKS1"));
}

#[tokio::test]
async fn an_entry_is_never_replaced_by_one_fetched_earlier_through_another_handle() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (cache(dir.path(), &clock), cache(dir.path(), &clock));
    let older = entry_now(&clock, b"older");
    clock.advance(Duration::from_secs(1));
    let newer = entry_now(&clock, b"newer");
    one.put(KEY, newer.clone()).await.unwrap();
    two.put(KEY, older).await.unwrap();
    assert_eq!(get(&one, KEY).await, Some(newer));
}

/// Writes `bytes` as the file of `KEY` (found by writing a real entry first).
async fn plant(cache: &FileCache, clock: &ManualClock, bytes: &[u8]) -> PathBuf {
    cache.put(KEY, entry_now(clock, b"real")).await.unwrap();
    let file = only_file(cache.dir());
    std::fs::write(&file, bytes).unwrap();
    file
}

#[tokio::test]
async fn corrupt_truncated_tampered_foreign_future_and_expired_files_are_refused() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let cache = signed(dir.path(), &clock);
    cache.put(KEY, entry_now(&clock, b"keys")).await.unwrap();
    let file = only_file(dir.path());
    let genuine = std::fs::read(&file).unwrap();
    let refused = |kind: &str| cache.refusals()[kind];

    std::fs::write(&file, b"{\"keys\":[]}").unwrap();
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(refused("not_an_envelope"), 1);

    std::fs::write(&file, &genuine[..genuine.len() - 40]).unwrap();
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(refused("bad_mac") + refused("malformed"), 1);

    let mut tampered = genuine.clone();
    let at = tampered.len() - 40;
    tampered[at] ^= 1;
    std::fs::write(&file, &tampered).unwrap();
    assert_eq!(get(&cache, KEY).await, None);

    // Another issuer's snapshot copied over this one: its key is inside the signed bytes.
    let other = tempfile::tempdir().unwrap();
    let foreign = signed(other.path(), &clock);
    foreign
        .put("jwks:another-issuer", entry_now(&clock, b"theirs"))
        .await
        .unwrap();
    std::fs::copy(only_file(other.path()), &file).unwrap();
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(refused("wrong_key"), 1);

    // Another secret, and no tag at all.
    let stranger = FileCache::builder(other.path())
        .clock(Arc::new(clock.clone()))
        .hmac_secret(b"another secret of 32 bytes......".to_vec())
        .build()
        .unwrap();
    std::fs::write(&file, &genuine).unwrap();
    assert_eq!(Cache::<Vec<u8>>::get(&stranger, KEY).await.unwrap(), None);
    let unsigned = tempfile::tempdir().unwrap();
    let plain = self::cache(unsigned.path(), &clock);
    plain.put(KEY, entry_now(&clock, b"plain")).await.unwrap();
    std::fs::copy(only_file(unsigned.path()), &file).unwrap();
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(refused("missing_mac"), 1);

    // Written by a clock an hour ahead.
    let ahead = ManualClock::default();
    ahead.advance(Duration::from_secs(3600));
    std::fs::remove_file(&file).unwrap();
    signed(dir.path(), &ahead)
        .put(KEY, entry_now(&ahead, b"future"))
        .await
        .unwrap();
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(refused("bad_times"), 1);

    // The genuine entry, past its usable_until.
    std::fs::write(&file, &genuine).unwrap();
    assert!(get(&cache, KEY).await.is_some());
    clock.advance(Duration::from_secs(4200));
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(refused("expired"), 1);
    assert_eq!(refused("bad_mac") + refused("malformed"), 2);
}

#[tokio::test]
async fn oversize_files_and_directories_in_place_of_an_entry_are_refused() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::builder(dir.path())
        .clock(Arc::new(clock.clone()))
        .max_value_bytes(4096)
        .build()
        .unwrap();
    let file = plant(&cache, &clock, &vec![b'J'; 100 * 1024 * 1024]).await;
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(cache.refusals()["too_large"], 1);
    // An entry over the limit is not written.
    assert!(cache.put(KEY, entry_now(&clock, &[0; 8192])).await.is_err());
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(cache.refusals()["wrong_type"], 1);
    // A symbolic link to a genuine entry elsewhere is not followed.
    std::fs::remove_dir(&file).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let other = self::cache(elsewhere.path(), &clock);
    other.put(KEY, entry_now(&clock, b"k")).await.unwrap();
    std::os::unix::fs::symlink(only_file(elsewhere.path()), &file).unwrap();
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(cache.refusals()["wrong_type"], 2);
    // A FIFO in place of the entry: refused, not waited on (opening it would block).
    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(get(&cache, KEY).await, None);
    assert_eq!(cache.refusals()["wrong_type"], 3);
}

#[tokio::test]
async fn without_a_secret_a_file_others_may_write_is_refused() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock);
    cache.put(KEY, entry_now(&clock, b"keys")).await.unwrap();
    let file = only_file(dir.path());
    for mode in [0o666, 0o620, 0o602] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(get(&cache, KEY).await, None, "mode {mode:o}");
    }
    assert_eq!(cache.refusals()["not_private"], 3);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(get(&cache, KEY).await.is_some());
}

/// Log lines at warn level, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_bad_file_read_a_thousand_times_is_one_warning() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let cache = signed(dir.path(), &clock);
    plant(&cache, &clock, b"JWKS1garbage").await;
    for _ in 0..1000 {
        assert_eq!(get(&cache, KEY).await, None);
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("WARN").count(), 1, "{log}");
    assert!(log.contains("refused a stored value"), "{log}");
    assert_eq!(cache.refusals()["not_an_envelope"], 1000);
}

#[test]
fn a_missing_or_read_only_directory_is_a_clear_build_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let error = FileCache::builder(&missing).build().unwrap_err();
    assert!(matches!(error, BuildError::MissingDirectory(_)), "{error}");
    assert!(error.to_string().contains("does not exist"), "{error}");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let error = FileCache::builder(&file).build().unwrap_err();
    assert!(matches!(error, BuildError::NotADirectory(_)), "{error}");
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let error = FileCache::builder(&read_only).build().unwrap_err();
    assert!(matches!(error, BuildError::NotWritable { .. }), "{error}");
    assert!(error.to_string().contains("not writable"), "{error}");
    assert!(matches!(
        FileCache::builder(dir.path())
            .hmac_secret(b"short".to_vec())
            .build(),
        Err(BuildError::WeakSecret)
    ));
    assert!(matches!(
        FileCache::builder(dir.path())
            .previous_hmac_secret(SECRET)
            .build(),
        Err(BuildError::MissingSecret)
    ));
}

#[tokio::test]
async fn a_directory_removed_under_a_running_cache_is_a_runtime_error_not_a_panic() {
    let clock = ManualClock::default();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("snapshots");
    std::fs::create_dir(&dir).unwrap();
    let cache = cache(&dir, &clock);
    cache.put(KEY, entry_now(&clock, b"keys")).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(get(&cache, KEY).await, None);
    let error = cache
        .put(KEY, entry_now(&clock, b"keys"))
        .await
        .unwrap_err();
    assert_eq!(error.backend(), "file");
    assert!(Cache::<Vec<u8>>::remove(&cache, KEY).await.is_err());
}

const WRITER_ENV: &str = "JWKSTASH_SNAPSHOT_WRITER";
const WRITES: u64 = 200;

/// A writer process: `WRITES` entries of changing sizes under one key, each fetched later than
/// the one before (the writers interleave their fetch times).
#[test]
#[ignore = "runs only as a spawned writer"]
fn writer() {
    let Ok(config) = std::env::var(WRITER_ENV) else {
        return;
    };
    let (dir, offset) = config.split_once('|').unwrap();
    let offset: u64 = offset.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let clock = ManualClock::default();
        let cache = signed(Path::new(dir), &clock);
        for i in 0..WRITES {
            let at = clock.now() + Duration::from_millis(2 * i + offset);
            let value = vec![(i % 251) as u8; 1 + (i as usize * 997) % 60_000];
            let entry = Entry::new(
                value,
                at,
                at + Duration::from_secs(600),
                at + Duration::from_secs(4200),
            );
            cache.put(KEY, entry).await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_writing_at_once_never_leave_a_torn_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let spawn = move |offset: u64| {
        // This binary again, running only `writer` (named by its module in `tests/it`).
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["file::writer", "--exact", "--ignored", "--test-threads=1"])
            .env(WRITER_ENV, format!("{path}|{offset}"))
            .kill_on_drop(true)
            .status()
    };
    let writers = tokio::spawn(async move {
        let (a, b) = tokio::join!(spawn(0), spawn(1));
        assert!(a.unwrap().success() && b.unwrap().success());
    });
    // The reader's clock is ahead of the writers' last fetch time, behind their usable_until.
    let clock = ManualClock::default();
    clock.advance(Duration::from_secs(1));
    let reader = signed(dir.path(), &clock);
    let mut seen = 0;
    while !writers.is_finished() {
        if let Some(entry) = get(&reader, KEY).await {
            let first = entry.value[0];
            assert!(entry.value.iter().all(|byte| *byte == first));
            seen += 1;
        }
    }
    writers.await.unwrap();
    assert!(seen > 0, "no read overlapped the writes");
    let last = get(&reader, KEY).await.expect("the last entry");
    // Both writers' last entries are fetched at 2 * 199 (+1) ms: the later one stays.
    assert_eq!(
        last.fetched_at,
        ManualClock::default().now() + Duration::from_millis(2 * (WRITES - 1) + 1)
    );
    let refused: u64 = reader.refusals().values().sum();
    assert_eq!(refused, 0, "{:?} after {seen} reads", reader.refusals());
    assert_eq!(entry_files(dir.path()).len(), 1, "temporary files left");
}
