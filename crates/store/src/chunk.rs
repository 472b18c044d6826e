//! Line-aligned chunking of newline-delimited objects.
//!
//! # The rule
//!
//! A *line* starts at offset 0 of a non-empty object and right after every
//! `\n` that is not the object's last byte; it runs up to and including its
//! `\n` (or to the end of the object). A chunk `[s, e)` **owns exactly the
//! lines that start in `[s, e)`**, even when such a line runs past `e`.
//!
//! Since every line has exactly one start, any partition of the object into
//! consecutive ranges assigns every line to exactly one chunk: nothing is
//! lost, nothing is read twice. [`read_chunk_lines`] implements the rule for
//! any range; [`StoreResolver::chunk_ranges`] additionally moves every
//! boundary onto a line start, so that its chunks are exactly the bytes of
//! their lines and can be read with one plain ranged GET.
//!
//! Boundaries are found independently, each from a nominal cut at a
//! multiple of the chunk size: chunk `i` runs from the first line start at
//! or after `i × size` to the first at or after `(i + 1) × size`. So the
//! boundaries stay a few bytes past block-aligned offsets (a cache of fixed
//! blocks reads each block once), and they are probed in parallel.
//!
//! Lines are returned without their `\n`, and without a `\r` right before
//! it (CRLF files); a `\r` not followed by `\n` is data.

use crate::error::{Result, StoreError};
use crate::resolve::StoreResolver;
use quarry_proto::{ByteRange, DataRef};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

/// Bytes of the first probe for the next line start; each further probe of
/// one boundary reads 16 times more, up to [`MAX_PROBE_WINDOW`].
const FIRST_PROBE_WINDOW: u64 = 4 * 1024;
/// The largest probe.
const MAX_PROBE_WINDOW: u64 = 1024 * 1024;
/// Boundaries of one object probed at the same time.
const PROBES_IN_FLIGHT: usize = 8;

impl StoreResolver {
    /// Splits the object `data_ref` pins (or its byte range, if it has one)
    /// into ranges of whole lines: chunk `i` runs from the first line start
    /// at or after `start + i × chunk_size` to the first at or after
    /// `start + (i + 1) × chunk_size` (see the module documentation). A
    /// chunk that no line starts in (a line longer than `chunk_size`) is
    /// left out, its bytes belonging to the chunk before.
    ///
    /// Each boundary costs one small pinned ranged GET (more when a line is
    /// longer than 4 KiB), a few at a time. An empty object or range yields
    /// no chunk.
    pub async fn chunk_ranges(
        &self,
        data_ref: &DataRef,
        chunk_size: u64,
    ) -> Result<Vec<ByteRange>> {
        let chunk_size = chunk_size.max(1);
        let span = data_ref.range.unwrap_or(ByteRange {
            start: 0,
            end: data_ref.size,
        });
        let span_end = span.end.min(data_ref.size);
        let span_start = span.start.min(span_end);
        let cuts = (span_end - span_start).div_ceil(chunk_size);
        let mut boundaries = vec![self.next_line_start(data_ref, span_start).await?];
        // Cuts are probed a few at a time, in order. A boundary past later
        // cuts (a line longer than a chunk) is where those cuts land too, so
        // they are skipped.
        let mut cut = 1;
        while cut < cuts {
            let batch: Vec<u64> = (cut..cuts.min(cut + PROBES_IN_FLIGHT as u64))
                .map(|i| span_start + i * chunk_size)
                .collect();
            let found = futures::future::try_join_all(
                batch
                    .iter()
                    .map(|&offset| self.next_line_start(data_ref, offset)),
            )
            .await?;
            let reached = found.last().copied().unwrap_or(span_end);
            boundaries.extend(found);
            cut = (cut + batch.len() as u64).max((reached - span_start).div_ceil(chunk_size));
        }
        boundaries.push(self.next_line_start(data_ref, span_end).await?);
        boundaries.dedup();
        Ok(boundaries
            .windows(2)
            .filter(|pair| pair[0] < pair[1])
            .map(|pair| ByteRange {
                start: pair[0],
                end: pair[1],
            })
            .collect())
    }

