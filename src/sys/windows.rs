//! Windows: `LockFileEx` on one byte far past the payload, files opened so
//! that others can read, rename and delete them, reparse points never
//! followed, process identity from the process's creation time, and a
//! waiting thread woken by directory change notifications and by holder
//! process handles.
//!
//! One file of about 1,000 lines on purpose: the platform layer keeps one
//! file per platform, and Windows provides its own version of every function
//! of the surface (Unix shares `unix.rs` between Linux and macOS).
//!
//! The surface is described in [`crate::sys`]; what is particular here (see
//! docs/windows.md for the measurements behind each choice):
//! - **The lock** is an exclusive `LockFileEx` on the single byte at
//!   [`LOCK_OFFSET`], far past any payload: Windows byte-range locks are
//!   mandatory for reads and writes of the range they cover, so locking byte
//!   0 would make the JSON unreadable to old-module peers and to `inspect`.
//!   Locks belong to the handle; closing it (or the holder's death) frees it.
//! - **Opens** ask for `FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE`
//!   (what Node's own `fs` uses), so an old-module peer can read and delete a
//!   file we hold open, and pass `FILE_FLAG_OPEN_REPARSE_POINT`, so a symlink
//!   or junction at the lock path is opened itself, never followed, and
//!   refused (`ELOOP`); a directory is `EISDIR`, anything that is not a file
//!   on disk (a device, a pipe, another reparse point) is `EINVAL`.
//! - **Names**: a new lock file is built and locked under a temporary name,
//!   then renamed into place with `MoveFileExW` without
//!   `MOVEFILE_REPLACE_EXISTING`, which fails with `EEXIST` rather than
//!   replace anything ([`publish_temp`]). Removal is by handle
//!   ([`remove_by_handle`]): POSIX semantics (`FileDispositionInfoEx`) where
//!   the file system has them (NTFS on Windows 10 1709 and later: the name
//!   goes at once), else the classic delete disposition (the name goes when
//!   the last handle closes; wine works this way). A name whose file is
//!   delete-pending counts as absent ([`path_id`]).
//! - **Errors** are Windows error codes mapped to the errno names Node uses
//!   ([`map_error`]); unknown codes become `EUNKNOWN`.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::FileExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::path::Path;
use std::sync::Arc;

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_BAD_NETPATH,
    ERROR_BAD_PATHNAME, ERROR_BUFFER_OVERFLOW, ERROR_CALL_NOT_IMPLEMENTED,
    ERROR_CANT_RESOLVE_FILENAME, ERROR_DIRECTORY, ERROR_DISK_FULL, ERROR_FILENAME_EXCED_RANGE,
    ERROR_FILE_EXISTS, ERROR_FILE_NOT_FOUND, ERROR_HANDLE_DISK_FULL, ERROR_INVALID_FUNCTION,
    ERROR_INVALID_HANDLE, ERROR_INVALID_NAME, ERROR_INVALID_PARAMETER, ERROR_IO_PENDING,
    ERROR_LOCK_VIOLATION, ERROR_NOT_ENOUGH_MEMORY, ERROR_NOT_READY, ERROR_NOT_SAME_DEVICE,
    ERROR_NOT_SUPPORTED, ERROR_NO_SYSTEM_RESOURCES, ERROR_OUTOFMEMORY, ERROR_PATH_NOT_FOUND,
    ERROR_PRIVILEGE_NOT_HELD, ERROR_SHARING_VIOLATION, ERROR_STOPPED_ON_SYMLINK,
    ERROR_TOO_MANY_LINKS, ERROR_TOO_MANY_OPEN_FILES, ERROR_WRITE_PROTECT, FILETIME, HANDLE,
    INVALID_HANDLE_VALUE, STILL_ACTIVE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FileAttributeTagInfo, FileDispositionInfo, FileDispositionInfoEx, FileRenameInfo,
    FileStandardInfo, FindCloseChangeNotification, FindFirstChangeNotificationW,
    FindNextChangeNotification, GetFileInformationByHandle, GetFileInformationByHandleEx,
    GetFileType, LockFileEx, SetFileInformationByHandle, UnlockFileEx, BY_HANDLE_FILE_INFORMATION,
    CREATE_NEW, DELETE, FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_NORMAL,
    FILE_ATTRIBUTE_REPARSE_POINT, FILE_ATTRIBUTE_TAG_INFO, FILE_DISPOSITION_FLAG_DELETE,
    FILE_DISPOSITION_FLAG_POSIX_SEMANTICS, FILE_DISPOSITION_INFO, FILE_DISPOSITION_INFO_EX,
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_GENERIC_READ,
    FILE_GENERIC_WRITE, FILE_NOTIFY_CHANGE_FILE_NAME, FILE_READ_ATTRIBUTES, FILE_RENAME_INFO,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_STANDARD_INFO, FILE_TYPE_DISK,
    LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY, OPEN_EXISTING,
};
use windows_sys::Win32::System::SystemInformation::{ComputerNameDnsHostname, GetComputerNameExW};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, GetCurrentThreadId, GetExitCodeProcess, GetProcessTimes,
    OpenProcess, SetEvent, WaitForMultipleObjects, WaitForSingleObject, INFINITE,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

use super::{FileId, Fired, WatchId};

