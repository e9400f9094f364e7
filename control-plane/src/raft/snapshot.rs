//! Snapshot payloads of every group, as the transport moves them: a byte stream that is
//! never required to be in memory as a whole.
//!
//! - The metadata group's snapshot is small and kept as [`SnapshotData::Bytes`].
//! - A shard group's snapshot is all of its retained records (possibly GBs): the sender
//!   produces it lazily as [`SnapshotData::Stream`] (chunks from a RocksDB snapshot through a
//!   bounded channel), the receiver spools anything larger than [`SPOOL_IN_MEMORY`] to a
//!   [`SnapshotData::File`] in the node's spool directory, and the state machine reads it
//!   back sequentially. Memory per transfer is bounded by a few chunks on each side.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

/// Size of the chunks a snapshot is produced and sent in.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;
/// A received snapshot larger than this is spooled to a file instead of kept in memory.
pub const SPOOL_IN_MEMORY: usize = 4 << 20;

/// The payload of a group snapshot.
pub enum SnapshotData {
    /// The whole payload in memory (metadata group; small received snapshots).
    Bytes(Vec<u8>),
    /// Produced on demand in chunks (bounded channel); an `Err` item aborts the snapshot.
    Stream(ChunkStream),
    /// Received and spooled to disk; the file is deleted when this value is dropped.
    File(SpoolFile),
}

/// The receiving end of a produced payload. The producer is told to start only when the
/// first chunk is asked for, so a snapshot whose payload is never read (openraft keeps only
/// the meta of a freshly built one) costs no reading at all.
pub struct ChunkStream {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    start: Option<oneshot::Sender<()>>,
}

impl ChunkStream {
    /// Chunks arrive on `rx`; `start` (if any) is fired on the first read.
    pub fn new(
        rx: mpsc::Receiver<io::Result<Vec<u8>>>,
        start: Option<oneshot::Sender<()>>,
    ) -> Self {
        Self { rx, start }
    }

    /// A payload that cannot be read: every read fails with `why`. For snapshots whose
    /// payload is never read (openraft keeps only the meta of a freshly built snapshot and
    /// asks for the current one when it sends a snapshot), so that building one costs no
    /// producer.
    pub fn unreadable(why: &str) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Err(io::Error::other(why.to_string())));
        Self { rx, start: None }
    }

    fn begin(&mut self) {
        if let Some(s) = self.start.take() {
            let _ = s.send(());
        }
    }
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotData::Bytes(b) => write!(f, "Bytes({} B)", b.len()),
            SnapshotData::Stream(_) => write!(f, "Stream"),
            SnapshotData::File(s) => write!(f, "File({})", s.path.display()),
        }
    }
}

impl SnapshotData {
    /// The next chunk of the payload, `None` at its end.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            SnapshotData::Bytes(b) => {
                if b.is_empty() {
                    return Ok(None);
                }
                let rest = b.split_off(b.len().min(SNAPSHOT_CHUNK));
                Ok(Some(std::mem::replace(b, rest)))
            }
            SnapshotData::Stream(s) => {
                s.begin();
                s.rx.recv().await.transpose()
            }
            SnapshotData::File(f) => {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                let n = read_full(&mut f.file, &mut buf)?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
        }
    }

    /// The whole payload in memory, refusing payloads larger than `max` bytes (for small
    /// snapshots only, e.g. the metadata group's).
    pub async fn into_bytes(mut self, max: usize) -> io::Result<Vec<u8>> {
        if let SnapshotData::Bytes(b) = self {
            return if b.len() > max {
                Err(io::Error::other("snapshot larger than expected"))
            } else {
                Ok(b)
            };
        }
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if out.len() + chunk.len() > max {
                return Err(io::Error::other("snapshot larger than expected"));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// A blocking sequential reader over the payload (use off the async runtime, e.g. in
    /// `spawn_blocking`).
    pub fn into_reader(self) -> SnapshotReader {
        SnapshotReader {
            data: self,
            pending: Vec::new(),
            pos: 0,
        }
    }
}

/// Reads all of `buf` unless the end comes first; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// See [`SnapshotData::into_reader`].
pub struct SnapshotReader {
    data: SnapshotData,
    pending: Vec<u8>,
    pos: usize,
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.data {
            SnapshotData::File(f) => f.file.read(buf),
            SnapshotData::Bytes(b) => {
                let n = buf.len().min(b.len() - self.pos);
                buf[..n].copy_from_slice(&b[self.pos..self.pos + n]);
                self.pos += n;
                Ok(n)
            }
            SnapshotData::Stream(s) => {
                s.begin();
                while self.pos == self.pending.len() {
                    match s.rx.blocking_recv() {
                        None => return Ok(0),
                        Some(chunk) => {
                            self.pending = chunk?;
                            self.pos = 0;
                        }
                    }
                }
                let n = buf.len().min(self.pending.len() - self.pos);
                buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
                self.pos += n;
                Ok(n)
            }
        }
    }
}

