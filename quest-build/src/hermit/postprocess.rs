//! Post-processing of `libhermit.a` so that a std application can link against it.
//!
//! The kernel archive carries its own copies of `core`, `alloc`, `compiler_builtins` and
//! friends, and so do the application's libraries: linked together, their global symbols
//! would clash (`__rust_alloc`, `rust_begin_unwind`, `memcpy`, ...). So every global the
//! archive defines is renamed `hermit_<name>`, except the kernel's real interface to the
//! application: `_start`, `__bss_start`, `mcount`, `runtime_entry` and the `sys_*` calls.
//! Then every object's `EI_OSABI` is set to 255 (standalone), as upstream does.

use super::archive;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Prefix given to every renamed symbol.
pub const PREFIX: &str = "hermit_";
/// `EI_OSABI` of every object in the processed archive (`ELFOSABI_STANDALONE`).
pub const OSABI_STANDALONE: u8 = 255;

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
pub fn postprocess(tools: &LlvmTools, input: &Path, output: &Path) -> anyhow::Result<usize> {
    let exported = exported_globals(tools, input)?;
    let list = redefine_list(&exported);
    let renamed = list.lines().count();
    let list_file = output.with_extension("redefine-syms");
    std::fs::write(&list_file, &list)
        .with_context(|| format!("writing {}", list_file.display()))?;
    std::fs::copy(input, output)
        .with_context(|| format!("copying {} to {}", input.display(), output.display()))?;
    run(Command::new(&tools.objcopy)
        .arg(format!("--redefine-syms={}", list_file.display()))
        .arg(output))?;

    let mut bytes =
        std::fs::read(output).with_context(|| format!("reading {}", output.display()))?;
    archive::set_elf_osabi(&mut bytes, OSABI_STANDALONE)
        .with_context(|| format!("patching the OS/ABI of {}", output.display()))?;
    std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;

    // Check the result: only the kernel's interface is left unprefixed.
    let after = exported_globals(tools, output)?;
    let leftover: Vec<&str> = after
        .lines()
        .map(str::trim)
        .filter(|s| !s.is_empty() && !keeps_name(s) && !s.starts_with(PREFIX))
        .take(5)
        .collect();
    if !leftover.is_empty() {
        bail!(
            "{} still defines unprefixed globals after renaming, e.g. {}",
            output.display(),
            leftover.join(", ")
        );
    }
    Ok(renamed)
}

/// The defined global symbols of `archive`, one per line.
fn exported_globals(tools: &LlvmTools, archive: &Path) -> anyhow::Result<String> {
    run(Command::new(&tools.nm).arg("--export-symbols").arg(archive))
}

/// Runs a tool, returning its stdout, or an error with its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{shown} printed invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let dir = std::env::temp_dir().join(format!("quest-hermit-pp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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

        let defined = exported_globals(&tools, &output).unwrap();
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
        let undefined = run(Command::new(&tools.nm)
            .args(["--undefined-only"])
            .arg(&output))
        .unwrap();
        assert!(undefined.contains("hermit_helper"), "{undefined}");
        assert!(
            !undefined.lines().any(|l| l.trim().ends_with(" helper")),
            "{undefined}"
        );
        // Every object member now says OS/ABI 255; the input was left alone.
        let bytes = std::fs::read(&output).unwrap();
        let elves: Vec<_> = archive::members(&bytes)
            .unwrap()
            .into_iter()
            .filter(|m| bytes[m.data.clone()].starts_with(b"\x7fELF"))
            .collect();
        assert_eq!(elves.len(), 2);
        assert!(elves
            .iter()
            .all(|m| bytes[m.data.start + 7] == OSABI_STANDALONE));
        let original = std::fs::read(&input).unwrap();
        let m = &archive::members(&original).unwrap()[1];
        assert_eq!(original[m.data.start + 7], 0);
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
        assert!(format!("{err:#}").contains("could not run"), "{err:#}");
    }
}
