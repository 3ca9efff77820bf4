//! The durable queue's files: an append-only, checksummed, segmented log.
//!
//! A record is `[len: u32 LE][crc32: u32 LE][payload]`; records get consecutive positions, and a
//! segment file is named for the position of its first record (`00000000000000000042.log`). An
//! append writes a whole batch of records with one `write` and makes it durable with one
//! `fdatasync` (group commit: every send in the batch shares it), so a send costs one sequential
//! append and a share of one sync.
//!
//! Segments are preallocated: a new one is a file of `segment_bytes` zeros, written and synced
//! ahead of time on a helper thread, then renamed into place when the active one is full. Appends
//! overwrite zeros in blocks the file already has, so `fdatasync` flushes data only, not the file
//! size or block map: no journal commit per append (which would also wait for every other file's
//! metadata), which is what keeps the sync short.
//!
//! Opening reads every segment back up to its first zero length. A record whose length runs past
//! the end of the file, or whose checksum does not match, is where a crash tore the last write:
//! the rest of the last segment is zeroed there (so no stale bytes can be read as records later)
//! and appends follow the valid prefix. (In an older segment such a record can only be damage;
//! what follows it in that segment is skipped, counted and logged.) Segments whose records have
//! all been released are deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

/// Record header: length and checksum.
const HEADER: usize = 8;
/// No record is larger (a message is at most a few KiB; this bounds what a corrupt length may
/// make recovery allocate).
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// One segment file.
struct Segment {
    /// The position after its last record.
    next: u64,
    path: PathBuf,
}

pub struct SegmentLog {
    dir: PathBuf,
    /// A segment at least this large is closed before the next append.
    segment_bytes: u64,
    /// Every segment on disk, oldest first; the last is the one appended to.
    segments: Vec<Segment>,
    active: File,
    active_len: u64,
    /// The next segment's file, being zero-filled and synced on a helper thread.
    spare: Option<JoinHandle<io::Result<(File, PathBuf)>>>,
}

/// The pause after each MiB of a spare segment written in the background (8 MiB: ~40 ms of
/// pauses, against the seconds a segment lasts at 16k msg/s).
const SPARE_PACE: Duration = Duration::from_millis(5);

/// Spare segments are named `spare-<random>.tmp` until they are renamed into place; any left
/// from before are removed at open.
const SPARE_SUFFIX: &str = ".tmp";

/// What opening found: every valid record, oldest first, with its position.
pub struct Recovered {
    pub records: Vec<(u64, Vec<u8>)>,
    /// Bytes cut from the torn tail of the last segment.
    pub torn_bytes: u64,
    /// Records skipped in older segments because they were damaged.
    pub damaged: u64,
}

impl SegmentLog {
    /// Opens the log in `dir` (creating it), reading back what it holds.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<(SegmentLog, Recovered)> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
            if entry.file_name().to_str().is_some_and(|n| n.ends_with(SPARE_SUFFIX)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        firsts.sort_unstable();
        let mut recovered = Recovered { records: Vec::new(), torn_bytes: 0, damaged: 0 };
        let mut segments = Vec::with_capacity(firsts.len().max(1));
        let mut valid_len = 0;
        for (i, &first) in firsts.iter().enumerate() {
            let path = segment_path(dir, first);
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            let (records, valid) = parse(&bytes);
            let last = i + 1 == firsts.len();
            let tail_dirty = bytes[valid..].iter().any(|b| *b != 0);
            if tail_dirty {
                if last {
                    recovered.torn_bytes = bytes[valid..].iter().rposition(|b| *b != 0).map_or(0, |i| i as u64 + 1);
                } else {
                    recovered.damaged += 1;
                    tracing::error!(segment = %path.display(), offset = valid, "damaged record in the durable queue; the rest of this segment is skipped");
                }
            }
            let count = records.len() as u64;
            recovered.records.extend(records.into_iter().enumerate().map(|(k, r)| (first + k as u64, r.to_vec())));
            segments.push(Segment { next: first + count, path });
            valid_len = valid as u64;
        }
        let (active, active_len) = match segments.last() {
            Some(last) => {
                let mut file = OpenOptions::new().write(true).open(&last.path)?;
                if recovered.torn_bytes > 0 {
                    file.seek(io::SeekFrom::Start(valid_len))?;
                    file.write_all(&vec![0; recovered.torn_bytes as usize])?;
                    file.sync_data()?;
                    tracing::warn!(segment = %last.path.display(), cut = recovered.torn_bytes, "cut the torn tail of the durable queue");
                }
                (file, valid_len)
            }
            None => {
                let path = segment_path(dir, 0);
                let (file, spare) = preallocate(dir, segment_bytes, None)?;
                install(dir, &spare, &path)?;
                segments.push(Segment { next: 0, path });
                (file, 0)
            }
        };
        let mut active = active;
        active.seek(io::SeekFrom::Start(active_len))?;
        let mut log = SegmentLog { dir: dir.to_owned(), segment_bytes, segments, active, active_len, spare: None };
        log.prepare_spare();
        Ok((log, recovered))
    }

