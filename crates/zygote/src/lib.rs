//! `libpysandbox_zygote.so`: loaded once by a warm worker's zygote (`bootstrap/warm.py`) as the
//! extension module `pysandbox_zygote`, so that every process, namespace and isolation call of
//! the warm path is made by the same Rust code as the cold path's (`pysandbox_core::isolate`),
//! not by Python with syscall numbers. Its functions take and return integers only.
//!
//! An extension module rather than a library called through ctypes: importing ctypes put some
//! 490 KiB of objects and 15 mappings into the zygote, which every fork copies the page tables
//! of (docs/performance.md). The module is made with the C API by hand (a method table
//! and `PyModule_Create2`): the symbols come from the interpreter that loads it.
#![deny(unsafe_code)]

use std::os::raw::c_int;

/// The frame protocol this library speaks; the bootstrap checks it against its configuration.
fn protocol() -> c_int {
    pysandbox_core::protocol::VERSION as c_int
}

/// Serve the host: takes ownership of `config_fd` (the zygote's configuration) and `ctl_fd`
/// (the control socket). In a child, once it is isolated, runs the interpreter's after-fork
/// function (what `os.fork()` runs in a child: the GIL is held here as it is there), then
/// returns 1 for a fresh request child or 2 for a session child, plus 4 if a request is already
/// waiting on descriptor 3; 0 in the zygote once the host has gone; -1 if the zygote could not
/// start.
fn serve(config_fd: c_int, ctl_fd: c_int) -> c_int {
    use pysandbox_core::warm;
    let role = warm::serve_inside(config_fd, ctl_fd);
    if role != warm::ROLE_REQUEST && role != warm::ROLE_SESSION {
        return role;
    }
    python::after_fork_child();
    warm::trace::mark(warm::trace::BOOTSTRAP_PHASES[0]);
    match warm::request_waiting(warm::REQUEST_FD, 0) {
        Ok(true) => role | warm::ROLE_WAITING,
        _ => role,
    }
}

/// A traced child (`PYSANDBOX_TRACE_PHASES`): the bootstrap's phase `phase` (an index of
/// `trace::BOOTSTRAP_PHASES`) has just ended. A no-op otherwise, or for an unknown index.
fn mark(phase: c_int) -> c_int {
    use pysandbox_core::warm::trace;
    if let Some(name) = usize::try_from(phase)
        .ok()
        .and_then(|i| trace::BOOTSTRAP_PHASES.get(i))
    {
        trace::mark(name);
    }
    0
}

