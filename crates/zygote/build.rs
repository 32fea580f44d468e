//! Link the zygote library with every symbol bound at load (`-z now`): the zygote loads it once,
//! and a child forked from it would otherwise resolve each libc function on its first call,
//! writing the library's GOT, a page copied in every child.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
}
