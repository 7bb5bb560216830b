//! The only VMX instructions of the monitor: VMXON, VMCLEAR, VMPTRLD, VMREAD, VMWRITE,
//! INVEPT, INVVPID, and the VM-entry/VM-exit stub around VMLAUNCH/VMRESUME (Intel SDM
//! Vol. 3, chapter 31 "VMX Instruction Reference").
//!
//! VMREAD/VMWRITE take the typed fields of `quest_monitor_core::vmcs_fields`, so a
//! field can only be written with a value of its own width.

use core::arch::{asm, global_asm};
use quest_monitor_core::vmcs_fields::{Field16, Field32, Field64, FieldNatural};

/// A VMX instruction failed (SDM 31.2: VMfailInvalid sets CF, VMfailValid sets ZF and
/// leaves the error number in the VM-instruction error field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmFail {
    /// No current VMCS (or VMXON failed before one exists).
    Invalid,
    /// Failed with a current VMCS: read `VM_INSTRUCTION_ERROR`.
    Valid,
}

/// Turns RFLAGS after a VMX instruction into a result.
fn check(rflags: u64) -> Result<(), VmFail> {
    if rflags & 1 != 0 {
        Err(VmFail::Invalid)
    } else if rflags & (1 << 6) != 0 {
        Err(VmFail::Valid)
    } else {
        Ok(())
    }
}

/// VMXON with the region at host-physical `region`.
///
/// # Safety
/// CR0/CR4 must satisfy the VMX fixed bits (CR4.VMXE set), IA32_FEATURE_CONTROL must
/// allow VMXON, and `region` must be a 4 KiB-aligned zeroed frame holding the VMCS
/// revision identifier, owned by this core for as long as it stays in VMX operation.
pub unsafe fn vmxon(region: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the contract; VMXON reads the 64-bit operand from memory.
    unsafe {
        asm!("vmxon [{0}]", "pushfq", "pop {1}", in(reg) &region, out(reg) rflags);
    }
    check(rflags)
}

/// VMCLEAR: initialises the VMCS at `vmcs` and makes it not current.
///
/// # Safety
/// VMX operation must be on; `vmcs` must be a VMCS region owned by this core.
pub unsafe fn vmclear(vmcs: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the contract.
    unsafe {
        asm!("vmclear [{0}]", "pushfq", "pop {1}", in(reg) &vmcs, out(reg) rflags);
    }
    check(rflags)
}

/// VMPTRLD: makes the VMCS at `vmcs` current on this core.
///
/// # Safety
/// As [`vmclear`]; the region must carry the revision identifier.
pub unsafe fn vmptrld(vmcs: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the contract.
    unsafe {
        asm!("vmptrld [{0}]", "pushfq", "pop {1}", in(reg) &vmcs, out(reg) rflags);
    }
    check(rflags)
}

/// Raw VMREAD of `encoding`.
///
/// # Safety
/// A VMCS must be current on this core.
unsafe fn vmread(encoding: u32) -> u64 {
    let value: u64;
    // SAFETY: per the contract; an unsupported field leaves `value` at 0 (VMfailValid),
    // which callers treat as the field's value.
    unsafe {
        asm!("xor {0:e}, {0:e}", "vmread {0}, {1}", out(reg) value, in(reg) u64::from(encoding));
    }
    value
}

/// Raw VMWRITE of `encoding`.
///
/// # Safety
/// A VMCS must be current on this core, and the value must be valid for the field (a
/// wrong host-state value breaks the next VM exit).
unsafe fn vmwrite(encoding: u32, value: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the contract.
    unsafe {
        asm!("vmwrite {0}, {1}", "pushfq", "pop {2}", in(reg) u64::from(encoding), in(reg) value, out(reg) rflags);
    }
    check(rflags)
}

/// Reads a 32-bit field.
///
/// # Safety
/// A VMCS must be current on this core.
pub unsafe fn read32(f: Field32) -> u32 {
    // SAFETY: per the contract.
    unsafe { vmread(f.0) as u32 }
}
/// Reads a 64-bit field.
///
/// # Safety
/// A VMCS must be current on this core.
pub unsafe fn read64(f: Field64) -> u64 {
    // SAFETY: per the contract.
    unsafe { vmread(f.0) }
}
/// Reads a natural-width field.
///
/// # Safety
/// A VMCS must be current on this core.
pub unsafe fn read_natural(f: FieldNatural) -> u64 {
    // SAFETY: per the contract.
    unsafe { vmread(f.0) }
}
/// Writes a 16-bit field.
///
/// # Safety
/// As [`vmwrite`].
pub unsafe fn write16(f: Field16, v: u16) -> Result<(), VmFail> {
    // SAFETY: per the contract.
    unsafe { vmwrite(f.0, u64::from(v)) }
}
/// Writes a 32-bit field.
///
/// # Safety
/// As [`vmwrite`].
pub unsafe fn write32(f: Field32, v: u32) -> Result<(), VmFail> {
    // SAFETY: per the contract.
    unsafe { vmwrite(f.0, u64::from(v)) }
}
/// Writes a 64-bit field.
///
/// # Safety
/// As [`vmwrite`].
pub unsafe fn write64(f: Field64, v: u64) -> Result<(), VmFail> {
    // SAFETY: per the contract.
    unsafe { vmwrite(f.0, v) }
}
/// Writes a natural-width field.
///
/// # Safety
/// As [`vmwrite`].
pub unsafe fn write_natural(f: FieldNatural, v: u64) -> Result<(), VmFail> {
    // SAFETY: per the contract.
    unsafe { vmwrite(f.0, v) }
}

