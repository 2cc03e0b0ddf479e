//! Bytes handed to C: state bytes and JSON documents, in buffers the caller owns and frees
//! with `omium_buffer_free`.

/// Bytes that Omium allocated and the caller owns: state bytes, or a JSON document (UTF-8).
///
/// `data[len]` is always a NUL byte that `len` does not count, so a JSON buffer can be used as
/// a C string directly; state bytes may themselves contain NULs. After a successful call
/// `data` is never NULL (an empty result has `len == 0`); after a failed one the buffer is
/// `{NULL, 0}`.
///
/// Ownership: free every buffer an Omium call filled with `omium_buffer_free`, exactly once,
/// from any thread, and not with `free()` (Omium's allocator is not necessarily the C one). A
/// function that fills a buffer overwrites it without freeing what it held: free the old
/// content first. Do not change `data` or `len`.
#[repr(C)]
#[derive(Debug)]
#[allow(non_camel_case_types)]
pub struct omium_buffer {
    pub data: *mut u8,
    pub len: usize,
}

impl omium_buffer {
    pub(crate) const EMPTY: omium_buffer = omium_buffer {
        data: std::ptr::null_mut(),
        len: 0,
    };

    /// A buffer holding `bytes` followed by a NUL.
    pub(crate) fn from_vec(mut bytes: Vec<u8>) -> omium_buffer {
        let len = bytes.len();
        bytes.push(0);
        // Exactly len + 1 bytes, which `omium_buffer_free` relies on.
        let raw: *mut [u8] = Box::into_raw(bytes.into_boxed_slice());
        omium_buffer {
            data: raw.cast::<u8>(),
            len,
        }
    }

    /// The bytes (without the trailing NUL); empty for `{NULL, 0}`.
    ///
    /// # Safety
    /// `self` was filled by Omium and not freed.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.data.is_null() {
            return &[];
        }
        // SAFETY: `data` holds `len` + 1 bytes made by `from_vec`.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

/// Frees the bytes of a buffer that an Omium call filled, and sets it to `{NULL, 0}` (so a
/// second free of the same variable is harmless).
///
/// Accepts NULL and an empty buffer (`data == NULL`): both do nothing. Any thread. Does not
/// change `omium_last_error()`.
///
/// # Safety
/// `buffer` is NULL or points to an `omium_buffer` that is `{NULL, 0}` or was filled by an
/// Omium call and not freed since (a copy of the struct that was freed through another copy
/// must not be passed).
#[no_mangle]
pub unsafe extern "C" fn omium_buffer_free(buffer: *mut omium_buffer) {
    if buffer.is_null() {
        return;
    }
    // No status and no message: freeing has no error to report, and the last error of the
    // call that filled the buffer must stay readable. A panic is still caught.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: non-null, and filled by Omium by the caller's promise.
        let b = unsafe { &mut *buffer };
        let data = std::mem::replace(&mut b.data, std::ptr::null_mut());
        let len = std::mem::replace(&mut b.len, 0);
        if !data.is_null() {
            // SAFETY: made by `from_vec` as a boxed slice of len + 1 bytes.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len + 1)) });
        }
    });
}
