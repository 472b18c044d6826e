//! The journal file format.
//!
//! ```text
//! header  := "QUARRYJL" version:u32le reserved:u32le      (16 bytes)
//! record  := length:u32le crc32:u32le payload[length]
//! payload := MessagePack of a Record
//! ```
//!
//! Records are only ever appended. A write cut short by a crash leaves a
//! torn record at the end: its length runs past the end of the file, or
//! its checksum does not match. Reading stops at the first such record;
//! everything before it is good, and the writer cuts the file back to it.
//! A record whose checksum matches but whose payload does not decode was
//! not torn: that is an error, never a guess. So is a header of another
//! version.

use crate::{JournalError, Record};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use tracing::warn;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"QUARRYJL";

/// Bytes of the file header.
pub const HEADER_LEN: u64 = 16;

/// Bytes before each record's payload: its length and checksum.
const RECORD_HEADER_LEN: usize = 8;

/// The file header of this format version.
pub fn header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Appends one framed record to `buffer`.
pub fn encode_record(record: &Record, buffer: &mut Vec<u8>) -> Result<(), String> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    rmp_serde::encode::write(buffer, record).map_err(|e| format!("cannot encode a record: {e}"))?;
    let payload = &buffer[start + RECORD_HEADER_LEN..];
    let length = u32::try_from(payload.len())
        .map_err(|_| format!("a record of {} bytes is over 4 GiB", payload.len()))?;
    let crc = crc32fast::hash(payload);
    buffer[start..start + 4].copy_from_slice(&length.to_le_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What reading a journal found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Good records read.
    pub records: u64,
    /// Bytes up to the end of the last good record (the header included;
    /// 0 for a missing or empty file).
    pub good_len: u64,
    /// Bytes after it: a torn or corrupt tail, cut away when the writer
    /// opens the file.
    pub torn_bytes: u64,
}

/// Reads every good record of the journal at `path` in order, handing
/// each to `each`. A missing or empty file has none. A torn or corrupt
/// tail ends the reading (with a warning that says how many bytes will be
/// dropped).
pub fn read_records(
    path: &Path,
    mut each: impl FnMut(Record),
) -> Result<ReadSummary, JournalError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ReadSummary::default()),
        Err(e) => return Err(JournalError::io(path, "open")(e)),
    };
    let file_len = file
        .metadata()
        .map_err(JournalError::io(path, "read its size"))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut summary = ReadSummary::default();
    let mut header_bytes = [0u8; HEADER_LEN as usize];
    let got = read_up_to(&mut reader, &mut header_bytes).map_err(JournalError::io(path, "read"))?;
    if got < header_bytes.len() {
        // Empty, or a header torn while it was first written.
        if header_bytes[..got] != header()[..got] {
            return Err(JournalError::NotAJournal {
                path: path.to_path_buf(),
            });
        }
        summary.torn_bytes = got as u64;
        warn_torn(path, &summary);
        return Ok(summary);
    }
    if &header_bytes[..8] != MAGIC {
        return Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
        });
    }
    let version = u32::from_le_bytes([
        header_bytes[8],
        header_bytes[9],
        header_bytes[10],
        header_bytes[11],
    ]);
    if version != FORMAT_VERSION {
        return Err(JournalError::UnknownVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut offset = HEADER_LEN;
    let mut payload = Vec::new();
    loop {
        let mut frame = [0u8; RECORD_HEADER_LEN];
        let got = read_up_to(&mut reader, &mut frame).map_err(JournalError::io(path, "read"))?;
        if got == 0 {
            break;
        }
        let length = u64::from(u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]));
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let end = offset + RECORD_HEADER_LEN as u64 + length;
        if got < RECORD_HEADER_LEN || end > file_len {
            break;
        }
        payload.resize(length as usize, 0);
        reader
            .read_exact(&mut payload)
            .map_err(JournalError::io(path, "read"))?;
        if crc32fast::hash(&payload) != crc {
            break;
        }
        let record: Record =
            rmp_serde::from_slice(&payload).map_err(|e| JournalError::Undecodable {
                path: path.to_path_buf(),
                offset,
                reason: e.to_string(),
            })?;
        each(record);
        summary.records += 1;
        offset = end;
    }
    summary.good_len = offset;
    summary.torn_bytes = file_len - offset;
    if summary.torn_bytes > 0 {
        warn_torn(path, &summary);
    }
    Ok(summary)
}

fn warn_torn(path: &Path, summary: &ReadSummary) {
    warn!(
        journal = %path.display(),
        "dropping {} bytes of a torn or corrupt tail after the last good record (at byte {}); \
         what they held was never acknowledged as durable",
        summary.torn_bytes,
        summary.good_len
    );
}

/// Reads until `buffer` is full or the end of the input; returns how many
/// bytes were read.
fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Opens the journal for appending after its last good record: cuts a
/// torn tail away (`good_len` from [`read_records`]) and writes the header
/// into an empty file. The cut and the header are on disk when it returns.
pub fn open_for_append(path: &Path, good_len: u64) -> Result<File, JournalError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(JournalError::io(path, "open for writing"))?;
    file.set_len(good_len)
        .map_err(JournalError::io(path, "cut its torn tail"))?;
    if good_len < HEADER_LEN {
        file.set_len(0)
            .map_err(JournalError::io(path, "truncate"))?;
        file.write_all(&header())
            .map_err(JournalError::io(path, "write its header"))?;
    }
    file.sync_all().map_err(JournalError::io(path, "sync"))?;
    sync_parent(path)?;
    drop(file);
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(JournalError::io(path, "open for appending"))
}

/// Replaces the journal with `records`, atomically: written to a file
/// beside it, synced, renamed over it, and the directory synced. A crash
/// at any point leaves either the old journal or the new one. Returns the
/// new file's length.
pub fn write_atomically(path: &Path, records: &[Record]) -> Result<u64, JournalError> {
    let temporary = sibling(path, ".compacting");
    let file = File::create(&temporary).map_err(JournalError::io(&temporary, "create"))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut length = HEADER_LEN;
    writer
        .write_all(&header())
        .map_err(JournalError::io(&temporary, "write"))?;
    let mut buffer = Vec::new();
    for record in records {
        buffer.clear();
        encode_record(record, &mut buffer).map_err(JournalError::WriterStopped)?;
        writer
            .write_all(&buffer)
            .map_err(JournalError::io(&temporary, "write"))?;
        length += buffer.len() as u64;
    }
    let file = writer
        .into_inner()
        .map_err(|e| JournalError::io(&temporary, "write")(e.into_error()))?;
    file.sync_all()
        .map_err(JournalError::io(&temporary, "sync"))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(JournalError::io(path, "replace it"))?;
    sync_parent(path)?;
    Ok(length)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Syncs the directory holding `path`, so that a rename or a new file in
/// it is durable.
fn sync_parent(path: &Path) -> Result<(), JournalError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(JournalError::io(dir, "sync its directory"))
}
