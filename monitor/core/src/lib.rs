//! Pure monitor logic, host-tested.
#![cfg_attr(not(test), no_std)]

pub mod amdvi;
pub mod backend;
pub mod boot_cost;
pub mod calibration;
pub mod console_line;
pub mod cpuid_policy;
pub mod device_windows;
pub mod doorbell;
pub mod ept;
pub mod exit;
pub mod frames;
pub mod guest_memory;
pub mod handlers;
pub mod io_bitmap;
pub mod migration;
pub mod msr_policy;
pub mod npt;
pub mod pci;
pub mod pci_virtual;
pub mod placement;
pub mod precopy;
pub mod rtc_time;
pub mod sandbox_ept;
pub mod sandbox_place;
pub mod svm_exit;
pub mod svm_maps;
pub mod uhyve;
pub mod uncovered;
pub mod vcpu_ops;
pub mod vmcb;
pub mod vmcs_fields;
pub mod vmx_controls;
pub mod vtd;
pub mod x2apic_emulation;
pub mod x2apic_icr;
