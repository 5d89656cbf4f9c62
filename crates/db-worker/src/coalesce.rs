//! Write combining over another SQLite VFS.
//!
//! Each `write()` on an OPFS access handle costs several microseconds whatever
//! its size, and SQLite writes every WAL frame as two writes (its 24-byte
//! header, then the page): a commit of 800 frames made 1,600 calls (measured
//! in a worker: 10-14 ms, against 4-5 ms for one write per frame). This layer
//! gathers contiguous writes to a file, up to [`MAX_PENDING`] bytes, into one
//! write of the wrapped VFS.
//!
//! Nothing changes for SQLite's view of the file: pending bytes are written
//! before any other call on that file (read, size, sync, truncate, lock,
//! file control, close), so reads see them and a sync covers them; and
//! [`flush_all`] writes every file's pending bytes, which the worker calls
//! before it answers, so an acknowledged write is never only in memory.
//!
//! Open files are tracked per thread, for [`flush_all`]: a connection over
//! this VFS must stay on the thread that opened it (the worker has one).

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr;

use rusqlite::ffi;

/// Largest run of contiguous bytes gathered into one write: SQLite never
/// writes more than a page (at most 64 KiB) at once, and VFSs rely on it (the
/// unix VFS masks a write's length to 17 bits).
const MAX_PENDING: usize = 64 * 1024;

/// The VFS registered by [`register`]: SQLite sees `vfs`; `base` is the
/// wrapped one.
#[repr(C)]
struct Vfs {
    vfs: ffi::sqlite3_vfs,
    base: *mut ffi::sqlite3_vfs,
}

/// An open file: SQLite sees `file`; the wrapped VFS's file follows this
/// struct in the same allocation (`szOsFile` covers both).
#[repr(C)]
struct File {
    file: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    pending: Vec<u8>,
    pending_at: i64,
}

/// Where the wrapped file starts in SQLite's allocation.
const REAL_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(8);

thread_local! {
    /// Open files, for [`flush_all`].
    static OPEN: RefCell<Vec<*mut File>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// Writes passed to the wrapped VFSs on this thread.
    static WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many writes this thread passed to wrapped VFSs.
#[cfg(test)]
pub fn writes_passed() -> u64 {
    WRITES.with(|w| w.get())
}

#[cfg(test)]
fn count_write() {
    WRITES.with(|w| w.set(w.get() + 1));
}

#[cfg(not(test))]
fn count_write() {}

/// Registers a VFS named `name` that combines writes over the VFS `base`
/// (the default VFS if `None`). Idempotent: an existing `name` is kept.
pub fn register(base: Option<&str>, name: &str) -> Result<(), c_int> {
    let name = CString::new(name).map_err(|_| ffi::SQLITE_MISUSE)?;
    let base_name = base
        .map(CString::new)
        .transpose()
        .map_err(|_| ffi::SQLITE_MISUSE)?;
    // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe
    // SQLite calls; the registered struct and its name are leaked, so they
    // outlive every connection.
    unsafe {
        let base = ffi::sqlite3_vfs_find(base_name.as_ref().map_or(ptr::null(), |n| n.as_ptr()));
        if base.is_null() {
            return Err(ffi::SQLITE_ERROR);
        }
        let existing = ffi::sqlite3_vfs_find(name.as_ptr());
        if !existing.is_null() {
            // Ours (registered under this name by this function): point it
            // at the base as registered now, in case that was registered
            // again since.
            let existing = existing as *mut Vfs;
            if (*existing).base != base {
                if (*base).szOsFile != (*(*existing).base).szOsFile {
                    return Err(ffi::SQLITE_MISUSE);
                }
                (*existing).base = base;
            }
            return Ok(());
        }
        let mut vfs = *base;
        vfs.iVersion = vfs.iVersion.min(3);
        vfs.szOsFile = (REAL_OFFSET + (*base).szOsFile as usize) as c_int;
        vfs.pNext = ptr::null_mut();
        vfs.zName = name.into_raw();
        vfs.xOpen = Some(x_open);
        vfs.xDelete = Some(x_delete);
        vfs.xAccess = Some(x_access);
        vfs.xFullPathname = Some(x_full_pathname);
        vfs.xRandomness = Some(x_randomness);
        vfs.xSleep = Some(x_sleep);
        vfs.xCurrentTime = Some(x_current_time);
        vfs.xGetLastError = Some(x_get_last_error);
        if vfs.iVersion >= 2 {
            vfs.xCurrentTimeInt64 = Some(x_current_time_int64);
        }
        let wrapper = Box::leak(Box::new(Vfs { vfs, base }));
        let rc = ffi::sqlite3_vfs_register(&mut wrapper.vfs, 0);
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(rc)
        }
    }
}