    /// The position the next record gets.
    pub fn next_position(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.next)
    }

    /// Appends the records durably (one write, one `fdatasync`); returns the first one's
    /// position. On an error nothing can be said of what reached the disk: the caller must stop
    /// appending (reopening reads back what is valid).
    pub fn append(&mut self, records: &[&[u8]]) -> io::Result<u64> {
        let size: u64 = records.iter().map(|r| (r.len() + HEADER) as u64).sum();
        if self.active_len > 0 && self.active_len + size > self.segment_bytes {
            self.roll()?;
        }
        let mut buffer = Vec::with_capacity(size as usize);
        for record in records {
            if record.is_empty() || record.len() > MAX_RECORD {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "a record must be 1 byte to 16 MiB"));
            }
            buffer.extend_from_slice(&(record.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
            buffer.extend_from_slice(record);
        }
        self.active.write_all(&buffer)?;
        self.active.sync_data()?;
        self.active_len += buffer.len() as u64;
        let active = self.segments.last_mut().ok_or_else(|| io::Error::other("no active segment"))?;
        let first = active.next;
        active.next += records.len() as u64;
        Ok(first)
    }

    /// Whether [`release_before`](Self::release_before) would delete a segment.
    pub fn releasable_before(&self, position: u64) -> bool {
        self.segments.len() > 1 && self.segments[0].next <= position
    }

    /// Deletes every closed segment whose records all come before `position` (released).
    pub fn release_before(&mut self, position: u64) -> io::Result<()> {
        while self.segments.len() > 1 && self.segments[0].next <= position {
            let gone = self.segments.remove(0);
            std::fs::remove_file(&gone.path)?;
        }
        Ok(())
    }

    /// Segment files on disk (for the metrics and tests).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Closes the active segment and continues in the spare one.
    fn roll(&mut self) -> io::Result<()> {
        let (file, spare) = match self.spare.take().map(|t| t.join()) {
            Some(Ok(Ok(prepared))) => prepared,
            // The helper failed or was never started: make one here.
            _ => preallocate(&self.dir, self.segment_bytes, None)?,
        };
        let first = self.next_position();
        let path = segment_path(&self.dir, first);
        install(&self.dir, &spare, &path)?;
        self.active = file;
        self.active_len = 0;
        self.segments.push(Segment { next: first, path });
        self.prepare_spare();
        Ok(())
    }

    /// Starts zero-filling the next segment's file on a helper thread.
    fn prepare_spare(&mut self) {
        let (dir, bytes) = (self.dir.clone(), self.segment_bytes);
        self.spare = std::thread::Builder::new()
            .name("queue-spare".into())
            .spawn(move || preallocate(&dir, bytes, Some(SPARE_PACE)))
            .ok();
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

/// Writes a spare segment: `bytes` zeros, synced, under a spare name. With `pace`, each MiB is
/// synced on its own and followed by that pause: flushing the whole segment at once made the
/// appends' syncs wait behind it (`scripts/sync-cost` on this disk, 300-byte appends synced
/// every 0.5 ms while a spare was written: the slowest sync 4.4–7.1 ms at once, 1.8–2.4 ms paced;
/// the p99 of those ~50 ms is higher paced, ~0.9 ms, but the spare is written once a segment).
fn preallocate(dir: &Path, bytes: u64, pace: Option<Duration>) -> io::Result<(File, PathBuf)> {
    let path = dir.join(format!("spare-{:016x}{SPARE_SUFFIX}", rand::random::<u64>()));
    let mut file = OpenOptions::new().create_new(true).read(true).write(true).open(&path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
        if let Some(pause) = pace {
            file.sync_data()?;
            std::thread::sleep(pause);
        }
    }
    file.sync_all()?;
    file.seek(io::SeekFrom::Start(0))?;
    Ok((file, path))
}

/// Renames the spare into place as `path` and syncs the directory, so it is there after a crash.
fn install(dir: &Path, spare: &Path, path: &Path) -> io::Result<()> {
    std::fs::rename(spare, path)?;
    File::open(dir)?.sync_all()
}

/// The valid records of a segment's bytes and where they end.
fn parse(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let start = at + HEADER;
        if len == 0 || len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let record = &bytes[start..start + len];
        if crc32fast::hash(record) != crc {
            break;
        }
        records.push(record);
        at = start + len;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payloads(recovered: &Recovered) -> Vec<(u64, String)> {
        recovered.records.iter().map(|(p, r)| (*p, String::from_utf8(r.clone()).unwrap())).collect()
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_released_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, recovered) = SegmentLog::open(dir.path(), 64).unwrap();
            assert!(recovered.records.is_empty());
            for i in 0..10 {
                let record = format!("record-{i:02}-padding-padding");
                assert_eq!(log.append(&[record.as_bytes()]).unwrap(), i);
            }
            assert!(log.segment_count() > 2, "small segments roll over");
        }
        let (mut log, recovered) = SegmentLog::open(dir.path(), 64).unwrap();
        let got = payloads(&recovered);
        assert_eq!(got.len(), 10);
        assert!(got.iter().enumerate().all(|(i, (p, r))| *p == i as u64 && r.starts_with(&format!("record-{i:02}"))));
        assert_eq!(log.next_position(), 10);
        let before = log.segment_count();
        log.release_before(10).unwrap();
        assert_eq!(log.segment_count(), 1, "all but the active segment deleted (from {before})");
        let (_, recovered) = SegmentLog::open(dir.path(), 64).unwrap();
        assert!(recovered.records.iter().all(|(p, _)| *p >= 8), "released records do not come back");
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_follow_the_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        {
            let (mut log, _) = SegmentLog::open(dir.path(), 4096).unwrap();
            log.append(&[b"one", b"two"]).unwrap();
            path = log.segments[0].path.clone();
        }
        // Half a record, as a crash in the middle of a write leaves it.
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(io::SeekFrom::Start(2 * HEADER as u64 + 6)).unwrap();
        file.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
        drop(file);
        let (mut log, recovered) = SegmentLog::open(dir.path(), 4096).unwrap();
        assert_eq!(payloads(&recovered), vec![(0, "one".into()), (1, "two".into())]);
        assert_eq!(recovered.torn_bytes, 9);
        assert_eq!(log.append(&[b"three"]).unwrap(), 2);
        let (_, recovered) = SegmentLog::open(dir.path(), 4096).unwrap();
        assert_eq!(payloads(&recovered).last(), Some(&(2, "three".into())));
    }

    #[test]
    fn a_corrupt_record_ends_the_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        {
            let (mut log, _) = SegmentLog::open(dir.path(), 4096).unwrap();
            log.append(&[b"alpha", b"bravo", b"charlie"]).unwrap();
            path = log.segments[0].path.clone();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let second = HEADER + 5 + HEADER; // the first byte of "bravo"
        bytes[second] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, recovered) = SegmentLog::open(dir.path(), 4096).unwrap();
        assert_eq!(payloads(&recovered), vec![(0, "alpha".into())]);
    }

    proptest! {
        #[test]
        fn any_truncation_or_corruption_recovers_a_prefix_and_never_panics(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 1..12),
            cut in any::<prop::sample::Index>(),
            flip in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = {
                let (mut log, _) = SegmentLog::open(dir.path(), 4096).unwrap();
                let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
                log.append(&refs).unwrap();
                log.segments[0].path.clone()
            };
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.truncate(cut.index(bytes.len() + 1));
            if let Some((at, mask)) = flip {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= mask;
                }
            }
            std::fs::write(&path, &bytes).unwrap();
            let (_, recovered) = SegmentLog::open(dir.path(), 4096).unwrap();
            prop_assert!(recovered.records.len() <= records.len());
            for (i, (position, record)) in recovered.records.iter().enumerate() {
                prop_assert_eq!(*position, i as u64);
                prop_assert_eq!(record, &records[i]);
            }
        }
    }
}
