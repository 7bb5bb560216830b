//! Address and index newtypes: what a `u64` or `u32` *means* at a Quest boundary.
//!
//! A sandbox sees guest-physical addresses ([`GuestPhysAddr`]); the monitor places its
//! memory at host-physical addresses ([`HostPhysAddr`]) and EPT joins the two. Both are
//! plain `u64`s in the partition table (little-endian fields), but in code they are
//! different types, so a host address can never pass as a guest address (or the other way
//! round) without an explicit [`GuestPhysAddr::new`] / [`HostPhysAddr::new`]. There is
//! deliberately no `From<u64>`. Arithmetic is checked (`Option` on overflow), in the
//! style of rust-vmm's `vm-memory` and Firecracker.
//!
//! Sandboxes and logical cores are named by index in the table (a `u32` there);
//! [`SandboxId`] and [`CoreId`] keep the two apart and give `usize` for indexing.

use core::fmt;

macro_rules! phys_addr {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// Address 0.
            pub const ZERO: Self = Self(0);

            /// The address `addr` (an explicit statement of which address space it is in).
            pub const fn new(addr: u64) -> Self {
                Self(addr)
            }

            /// The raw address (for a table field, a register, a pointer cast).
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// `self + offset`, `None` past the top of the address space.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }

            /// `self - offset`, `None` below address 0.
            pub const fn checked_sub(self, offset: u64) -> Option<Self> {
                match self.0.checked_sub(offset) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }

            /// How far `self` lies above `base` (`self - base`), `None` if it lies below.
            pub const fn checked_offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// Whether the address is a multiple of `align` (`false` for `align` 0).
            pub const fn is_aligned(self, align: u64) -> bool {
                align != 0 && self.0 % align == 0
            }

            /// Rounded down to `align`; `None` unless `align` is a power of two.
            pub const fn align_down(self, align: u64) -> Option<Self> {
                if !align.is_power_of_two() {
                    return None;
                }
                Some(Self(self.0 & !(align - 1)))
            }

            /// Rounded up to `align`; `None` unless `align` is a power of two, or past the
            /// top of the address space.
            pub const fn align_up(self, align: u64) -> Option<Self> {
                if !align.is_power_of_two() {
                    return None;
                }
                match self.0.checked_add(align - 1) {
                    Some(a) => Some(Self(a & !(align - 1))),
                    None => None,
                }
            }
        }

        /// `0x…`, as the monitor and the host tool print addresses.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        /// The address's hex digits, honouring the formatter (`{:#x}` gives `0x…`).
        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
    };
}

phys_addr! {
    /// A guest-physical address: what a sandbox puts in its page tables, and what the
    /// partition table's `*_gpa` fields hold.
    GuestPhysAddr
}

phys_addr! {
    /// A host-physical address: where the monitor placed memory (identity mapped in the
    /// monitor, so also where it reads and writes it).
    HostPhysAddr
}

macro_rules! table_index {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u32);

        impl $name {
            /// The id with table index `index`.
            pub const fn new(index: u32) -> Self {
                Self(index)
            }

            /// The id of array index `index`, `None` if it does not fit the table's `u32`.
            pub fn from_index(index: usize) -> Option<Self> {
                u32::try_from(index).ok().map(Self)
            }

            /// The index, for indexing arrays (lossless: Quest targets x86-64 only).
            pub const fn index(self) -> usize {
                self.0 as usize
            }

            /// The index as the table stores it.
            pub const fn as_u32(self) -> u32 {
                self.0
            }
        }

        /// The plain index.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

table_index! {
    /// A sandbox: its index in the partition table's sandbox array.
    SandboxId
}

table_index! {
    /// A logical core: its index in the system's cores (`0..system.cores`).
    CoreId
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;

    #[test]
    fn checked_arithmetic_stops_at_the_top_of_the_address_space() {
        let top = GuestPhysAddr::new(u64::MAX);
        assert_eq!(top.checked_add(0), Some(top));
        assert_eq!(top.checked_add(1), None);
        assert_eq!(GuestPhysAddr::new(u64::MAX - 1).checked_add(1), Some(top));
        assert_eq!(HostPhysAddr::ZERO.checked_sub(1), None);
        assert_eq!(
            HostPhysAddr::new(0x3000).checked_sub(0x1000),
            Some(HostPhysAddr::new(0x2000))
        );
        assert_eq!(top.align_up(0x1000), None, "rounding up wraps");
        assert_eq!(
            top.align_down(0x1000),
            Some(GuestPhysAddr::new(0xffff_ffff_ffff_f000))
        );
        assert_eq!(
            GuestPhysAddr::new(u64::MAX - 0xfff).align_up(0x1000),
            Some(GuestPhysAddr::new(u64::MAX - 0xfff))
        );
    }

    #[test]
    fn offsets_and_alignment() {
        let base = GuestPhysAddr::new(0x40_0000_0000);
        let a = base.checked_add(0x2000).unwrap();
        assert_eq!(a.checked_offset_from(base), Some(0x2000));
        assert_eq!(base.checked_offset_from(a), None);
        assert_eq!(a.checked_offset_from(a), Some(0));
        assert!(a.is_aligned(0x1000) && a.is_aligned(0x2000) && !a.is_aligned(0x4000));
        assert!(!a.is_aligned(0), "alignment 0 is not an alignment");
        let odd = HostPhysAddr::new(0x20_1234);
        assert_eq!(
            odd.align_down(0x20_0000),
            Some(HostPhysAddr::new(0x20_0000))
        );
        assert_eq!(odd.align_up(0x20_0000), Some(HostPhysAddr::new(0x40_0000)));
        assert_eq!(odd.align_up(3), None, "not a power of two");
        assert_eq!(odd.align_down(0), None);
        assert_eq!(odd.align_up(1), Some(odd));
        assert!(HostPhysAddr::ZERO < odd);
    }

    #[test]
    fn addresses_print_as_hex() {
        let a = GuestPhysAddr::new(0x9000);
        assert_eq!(format!("{a}"), "0x9000");
        assert_eq!(format!("{a:#x}"), "0x9000");
        assert_eq!(format!("{a:x}"), "9000");
        assert_eq!(format!("{a:?}"), "GuestPhysAddr(0x9000)");
        assert_eq!(
            format!("{:?}", HostPhysAddr::new(0x20_0000)),
            "HostPhysAddr(0x200000)"
        );
        assert_eq!(format!("{}", HostPhysAddr::ZERO), "0x0");
    }

    #[test]
    fn ids_index_arrays() {
        let s = SandboxId::new(3);
        assert_eq!((s.index(), s.as_u32(), format!("{s}")), (3, 3, "3".into()));
        assert_eq!(CoreId::from_index(7), Some(CoreId::new(7)));
        assert_eq!(CoreId::from_index(usize::MAX), None);
        assert!(CoreId::new(1) < CoreId::new(2));
    }
}