/// Writes the pending bytes of every open file. Returns the first error.
pub fn flush_all() -> Result<(), c_int> {
    OPEN.with(|open| {
        let mut result = Ok(());
        for &f in open.borrow().iter() {
            // SAFETY: files are in OPEN from a successful open to their close.
            let rc = unsafe { flush(f) };
            if rc != ffi::SQLITE_OK && result.is_ok() {
                result = Err(rc);
            }
        }
        result
    })
}

unsafe fn base(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*(vfs as *mut Vfs)).base
}

unsafe fn real_methods(f: *mut File) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let real = (*f).real;
    (real, &*(*real).pMethods)
}

/// Writes `f`'s pending bytes, if any.
unsafe fn flush(f: *mut File) -> c_int {
    if (*f).pending.is_empty() {
        return ffi::SQLITE_OK;
    }
    let (real, m) = real_methods(f);
    let pending = std::mem::take(&mut (*f).pending);
    count_write();
    let rc = match m.xWrite {
        Some(write) => write(
            real,
            pending.as_ptr() as *const c_void,
            pending.len() as c_int,
            (*f).pending_at,
        ),
        None => ffi::SQLITE_IOERR_WRITE,
    };
    // Keep the allocation for the next run of writes.
    (*f).pending = pending;
    (*f).pending.clear();
    rc
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base(vfs);
    let real = (file as *mut u8).add(REAL_OFFSET) as *mut ffi::sqlite3_file;
    (*real).pMethods = ptr::null();
    let Some(open) = (*base).xOpen else {
        (*file).pMethods = ptr::null();
        return ffi::SQLITE_ERROR;
    };
    let rc = open(base, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
        (*file).pMethods = ptr::null();
        return if rc == ffi::SQLITE_OK {
            ffi::SQLITE_ERROR
        } else {
            rc
        };
    }
    let version = (*(*real).pMethods).iVersion.clamp(1, 3);
    let f = file as *mut File;
    ptr::write(
        f,
        File {
            file: ffi::sqlite3_file {
                pMethods: &METHODS[version as usize - 1],
            },
            real,
            pending: Vec::new(),
            pending_at: 0,
        },
    );
    OPEN.with(|open| open.borrow_mut().push(f));
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let f = file as *mut File;
    let flushed = flush(f);
    let (real, m) = real_methods(f);
    let closed = m.xClose.map_or(ffi::SQLITE_OK, |close| close(real));
    OPEN.with(|open| open.borrow_mut().retain(|&g| g != f));
    ptr::drop_in_place(&mut (*f).pending);
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let f = file as *mut File;
    let data = std::slice::from_raw_parts(buf as *const u8, amount.max(0) as usize);
    let pending = &mut (*f).pending;
    if !pending.is_empty() {
        let end = (*f).pending_at + pending.len() as i64;
        if offset == end && pending.len() + data.len() <= MAX_PENDING {
            pending.extend_from_slice(data);
            return ffi::SQLITE_OK;
        }
        let rc = flush(f);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if data.len() >= MAX_PENDING {
        count_write();
        let (real, m) = real_methods(f);
        return match m.xWrite {
            Some(write) => write(real, buf, amount, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        };
    }
    (*f).pending.extend_from_slice(data);
    (*f).pending_at = offset;
    ffi::SQLITE_OK
}

/// Defines an io method that writes the pending bytes first (when `flush`)
/// and then calls the wrapped file's method.
macro_rules! forward {
    ($name:ident, $field:ident, $flush:expr, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let f = file as *mut File;
            if $flush {
                let rc = flush(f);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
            }
            let (real, m) = real_methods(f);
            match m.$field {
                Some(method) => method(real $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

forward!(x_read, xRead, true, (buf: *mut c_void, amount: c_int, offset: i64));
forward!(x_truncate, xTruncate, true, (size: i64));
forward!(x_sync, xSync, true, (flags: c_int));
forward!(x_file_size, xFileSize, true, (size: *mut i64));
forward!(x_lock, xLock, true, (level: c_int));
forward!(x_unlock, xUnlock, true, (level: c_int));
forward!(x_check_reserved_lock, xCheckReservedLock, false, (out: *mut c_int));
forward!(x_file_control, xFileControl, true, (op: c_int, arg: *mut c_void));
forward!(x_sector_size, xSectorSize, false, ());
forward!(x_device_characteristics, xDeviceCharacteristics, false, ());
forward!(x_shm_map, xShmMap, false, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
forward!(x_shm_lock, xShmLock, false, (offset: c_int, n: c_int, flags: c_int));
forward!(x_shm_unmap, xShmUnmap, false, (delete: c_int));
forward!(x_fetch, xFetch, true, (offset: i64, amount: c_int, out: *mut *mut c_void));
forward!(x_unfetch, xUnfetch, false, (offset: i64, p: *mut c_void));

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    let (real, m) = real_methods(file as *mut File);
    if let Some(barrier) = m.xShmBarrier {
        barrier(real);
    }
}

const fn methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(x_close),
        xRead: Some(x_read),
        xWrite: Some(x_write),
        xTruncate: Some(x_truncate),
        xSync: Some(x_sync),
        xFileSize: Some(x_file_size),
        xLock: Some(x_lock),
        xUnlock: Some(x_unlock),
        xCheckReservedLock: Some(x_check_reserved_lock),
        xFileControl: Some(x_file_control),
        xSectorSize: Some(x_sector_size),
        xDeviceCharacteristics: Some(x_device_characteristics),
        xShmMap: if version >= 2 { Some(x_shm_map) } else { None },
        xShmLock: if version >= 2 { Some(x_shm_lock) } else { None },
        xShmBarrier: if version >= 2 {
            Some(x_shm_barrier)
        } else {
            None
        },
        xShmUnmap: if version >= 2 {
            Some(x_shm_unmap)
        } else {
            None
        },
        xFetch: if version >= 3 { Some(x_fetch) } else { None },
        xUnfetch: if version >= 3 { Some(x_unfetch) } else { None },
    }
}

static METHODS: [ffi::sqlite3_io_methods; 3] = [methods(1), methods(2), methods(3)];

/// Defines a VFS method that calls the wrapped VFS's, or answers `$missing`
/// when it has none.
macro_rules! forward_vfs {
    ($name:ident, $field:ident, $missing:expr, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> c_int {
            let base = base(vfs);
            (*base).$field.map_or($missing, |f| f(base $(, $arg)*))
        }
    };
}

forward_vfs!(x_delete, xDelete, ffi::SQLITE_IOERR_DELETE, (name: *const c_char, sync: c_int));
forward_vfs!(x_access, xAccess, ffi::SQLITE_IOERR_ACCESS, (name: *const c_char, flags: c_int, out: *mut c_int));
forward_vfs!(x_full_pathname, xFullPathname, ffi::SQLITE_ERROR, (name: *const c_char, n: c_int, out: *mut c_char));
forward_vfs!(x_randomness, xRandomness, 0, (n: c_int, out: *mut c_char));
forward_vfs!(x_sleep, xSleep, 0, (micros: c_int));
forward_vfs!(x_current_time, xCurrentTime, ffi::SQLITE_ERROR, (out: *mut f64));
forward_vfs!(x_get_last_error, xGetLastError, 0, (n: c_int, out: *mut c_char));
forward_vfs!(x_current_time_int64, xCurrentTimeInt64, ffi::SQLITE_ERROR, (out: *mut i64));