/// Errno values by name: the C runtime's numbering, which is what the error
/// table of `oserror` compares (every Windows error is mapped to one of
/// these by [`map_error`] before it leaves this file).
pub mod errno {
    pub use libc::{
        EACCES, EAGAIN, EBADF, EBUSY, EEXIST, EFBIG, EINTR, EINVAL, EIO, EISDIR, ELOOP, EMFILE,
        EMLINK, ENAMETOOLONG, ENFILE, ENOENT, ENOLCK, ENOMEM, ENOSPC, ENOSYS, ENOTDIR, ENXIO,
        EOPNOTSUPP, EPERM, EROFS, ETXTBSY, EXDEV,
    };
    /// Network errors of the PostgreSQL backend's connections.
    pub use libc::{
        EADDRNOTAVAIL, ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH, EPIPE, ETIMEDOUT,
    };
    /// No quota errno in the C runtime (quota errors map to `ENOSPC`); a
    /// value no error ever carries.
    pub const EDQUOT: i32 = -1;
}

/// A number no errno has: `oserror` names it `EUNKNOWN`.
const UNKNOWN: i32 = 4094;

/// The name a failed lock call reports as `syscall`.
pub const LOCK_SYSCALL: &str = "LockFileEx";
/// No unnamed files on Windows: new lock files are built under a temporary
/// name and renamed into place ([`publish_temp`]).
pub const UNNAMED_FILES: bool = false;
/// No atomic swap of two names: rewrites pad in place.
pub const CAN_EXCHANGE: bool = false;

/// The byte `LockFileEx` locks: far past the end of any payload (payloads
/// are capped at a few KiB), so reads of the JSON are never blocked, and
/// below 2^63 so that every file system and wine (which mirrors locks onto
/// POSIX record locks with a signed 64-bit offset) accepts it.
pub const LOCK_OFFSET: u64 = 0x7FFF_FFFF_FFFF_FFFE;

/// `NTSTATUS` of a name whose file is delete-pending (opens of it fail with
/// `ERROR_ACCESS_DENIED`; only the status tells the two apart).
const STATUS_DELETE_PENDING: i32 = 0xC000_0056_u32 as i32;
const IO_REPARSE_TAG_SYMLINK: u32 = 0xA000_000C;
const IO_REPARSE_TAG_MOUNT_POINT: u32 = 0xA000_0003;

#[link(name = "ntdll")]
extern "system" {
    /// The `NTSTATUS` behind the calling thread's last Win32 error.
    fn RtlGetLastNtStatus() -> i32;
}

/// The errno a Windows error code stands for (Node's names; libuv maps the
/// same codes except that it reports access denied as `EPERM`, where we keep
/// `EACCES`, the code a caller of a lock checks for permission problems).
pub fn map_error(code: u32) -> i32 {
    use errno::*;
    match code {
        ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND | ERROR_INVALID_NAME | ERROR_BAD_PATHNAME
        | ERROR_BAD_NETPATH => ENOENT,
        ERROR_DIRECTORY => ENOTDIR,
        AS_EISDIR => EISDIR,
        ERROR_TOO_MANY_OPEN_FILES => EMFILE,
        ERROR_ACCESS_DENIED => EACCES,
        ERROR_PRIVILEGE_NOT_HELD => EPERM,
        ERROR_INVALID_HANDLE => EBADF,
        ERROR_NOT_ENOUGH_MEMORY | ERROR_OUTOFMEMORY => ENOMEM,
        ERROR_NO_SYSTEM_RESOURCES => EAGAIN,
        ERROR_WRITE_PROTECT => EROFS,
        ERROR_NOT_READY | AS_EIO => EIO,
        ERROR_SHARING_VIOLATION | ERROR_LOCK_VIOLATION => EBUSY,
        ERROR_HANDLE_DISK_FULL | ERROR_DISK_FULL | 1295 /* ERROR_DISK_QUOTA_EXCEEDED */ => ENOSPC,
        ERROR_NOT_SUPPORTED => EOPNOTSUPP,
        ERROR_CALL_NOT_IMPLEMENTED => ENOSYS,
        ERROR_FILE_EXISTS | ERROR_ALREADY_EXISTS => EEXIST,
        ERROR_INVALID_PARAMETER | ERROR_INVALID_FUNCTION => EINVAL,
        ERROR_BUFFER_OVERFLOW | ERROR_FILENAME_EXCED_RANGE => ENAMETOOLONG,
        ERROR_NOT_SAME_DEVICE => EXDEV,
        ERROR_CANT_RESOLVE_FILENAME | ERROR_STOPPED_ON_SYMLINK => ELOOP,
        ERROR_TOO_MANY_LINKS => EMLINK,
        _ => UNKNOWN,
    }
}

/// The errno an `io::Error` stands for: errors from std and from this file
/// alike carry a Windows error code, mapped here ([`map_error`]).
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().map(|code| map_error(code as u32))
}

/// An `io::Error` carrying a Windows error code (as std's do).
fn win_error(code: u32) -> io::Error {
    io::Error::from_raw_os_error(code as i32)
}

