//! The network card QEMU gives a system whose table assigns one, and `--forward`.
//!
//! A table that gives a sandbox a function by the RTL8139's ID (`{ pci = "10ec:8139" }`,
//! the card Hermit drives under Quest: see `runtime::hermit::KernelConfig`) boots in QEMU
//! with one RTL8139 per such entry, each on QEMU's user-mode network (slirp: the guest is
//! 10.0.2.15/24 behind a gateway at 10.0.2.2, no host privileges needed). The card is
//! there whether or not anything is forwarded, for the same reason `-device edu` is
//! (`qemu::EMULATED`): the manifest names the device, so the machine has it, and a sandbox
//! that only sends (or only boots its driver) needs no forward. `--forward HOST:GUEST`
//! adds `hostfwd=tcp:127.0.0.1:HOST-:GUEST` to the first card: a TCP connection to
//! 127.0.0.1:HOST on this machine reaches the guest's port GUEST.
//!
//! Every card's network is `restrict=on`: the guest cannot open connections to this
//! machine or beyond (forwarded connections still arrive). An example system has no
//! business on the network CI runs in, and a sandbox is no more trusted than its peers.
//! Only 127.0.0.1 is bound on the host side, so nothing outside this machine reaches the
//! guest either.
//!
//! Bochs has no RTL8139 (its i440FX machine has only its chipset's functions), so
//! `--forward` there is refused, as is `--forward` for a table without a card: both
//! would silently forward nothing.

use quest_abi::{DeviceKind, PciId, Table, NO_INDEX};
use std::str::FromStr;

/// The PCI ID of the network card QEMU adds (Realtek RTL8139, QEMU's `rtl8139`).
pub const RTL8139: PciId = PciId {
    vendor: 0x10ec,
    device: 0x8139,
};

/// A TCP port of this machine forwarded to a port of the guest (`--forward HOST:GUEST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The port on 127.0.0.1 of this machine.
    pub host: u16,
    /// The guest's port.
    pub guest: u16,
}

impl FromStr for Forward {
    type Err = String;

    /// `HOST_PORT:GUEST_PORT`, both 1-65535 in decimal.
    fn from_str(s: &str) -> Result<Self, String> {
        let form = || format!("`{s}` is not HOST_PORT:GUEST_PORT (e.g. 8080:80)");
        let (host, guest) = s.split_once(':').ok_or_else(form)?;
        let port = |p: &str, which: &str| -> Result<u16, String> {
            let p = p.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(form());
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!(
                    "{which} port `{p}` in `{s}` is not between 1 and 65535"
                )),
                Ok(n) => Ok(n),
            }
        };
        Ok(Self {
            host: port(host, "host")?,
            guest: port(guest, "guest")?,
        })
    }
}

impl std::fmt::Display for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.guest)
    }
}

/// Why the forwards cannot be given to this boot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Bochs was chosen.
    #[error("--forward needs QEMU: Bochs has no network card for a sandbox to own (use --emulator qemu)")]
    Bochs,
    /// The table gives no sandbox a network card.
    #[error("--forward {0}: no sandbox of this system is given a network card, so there is nothing to forward to (give one `devices = [{{ pci = \"10ec:8139\" }}]`)")]
    NoCard(Forward),
    /// One host port twice.
    #[error("--forward: host port {0} is forwarded twice")]
    HostPortTwice(u16),
}

/// How many RTL8139 cards a table assigns (by ID), that is, how many QEMU adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nics(u8);

impl Nics {
    /// Counts the functions of `table` named by [`RTL8139`]'s ID.
    pub fn of(table: &Table<'_>) -> Self {
        let count = table
            .devices
            .iter()
            .filter(|d| {
                d.kind.get() == DeviceKind::Pci as u32
                    && d.pci_address.get() == NO_INDEX
                    && PciId::from_u32(d.pci_id.get()) == RTL8139
            })
            .count();
        Self(u8::try_from(count).unwrap_or(u8::MAX))
    }

    /// `n` cards.
    pub fn new(n: u8) -> Self {
        Self(n)
    }

    /// How many.
    pub fn count(self) -> u8 {
        self.0
    }

    /// QEMU's arguments for the cards with `forwards` on the first, or why not.
    pub fn qemu_args(self, forwards: &[Forward]) -> Result<Vec<String>, ForwardError> {
        check(self, false, forwards)?;
        let mut args = Vec::new();
        for n in 0..self.0 {
            let mut netdev = format!("user,id=quest-net{n},restrict=on");
            if n == 0 {
                for f in forwards {
                    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
                }
            }
            args.extend([
                "-netdev".to_owned(),
                netdev,
                "-device".to_owned(),
                format!("rtl8139,netdev=quest-net{n}"),
            ]);
        }
        Ok(args)
    }
}

