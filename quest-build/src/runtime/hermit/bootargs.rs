//! The kernel command line Hermit reads from the FDT's `/chosen/bootargs`:
//! `env=K=V ... -- arg ...`.
//!
//! Hermit splits it with POSIX shell rules (the `shell-words` crate), takes every
//! `env=K=V` word before `--` as an environment variable (split at the first `=` after
//! `env=`), and passes every word after `--` to `main` as its arguments (after `argv[0]`).
//! So each word is shell-quoted here, and keys that Hermit would split wrongly are refused.

/// Why the manifest's `args`/`env` cannot be passed to Hermit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootargsError {
    /// An environment variable name Hermit cannot represent.
    #[error("environment variable name {0:?} cannot be passed to Hermit: it must be non-empty and contain no '=' or NUL")]
    BadKey(String),
    /// A NUL byte (the FDT stores the command line as a C string).
    #[error("argument or environment value {0:?} contains a NUL byte")]
    Nul(String),
}

/// The command line for `args` and `env` (in order).
pub fn bootargs(args: &[String], env: &[(String, String)]) -> Result<String, BootargsError> {
    let mut words = Vec::with_capacity(env.len() + args.len() + 1);
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(BootargsError::BadKey(k.clone()));
        }
        if v.contains('\0') {
            return Err(BootargsError::Nul(v.clone()));
        }
        words.push(quote(&format!("env={k}={v}")));
    }
    words.push("--".to_owned());
    for a in args {
        if a.contains('\0') {
            return Err(BootargsError::Nul(a.clone()));
        }
        words.push(quote(a));
    }
    Ok(words.join(" "))
}

/// `word` as one POSIX shell word: unchanged if it only has characters no shell treats
/// specially, else in single quotes (a `'` inside becomes `'\''`).
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-+=./,:@%^".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Hermit 0.11's command-line parser makes of `line` (the same splitter, then
    /// its rules): (env, args).
    fn as_hermit_parses(line: &str) -> (Vec<(String, String)>, Vec<String>) {
        let mut words = shell_words::split(line).unwrap().into_iter();
        let mut env = Vec::new();
        let mut args = Vec::new();
        while let Some(w) = words.next() {
            if w == "--" {
                args.extend(&mut words);
            } else if let Some(kv) = w.strip_prefix("env=") {
                let (k, v) = kv.split_once('=').unwrap();
                env.push((k.to_owned(), v.to_owned()));
            } else {
                panic!("unexpected word {w:?}");
            }
        }
        (env, args)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn simple_words_are_not_quoted() {
        let env = vec![("GREETING".to_owned(), "hi".to_owned())];
        let line = bootargs(&s(&["a", "b-2", "x=y"]), &env).unwrap();
        assert_eq!(line, "env=GREETING=hi -- a b-2 x=y");
    }

    #[test]
    fn nothing_gives_just_the_separator() {
        assert_eq!(bootargs(&[], &[]).unwrap(), "--");
        assert_eq!(as_hermit_parses("--"), (vec![], vec![]));
    }

    #[test]
    fn awkward_words_round_trip_through_hermits_parser() {
        let args = s(&[
            "hello world",
            "",
            "it's",
            "\"quoted\"",
            "$HOME",
            "back\\slash",
            "--",
            "env=NOT=ENV",
            "tab\there",
            "line\nbreak",
            "ünïcode ✓",
        ]);
        let env = vec![
            ("A".to_owned(), "1 2 3".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("EQ".to_owned(), "a=b=c".to_owned()),
            ("Q".to_owned(), "'single' \"double\"".to_owned()),
        ];
        let line = bootargs(&args, &env).unwrap();
        assert_eq!(as_hermit_parses(&line), (env, args));
    }

    #[test]
    fn unrepresentable_keys_and_nul_are_refused() {
        let bad = |k: &str| vec![(k.to_owned(), "v".to_owned())];
        assert_eq!(
            bootargs(&[], &bad("A=B")),
            Err(BootargsError::BadKey("A=B".into()))
        );
        assert_eq!(
            bootargs(&[], &bad("")),
            Err(BootargsError::BadKey(String::new()))
        );
        assert!(matches!(
            bootargs(&s(&["a\0b"]), &[]),
            Err(BootargsError::Nul(_))
        ));
        let nul_value = vec![("K".to_owned(), "\0".to_owned())];
        assert!(matches!(
            bootargs(&[], &nul_value),
            Err(BootargsError::Nul(_))
        ));
    }
}