/// INVEPT single-context (type 1) for `eptp`: drops cached translations of that EPT.
///
/// # Safety
/// VMX operation must be on and the CPU must support single-context INVEPT.
pub unsafe fn invept_single(eptp: u64) -> Result<(), VmFail> {
    let descriptor: [u64; 2] = [eptp, 0];
    let rflags: u64;
    // SAFETY: per the contract; the descriptor is 16 bytes in memory.
    unsafe {
        asm!("invept {0}, [{1}]", "pushfq", "pop {2}", in(reg) 1u64, in(reg) &descriptor, out(reg) rflags);
    }
    check(rflags)
}

/// INVVPID single-context (type 1) for `vpid`.
///
/// # Safety
/// VMX operation must be on and the CPU must support single-context INVVPID.
pub unsafe fn invvpid_single(vpid: u16) -> Result<(), VmFail> {
    let descriptor: [u64; 2] = [u64::from(vpid), 0];
    let rflags: u64;
    // SAFETY: per the contract.
    unsafe {
        asm!("invvpid {0}, [{1}]", "pushfq", "pop {2}", in(reg) 1u64, in(reg) &descriptor, out(reg) rflags);
    }
    check(rflags)
}

/// The guest's general-purpose registers while it is not running, indexed by the SDM's
/// register numbers (0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP (unused: RSP lives in the VMCS),
/// 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15), as exit qualifications name them.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct GuestRegs(pub [u64; 16]);

/// Register numbers (the shared handlers' own).
pub use quest_monitor_core::vcpu_ops::gpr as reg;

// vmx_enter(regs: *mut GuestRegs (rdi), launched: u64 (rsi)) -> u64:
//   0 after a VM exit (the guest registers are saved in *regs),
//   1 VMfailInvalid, 2 VMfailValid (VM entry did not happen).
// The host's callee-saved registers and the regs pointer are kept on the stack; HOST_RSP
// is written to point at them right before entry, so the exit path finds them.
// vmx_exit (the VMCS host RIP) saves the guest's registers into *regs and leaves through
// vmx_enter's own return path, .Lvmx_return, with 0.
global_asm!(
    r#"
    .section .text.vmx, "ax"
    .global vmx_enter
vmx_enter:
"#,
    push_callee_saved!(),
    r#"
    push rdi
    mov rax, 0x6C14
    vmwrite rax, rsp
    test rsi, rsi
    mov rax, [rdi + 0]
"#,
    load_guest_gprs!("rdi"),
    r#"
    mov rdi, [rdi + 56]
    jnz 1f
    vmlaunch
    jmp 2f
1:  vmresume
2:  mov eax, 2
    jz .Lvmx_return
    mov eax, 1
.Lvmx_return:
    add rsp, 8
"#,
    pop_callee_saved!(),
    r#"
    ret

    .global vmx_exit
vmx_exit:
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + 0], rax
"#,
    store_guest_gprs!("rdi"),
    r#"
    pop rax
    mov [rdi + 56], rax
    xor eax, eax
    jmp .Lvmx_return
    "#
);

extern "C" {
    fn vmx_enter(regs: *mut GuestRegs, launched: u64) -> u64;
    fn vmx_exit();
}

/// Address the VMCS host RIP must hold.
pub fn exit_entry_point() -> u64 {
    vmx_exit as *const () as usize as u64
}

/// Runs the guest until its next VM exit (VMLAUNCH when `launched` is false, else
/// VMRESUME).
///
/// # Safety
/// A fully initialised VMCS must be current on this core, with host RIP =
/// [`exit_entry_point`] and host state matching this core; `regs` stays valid.
pub unsafe fn enter_guest(regs: &mut GuestRegs, launched: bool) -> Result<(), VmFail> {
    // SAFETY: per the contract; `vmx_enter` preserves the System V callee-saved registers
    // and returns through the normal call path on both exit and failure.
    match unsafe { vmx_enter(regs, u64::from(launched)) } {
        0 => Ok(()),
        1 => Err(VmFail::Invalid),
        _ => Err(VmFail::Valid),
    }
}