/// The calling thread's last Windows error.
fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// A Windows error code that [`map_error`] turns into each errno this file
/// reports for a reason of its own (no Windows call failed).
const AS_ELOOP: u32 = ERROR_CANT_RESOLVE_FILENAME;
const AS_EISDIR: u32 = 336; // ERROR_DIRECTORY_NOT_SUPPORTED
const AS_EINVAL: u32 = ERROR_INVALID_PARAMETER;
const AS_ENOENT: u32 = ERROR_FILE_NOT_FOUND;
const AS_EEXIST: u32 = ERROR_FILE_EXISTS;
const AS_ENOSYS: u32 = ERROR_CALL_NOT_IMPLEMENTED;
const AS_EIO: u32 = 1117; // ERROR_IO_DEVICE

/// Path separators, the one to join with, and whether `X:` drive roots exist.
pub const SEPARATORS: &[char] = &['\\', '/'];
pub const SEPARATOR: char = '\\';
pub const DRIVE_ROOTS: bool = true;

/// A path std returned (`canonicalize` gives `\\?\C:\...` or
/// `\\?\UNC\server\share\...`), as Node spells it (`C:\...`, `\\server\...`).
pub fn display_path(p: std::path::PathBuf) -> String {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix(r"\\?\UNC\") {
        format!(r"\\{rest}")
    } else if let Some(rest) = s.strip_prefix(r"\\?\") {
        rest.to_string()
    } else {
        s.into_owned()
    }
}

/// A NUL-terminated UTF-16 path for the wide APIs; long absolute paths get
/// the `\\?\` prefix that lifts the 260-character limit.
fn wide(path: &Path) -> Vec<u16> {
    let mut w: Vec<u16> = path.as_os_str().encode_wide().collect();
    let is_drive = w.len() > 2 && w[1] == u16::from(b':');
    let is_unc = w.starts_with(&[u16::from(b'\\'), u16::from(b'\\')])
        && w.get(2) != Some(&u16::from(b'?'))
        && w.get(2) != Some(&u16::from(b'.'));
    if w.len() >= 248 && (is_drive || is_unc) {
        let prefix: Vec<u16> = if is_unc {
            w.drain(..2);
            r"\\?\UNC\".encode_utf16().collect()
        } else {
            r"\\?\".encode_utf16().collect()
        };
        w.splice(0..0, prefix);
        for c in w.iter_mut() {
            if *c == u16::from(b'/') {
                *c = u16::from(b'\\');
            }
        }
    }
    w.push(0);
    w
}

fn raw(file: &File) -> HANDLE {
    file.as_raw_handle() as HANDLE
}

