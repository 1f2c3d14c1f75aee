//! Replacing the payload of a file we hold so that every state another
//! process can observe parses: in place when only hex digits change, else a
//! complete new file exchanged into the name, else (no exchange here) padded
//! in place.

use std::io;
use std::path::Path;

use super::create::create_temp;
use super::{mix_safe, path_names, LockFile, Rewrite};
use crate::sys::{self, errno};

impl LockFile {
    /// Write the payload of a file nobody has seen yet, or, as a last resort,
    /// rewrite in place: one `pwrite` at offset 0; a shorter payload is first
    /// padded with spaces to the old length (still valid JSON) and only then
    /// trimmed. Between two whole writes no state is half-written, but a read
    /// that races the `pwrite` itself may see a mix of old and new bytes:
    /// [`LockFile::rewrite`] uses this only where nothing better exists.
    pub fn write_payload(&mut self, bytes: &[u8]) -> io::Result<()> {
        let old_len = self.written.len();
        if bytes.len() < old_len {
            let mut padded = Vec::with_capacity(old_len);
            padded.extend_from_slice(bytes);
            padded.resize(old_len, b' ');
            sys::write_at(&self.file, &padded, 0)?;
            self.file.set_len(bytes.len() as u64)?;
        } else {
            sys::write_at(&self.file, bytes, 0)?;
        }
        self.written.clear();
        self.written.extend_from_slice(bytes);
        Ok(())
    }

    /// Replace the payload of the file we hold so that every state another
    /// process can observe is a complete payload (in-process hand-off,
    /// `createdAt` refresh):
    /// - in place, one `pwrite`, when `in_place` is allowed and the change is
    ///   mix-safe (only hex digits change: a new token, a same-width
    ///   `maxHoldMs`), so even a read racing the write parses;
    /// - otherwise (Linux) a new file, complete and locked under a temporary
    ///   name, swapped with the lock path by `renameat2(RENAME_EXCHANGE)`: a
    ///   reader opens the old file or the new one. The old file, now under the
    ///   temporary name, is checked to be ours (else the swap is undone and
    ///   the lease is [`Rewrite::Lost`]), unlinked and closed;
    /// - where the exchange is unsupported, padded in place (see
    ///   [`LockFile::write_payload`]).
    ///
    /// `mtime_ms`: the modification time to give the file (a refresh keeps
    /// the hold's real start there); `None` leaves it at the write time.
    pub fn rewrite(
        &mut self,
        path: &str,
        bytes: &[u8],
        mtime_ms: Option<i64>,
        in_place: bool,
    ) -> io::Result<Rewrite> {
        if in_place && mix_safe(&self.written, bytes) {
            sys::write_at(&self.file, bytes, 0)?;
            self.written.clear();
            self.written.extend_from_slice(bytes);
            if let Some(ms) = mtime_ms {
                sys::set_mtime(&self.file, ms);
            }
            return Ok(Rewrite::Done);
        }
        if let Some(r) = self.exchange(path, bytes, mtime_ms)? {
            return Ok(r);
        }
        if !path_names(path, self.id) {
            return Ok(Rewrite::Lost);
        }
        self.write_payload(bytes)?;
        if let Some(ms) = mtime_ms {
            sys::set_mtime(&self.file, ms);
        }
        Ok(Rewrite::Done)
    }

    /// The exchange of [`LockFile::rewrite`]. `None`: unsupported here.
    pub(super) fn exchange(
        &mut self,
        path: &str,
        bytes: &[u8],
        mtime_ms: Option<i64>,
    ) -> io::Result<Option<Rewrite>> {
        if !sys::CAN_EXCHANGE {
            return Ok(None);
        }
        // No temporary name, or a directory made read-only or full since we
        // took the lock: rewriting our own file in place still works.
        let Some(Ok((file, tmp))) = create_temp(path) else {
            return Ok(None);
        };
        let drop_tmp = |tmp: &Path| {
            let _ = std::fs::remove_file(tmp);
        };
        let ready = (|| -> io::Result<bool> {
            if !sys::try_lock_exclusive(&file)? {
                return Ok(false);
            }
            sys::write_at(&file, bytes, 0)?;
            if let Some(ms) = mtime_ms {
                sys::set_mtime(&file, ms);
            }
            Ok(true)
        })();
        match ready {
            Ok(true) => {}
            Ok(false) => {
                drop_tmp(&tmp);
                return Ok(None);
            }
            Err(e) => {
                drop_tmp(&tmp);
                return Err(e);
            }
        }
        // Identity before the swap publishes the new file (a failure after it
        // would leave our complete file at the path with no holder).
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => {
                drop_tmp(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = sys::exchange(&tmp, path) {
            drop_tmp(&tmp);
            return match sys::errno_of(&e) {
                Some(errno::EINVAL) | Some(errno::ENOSYS) | Some(errno::EOPNOTSUPP) => Ok(None),
                // Nothing at the lock path any more: our file was deleted.
                Some(errno::ENOENT) => Ok(Some(Rewrite::Lost)),
                _ => Err(e),
            };
        }
        // The temporary name now names what the lock path named.
        if !path_names(&tmp, self.id) {
            // Someone else's file was there: put it back, and never remove a
            // name we cannot account for.
            if sys::exchange(&tmp, path).is_ok() {
                drop_tmp(&tmp);
            }
            return Ok(Some(Rewrite::Lost));
        }
        drop_tmp(&tmp);
        // The old file (unlinked now) closes here, freeing its OS lock.
        self.id = sys::file_id(&file, &meta);
        self.file = file;
        self.written.clear();
        self.written.extend_from_slice(bytes);
        Ok(Some(Rewrite::Done))
    }
}
