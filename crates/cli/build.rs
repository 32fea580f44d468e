//! Links the unwinder statically (libgcc_eh.a) instead of loading libgcc_s.so at every start.
//!
//! std links `-lgcc_s` for unwinding (backtraces; the release profile aborts on panic). Loading
//! it costs each `pysandbox` process its mapping, its relocations and its constructor, which
//! probes the CPU with CPUID: a trap to the hypervisor on a VM, about 75 µs of every cold run on
//! this machine's kind (perf). A linker script of that name, found first, makes `-lgcc_s` the
//! static unwinder instead: the same code, in the binary, without the constructor.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("libgcc_s.so"), "INPUT(-lgcc_eh)\n")
        .expect("writing the linker script");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rerun-if-changed=build.rs");
}