/// `CreateFileW` with our sharing, never following a reparse point; the
/// handle is checked to be a regular file on disk.
fn open_with(path: &Path, access: u32, disposition: u32, flags: u32) -> io::Result<File> {
    let w = wide(path);
    // SAFETY: `w` is a NUL-terminated UTF-16 string; no security attributes
    // and no template handle.
    let h = unsafe {
        CreateFileW(
            w.as_ptr(),
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            std::ptr::null(),
            disposition,
            flags | FILE_FLAG_OPEN_REPARSE_POINT,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        // SAFETY: reads the calling thread's last-error value and status.
        let (code, status) = unsafe { (GetLastError(), RtlGetLastNtStatus()) };
        if code == ERROR_ACCESS_DENIED && status == STATUS_DELETE_PENDING {
            // A released file whose last handle is still open somewhere
            // (classic delete semantics): its name is on the way out. An
            // open finds nothing there; a create finds the name taken.
            return Err(win_error(if disposition == CREATE_NEW {
                AS_EEXIST
            } else {
                AS_ENOENT
            }));
        }
        return Err(win_error(code));
    }
    // SAFETY: a fresh handle nobody else owns.
    let file = unsafe { File::from_raw_handle(h as RawHandle) };
    check_regular(&file)?;
    Ok(file)
}

/// Refuse anything that is not a plain file on disk: a symlink or junction
/// (`ELOOP`), a directory (`EISDIR`), another reparse point, a device or a
/// pipe (`EINVAL`).
fn check_regular(file: &File) -> io::Result<()> {
    let h = raw(file);
    // SAFETY: a valid handle.
    if unsafe { GetFileType(h) } != FILE_TYPE_DISK {
        return Err(win_error(AS_EINVAL));
    }
    let mut tag = FILE_ATTRIBUTE_TAG_INFO {
        FileAttributes: 0,
        ReparseTag: 0,
    };
    // SAFETY: a valid handle and an output buffer of the class's size.
    let ok = unsafe {
        GetFileInformationByHandleEx(
            h,
            FileAttributeTagInfo,
            (&mut tag as *mut FILE_ATTRIBUTE_TAG_INFO).cast(),
            std::mem::size_of::<FILE_ATTRIBUTE_TAG_INFO>() as u32,
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    if tag.FileAttributes & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        let surrogate = tag.ReparseTag == IO_REPARSE_TAG_SYMLINK
            || tag.ReparseTag == IO_REPARSE_TAG_MOUNT_POINT;
        return Err(win_error(if surrogate { AS_ELOOP } else { AS_EINVAL }));
    }
    if tag.FileAttributes & FILE_ATTRIBUTE_DIRECTORY != 0 {
        return Err(win_error(AS_EISDIR));
    }
    Ok(())
}

/// The identity of an open file: its file index (std's `Metadata` has neither on stable Rust, so the handle is asked).
pub fn file_id(file: &File, _m: &Metadata) -> FileId {
    handle_id(file).unwrap_or(FileId { dev: 0, ino: 0 })
}

fn handle_id(file: &File) -> io::Result<FileId> {
    // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is a valid value.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: a valid handle and output struct.
    if unsafe { GetFileInformationByHandle(raw(file), &mut info) } == 0 {
        return Err(last_error());
    }
    // The file index alone: identities are only ever compared for one path
    // (one directory, so one volume), and wine reports the volume serial
    // number as 0 through some handles and not others.
    Ok(FileId {
        dev: 0,
        ino: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
    })
}

/// Whether the file of an open handle is delete-pending (its name goes when
/// the last handle closes).
fn delete_pending(file: &File) -> bool {
    // SAFETY: an all-zero FILE_STANDARD_INFO is a valid value.
    let mut info: FILE_STANDARD_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: a valid handle and an output buffer of the class's size.
    let ok = unsafe {
        GetFileInformationByHandleEx(
            raw(file),
            FileStandardInfo,
            (&mut info as *mut FILE_STANDARD_INFO).cast(),
            std::mem::size_of::<FILE_STANDARD_INFO>() as u32,
        )
    };
    ok != 0 && info.DeletePending
}

/// Open `path` for its attributes only (any kind of file, directories
/// included), following a final reparse point or not.
fn open_attributes(path: &Path, follow: bool) -> Option<File> {
    let w = wide(path);
    let flags = FILE_FLAG_BACKUP_SEMANTICS
        | if follow {
            0
        } else {
            FILE_FLAG_OPEN_REPARSE_POINT
        };
    // SAFETY: as in `open_with`; attribute-only access.
    let h = unsafe {
        CreateFileW(
            w.as_ptr(),
            FILE_READ_ATTRIBUTES,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            std::ptr::null(),
            OPEN_EXISTING,
            flags,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: a fresh handle nobody else owns.
    Some(unsafe { File::from_raw_handle(h as RawHandle) })
}

/// The identity of the file `path` names, without following a reparse point
/// at the last component; `None` when nothing (or a delete-pending file) is
/// there.
pub fn path_id(path: impl AsRef<Path>) -> Option<FileId> {
    let path = path.as_ref();
    let file = open_attributes(path, false)?;
    if delete_pending(&file) {
        return None;
    }
    handle_id(&file).ok()
}

/// The identity of the directory `path` names (through reparse points when
/// `follow`); `None` when it is not a directory.
pub fn dir_id(path: impl AsRef<Path>, follow: bool) -> Option<FileId> {
    let path = path.as_ref();
    let file = open_attributes(path, follow)?;
    let m = file.metadata().ok()?;
    if !m.is_dir() {
        return None;
    }
    handle_id(&file).ok()
}

pub fn mtime_ms(m: &Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Create `path` exclusively (read, write, delete access; the sharing every
/// open here uses), never following a reparse point.
pub fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
    open_with(
        path.as_ref(),
        FILE_GENERIC_READ | FILE_GENERIC_WRITE | DELETE,
        CREATE_NEW,
        FILE_ATTRIBUTE_NORMAL,
    )
}

/// [`open_existing`], never writable here: a dead holder's file is always
/// replaced, never taken over in place.
pub fn open_existing_for_lock(path: impl AsRef<Path>) -> io::Result<(File, bool)> {
    open_existing(path).map(|f| (f, false))
}

/// Never in place on Windows (see [`open_existing_for_lock`]).
pub fn single_link(_m: &Metadata) -> bool {
    false
}

/// Unknown from std's metadata here: always `false`, so a waiter asks the
/// path (Windows keeps no descriptor while waiting anyway).
pub fn unlinked(_m: &Metadata) -> bool {
    false
}

/// Open an existing `path` to read, lock and (when judged stale) delete it;
/// never following a reparse point, refusing what is not a regular file.
/// A delete-pending file is `ENOENT`.
pub fn open_existing(path: impl AsRef<Path>) -> io::Result<File> {
    let file = open_with(
        path.as_ref(),
        FILE_GENERIC_READ | DELETE,
        OPEN_EXISTING,
        // Lets a directory open, so that it is refused as EISDIR rather
        // than as access denied.
        FILE_FLAG_BACKUP_SEMANTICS,
    )?;
    if delete_pending(&file) {
        return Err(win_error(AS_ENOENT));
    }
    Ok(file)
}

fn lock_overlapped() -> OVERLAPPED {
    // SAFETY: an all-zero OVERLAPPED is valid; offset set below.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.Anonymous.Anonymous.Offset = LOCK_OFFSET as u32;
    ov.Anonymous.Anonymous.OffsetHigh = (LOCK_OFFSET >> 32) as u32;
    ov
}

/// Take the exclusive lock of `file` without blocking: `false` when another
/// handle (in any process, this one included) holds it.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    let mut ov = lock_overlapped();
    // SAFETY: a valid handle and OVERLAPPED that outlives the call (the
    // handle is synchronous, so the call completes before returning).
    let ok = unsafe {
        LockFileEx(
            raw(file),
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            1,
            0,
            &mut ov,
        )
    };
    if ok != 0 {
        return Ok(true);
    }
    // SAFETY: reads the calling thread's last-error value.
    match unsafe { GetLastError() } {
        ERROR_LOCK_VIOLATION | ERROR_IO_PENDING => Ok(false),
        code => Err(win_error(code)),
    }
}

/// Drop the lock (best effort; closing the handle drops it too).
pub fn unlock(file: &File) {
    let mut ov = lock_overlapped();
    // SAFETY: a valid handle and OVERLAPPED; the same range as the lock.
    unsafe { UnlockFileEx(raw(file), 0, 1, 0, &mut ov) };
}

/// Write all of `bytes` at offset `off`.
pub fn write_at(file: &File, bytes: &[u8], off: u64) -> io::Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        match file.seek_write(&bytes[done..], off + done as u64) {
            Ok(0) => return Err(win_error(AS_EIO)),
            Ok(n) => done += n,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read into `buf` from offset `off`; the count read (0 at the end).
pub fn read_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    match file.seek_read(buf, off) {
        Ok(n) => Ok(n),
        // Reading at or past the end of file.
        Err(e) if e.raw_os_error() == Some(38 /* ERROR_HANDLE_EOF */) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Set the modification time (best effort).
pub fn set_mtime(file: &File, ms: i64) {
    let t = if ms >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64)
    } else {
        std::time::UNIX_EPOCH
    };
    let _ = file.set_modified(t);
}

pub fn create_unnamed(_dir: &Path) -> Option<File> {
    None
}

pub fn link_unnamed(_file: &File, _target: impl AsRef<Path>) -> io::Result<()> {
    Err(win_error(AS_ENOSYS))
}

pub fn exchange(_a: impl AsRef<Path>, _b: impl AsRef<Path>) -> io::Result<()> {
    Err(win_error(AS_ENOSYS))
}

/// Give the complete, locked file built under `tmp` the name `target`,
/// failing with `EEXIST` rather than replacing anything: one rename of the
/// open handle (`FileRenameInfo` without `ReplaceIfExists`; our handle,
/// opened with `FILE_SHARE_DELETE`, stays valid and keeps the lock). By
/// handle rather than by name (`MoveFileExW`): wine deletes a file on close
/// under the name it was opened by, so a file renamed by name would survive
/// its own release there. On failure the temporary name is removed.
pub fn publish_temp(
    file: &File,
    tmp: impl AsRef<Path>,
    target: impl AsRef<Path>,
) -> io::Result<()> {
    let (tmp, target) = (tmp.as_ref(), target.as_ref());
    if let Err(err) = rename_handle(file, target) {
        let _ = std::fs::remove_file(tmp);
        // SAFETY: reads the calling thread's last status.
        if err.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32)
            && unsafe { RtlGetLastNtStatus() } == STATUS_DELETE_PENDING
        {
            // The name is still taken by a released file (see `open_with`).
            return Err(win_error(AS_EEXIST));
        }
        return Err(err);
    }
    Ok(())
}

/// The waiting thread does not keep handles of busy lock files between its
/// attempts: closing a handle wakes no watcher here, and a kept handle keeps
/// a file that another process deletes with the classic disposition (the
/// old module, through Node's `fs`) under its name until it closes.
pub const KEEP_WAIT_HANDLES: bool = false;

/// Remove the name `path` of `file`, a file we hold locked (the caller has
/// checked that the path names it), through the handle, so only our own
/// file is ever deleted. With POSIX semantics the name goes at once. Where
/// the file system has only the classic disposition (the name stays until
/// the last handle closes, and stays openable under wine), the file is
/// first renamed by handle to `<path>.<pid>-<n>.del`, so the lock path is
/// free at once for the next holder (and its directory reports the change),
/// whoever still has the old file open.
pub fn remove_name(file: &File, path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    match set_disposition(file, true) {
        // Wine 8 accepts the POSIX request and does nothing: believe it only
        // when the name is gone.
        Ok(()) if path_id(path).is_none() || path_id(path) != handle_id(file).ok() => return Ok(()),
        Ok(()) => {}
        Err(e) if !posix_unsupported(&e) => return Err(e),
        Err(_) => {}
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(
        ".{}-{}.del",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    // Best effort: without the rename the name still goes, later.
    let _ = rename_handle(file, Path::new(&aside));
    set_disposition(file, false)
}

/// No POSIX delete semantics here (FAT, older Windows, wine).
fn posix_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(|c| c as u32),
        Some(ERROR_INVALID_PARAMETER | ERROR_NOT_SUPPORTED | ERROR_INVALID_FUNCTION)
    )
}

/// Rename the file of `file` to the absolute `target`, never replacing.
fn rename_handle(file: &File, target: &Path) -> io::Result<()> {
    // An NT path (`\??\C:\...`): NtSetInformationFile takes no DOS path.
    let mut name: Vec<u16> = r"\??\".encode_utf16().collect();
    let t = target.as_os_str().encode_wide().collect::<Vec<u16>>();
    if t.starts_with(&[u16::from(b'\\'), u16::from(b'\\')]) {
        if t.get(2) == Some(&u16::from(b'?')) || t.get(2) == Some(&u16::from(b'.')) {
            name.clear();
            name.extend_from_slice(&t);
            name[1] = u16::from(b'?');
        } else {
            name.extend("UNC".encode_utf16());
            name.extend_from_slice(&t[1..]);
        }
    } else {
        name.extend_from_slice(&t);
    }
    let bytes = std::mem::size_of::<FILE_RENAME_INFO>() + name.len() * 2;
    // u64 units: FILE_RENAME_INFO is 8-aligned.
    let mut buf = vec![0u64; bytes.div_ceil(8)];
    let info = buf.as_mut_ptr().cast::<FILE_RENAME_INFO>();
    // SAFETY: `buf` is zeroed, 8-aligned and large enough for the header
    // and the name that follows it (FileName is the trailing array).
    unsafe {
        (*info).Anonymous.ReplaceIfExists = false;
        (*info).RootDirectory = std::ptr::null_mut();
        (*info).FileNameLength = (name.len() * 2) as u32;
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            std::ptr::addr_of_mut!((*info).FileName).cast::<u16>(),
            name.len(),
        );
    }
    // SAFETY: a valid handle with DELETE access and the buffer built above.
    let ok =
        unsafe { SetFileInformationByHandle(raw(file), FileRenameInfo, info.cast(), bytes as u32) };
    if ok == 0 {
        return Err(last_error());
    }
    Ok(())
}

/// Set the delete disposition of `file`: POSIX semantics (`posix`) or the
/// classic one.
fn set_disposition(file: &File, posix: bool) -> io::Result<()> {
    let ok = if posix {
        let ex = FILE_DISPOSITION_INFO_EX {
            Flags: FILE_DISPOSITION_FLAG_DELETE | FILE_DISPOSITION_FLAG_POSIX_SEMANTICS,
        };
        // SAFETY: a valid handle and an input buffer of the class's size.
        unsafe {
            SetFileInformationByHandle(
                raw(file),
                FileDispositionInfoEx,
                (&ex as *const FILE_DISPOSITION_INFO_EX).cast(),
                std::mem::size_of::<FILE_DISPOSITION_INFO_EX>() as u32,
            )
        }
    } else {
        let classic = FILE_DISPOSITION_INFO { DeleteFile: true };
        // SAFETY: as above.
        unsafe {
            SetFileInformationByHandle(
                raw(file),
                FileDispositionInfo,
                (&classic as *const FILE_DISPOSITION_INFO).cast(),
                std::mem::size_of::<FILE_DISPOSITION_INFO>() as u32,
            )
        }
    };
    if ok == 0 {
        return Err(last_error());
    }
    Ok(())
}

/// An open process handle, closed on drop.
struct Process(HANDLE);

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: a handle we opened and nobody else closes.
        unsafe { CloseHandle(self.0) };
    }
}

