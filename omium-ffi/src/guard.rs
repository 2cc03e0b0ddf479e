//! What every exported function goes through: the panic guard, the handle lock, and the
//! checks that turn NULL pointers, bad UTF-8 and short buffers into
//! `OMIUM_ERR_INVALID_ARGUMENT` naming the argument.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::error::{
    clear_last_error, omium_status, set_last_error, Failure, OMIUM_ERR_BUSY, OMIUM_ERR_PANIC,
    OMIUM_OK,
};

/// Runs the body of an exported function: its result becomes a status and this thread's last
/// error message (prefixed with the function's name), and a panic becomes `OMIUM_ERR_PANIC`
/// instead of unwinding into C, which would be undefined behaviour.
pub(crate) fn guard(
    function: &'static str,
    body: impl FnOnce() -> Result<(), Failure>,
) -> omium_status {
    // The closure holds raw pointers and handle guards; after a panic the handle it was
    // using is marked poisoned (see `with`), so no broken state is used again.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            OMIUM_OK
        }
        Ok(Err(f)) => {
            set_last_error(format!("{function}: {}", f.message));
            f.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            set_last_error(format!(
                "{function}: internal error (panic: {what}); this is a bug in Omium, please \
                 report it; the handle the call was using (if any) now refuses further calls: \
                 close or free it"
            ));
            OMIUM_ERR_PANIC
        }
    }
}

/// The tag of a closed or freed handle; a live one carries its kind's `Opaque::TAG`. A pointer
/// whose tag is wrong is a freed handle or not a handle of this kind: checking the tag catches
/// most double frees and mix-ups, not all (C cannot tell a dangling pointer from a live one,
/// and reading freed memory may itself crash).
const DEAD_TAG: u64 = u64::from_le_bytes(*b"omFREED\x00");

/// The lock and marks behind an opaque handle.
///
/// Calls take the lock shared (the core types are thread-safe, so any number of threads may
/// call at once); close and free take it exclusively with `try_write`, so freeing a handle
/// that another thread is using is `OMIUM_ERR_BUSY`, never a use after free. `repr(C)` puts
/// the tag at the start of every `Handle`, whatever its value type.
#[repr(C)]
pub(crate) struct Handle<T> {
    tag: AtomicU64,
    poisoned: AtomicBool,
    value: RwLock<T>,
}

impl<T> Handle<T> {
    pub(crate) fn new(tag: u64, value: T) -> Self {
        Handle {
            tag: AtomicU64::new(tag),
            poisoned: AtomicBool::new(false),
            value: RwLock::new(value),
        }
    }

    #[cfg(test)]
    pub(crate) fn lock_for_test(&self) -> parking_lot::RwLockReadGuard<'_, T> {
        self.value.read()
    }
}

/// An opaque handle type of the C interface (`omium_store`, `omium_run`).
pub(crate) trait Opaque: Sized {
    type Value;
    /// What the messages call it.
    const KIND: &'static str;
    /// Its live tag.
    const TAG: u64;
    /// The function that makes one, for messages.
    const MADE_BY: &'static str;
    fn wrap(handle: Handle<Self::Value>) -> Self;
    fn handle(&self) -> &Handle<Self::Value>;

    /// A new handle for C to own.
    fn into_raw(value: Self::Value) -> *mut Self {
        Box::into_raw(Box::new(Self::wrap(Handle::new(Self::TAG, value))))
    }
}

/// Checks handle `ptr` (argument `arg`) and runs `f` with its value under the shared lock. A
/// panic in `f` poisons the handle: later calls on it fail with `OMIUM_ERR_PANIC`.
///
/// # Safety
/// `ptr` is NULL or a handle made by [`Opaque::into_raw`] that is alive, or was freed by
/// [`free`] and not yet reused (the tag check is best effort).
pub(crate) unsafe fn with<H: Opaque, R>(
    ptr: *const H,
    arg: &str,
    f: impl FnOnce(&H::Value) -> Result<R, Failure>,
) -> Result<R, Failure> {
    // SAFETY: forwarded promise.
    let h = unsafe { checked(ptr, arg) }?;
    if h.poisoned.load(Ordering::Acquire) {
        return Err(Failure::new(
            OMIUM_ERR_PANIC,
            format!(
                "an earlier call on this {kind} handle panicked; it cannot be used any more \
                 (free it and open a new one)",
                kind = H::KIND
            ),
        ));
    }
    let value = h.value.try_read().ok_or_else(|| {
        Failure::new(
            OMIUM_ERR_BUSY,
            format!(
                "the {} handle `{arg}` is being closed by another thread",
                H::KIND
            ),
        )
    })?;
    match catch_unwind(AssertUnwindSafe(|| f(&value))) {
        Ok(r) => r,
        Err(payload) => {
            h.poisoned.store(true, Ordering::Release);
            resume_unwind(payload)
        }
    }
}