/// A traced child: write its phases to `fd` (the report pipe) as one frame. 0, or -1 if the
/// write failed. Nothing is written unless the child is traced.
fn trace(fd: c_int) -> c_int {
    match pysandbox_core::warm::trace::send_trace(fd) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Whether `fd` has something to read (1), nothing within `timeout_ms` (0; -1 waits), or cannot
/// be asked (-1).
fn readable(fd: c_int, timeout_ms: c_int) -> c_int {
    match pysandbox_core::warm::request_waiting(fd, timeout_ms) {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(_) => -1,
    }
}

/// The module `pysandbox_zygote` for the interpreter: its definition, its initialisation
/// function, and one wrapper per function above (integers in, an integer out).
#[allow(unsafe_code)]
mod python {
    use std::ffi::{c_char, c_long, c_void, CStr};
    use std::os::raw::c_int;
    use std::ptr::{null, null_mut};

    /// `PyObject` of a release build: a reference count and a type.
    #[repr(C)]
    pub struct PyObject {
        ob_refcnt: isize,
        ob_type: *mut c_void,
    }

    #[repr(C)]
    struct PyModuleDefBase {
        ob_base: PyObject,
        m_init: Option<unsafe extern "C" fn() -> *mut PyObject>,
        m_index: isize,
        m_copy: *mut PyObject,
    }

    #[repr(C)]
    struct PyMethodDef {
        ml_name: *const c_char,
        ml_meth: Option<Fast>,
        ml_flags: c_int,
        ml_doc: *const c_char,
    }

    #[repr(C)]
    struct PyModuleDef {
        m_base: PyModuleDefBase,
        m_name: *const c_char,
        m_doc: *const c_char,
        m_size: isize,
        m_methods: *mut PyMethodDef,
        m_slots: *mut c_void,
        m_traverse: *mut c_void,
        m_clear: *mut c_void,
        m_free: *mut c_void,
    }

    /// A `METH_FASTCALL` function: the module, the arguments and their number.
    type Fast = unsafe extern "C" fn(*mut PyObject, *const *mut PyObject, isize) -> *mut PyObject;

    const METH_FASTCALL: c_int = 0x0080;
    /// `PYTHON_API_VERSION` (unchanged since Python 3.2).
    const PYTHON_API_VERSION: c_int = 1013;

    extern "C" {
        fn PyModule_Create2(def: *mut PyModuleDef, apiver: c_int) -> *mut PyObject;
        fn PyLong_FromLong(v: c_long) -> *mut PyObject;
        fn PyLong_AsLong(o: *mut PyObject) -> c_long;
        fn PyErr_Occurred() -> *mut PyObject;
        fn PyErr_SetString(kind: *mut PyObject, message: *const c_char);
        fn PyOS_AfterFork_Child();
        static mut PyExc_TypeError: *mut PyObject;
    }

    /// The interpreter's own after-fork work in a child (`PyOS_AfterFork_Child`).
    pub(super) fn after_fork_child() {
        // SAFETY: called from `serve`, which the interpreter calls with the GIL held, in a child
        // the zygote has just forked: the state `os.fork()` calls it in.
        unsafe { PyOS_AfterFork_Child() }
    }

    /// Read `want` integer arguments (a `TypeError` and `None` if there are not exactly that
    /// many, or one is not an `int` that fits a C `int`).
    ///
    /// # Safety
    /// `args` points to `nargs` valid object pointers, and the GIL is held.
    unsafe fn ints<const N: usize>(args: *const *mut PyObject, nargs: isize) -> Option<[c_int; N]> {
        if nargs != N as isize {
            // SAFETY: the GIL is held; both pointers are valid (a static C string).
            unsafe {
                PyErr_SetString(
                    PyExc_TypeError,
                    c"pysandbox_zygote: wrong number of arguments".as_ptr(),
                )
            };
            return None;
        }
        let mut out = [0; N];
        for (i, slot) in out.iter_mut().enumerate() {
            // SAFETY: i < nargs, so args.add(i) is one of the caller's valid pointers.
            let v = unsafe { PyLong_AsLong(*args.add(i)) };
            // SAFETY: the GIL is held.
            if v == -1 && !unsafe { PyErr_Occurred() }.is_null() {
                return None;
            }
            *slot = match c_int::try_from(v) {
                Ok(v) => v,
                Err(_) => {
                    // SAFETY: as above.
                    unsafe {
                        PyErr_SetString(
                            PyExc_TypeError,
                            c"pysandbox_zygote: an argument out of range".as_ptr(),
                        )
                    };
                    return None;
                }
            };
        }
        Some(out)
    }

    /// The `int` `v` (a new reference), or NULL with the interpreter's error set.
    fn int(v: c_int) -> *mut PyObject {
        // SAFETY: the GIL is held (every caller is a module function).
        unsafe { PyLong_FromLong(c_long::from(v)) }
    }

    macro_rules! function {
        ($name:ident, $n:literal, |$a:ident| $call:expr) => {
            unsafe extern "C" fn $name(
                _module: *mut PyObject,
                args: *const *mut PyObject,
                nargs: isize,
            ) -> *mut PyObject {
                // SAFETY: the interpreter calls a METH_FASTCALL function with `nargs` valid
                // arguments and the GIL held.
                match unsafe { ints::<$n>(args, nargs) } {
                    Some($a) => int($call),
                    None => null_mut(),
                }
            }
        };
    }

    function!(py_protocol, 0, |_a| super::protocol());
    function!(py_serve, 2, |a| super::serve(a[0], a[1]));
    function!(py_mark, 1, |a| super::mark(a[0]));
    function!(py_trace, 1, |a| super::trace(a[0]));
    function!(py_readable, 2, |a| super::readable(a[0], a[1]));

    const fn method(name: &'static CStr, f: Fast) -> PyMethodDef {
        PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: Some(f),
            ml_flags: METH_FASTCALL,
            ml_doc: null(),
        }
    }

    // The interpreter writes into both (the definition's base, reference counts): they are
    // mutable statics, only touched through the pointers given to `PyModule_Create2`.
    static mut METHODS: [PyMethodDef; 6] = [
        method(c"protocol", py_protocol),
        method(c"serve", py_serve),
        method(c"mark", py_mark),
        method(c"trace", py_trace),
        method(c"readable", py_readable),
        PyMethodDef {
            ml_name: null(),
            ml_meth: None,
            ml_flags: 0,
            ml_doc: null(),
        },
    ];

    static mut MODULE: PyModuleDef = PyModuleDef {
        m_base: PyModuleDefBase {
            ob_base: PyObject {
                ob_refcnt: 1,
                ob_type: null_mut(),
            },
            m_init: None,
            m_index: 0,
            m_copy: null_mut(),
        },
        m_name: c"pysandbox_zygote".as_ptr(),
        m_doc: null(),
        m_size: -1,
        m_methods: null_mut(),
        m_slots: null_mut(),
        m_traverse: null_mut(),
        m_clear: null_mut(),
        m_free: null_mut(),
    };

    /// The module's initialisation (single-phase), found by the import machinery by name.
    #[no_mangle]
    pub unsafe extern "C" fn PyInit_pysandbox_zygote() -> *mut PyObject {
        // SAFETY: the interpreter calls this once per import, with the GIL held; the statics
        // live for the whole process and are only handed to the interpreter here.
        unsafe {
            let module = std::ptr::addr_of_mut!(MODULE);
            (*module).m_methods = std::ptr::addr_of_mut!(METHODS).cast();
            PyModule_Create2(module, PYTHON_API_VERSION)
        }
    }
}
