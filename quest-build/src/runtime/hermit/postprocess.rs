//! Post-processing of `libhermit.a` so that a std application can link against it.
//!
//! The kernel archive carries its own copies of `core`, `alloc`, `compiler_builtins` and
//! friends, and so do the application's libraries: linked together, their global symbols
//! would clash (`__rust_alloc`, `rust_begin_unwind`, `memcpy`, ...). So every global the
//! archive defines is renamed `hermit_<name>`, except the kernel's real interface to the
//! application: `_start`, `__bss_start`, `mcount`, `runtime_entry` and the `sys_*` calls.
//! Then every object's `EI_OSABI` is set to 255 (standalone), as upstream does.

use super::archive::{self, ArchiveError};
use std::path::{Path, PathBuf};
use xshell::Shell;

/// Prefix given to every renamed symbol.
pub const PREFIX: &str = "hermit_";
/// `EI_OSABI` of every object in the processed archive (`ELFOSABI_STANDALONE`).
pub const OSABI_STANDALONE: u8 = 255;

/// Why post-processing failed.
#[derive(Debug, thiserror::Error)]
pub enum PostprocessError {
    /// An LLVM tool could not be run or failed (its messages are above).
    #[error("LLVM tool: {0}")]
    Tool(#[from] xshell::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The archive's members could not be patched.
    #[error("patching the OS/ABI of {path}: {source}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: ArchiveError,
    },
    /// Renaming left globals outside the kernel's interface unprefixed.
    #[error("{path} still defines unprefixed globals after renaming, e.g. {examples}")]
    Unprefixed {
        /// The archive.
        path: PathBuf,
        /// Up to five of them.
        examples: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PostprocessError + '_ {
    move |source| PostprocessError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The LLVM tools post-processing needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlvmTools {
    /// `llvm-nm`.
    pub nm: PathBuf,
    /// `llvm-objcopy`.
    pub objcopy: PathBuf,
}

/// Whether a global keeps its name (the kernel's interface to the application).
pub fn keeps_name(symbol: &str) -> bool {
    matches!(
        symbol,
        "_start" | "__bss_start" | "mcount" | "runtime_entry"
    ) || symbol.starts_with("sys_")
}

/// The `llvm-objcopy --redefine-syms` file for the globals in `llvm-nm --export-symbols`
/// output: one `old new` line per symbol that does not keep its name.
pub fn redefine_list(exported: &str) -> String {
    let mut names: Vec<&str> = exported
        .lines()
        .map(str::trim)
        .filter(|s| !s.is_empty() && !keeps_name(s))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.iter().map(|s| format!("{s} {PREFIX}{s}\n")).collect()
}

/// Processes the archive at `input` into `output` (a new file; `input` is untouched).
/// Returns how many symbols were renamed.
pub fn postprocess(
    tools: &LlvmTools,
    input: &Path,
    output: &Path,
) -> Result<usize, PostprocessError> {
    let sh = Shell::new()?;
    let exported = exported_globals(&sh, tools, input)?;
    let list = redefine_list(&exported);
    let renamed = list.lines().count();
    let list_file = output.with_extension("redefine-syms");
    std::fs::write(&list_file, &list).map_err(io(&list_file))?;
    std::fs::copy(input, output).map_err(io(output))?;
    let objcopy = &tools.objcopy;
    let redefine = format!("--redefine-syms={}", list_file.display());
    xshell::cmd!(sh, "{objcopy} {redefine} {output}")
        .quiet()
        .run()?;

    let mut bytes = std::fs::read(output).map_err(io(output))?;
    archive::set_elf_osabi(&mut bytes, OSABI_STANDALONE).map_err(|source| {
        PostprocessError::Archive {
            path: output.to_path_buf(),
            source,
        }
    })?;
    std::fs::write(output, &bytes).map_err(io(output))?;

    // Check the result: only the kernel's interface is left unprefixed.
    let after = exported_globals(&sh, tools, output)?;
    let leftover: Vec<&str> = after
        .lines()
        .map(str::trim)
        .filter(|s| !s.is_empty() && !keeps_name(s) && !s.starts_with(PREFIX))
        .take(5)
        .collect();
    if !leftover.is_empty() {
        return Err(PostprocessError::Unprefixed {
            path: output.to_path_buf(),
            examples: leftover.join(", "),
        });
    }
    Ok(renamed)
}

/// The defined global symbols of `archive`, one per line.
fn exported_globals(
    sh: &Shell,
    tools: &LlvmTools,
    archive: &Path,
) -> Result<String, PostprocessError> {
    let nm = &tools.nm;
    Ok(xshell::cmd!(sh, "{nm} --export-symbols {archive}")
        .quiet()
        .read()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_kernel_interface_keeps_its_names() {
        for s in [
            "_start",
            "__bss_start",
            "mcount",
            "runtime_entry",
            "sys_write",
            "sys_",
        ] {
            assert!(keeps_name(s), "{s}");
        }
        for s in [
            "__rust_alloc",
            "rust_begin_unwind",
            "memcpy",
            "_startx",
            "xsys_read",
            "main",
        ] {
            assert!(!keeps_name(s), "{s}");
        }
    }

    #[test]
    fn redefine_list_renames_the_rest_once_each() {
        let nm = "memcpy\nsys_write\n_start\n__rust_alloc\n\nmemcpy\nruntime_entry\n";
        assert_eq!(
            redefine_list(nm),
            "__rust_alloc hermit___rust_alloc\nmemcpy hermit_memcpy\n"
        );
        assert_eq!(redefine_list(""), "");
    }

    /// The stable toolchain's LLVM tools (rust-toolchain.toml installs `llvm-tools`).
    fn host_tools() -> (LlvmTools, PathBuf) {
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let out = Command::new(&rustc)
            .args(["--print", "sysroot"])
            .output()
            .unwrap();
        let sysroot = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let vv = Command::new(&rustc).arg("-vV").output().unwrap();
        let vv = String::from_utf8(vv.stdout).unwrap();
        let host = vv.lines().find_map(|l| l.strip_prefix("host: ")).unwrap();
        let bin = sysroot.join("lib/rustlib").join(host).join("bin");
        let tools = LlvmTools {
            nm: bin.join("llvm-nm"),
            objcopy: bin.join("llvm-objcopy"),
        };
        assert!(
            tools.nm.is_file() && tools.objcopy.is_file(),
            "llvm-tools missing in {} (rustup component add llvm-tools)",
            bin.display()
        );
        (tools, bin)
    }

    /// A real archive of two objects compiled by rustc, processed end to end.
    #[test]
    fn renames_globals_and_sets_osabi_in_a_real_archive() {
        let (tools, bin) = host_tools();
        let dir = crate::scratch::scratch_dir("hermit-pp");
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let sources = [
            (
                "kernel",
                "#[no_mangle] pub extern \"C\" fn sys_write(x: u64) -> u64 { helper(x) + 1 }\n\
                 #[no_mangle] pub extern \"C\" fn helper(x: u64) -> u64 { x * 3 }\n\
                 #[no_mangle] pub static mut __rust_alloc_counter: u64 = 0;\n",
            ),
            (
                "boot",
                "extern \"C\" { fn helper(x: u64) -> u64; }\n\
                 #[no_mangle] pub extern \"C\" fn _start() -> u64 { unsafe { helper(7) } }\n",
            ),
        ];
        let mut objects = Vec::new();
        for (name, src) in sources {
            let rs = dir.join(format!("{name}.rs"));
            std::fs::write(&rs, src).unwrap();
            let obj = dir.join(format!("{name}.o"));
            let st = Command::new(&rustc)
                .args([
                    "--crate-type=lib",
                    "--emit=obj",
                    "-Copt-level=0",
                    "--edition=2021",
                ])
                .arg("--crate-name")
                .arg(name)
                .arg("-o")
                .arg(&obj)
                .arg(&rs)
                .status()
                .unwrap();
            assert!(st.success());
            objects.push(obj);
        }
        let input = dir.join("libk.a");
        let _ = std::fs::remove_file(&input);
        let st = Command::new(bin.join("llvm-ar"))
            .arg("crs")
            .arg(&input)
            .args(&objects)
            .status()
            .unwrap();
        assert!(st.success());
        let output = dir.join("libk-processed.a");

        let renamed = postprocess(&tools, &input, &output).unwrap();
        assert!(renamed >= 2, "renamed {renamed}");

        let sh = Shell::new().unwrap();
        let defined = exported_globals(&sh, &tools, &output).unwrap();
        let defined: Vec<&str> = defined.lines().collect();
        assert!(defined.contains(&"sys_write"), "{defined:?}");
        assert!(defined.contains(&"_start"), "{defined:?}");
        assert!(defined.contains(&"hermit_helper"), "{defined:?}");
        assert!(
            defined.contains(&"hermit___rust_alloc_counter"),
            "{defined:?}"
        );
        assert!(!defined.contains(&"helper"), "{defined:?}");
        // The reference from another member was renamed with the definition.
        let nm = &tools.nm;
        let undefined = xshell::cmd!(sh, "{nm} --undefined-only {output}")
            .read()
            .unwrap();
        assert!(undefined.contains("hermit_helper"), "{undefined}");
        assert!(
            !undefined.lines().any(|l| l.trim().ends_with(" helper")),
            "{undefined}"
        );
        // Every object member now says OS/ABI 255; the input was left alone.
        let bytes = std::fs::read(&output).unwrap();
        let elves: Vec<_> = archive::member_ranges(&bytes)
            .unwrap()
            .into_iter()
            .filter(|m| bytes[m.clone()].starts_with(b"\x7fELF"))
            .collect();
        assert_eq!(elves.len(), 2);
        assert!(elves.iter().all(|m| bytes[m.start + 7] == OSABI_STANDALONE));
        let original = std::fs::read(&input).unwrap();
        let m = &archive::member_ranges(&original).unwrap()[0];
        assert_eq!(original[m.start + 7], 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_tool_is_a_clear_error() {
        let tools = LlvmTools {
            nm: "/nonexistent/llvm-nm".into(),
            objcopy: "/nonexistent/llvm-objcopy".into(),
        };
        let err = postprocess(
            &tools,
            Path::new("/nonexistent/in.a"),
            Path::new("/tmp/x.a"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/llvm-nm"), "{err}");
    }
}
