//! The argument block of a bare sandbox: the manifest's `args` and `env`, written by the
//! host ([`encode_args`]) and read by the guest runtime ([`ArgsBlock`]).
//!
//! Format: `argc` arguments, then `envc` entries `KEY=VALUE`, each UTF-8 and terminated by
//! one NUL byte. Its address and counts are in [`crate::bootinfo::BootInfo`].

/// Why an argument block could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsError {
    /// A string contains a NUL byte (or an env key contains `=`), which the format cannot carry.
    BadString,
    /// The block does not fit in the space given.
    TooLarge {
        /// Bytes needed.
        needed: usize,
    },
    /// More than `u16::MAX` arguments or environment entries.
    TooMany,
}

impl core::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadString => f.write_str(
                "an argument or environment entry contains a NUL byte (or a key contains '=')",
            ),
            Self::TooLarge { needed } => {
                write!(f, "arguments and environment need {needed} bytes, too many")
            }
            Self::TooMany => f.write_str("more than 65535 arguments or environment entries"),
        }
    }
}

/// Writes `args` then `env` into `out`; returns `(bytes written, argc, envc)`.
pub fn encode_args(
    args: &[&str],
    env: &[(&str, &str)],
    out: &mut [u8],
) -> Result<(usize, u16, u16), ArgsError> {
    let argc = u16::try_from(args.len()).map_err(|_| ArgsError::TooMany)?;
    let envc = u16::try_from(env.len()).map_err(|_| ArgsError::TooMany)?;
    let mut needed = 0usize;
    for a in args {
        if a.contains('\0') {
            return Err(ArgsError::BadString);
        }
        needed = needed.saturating_add(a.len() + 1);
    }
    for (k, v) in env {
        if k.is_empty() || k.contains(['\0', '=']) || v.contains('\0') {
            return Err(ArgsError::BadString);
        }
        needed = needed.saturating_add(k.len() + v.len() + 2);
    }
    let out = out
        .get_mut(..needed)
        .ok_or(ArgsError::TooLarge { needed })?;
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    for a in args {
        put(a.as_bytes());
        put(&[0]);
    }
    for (k, v) in env {
        put(k.as_bytes());
        put(b"=");
        put(v.as_bytes());
        put(&[0]);
    }
    Ok((needed, argc, envc))
}

/// A received argument block, read without trusting it: strings that are not UTF-8 read
/// as empty, missing strings are simply absent.
#[derive(Clone, Copy, Debug)]
pub struct ArgsBlock<'a> {
    bytes: &'a [u8],
    argc: u16,
    envc: u16,
}

impl<'a> ArgsBlock<'a> {
    /// Views `bytes` as a block of `argc` arguments and `envc` environment entries.
    pub fn new(bytes: &'a [u8], argc: u16, envc: u16) -> Self {
        Self { bytes, argc, envc }
    }

    fn strings(&self) -> impl Iterator<Item = &'a str> + 'a {
        let bytes = self.bytes;
        // `split` yields one extra empty piece after the final NUL; callers `take` only
        // as many strings as the counts say, so it is never seen.
        bytes
            .split(|&b| b == 0)
            .map(|s| core::str::from_utf8(s).unwrap_or(""))
    }

    /// The arguments, in manifest order.
    pub fn args(&self) -> impl Iterator<Item = &'a str> + 'a {
        let n = self.argc as usize;
        self.strings().take(n)
    }

    /// The environment, in manifest order, as `(key, value)`.
    pub fn env(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (skip, n) = (self.argc as usize, self.envc as usize);
        self.strings()
            .skip(skip)
            .take(n)
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
    }

    /// The value of environment variable `key`, if set.
    pub fn var(&self, key: &str) -> Option<&'a str> {
        self.env().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn arguments_and_environment_round_trip() {
        let mut buf = [0u8; 64];
        let (len, argc, envc) = encode_args(
            &["--greeting", "hi", ""],
            &[("A", "1"), ("B", "x=y")],
            &mut buf,
        )
        .unwrap();
        assert_eq!(&buf[..len], b"--greeting\0hi\0\0A=1\0B=x=y\0");
        let block = ArgsBlock::new(&buf[..len], argc, envc);
        assert!(block.args().eq(["--greeting", "hi", ""]));
        assert!(block.env().eq([("A", "1"), ("B", "x=y")]));
        assert_eq!(block.var("B"), Some("x=y"));
        assert_eq!(block.var("C"), None);
    }

    #[test]
    fn bad_strings_and_small_buffers_are_refused() {
        let mut buf = [0u8; 4];
        assert_eq!(
            encode_args(&["a\0b"], &[], &mut buf),
            Err(ArgsError::BadString)
        );
        assert_eq!(
            encode_args(&[], &[("K=", "v")], &mut buf),
            Err(ArgsError::BadString)
        );
        assert_eq!(
            encode_args(&["hello"], &[], &mut buf),
            Err(ArgsError::TooLarge { needed: 6 })
        );
    }

    proptest! {
        #[test]
        fn reading_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            argc in any::<u16>(),
            envc in any::<u16>(),
        ) {
            let block = ArgsBlock::new(&bytes, argc, envc);
            prop_assert!(block.args().count() <= argc as usize);
            prop_assert!(block.env().count() <= envc as usize);
            let _ = block.var("x");
        }
    }
}
