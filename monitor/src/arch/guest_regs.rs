//! Pieces of the two backends' guest entry routines, as assembly text: the callee-saved
//! registers, and the guest general-purpose registers both move between memory and the
//! CPU around a guest run. The array the registers live in is indexed by the SDM's
//! register numbers (see `vmx::instructions::GuestRegs`); these are the registers the two
//! backends handle alike (RAX, RSP and RDI are each backend's own: RAX and RSP live in
//! the VMCB on SVM, RDI holds the array on entry).

/// `mov reg, [base + 8 * n]` for RCX, RDX, RBX, RBP, RSI and R8-R15 (`base` a register).
macro_rules! load_guest_gprs {
    ($base:literal) => {
        concat!(
            "mov rcx, [",
            $base,
            " + 8]\n",
            "mov rdx, [",
            $base,
            " + 16]\n",
            "mov rbx, [",
            $base,
            " + 24]\n",
            "mov rbp, [",
            $base,
            " + 40]\n",
            "mov rsi, [",
            $base,
            " + 48]\n",
            "mov r8,  [",
            $base,
            " + 64]\n",
            "mov r9,  [",
            $base,
            " + 72]\n",
            "mov r10, [",
            $base,
            " + 80]\n",
            "mov r11, [",
            $base,
            " + 88]\n",
            "mov r12, [",
            $base,
            " + 96]\n",
            "mov r13, [",
            $base,
            " + 104]\n",
            "mov r14, [",
            $base,
            " + 112]\n",
            "mov r15, [",
            $base,
            " + 120]\n",
        )
    };
}

/// `mov [base + 8 * n], reg` for the registers of [`load_guest_gprs`].
macro_rules! store_guest_gprs {
    ($base:literal) => {
        concat!(
            "mov [",
            $base,
            " + 8], rcx\n",
            "mov [",
            $base,
            " + 16], rdx\n",
            "mov [",
            $base,
            " + 24], rbx\n",
            "mov [",
            $base,
            " + 40], rbp\n",
            "mov [",
            $base,
            " + 48], rsi\n",
            "mov [",
            $base,
            " + 64], r8\n",
            "mov [",
            $base,
            " + 72], r9\n",
            "mov [",
            $base,
            " + 80], r10\n",
            "mov [",
            $base,
            " + 88], r11\n",
            "mov [",
            $base,
            " + 96], r12\n",
            "mov [",
            $base,
            " + 104], r13\n",
            "mov [",
            $base,
            " + 112], r14\n",
            "mov [",
            $base,
            " + 120], r15\n",
        )
    };
}

/// Saves the System V callee-saved registers at the start of an entry routine.
macro_rules! push_callee_saved {
    () => {
        "push rbp\npush rbx\npush r12\npush r13\npush r14\npush r15\n"
    };
}

/// Restores what [`push_callee_saved`] saved.
macro_rules! pop_callee_saved {
    () => {
        "pop r15\npop r14\npop r13\npop r12\npop rbx\npop rbp\n"
    };
}