    /// The first line start at or after `offset`, or the object size when
    /// no line starts there.
    async fn next_line_start(&self, data_ref: &DataRef, offset: u64) -> Result<u64> {
        let size = data_ref.size;
        if offset == 0 || offset >= size {
            return Ok(offset.min(size));
        }
        // Look from the byte before `offset`: if it is a newline, `offset`
        // itself starts a line.
        let mut from = offset - 1;
        let mut window_size = FIRST_PROBE_WINDOW;
        while from < size {
            let to = from.saturating_add(window_size).min(size);
            window_size = (window_size * 16).min(MAX_PROBE_WINDOW);
            let window = self
                .get_pinned_range(data_ref, from..to)
                .await?
                .bytes()
                .await?;
            if window.len() as u64 != to - from {
                return Err(StoreError::SizeMismatch {
                    url: data_ref.url.clone(),
                    expected: size,
                    actual: from + window.len() as u64,
                });
            }
            if let Some(newline) = window.iter().position(|&b| b == b'\n') {
                return Ok((from + newline as u64 + 1).min(size));
            }
            from = to;
        }
        Ok(size)
    }
}

/// Reads the lines that start in `range` (see the module documentation)
/// from a seekable reader positioned anywhere, such as a cached shard file.
/// Works for any range, whether or not it is aligned to line starts.
pub fn read_chunk_lines<R: Read + Seek>(reader: R, range: ByteRange) -> io::Result<Vec<Vec<u8>>> {
    let mut reader = BufReader::new(reader);
    let mut position = range.start;
    if range.start > 0 {
        reader.seek(SeekFrom::Start(range.start - 1))?;
        let mut before = [0u8; 1];
        let starts_a_line = match reader.read(&mut before)? {
            0 => return Ok(Vec::new()), // `start` is past the end
            _ => before[0] == b'\n',
        };
        if !starts_a_line {
            // The line running through `start` belongs to an earlier chunk.
            let mut skipped = Vec::new();
            position += reader.read_until(b'\n', &mut skipped)? as u64;
        }
    } else {
        reader.seek(SeekFrom::Start(0))?;
    }

    let mut lines = Vec::new();
    while position < range.end {
        let mut line = Vec::new();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        position += read as u64;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        lines.push(line);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::memory_store;
    use futures::TryStreamExt;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// The reference: split on `\n`, the final empty piece after a trailing
    /// newline is no line, and `\r` before `\n` is dropped.
    fn reference_lines(data: &[u8]) -> Vec<Vec<u8>> {
        if data.is_empty() {
            return Vec::new();
        }
        let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let terminated_last = data.ends_with(b"\n");
        if terminated_last {
            pieces.pop();
        }
        let count = pieces.len();
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| {
                let terminated = i + 1 < count || terminated_last;
                match piece.strip_suffix(b"\r") {
                    Some(stripped) if terminated => stripped.to_vec(),
                    _ => piece.to_vec(),
                }
            })
            .collect()
    }

    fn nominal_ranges(size: u64, chunk: u64) -> Vec<ByteRange> {
        (0..size.div_ceil(chunk))
            .map(|k| ByteRange {
                start: k * chunk,
                end: ((k + 1) * chunk).min(size),
            })
            .collect()
    }

    fn file_content() -> impl Strategy<Value = Vec<u8>> {
        let line =
            prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'\r', b' ']), 0..12);
        (
            prop::collection::vec((line, any::<bool>()), 0..25),
            any::<bool>(),
        )
            .prop_map(|(lines, trailing_newline)| {
                let mut data = Vec::new();
                let count = lines.len();
                for (i, (line, crlf)) in lines.into_iter().enumerate() {
                    data.extend_from_slice(&line);
                    if i + 1 < count || trailing_newline {
                        data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                    }
                }
                data
            })
    }

    async fn chunk_in_memory(name: &str, data: &[u8], chunk: u64) -> (Vec<ByteRange>, DataRef) {
        memory_store(name)
            .put(&Path::from("f"), data.to_vec().into())
            .await
            .unwrap();
        let resolver = StoreResolver::new(StoreConfig::default());
        let url = format!("memory://{name}/f");
        let r: Vec<DataRef> = resolver.list_refs(&url).try_collect().await.unwrap();
        let ranges = resolver.chunk_ranges(&r[0], chunk).await.unwrap();
        (ranges, r[0].clone())
    }

    proptest! {
        #[test]
        fn any_partition_reads_every_line_exactly_once(data in file_content(), chunk in 1u64..40) {
            let mut lines = Vec::new();
            for range in nominal_ranges(data.len() as u64, chunk) {
                lines.extend(read_chunk_lines(Cursor::new(&data), range).unwrap());
            }
            prop_assert_eq!(lines, reference_lines(&data));
        }

        #[test]
        fn aligned_chunks_are_whole_lines(data in file_content(), chunk in 1u64..40) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (ranges, _) = runtime.block_on(chunk_in_memory("chunk-prop", &data, chunk));
            let size = data.len() as u64;

            // Contiguous, non-empty, covering the object.
            let mut expected_start = 0;
            for range in &ranges {
                prop_assert_eq!(range.start, expected_start);
                prop_assert!(range.end > range.start);
                expected_start = range.end;
            }
            prop_assert_eq!(expected_start, size);

            // Every boundary is the first line start at or after a nominal
            // cut.
            for range in &ranges {
                prop_assert!(range.start == 0 || data[range.start as usize - 1] == b'\n');
                let cut = range.start / chunk * chunk;
                let line_start_before = (cut.max(1)..range.start).any(|o| data[o as usize - 1] == b'\n');
                prop_assert!(!line_start_before, "{:?} is not the first line start after {}", range, cut);
            }

            // The rule and the plain bytes agree, and add up to the file.
            let mut by_rule = Vec::new();
            let mut by_bytes = Vec::new();
            for range in &ranges {
                by_rule.extend(read_chunk_lines(Cursor::new(&data), *range).unwrap());
                by_bytes.extend(reference_lines(&data[range.start as usize..range.end as usize]));
            }
            prop_assert_eq!(&by_rule, &reference_lines(&data));
            prop_assert_eq!(&by_bytes, &reference_lines(&data));
        }
    }

    #[test]
    fn reference_examples() {
        assert_eq!(reference_lines(b""), Vec::<Vec<u8>>::new());
        assert_eq!(reference_lines(b"\n"), vec![b"".to_vec()]);
        assert_eq!(
            reference_lines(b"a\r\n\nb\r"),
            vec![b"a".to_vec(), b"".to_vec(), b"b\r".to_vec()]
        );
    }

    #[test]
    fn a_line_crossing_a_boundary_belongs_to_the_chunk_where_it_starts() {
        let data = b"first line\nsecond line\nthird";
        let head =
            read_chunk_lines(Cursor::new(&data[..]), ByteRange { start: 0, end: 12 }).unwrap();
        assert_eq!(head, vec![b"first line".to_vec(), b"second line".to_vec()]);
        let tail =
            read_chunk_lines(Cursor::new(&data[..]), ByteRange { start: 12, end: 28 }).unwrap();
        assert_eq!(tail, vec![b"third".to_vec()]);
    }

    #[tokio::test]
    async fn chunking_respects_a_reference_range_and_long_lines() {
        let long_line = "x".repeat(200_000);
        let data = format!("a\n{long_line}\nb\nc\n");
        let (whole, r) = chunk_in_memory("chunk-long", data.as_bytes(), 1).await;
        assert_eq!(
            whole,
            [
                ByteRange { start: 0, end: 2 },
                ByteRange {
                    start: 2,
                    end: 200_003
                },
                ByteRange {
                    start: 200_003,
                    end: 200_005
                },
                ByteRange {
                    start: 200_005,
                    end: 200_007
                },
            ]
        );
        let resolver = StoreResolver::new(StoreConfig::default());
        let sub = DataRef {
            range: Some(ByteRange {
                start: 1,
                end: 200_004,
            }),
            ..r
        };
        assert_eq!(
            resolver.chunk_ranges(&sub, 10).await.unwrap(),
            [
                ByteRange {
                    start: 2,
                    end: 200_003
                },
                ByteRange {
                    start: 200_003,
                    end: 200_005
                },
            ]
        );
    }

    #[tokio::test]
    async fn empty_object_has_no_chunks() {
        let (ranges, _) = chunk_in_memory("chunk-empty", b"", 10).await;
        assert!(ranges.is_empty());
    }
}