fn open_process(pid: u32, access: u32) -> Result<Process, u32> {
    // SAFETY: plain call; the handle is owned by the returned value.
    let h = unsafe { OpenProcess(access, 0, pid) };
    if h.is_null() {
        // SAFETY: reads the calling thread's last-error value.
        return Err(unsafe { GetLastError() });
    }
    Ok(Process(h))
}

/// Whether `pid` names a running process. A process we may not open
/// (another user's, a protected one) counts as alive; an exited process
/// whose object is still kept by some handle (the Windows twin of a zombie)
/// is dead.
pub fn process_exists(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE) {
        // SAFETY: a valid process handle with SYNCHRONIZE access.
        Ok(p) => {
            // SAFETY: a valid process handle with SYNCHRONIZE access.
            let state = unsafe { WaitForSingleObject(p.0, 0) };
            state == WAIT_TIMEOUT
        }
        Err(ERROR_ACCESS_DENIED) => match open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION) {
            Ok(p) => {
                let mut code = 0u32;
                // SAFETY: a valid process handle and output.
                let ok = unsafe { GetExitCodeProcess(p.0, &mut code) };
                ok == 0 || code == STILL_ACTIVE as u32
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const EPOCH_DIFF_100NS: u64 = 116_444_736_000_000_000;

/// The creation time of process `pid`, in milliseconds since the Unix epoch
/// (the payload's `starttime` on Windows: a pid reused by a later process
/// has a later creation time). `None` when the process cannot be opened.
pub fn start_time(pid: u32) -> Option<u64> {
    let own = pid == std::process::id();
    let p = if own {
        None
    } else {
        Some(open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).ok()?)
    };
    // SAFETY: the pseudo handle of the current process needs no closing.
    let h = p
        .as_ref()
        .map_or_else(|| unsafe { GetCurrentProcess() }, |p| p.0);
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a valid process handle and four output structs.
    let ok = unsafe { GetProcessTimes(h, &mut created, &mut exited, &mut kernel, &mut user) };
    if ok == 0 {
        return None;
    }
    let t = (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime);
    Some(t.checked_sub(EPOCH_DIFF_100NS)? / 10_000)
}

/// No `/proc` on Windows: the start time comes from [`start_time`].
pub fn proc_stat(_pid: u32) -> Option<Vec<u8>> {
    None
}

pub fn boot_id() -> Option<String> {
    None
}

/// The DNS host name, as `os.hostname()` reports it.
pub fn hostname() -> String {
    let mut buf = [0u16; 256];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` UTF-16 units; the call writes at most that.
    let ok = unsafe { GetComputerNameExW(ComputerNameDnsHostname, buf.as_mut_ptr(), &mut len) };
    if ok == 0 {
        return std::env::var("COMPUTERNAME").unwrap_or_default();
    }
    String::from_utf16_lossy(&buf[..len as usize])
}

pub fn thread_id() -> u64 {
    // SAFETY: no arguments, no failure.
    u64::from(unsafe { GetCurrentThreadId() })
}

/// Not cheaply knowable on Windows.
pub fn is_main_thread() -> Option<bool> {
    None
}

/// The parent process id (0 when it cannot be found); tests use it as a
/// live process of ours.
#[cfg(test)]
pub fn parent_pid() -> u32 {
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W,
        TH32CS_SNAPPROCESS,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcessId;
    // SAFETY: plain call; the snapshot handle is closed below.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return 0;
    }
    let snap = Process(snap);
    // SAFETY: an all-zero PROCESSENTRY32W with dwSize set is valid input.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: no arguments.
    let me = unsafe { GetCurrentProcessId() };
    // SAFETY: a valid snapshot and entry.
    let mut ok = unsafe { Process32FirstW(snap.0, &mut entry) };
    while ok != 0 {
        if entry.th32ProcessID == me {
            return entry.th32ParentProcessID;
        }
        // SAFETY: as above.
        ok = unsafe { Process32NextW(snap.0, &mut entry) };
    }
    0
}

/// The sending end of the waiting thread's wake channel (an auto-reset
/// event shared with the receiver).
#[derive(Debug, Clone)]
pub struct WakeSender(Arc<OwnedHandle>);

/// The receiving end.
#[derive(Debug)]
pub struct WakeReceiver(Arc<OwnedHandle>);

/// Windows has no POSIX signals to keep off the waiting thread.
pub fn block_signals_on_this_thread() {}

/// Create the wake channel: one auto-reset event. The error is
/// `CreateEventW`'s.
pub fn wake_channel() -> io::Result<(WakeSender, WakeReceiver)> {
    // SAFETY: no security attributes, unnamed, auto-reset, not signalled.
    let h = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
    if h.is_null() {
        return Err(last_error());
    }
    // SAFETY: a fresh handle nobody else owns.
    let owned = Arc::new(unsafe { OwnedHandle::from_raw_handle(h as RawHandle) });
    Ok((WakeSender(owned.clone()), WakeReceiver(owned)))
}

impl WakeSender {
    /// Wake the receiver (a set event stays set until the receiver wakes).
    pub fn wake(&self) {
        // SAFETY: a valid event handle.
        unsafe { SetEvent(self.0.as_raw_handle() as HANDLE) };
    }
}

impl WakeReceiver {
    /// Block until woken or `timeout_ms` passes (`None`: no timeout); the
    /// wake-up is consumed (auto-reset).
    pub fn wait(&self, timeout_ms: Option<u32>) {
        // SAFETY: a valid event handle.
        unsafe { WaitForSingleObject(self.raw(), timeout_ms.unwrap_or(INFINITE)) };
    }

    fn raw(&self) -> HANDLE {
        self.0.as_raw_handle() as HANDLE
    }
}

/// One directory watched for name changes (a file created, deleted or
/// renamed in it), shared by every watch of a lock file in it.
struct DirWatch {
    handle: HANDLE,
    users: usize,
}

struct Watch {
    dir: String,
    /// The holder named in the lock file, opened to wait for its end (a
    /// holder that dies frees its lock without touching the directory).
    process: Option<Process>,
}

/// Change notification for the waiting thread. A lock is freed in one of
/// two ways another process can see: its holder releases (and removes the
/// file: a name change in its directory, `FindFirstChangeNotificationW` with
/// `FILE_NOTIFY_CHANGE_FILE_NAME`) or its holder dies (the process handle of
/// the pid the file names is signalled). The waiting thread's fallback poll
/// covers the rest (a lock taken and dropped by a process that the file
/// does not name, such as a `clean` sweep next door).
///
/// One `WaitForMultipleObjects` waits for everything, so at most 63 handles
/// (directories plus holder processes) are waited on; past that a watch
/// keeps its directory but not its process, and a directory that does not
/// fit is refused (`EMFILE`), which leaves that key to the poll.
pub struct ChangeWatcher {
    dirs: HashMap<String, DirWatch>,
    watches: HashMap<WatchId, Watch>,
    next: WatchId,
}

// SAFETY: the raw handles inside are owned by the watcher and used only by
// the thread that owns it at a time.
unsafe impl Send for ChangeWatcher {}

/// `MAXIMUM_WAIT_OBJECTS`, less the wake event.
const MAX_WAITS: usize = 63;

/// The directory part of a lock path (either separator).
fn dir_of(path: &str) -> &str {
    match path.rfind(['\\', '/']) {
        Some(0) => &path[..1],
        Some(i) if i == 2 && path.as_bytes()[1] == b':' => &path[..3],
        Some(i) => &path[..i],
        None => ".",
    }
}

/// The `pid` of a lock file's payload (digits after `"pid":`), read from at
/// most the first 4 KiB; `None` when there is none.
fn payload_pid(path: &str) -> Option<u32> {
    let file = open_existing(Path::new(path)).ok()?;
    let mut buf = [0u8; 4096];
    let n = read_at(&file, &mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let at = text.find("\"pid\"")? + 5;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    digits.parse().ok().filter(|&p| p != 0)
}

impl ChangeWatcher {
    pub const NAME: &'static str = "directory change notifications";
    pub const CREATE_SYSCALL: &'static str = "CreateEventW";
    pub const WATCH_SYSCALL: &'static str = "FindFirstChangeNotificationW";

    pub fn create() -> Result<Option<Self>, i32> {
        Ok(Some(ChangeWatcher {
            dirs: HashMap::new(),
            watches: HashMap::new(),
            next: 1,
        }))
    }

    /// No error here means "no such facility".
    pub fn unsupported(_errno: i32) -> bool {
        false
    }

    pub fn limit_hint(errno: i32) -> &'static str {
        if errno == errno::EMFILE {
            " (one thread waits on at most 63 directories and holder processes)"
        } else {
            ""
        }
    }

    fn waits(&self) -> usize {
        self.dirs.len()
            + self
                .watches
                .values()
                .filter(|w| w.process.is_some())
                .count()
    }

    /// Watch the lock file `path`: its directory for name changes, and the
    /// process its payload names for its end.
    pub fn add(&mut self, path: &str) -> Result<WatchId, i32> {
        let dir = dir_of(path).to_string();
        if let Some(d) = self.dirs.get_mut(&dir) {
            d.users += 1;
        } else {
            if self.waits() >= MAX_WAITS {
                return Err(errno::EMFILE);
            }
            let w = wide(Path::new(&dir));
            // SAFETY: a NUL-terminated UTF-16 path.
            let h = unsafe {
                FindFirstChangeNotificationW(w.as_ptr(), 0, FILE_NOTIFY_CHANGE_FILE_NAME)
            };
            if h == INVALID_HANDLE_VALUE {
                // SAFETY: reads the calling thread's last-error value.
                return Err(map_error(unsafe { GetLastError() }));
            }
            self.dirs.insert(
                dir.clone(),
                DirWatch {
                    handle: h,
                    users: 1,
                },
            );
        }
        let process = match payload_pid(path) {
            Some(pid) if pid != std::process::id() && self.waits() < MAX_WAITS => {
                open_process(pid, PROCESS_SYNCHRONIZE).ok()
            }
            _ => None,
        };
        let id = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        self.watches.insert(id, Watch { dir, process });
        Ok(id)
    }

    pub fn remove(&mut self, id: WatchId) {
        let Some(w) = self.watches.remove(&id) else {
            return;
        };
        if let Some(d) = self.dirs.get_mut(&w.dir) {
            d.users -= 1;
            if d.users == 0 {
                // SAFETY: a change notification handle we opened.
                unsafe { FindCloseChangeNotification(d.handle) };
                self.dirs.remove(&w.dir);
            }
        }
    }

    /// Wait until woken, a watched directory changes or a watched holder
    /// ends, or `timeout_ms` passes; report every watch concerned in
    /// `fired`. A directory's notification is re-armed before returning, so
    /// a change after this call returns is seen by the next one.
    pub fn wait(&mut self, wake: &WakeReceiver, timeout_ms: Option<u32>, fired: &mut Vec<Fired>) {
        enum Source {
            Wake,
            Dir(String),
            Process(WatchId),
        }
        let mut handles: Vec<HANDLE> = Vec::with_capacity(1 + self.waits());
        let mut sources: Vec<Source> = Vec::with_capacity(handles.capacity());
        handles.push(wake.raw());
        sources.push(Source::Wake);
        for (dir, d) in &self.dirs {
            handles.push(d.handle);
            sources.push(Source::Dir(dir.clone()));
        }
        for (id, w) in &self.watches {
            if let Some(p) = &w.process {
                handles.push(p.0);
                sources.push(Source::Process(*id));
            }
        }
        handles.truncate(MAX_WAITS + 1);
        let n = handles.len() as u32;
        // SAFETY: `n` valid handles (at most MAXIMUM_WAIT_OBJECTS).
        let first = unsafe {
            WaitForMultipleObjects(n, handles.as_ptr(), 0, timeout_ms.unwrap_or(INFINITE))
        };
        if first >= WAIT_OBJECT_0 + n {
            return; // timeout or failure: the caller's poll decides
        }
        // Everything signalled now, not only the first.
        for (i, source) in sources.iter().enumerate().take(handles.len()) {
            let signalled = i as u32 == first - WAIT_OBJECT_0
                // SAFETY: a valid handle; a zero timeout only tests it.
                || (i > 0 && unsafe { WaitForSingleObject(handles[i], 0) } == WAIT_OBJECT_0);
            if !signalled {
                continue;
            }
            match source {
                Source::Wake => {}
                Source::Dir(dir) => {
                    // SAFETY: a valid change notification handle.
                    unsafe { FindNextChangeNotification(handles[i]) };
                    for (id, w) in &self.watches {
                        if &w.dir == dir {
                            fired.push(Fired {
                                id: *id,
                                dropped: false,
                            });
                        }
                    }
                }
                Source::Process(id) => {
                    if let Some(w) = self.watches.get_mut(id) {
                        // Ended for good: stop waiting on it.
                        w.process = None;
                        fired.push(Fired {
                            id: *id,
                            dropped: false,
                        });
                    }
                }
            }
        }
    }
}

impl Drop for ChangeWatcher {
    fn drop(&mut self) {
        for d in self.dirs.values() {
            // SAFETY: change notification handles we opened.
            unsafe { FindCloseChangeNotification(d.handle) };
        }
    }
}
