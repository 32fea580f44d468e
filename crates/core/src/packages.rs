//! What third-party packages need in a jail, in one place: the environment the `full` preset
//! (the one that makes site-packages importable) gives the interpreter. The libraries their
//! extension modules link are found with the interpreter's (`interp.rs`); the policy's `preload`
//! is checked in `policy.rs` and imported by the bootstrap (`bootstrap/support.py`).

use std::collections::BTreeMap;

/// Variables set for the `full` preset, each with why. The policy's `env` overrides any of them.
/// A warm worker's zygote imports its preloads with them and its request children inherit them;
/// a zygote that has more than one thread after its preloads refuses to start (forking a
/// process with threads copies only the forking one: a lock another held stays locked in the
/// child, PITFALLS.md), so an override that makes a preload start threads is refused there.
pub const PACKAGE_ENV: &[(&str, &str, &str)] = &[
    (
        "OPENBLAS_NUM_THREADS",
        "1",
        "OpenBLAS (numpy's wheels) starts a thread per CPU at import, each with buffers of its \
         own: a zygote with them cannot fork safely, and they take ~40 MB of address space",
    ),
    (
        "OMP_NUM_THREADS",
        "1",
        "OpenMP runtimes (libgomp: OpenBLAS builds that use it, scikit-learn) size their pools \
         from it",
    ),
    (
        "MKL_NUM_THREADS",
        "1",
        "Intel MKL (conda's numpy) starts its pool as OpenBLAS does",
    ),
    (
        "BLIS_NUM_THREADS",
        "1",
        "BLIS, another BLAS numpy may be built with",
    ),
    (
        "NUMEXPR_NUM_THREADS",
        "1",
        "numexpr (pandas' optional accelerator) starts a pool at import",
    ),
    (
        "MALLOC_ARENA_MAX",
        "1",
        "glibc gives each thread that allocates an arena of its own, 64 MB of address space the \
         memory limit counts however little is used; one left by a preload's short-lived \
         thread (matplotlib's font-cache timer) would count in every warm request",
    ),
    (
        "HOME",
        "/tmp",
        "packages that keep caches or settings under the home directory fail without one \
         (IPython imports parso, whose cache path is ~/.cache); /tmp is the jail's writable \
         place and holds no one else's files",
    ),
    (
        "MPLBACKEND",
        "Agg",
        "the jail has no display: matplotlib draws into files and buffers (savefig) with Agg",
    ),
    (
        "MPLCONFIGDIR",
        "/tmp/matplotlib",
        "matplotlib's configuration and font cache must be writable, or it warns on every \
         import and builds a temporary one; /tmp is the jail's writable place",
    ),
];

/// The environment of an interpreter whose site-packages are importable: [`PACKAGE_ENV`] with
/// `env` (the policy's) on top.
pub fn environment(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = PACKAGE_ENV
        .iter()
        .map(|(k, v, _)| (k.to_string(), v.to_string()))
        .collect();
    out.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_env_overrides_the_package_defaults() {
        let env = environment(&BTreeMap::from([
            ("OPENBLAS_NUM_THREADS".into(), "4".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ]));
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("OPENBLAS_NUM_THREADS"), Some("4"));
        assert_eq!(get("MPLBACKEND"), Some("Agg"));
        assert_eq!(get("LANG"), Some("C.UTF-8"));
        assert_eq!(env.len(), PACKAGE_ENV.len() + 1);
    }
}