/// Frees a handle made by [`Opaque::into_raw`]; NULL is a no-op.
///
/// # Safety
/// As for [`with`]; after `Ok`, `ptr` is dangling.
pub(crate) unsafe fn free<H: Opaque>(ptr: *mut H, arg: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded promise.
    let h = unsafe { checked(ptr, arg) }?;
    let exclusive = h.value.try_write().ok_or_else(|| {
        Failure::new(
            OMIUM_ERR_BUSY,
            format!(
                "the {} handle `{arg}` is in use by another thread (a call on it has not \
                 returned); nothing was freed: free it after that call returns",
                H::KIND
            ),
        )
    })?;
    h.tag.store(DEAD_TAG, Ordering::Release);
    drop(exclusive);
    // SAFETY: made by Box::into_raw in `into_raw`, and its tag was live, so not freed yet.
    drop(unsafe { Box::from_raw(ptr) });
    Ok(())
}

unsafe fn checked<'a, H: Opaque + 'a>(
    ptr: *const H,
    arg: &str,
) -> Result<&'a Handle<H::Value>, Failure> {
    if ptr.is_null() {
        return Err(Failure::argument(
            arg,
            format!("is NULL; pass a {} handle from {}", H::KIND, H::MADE_BY),
        ));
    }
    // SAFETY: non-null; the caller promises it is (or was) a handle.
    let h = unsafe { &*ptr }.handle();
    match h.tag.load(Ordering::Acquire) {
        t if t == H::TAG => Ok(h),
        DEAD_TAG => Err(Failure::argument(
            arg,
            format!("is a {} handle that was already closed or freed", H::KIND),
        )),
        _ => Err(Failure::argument(
            arg,
            format!("is not a {} handle", H::KIND),
        )),
    }
}

/// A required string argument: NUL-terminated UTF-8.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    // SAFETY: forwarded.
    unsafe { opt_str_arg(ptr, name) }?
        .ok_or_else(|| Failure::argument(name, "is NULL; pass a NUL-terminated UTF-8 string"))
}

/// An optional string argument: NULL means "not given".
///
/// # Safety
/// As for [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(
    ptr: *const c_char,
    name: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null and NUL-terminated by the caller's promise.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map(Some).map_err(|e| {
        Failure::argument(
            name,
            format!(
                "is not valid UTF-8 (invalid byte at offset {}); pass a NUL-terminated UTF-8 \
                 string",
                e.valid_up_to()
            ),
        )
    })
}

/// A required, non-empty string argument.
///
/// # Safety
/// As for [`str_arg`].
pub(crate) unsafe fn non_empty_str_arg<'a>(
    ptr: *const c_char,
    name: &str,
) -> Result<&'a str, Failure> {
    // SAFETY: forwarded.
    let s = unsafe { str_arg(ptr, name) }?;
    if s.is_empty() {
        return Err(Failure::argument(
            name,
            "is an empty string; pass a non-empty one",
        ));
    }
    Ok(s)
}

/// A byte-range argument: `(ptr, len)`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn bytes_arg<'a>(
    ptr: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Failure::argument(
            name,
            format!("is NULL with a length of {len}; pass the bytes, or a length of 0"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(Failure::argument(
            name,
            format!("has an impossible length of {len} bytes"),
        ));
    }
    // SAFETY: the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A required output pointer; `*ptr` is set to `empty` at once, so the caller finds a
/// defined value (NULL, 0, an empty buffer) whatever happens next.
///
/// # Safety
/// `ptr` is NULL or valid for writing a `T` for `'a`.
pub(crate) unsafe fn out_arg<'a, T>(
    ptr: *mut T,
    name: &str,
    empty: T,
) -> Result<&'a mut T, Failure> {
    if ptr.is_null() {
        return Err(Failure::argument(
            name,
            "is NULL; pass the address of a variable to receive the result",
        ));
    }
    // SAFETY: non-null and writable by the caller's promise. `write` does not drop the old
    // value, which may be uninitialised.
    unsafe {
        ptr.write(empty);
        Ok(&mut *ptr)
    }
}

/// An optional output pointer (NULL: the caller does not want this result).
///
/// # Safety
/// As for [`out_arg`].
pub(crate) unsafe fn opt_out_arg<'a, T>(ptr: *mut T, empty: T) -> Option<&'a mut T> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as in `out_arg`.
    unsafe {
        ptr.write(empty);
        Some(&mut *ptr)
    }
}

/// A caller-provided character buffer for a text result of at most `need - 1` bytes; NULL
/// means "not wanted". Set to "" at once.
///
/// # Safety
/// `ptr` is NULL or valid for writing `size` bytes for `'a`.
pub(crate) unsafe fn text_out_arg<'a>(
    ptr: *mut c_char,
    size: usize,
    name: &str,
    need: usize,
    need_name: &str,
) -> Result<Option<&'a mut [u8]>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    if size > 0 {
        // SAFETY: at least one writable byte.
        unsafe { ptr.write(0) };
    }
    if size < need {
        return Err(Failure::argument(
            name,
            format!(
                "has {size} bytes, too small: it needs {need_name} ({need}) bytes, the NUL \
                 included; nothing was done"
            ),
        ));
    }
    // SAFETY: `size` writable bytes by the caller's promise.
    Ok(Some(unsafe {
        std::slice::from_raw_parts_mut(ptr.cast::<u8>(), size)
    }))
}

/// Copies `text` and a NUL into a buffer checked by [`text_out_arg`].
pub(crate) fn write_text(out: Option<&mut [u8]>, text: &str) {
    if let Some(out) = out {
        let n = text.len().min(out.len() - 1);
        out[..n].copy_from_slice(&text.as_bytes()[..n]);
        out[n] = 0;
    }
}