/// A snapshot being received: in memory up to [`SPOOL_IN_MEMORY`], then in a file.
pub struct SnapshotSink {
    dir: PathBuf,
    group: u64,
    memory: Vec<u8>,
    file: Option<SpoolFile>,
    len: u64,
}

impl SnapshotSink {
    /// A sink that spools into `dir` (created if missing) when the payload grows large.
    pub fn new(dir: &Path, group: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            group,
            memory: Vec::new(),
            file: None,
            len: 0,
        }
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a chunk (blocking file I/O once spooling).
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.len += chunk.len() as u64;
        if let Some(f) = &mut self.file {
            return f.file.write_all(chunk);
        }
        if self.memory.len() + chunk.len() <= SPOOL_IN_MEMORY {
            self.memory.extend_from_slice(chunk);
            return Ok(());
        }
        let mut f = SpoolFile::create(&self.dir, self.group)?;
        f.file.write_all(&self.memory)?;
        f.file.write_all(chunk)?;
        self.memory = Vec::new();
        self.file = Some(f);
        Ok(())
    }

    /// The received payload, ready to read from its start.
    pub fn finish(self) -> io::Result<SnapshotData> {
        match self.file {
            None => Ok(SnapshotData::Bytes(self.memory)),
            Some(mut f) => {
                f.file.flush()?;
                // Reopen for reading from the start; the writer handle is dropped.
                f.file = File::open(&f.path)?;
                Ok(SnapshotData::File(f))
            }
        }
    }
}

/// A spooled snapshot file, deleted on drop.
pub struct SpoolFile {
    path: PathBuf,
    file: File,
}

static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

impl SpoolFile {
    fn create(dir: &Path, group: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let seq = SPOOL_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("group-{group}-{}-{seq}.snap", std::process::id()));
        let file = File::create(&path)?;
        Ok(Self { path, file })
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn sink_spools_large_payloads_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        for size in [
            0,
            10,
            SPOOL_IN_MEMORY,
            SPOOL_IN_MEMORY + 1,
            3 * SNAPSHOT_CHUNK + 5,
        ] {
            let payload = pattern(size);
            let mut sink = SnapshotSink::new(dir.path(), 7);
            for piece in payload.chunks(100_000) {
                sink.write(piece).unwrap();
            }
            assert_eq!(sink.len(), size as u64);
            let data = sink.finish().unwrap();
            assert_eq!(
                matches!(data, SnapshotData::File(_)),
                size > SPOOL_IN_MEMORY,
                "size {size}"
            );
            let mut back = Vec::new();
            let data = tokio::task::spawn_blocking(move || {
                data.into_reader().read_to_end(&mut back).map(|_| back)
            })
            .await
            .unwrap()
            .unwrap();
            assert_eq!(data, payload);
        }
        // Spool files are deleted once dropped.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn chunks_of_every_kind_concatenate_to_the_payload() {
        let payload = pattern(2 * SNAPSHOT_CHUNK + 3);
        let mut data = SnapshotData::Bytes(payload.clone());
        let mut back = Vec::new();
        while let Some(c) = data.next_chunk().await.unwrap() {
            assert!(c.len() <= SNAPSHOT_CHUNK);
            back.extend_from_slice(&c);
        }
        assert_eq!(back, payload);

        let (tx, rx) = mpsc::channel(2);
        let p = payload.clone();
        tokio::spawn(async move {
            for c in p.chunks(1000) {
                tx.send(Ok(c.to_vec())).await.unwrap();
            }
        });
        let got = SnapshotData::Stream(ChunkStream::new(rx, None))
            .into_bytes(payload.len())
            .await
            .unwrap();
        assert_eq!(got, payload);
        assert!(SnapshotData::Bytes(vec![1, 2, 3])
            .into_bytes(2)
            .await
            .is_err());
    }
}