/// Whether `forwards` can be given to a boot with `nics` cards (`bochs`: in Bochs).
pub fn check(nics: Nics, bochs: bool, forwards: &[Forward]) -> Result<(), ForwardError> {
    let Some(&first) = forwards.first() else {
        return Ok(());
    };
    if bochs {
        return Err(ForwardError::Bochs);
    }
    if nics.0 == 0 {
        return Err(ForwardError::NoCard(first));
    }
    for (i, f) in forwards.iter().enumerate() {
        if forwards[..i].iter().any(|g| g.host == f.host) {
            return Err(ForwardError::HostPortTwice(f.host));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(host: u16, guest: u16) -> Forward {
        Forward { host, guest }
    }

    #[test]
    fn forwards_parse_and_print() {
        assert_eq!("8080:80".parse(), Ok(fwd(8080, 80)));
        assert_eq!("65535:1".parse(), Ok(fwd(65535, 1)));
        assert_eq!(fwd(8080, 80).to_string(), "8080:80");
        for bad in [
            "", "8080", ":80", "8080:", "a:80", "80:-1", "1:2:3", "+1:2", "0x50:80",
        ] {
            let e = bad.parse::<Forward>().unwrap_err();
            assert!(e.contains("is not HOST_PORT:GUEST_PORT"), "{bad}: {e}");
        }
        let e = "0:80".parse::<Forward>().unwrap_err();
        assert_eq!(e, "host port `0` in `0:80` is not between 1 and 65535");
        let e = "80:70000".parse::<Forward>().unwrap_err();
        assert_eq!(
            e,
            "guest port `70000` in `80:70000` is not between 1 and 65535"
        );
        let e = "80:99999999999999999999".parse::<Forward>().unwrap_err();
        assert!(e.contains("not between 1 and 65535"), "{e}");
    }

    #[test]
    fn a_card_is_added_per_entry_with_the_forwards_on_the_first() {
        assert_eq!(Nics::default().qemu_args(&[]), Ok(vec![]));
        assert_eq!(
            Nics::new(1).qemu_args(&[]).unwrap().join(" "),
            "-netdev user,id=quest-net0,restrict=on -device rtl8139,netdev=quest-net0",
            "a card without forwards"
        );
        assert_eq!(
            Nics::new(2)
                .qemu_args(&[fwd(8080, 80), fwd(2222, 22)])
                .unwrap()
                .join(" "),
            "-netdev user,id=quest-net0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80,\
             hostfwd=tcp:127.0.0.1:2222-:22 -device rtl8139,netdev=quest-net0 \
             -netdev user,id=quest-net1,restrict=on -device rtl8139,netdev=quest-net1"
        );
    }

    #[test]
    fn cards_are_counted_from_the_table_by_the_rtl8139_id_only() {
        use crate::plan::testing::{manifest, SandboxSpec};
        use crate::plan::DevicePlan;
        use quest_abi::{PciAddress, PciSelector};
        let m = manifest(
            2,
            128,
            &[
                SandboxSpec::new("a", crate::manifest::Runtime::Bare, &[0], 4),
                SandboxSpec::new("b", crate::manifest::Runtime::Bare, &[1], 4),
            ],
            &[],
        );
        let pci = |select| DevicePlan::Pci {
            select,
            dma_unprotected: false,
            start_without: false,
        };
        let id = |vendor, device, index| PciSelector::Id {
            id: PciId { vendor, device },
            index,
        };
        let mut plan = crate::plan::plan(&m);
        let count = |plan: &crate::plan::Plan| {
            let enc = crate::plan::encode_table(plan, None).unwrap();
            Nics::of(&quest_abi::validate(&enc.table).unwrap()).count()
        };
        assert_eq!(count(&plan), 0);
        plan.sandboxes[0].devices = vec![
            pci(id(0x10ec, 0x8139, 0)),
            pci(id(0x1234, 0x11e8, 0)),
            // By address: it may be anything, QEMU adds nothing for it.
            pci(PciSelector::Address(PciAddress {
                bus: 0,
                device: 3,
                function: 0,
            })),
        ];
        assert_eq!(count(&plan), 1);
        plan.sandboxes[1].devices = vec![pci(id(0x10ec, 0x8139, 1))];
        assert_eq!(count(&plan), 2);
    }

    #[test]
    fn forwards_without_a_card_in_bochs_or_twice_are_refused() {
        let f = [fwd(8080, 80)];
        assert_eq!(check(Nics::new(0), false, &[]), Ok(()));
        assert_eq!(check(Nics::new(0), true, &[]), Ok(()), "nothing asked");
        assert_eq!(check(Nics::new(1), true, &f), Err(ForwardError::Bochs));
        assert_eq!(
            Nics::new(0).qemu_args(&f),
            Err(ForwardError::NoCard(fwd(8080, 80)))
        );
        assert_eq!(
            check(Nics::new(1), false, &[fwd(8080, 80), fwd(8080, 81)]),
            Err(ForwardError::HostPortTwice(8080))
        );
        assert_eq!(
            check(Nics::new(1), false, &[fwd(8080, 80), fwd(8081, 80)]),
            Ok(())
        );
        let text = ForwardError::NoCard(fwd(8080, 80)).to_string();
        assert!(text.starts_with("--forward 8080:80: no sandbox"), "{text}");
        assert!(text.contains("{ pci = \"10ec:8139\" }"), "{text}");
    }
}
